"""Loader speed and memory: index build, label access, dynamic annotations, audio decode.

Usage::

    python benchmarks/bench_loaders.py --data-home deam=DIR --data-home fourq=DIR ...
    python benchmarks/bench_loaders.py --shared ../shared/data      # the shared copy's folder names

Prints one row per dataset: tracks, time to build the index (parse the label files), time to read every track's
labels, peak Python memory of the two (tracemalloc), and for datasets with audio on disk the decode speed over up
to ``--decode N`` files (seconds of audio per second of wall time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

SHARED_NAMES = {
    "deam": "deam",
    "emomusic": "emomusic",
    "fourq": "4q-dev",
    "mtg_jamendo_moodtheme": "mtg-jamendo",
    "pmemo": "pmemo",
}
LABELS = ("valence", "arousal", "valence_std", "arousal_std", "quadrant", "moods", "tags")


def bench(name: str, home: str, n_decode: int) -> dict:
    from m2e_plugin import loaders

    tracemalloc.start()
    t0 = time.perf_counter()
    ds = loaders.initialize(name, data_home=home)
    ids = ds.track_ids
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    for tid in ids:
        track = ds.track(tid)
        for attr in LABELS:
            if hasattr(type(track), attr):
                getattr(track, attr)
    t_labels = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row = {"dataset": name, "tracks": len(ids), "index_s": t_index, "labels_s": t_labels, "peak_mb": peak / 2**20}

    first = ds.track(ids[0])
    if hasattr(type(first), "dynamic"):
        t0 = time.perf_counter()
        n_dyn = sum(1 for tid in ids if ds.track(tid).dynamic is not None)
        row["dynamic_s"] = time.perf_counter() - t0
        row["with_dynamic"] = n_dyn

    with_audio = [tid for tid in ids if os.path.isfile(ds.track(tid).audio_path)]
    row["audio_present"] = len(with_audio)
    if with_audio and n_decode:
        sample = with_audio[:: max(1, len(with_audio) // n_decode)][:n_decode]
        seconds = 0.0
        t0 = time.perf_counter()
        for tid in sample:
            audio, sr = ds.track(tid).audio
            seconds += audio.shape[0] / sr
        wall = time.perf_counter() - t0
        row["decoded"] = len(sample)
        row["decode_ms_per_file"] = 1000 * wall / len(sample)
        row["x_realtime"] = seconds / wall
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--shared", default=None, help="folder holding the shared data (deam/, 4q-dev/, ...)")
    parser.add_argument("--decode", type=int, default=50, help="decode up to N files per dataset (default 50)")
    args = parser.parse_args(argv)

    homes = {}
    if args.shared:
        for name, folder in SHARED_NAMES.items():
            if os.path.isdir(os.path.join(args.shared, folder)):
                homes[name] = os.path.join(args.shared, folder)
    for pair in args.data_home:
        name, _, path = pair.partition("=")
        homes[name] = path
    if not homes:
        parser.error("give --shared DIR or --data-home NAME=DIR")

    # Import everything first so no row pays the one-off import cost (mirdata, librosa, torch via m2e_plugin).
    import importlib

    for name in homes:
        importlib.import_module(f"m2e_plugin.loaders.{name}")
    importlib.import_module("m2e_plugin.audio")
    importlib.import_module("m2e_plugin.labels")

    rows = [bench(name, home, args.decode) for name, home in sorted(homes.items())]
    cols = [
        ("dataset", "{:<22}"), ("tracks", "{:>7}"), ("index_s", "{:>8.3f}"), ("labels_s", "{:>9.3f}"),
        ("peak_mb", "{:>8.1f}"), ("dynamic_s", "{:>10.3f}"), ("audio_present", "{:>14}"),
        ("decode_ms_per_file", "{:>19.1f}"), ("x_realtime", "{:>11.0f}"),
    ]
    print(" ".join(c.ljust(22) if c == "dataset" else c.rjust(max(len(c), 7)) for c, _ in cols))
    for row in rows:
        cells = []
        for c, f in cols:
            width = max(len(c), 7)
            value = row.get(c)
            text = "-" if value is None else f.format(value).strip()
            cells.append(text.ljust(22) if c == "dataset" else text.rjust(width))
        print(" ".join(cells))
    sys.stdout.flush()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
