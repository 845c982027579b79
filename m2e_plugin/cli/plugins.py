"""`m2e plugins`: the installed plugins, their versions, hooks, models and extractors (JSON on stdout)."""

from __future__ import annotations

import argparse
import json
import sys

from m2e_plugin.cli.options import add_format


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plugins",
        help="list plugins, their versions, hooks, models and extractors",
        description="List m2e plugins (built-ins and the 'm2e' entry-point group; M2E_LOAD_PLUGINS restricts "
        "which load). JSON on stdout; a plugin that failed to load is listed with its error.",
    )
    add_format(p, help="json (default) or table")
    listing = p.add_mutually_exclusive_group()
    listing.add_argument("--models", action="store_true",
                         help="list models (name, plugin, class, model card) instead of plugins")
    listing.add_argument("--extractors", action="store_true",
                         help="list extractors (name, version, plugin, number of outputs) instead of plugins")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    import pluggy

    from m2e_plugin import plugins

    with warnings.catch_warnings(record=True) as caught:
        # A plugin's failure is in the listing itself (its "error" field, repeated on stderr below); other load
        # warnings (M2E_LOAD_PLUGINS naming no installed plugin) are shown after the listing.
        warnings.simplefilter("always", plugins.PluginLoadWarning)
        try:
            listing = plugins.list_plugins()
        except pluggy.PluginValidationError as exc:
            print(f"m2e plugins: {exc}", file=sys.stderr)
            return 2
        if args.models:
            listing = [entry.describe() for entry in plugins.get_models().values()]
        elif args.extractors:
            owners = {e: p["name"] for p in listing for e in p["extractors"]}
            listing = [{"name": name, "version": cls.version, "plugin": owners.get(name),
                        "class": f"{cls.__module__}.{cls.__qualname__}", "outputs": len(tuple(cls.outputs))}
                       for name, cls in sorted(plugins.get_extractors().items())]
    if args.format == "json":
        print(json.dumps(listing, indent=1))
    else:
        print(_table(listing, args.extractors, args.models))
    for p in listing:
        if p.get("error"):
            dist = None if p.get("builtin") else p.get("distribution")  # what `pip` knows the plugin by
            origin = f" (from {' '.join(filter(None, (dist, p.get('version'))))})" if dist else ""
            print(f"m2e plugins: {p['name']}{origin}: {p['error']}", file=sys.stderr)
    for w in caught:
        if issubclass(w.category, plugins.PluginLoadWarning) and not str(w.message).startswith("m2e plugin "):
            print(f"m2e plugins: {w.message}", file=sys.stderr)
    return 0


def _table(listing: list[dict], extractors: bool, models: bool) -> str:
    if models:
        rows = [("model", "plugin", "version", "sample rate", "card")]
        rows += [(m["name"], m["plugin"], str(m.get("card", {}).get("version", "-")),
                  str(m.get("card", {}).get("sample_rate", "-")),
                  "ERROR: " + m["error"] if m.get("error") else m["card"].get("description", "-")) for m in listing]
    elif extractors:
        rows = [("extractor", "version", "plugin", "outputs")]
        rows += [(e["name"], e["version"], e["plugin"] or "-", str(e["outputs"])) for e in listing]
    else:
        rows = [("plugin", "version", "hooks", "models", "extractors")]
        rows += [(p["name"], p["version"] or "-", ", ".join(p["hooks"]) or "-", ", ".join(p["models"]) or "-",
                  "ERROR: " + p["error"] if p.get("error") else ", ".join(p["extractors"]) or "-")
                 for p in listing]
    # One line per row: a multi-line error (pluggy's signature errors) would break the columns; stderr has it whole.
    rows = [tuple(" / ".join(part.strip() for part in cell.splitlines() if part.strip()) for cell in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)
