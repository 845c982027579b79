"""`m2e datasets`: list the dataset loaders, describe one copy of a dataset, validate its audio.

    m2e datasets [--data-home NAME=DIR ...]          JSON list: every loader, with track counts where data is found
    m2e datasets info NAME --data-home DIR            JSON: tracks, audio present, splits, label ranges
    m2e datasets validate NAME --data-home DIR        JSON: missing / corrupt audio per track; exit 1 if any

Without ``--data-home`` a dataset is looked for where mirdata looks: ``~/mir_datasets/<name>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

_EXAMPLES = 10


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="list dataset loaders; describe or validate a local copy",
        description="mirdata-style dataset loaders (DEAM, PMEmo, EmoMusic, MTG-Jamendo mood/theme, 4Q). "
        "JSON on stdout, progress on stderr.",
    )
    p.add_argument("--data-home", action="append", default=[], metavar="NAME=DIR",
                   help="where dataset NAME lives (repeatable); default ~/mir_datasets/<NAME>")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    info = sub.add_parser("info", help="describe a local copy of a dataset")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--data-home", dest="home", default=None, metavar="DIR", help="the dataset's folder")
    val = sub.add_parser("validate", help="report missing and corrupt audio per track")
    val.add_argument("name", metavar="NAME")
    val.add_argument("--data-home", dest="home", default=None, metavar="DIR", help="the dataset's folder")
    val.add_argument("--decode", action="store_true",
                     help="decode every file fully (slow) instead of reading only its header")
    val.add_argument("--full", action="store_true",
                     help=f"list every missing track (default: the first {_EXAMPLES})")
    p.set_defaults(func=run)


def _homes(pairs):
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--data-home expects NAME=DIR, got {pair!r}")
        out[name] = path
    return out


def _open(name, home):
    from m2e_plugin import loaders

    return loaders.initialize(name, data_home=home)


def _list(args) -> int:
    from m2e_plugin import loaders

    homes = _homes(args.data_home)
    unknown = sorted(set(homes) - set(loaders.DATASETS))
    if unknown:
        print(f"m2e datasets: unknown dataset(s) {', '.join(unknown)}; available: {', '.join(loaders.DATASETS)}",
              file=sys.stderr)
        return 2
    rows = []
    for name in loaders.DATASETS:
        ds = _open(name, homes.get(name))
        row = {"name": name, "data_home": ds.data_home, "tracks": None}
        if os.path.isdir(ds.data_home):
            try:
                row["tracks"] = len(ds.track_ids)
            except (FileNotFoundError, ValueError) as exc:
                row["error"] = str(exc).splitlines()[0]
        rows.append(row)
    json.dump(rows, sys.stdout, indent=2)
    print()
    return 0


def _range(values):
    vals = [v for v in values if v is not None]
    return [min(vals), max(vals)] if vals else None


def _info(args) -> int:
    ds = _open(args.name, args.home)
    ids = ds.track_ids
    tracks = [ds.track(i) for i in ids]
    out = {
        "name": ds.name,
        "data_home": ds.data_home,
        "tracks": len(ids),
        "audio_present": sum(1 for t in tracks if t.audio_path and os.path.isfile(t.audio_path)),
        "license": ds._license_info,
    }
    first = tracks[0] if tracks else None
    if first is not None and hasattr(type(first), "valence"):
        out["valence_range"] = _range(t.valence for t in tracks)
        out["arousal_range"] = _range(t.arousal for t in tracks)
        out["with_std"] = sum(1 for t in tracks if t.valence_std is not None)
    if first is not None and hasattr(type(first), "quadrant"):
        counts = {}
        for t in tracks:
            counts[t.quadrant] = counts.get(t.quadrant, 0) + 1
        out["quadrants"] = dict(sorted(counts.items()))
    if first is not None and hasattr(type(first), "moods"):
        tags = {m for t in tracks for m in t.moods}
        out["mood_tags"] = len(tags)
    splits = {}
    for arg in ds.split_names or [None]:  # every dataset declares its splits (none: get_track_splits says why)
        try:
            s = ds.get_track_splits(arg)
        except NotImplementedError as exc:
            splits["unavailable"] = str(exc)
            continue
        key = "default" if arg is None else (f"split-{arg}" if isinstance(arg, int) else arg)
        splits[key] = {k: len(v) for k, v in s.items()}
    out["splits"] = splits
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def _validate(args) -> int:
    ds = _open(args.name, args.home)
    missing, invalid = ds.validate(verbose=True, decode=args.decode)
    n = len(ds.track_ids)
    missing_ids = [i for i in ds.track_ids if i in missing]
    out = {
        "name": ds.name,
        "data_home": ds.data_home,
        "tracks": n,
        "checked": "full decode" if args.decode else "header",
        "usable": n - len(missing) - len(invalid),
        "missing": len(missing),
        "corrupt": len(invalid),
        "missing_tracks": {i: missing[i][0] for i in (missing_ids if args.full else missing_ids[:_EXAMPLES])},
        "corrupt_tracks": {i: invalid[i][0] for i in ds.track_ids if i in invalid},
    }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 1 if (missing or invalid) else 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.action is None:
            return _list(args)
        if args.data_home:
            print("m2e datasets: give --data-home DIR after the action (e.g. m2e datasets info deam --data-home DIR)",
                  file=sys.stderr)
            return 2
        if args.action == "info":
            return _info(args)
        return _validate(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m2e datasets: {exc}", file=sys.stderr)
        return 2
