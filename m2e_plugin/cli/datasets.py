"""`m2e datasets`: list the dataset loaders, describe one copy of a dataset, validate its audio.

    m2e datasets [--data-home NAME=DIR ...]          JSON list: every loader, with track counts where data is found
    m2e datasets info                                 JSON list of the dataset names
    m2e datasets info NAME --data-home DIR            JSON: tracks, audio present, splits, label ranges
    m2e datasets validate NAME --data-home DIR        JSON: missing / corrupt audio per track; exit 1 if any
                                                      (--decode: also damaged-but-usable tracks and what was lost)

``--data-home`` is ``[NAME=]DIR`` before or after the action. Without it a dataset is looked for where mirdata
looks: ``~/mir_datasets/<name>``. A folder the user typed that does not exist (or is a file) exits 2; the list
still prints, that row with an ``error``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from m2e_plugin.cli.options import add_data_home, add_progress, data_home_for, data_homes, progress_mode

_EXAMPLES = 10
# The loader names, for help texts (tests/test_cli_vocabulary.py checks them against m2e_plugin.loaders.DATASETS;
# importing the loaders here would slow down every `m2e` start).
_NAMES = ("deam", "emomusic", "fourq", "mtg_jamendo_moodtheme", "pmemo")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="list dataset loaders; describe or validate a local copy",
        description="mirdata-style dataset loaders (DEAM, PMEmo, EmoMusic, MTG-Jamendo mood/theme, 4Q). "
        "JSON on stdout, progress on stderr.",
    )
    add_data_home(p, repeat=True)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    info = sub.add_parser("info", help="describe a local copy of a dataset (without NAME: list the names)")
    info.add_argument("name", metavar="NAME", nargs="?", default=None, help=f"one of {', '.join(_NAMES)}")
    add_data_home(info, dest="action_data_home")
    val = sub.add_parser("validate", help="report missing and corrupt audio per track")
    val.add_argument("name", metavar="NAME", help=f"one of {', '.join(_NAMES)}")
    add_data_home(val, dest="action_data_home")
    add_progress(val)
    val.add_argument("--decode", action="store_true",
                     help="decode every file fully (slow) instead of reading only its header")
    val.add_argument("--full", action="store_true",
                     help=f"list every missing track (default: the first {_EXAMPLES})")
    p.set_defaults(func=run)


def _open(name, home):
    from m2e_plugin import loaders

    return loaders.initialize(name, data_home=home)


def _list(args) -> int:
    from m2e_plugin import loaders

    homes = data_homes(args.data_home)
    unknown = sorted(set(homes) - set(loaders.DATASETS))
    if unknown:
        print(f"m2e datasets: unknown dataset(s) {', '.join(unknown)}; available: {', '.join(loaders.DATASETS)}",
              file=sys.stderr)
        return 2
    rows = []
    failed = False
    for name in loaders.DATASETS:
        ds = _open(name, homes.get(name))
        row = {"name": name, "data_home": ds.data_home, "tracks": None}
        if os.path.isdir(ds.data_home):
            try:
                row["tracks"] = len(ds.track_ids)
            except (FileNotFoundError, ValueError) as exc:
                row["error"] = str(exc).splitlines()[0]
        elif name in homes:  # absent is fine for a default folder, not for one the user typed
            row["error"] = (f"{ds.data_home} is a file, not a folder" if os.path.exists(ds.data_home)
                            else f"{ds.data_home} does not exist")
        if name in homes and "error" in row:
            failed = True
            print(f"m2e datasets: --data-home {name}={homes[name]}: {row['error']}", file=sys.stderr)
        rows.append(row)
    json.dump(rows, sys.stdout, indent=2)
    print()
    return 2 if failed else 0


def _range(values):
    vals = [v for v in values if v is not None]
    return [min(vals), max(vals)] if vals else None


def _info(args) -> int:
    if args.name is None:
        from m2e_plugin import loaders

        json.dump(list(loaders.DATASETS), sys.stdout)
        print()
        return 0
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
    from m2e_plugin.loaders.core import damage_line
    from m2e_plugin.progress import Progress

    damaged: dict = {}
    n = len(ds.track_ids)
    # On a terminal a bar; with --progress always, plain lines in a log, as every long command
    with Progress(n, f"m2e datasets validate {ds.name}", unit="track", mode=progress_mode(args)) as bar:
        missing, invalid = ds.validate(verbose=False, decode=args.decode, damaged=damaged, progress=bar)
        if not args.quiet:
            for i in ds.track_ids:
                if i in damaged:
                    bar.write(damage_line(ds.track(i).audio_path, damaged[i]))
    if not args.quiet:
        print(f"{ds.name}: {n} tracks, {n - len(missing) - len(invalid)} with usable audio, {len(missing)} missing, "
              f"{len(invalid)} corrupt", file=sys.stderr)
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
    if args.decode:  # usable, but decoding lost part of the audio (m2e_plugin.audio.check_audio)
        out["damaged"] = len(damaged)
        out["damaged_tracks"] = {i: damaged[i] for i in ds.track_ids if i in damaged}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 1 if (missing or invalid) else 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.action is None:
            return _list(args)
        args.home = data_home_for(args.data_home + args.action_data_home, args.name)
        if args.action == "info":
            return _info(args)
        return _validate(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m2e datasets: {exc}", file=sys.stderr)
        return 2
