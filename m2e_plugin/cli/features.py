"""`m2e features`: compute and cache per-track model inputs once (resumable), for `m2e train` / `m2e evaluate`."""

from __future__ import annotations

import argparse
import json
import sys

from m2e_plugin.cli.options import add_data_home, add_device, add_output, add_progress, data_home_for, progress_mode


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features",
        help="compute and cache per-track training features (resumable)",
        description="Compute per-track inputs of a model for every track of a dataset and store them, one .npz per "
        "track, under -o/--output (default ~/.cache/m2e/features/<model>/<dataset>). Tracks already cached are skipped, "
        "so an interrupted run resumes; failures are listed in <out>/manifest.json and the run goes on.",
    )
    p.add_argument("--model", choices=("lite", "music2emo"), default="lite",
                   help="lite: musicnn embeddings of 3 s patches (+ a lossy-codec view); music2emo: MERT 1536-d "
                        "segments + chord/key ids")
    p.add_argument("--dataset", required=True, help="deam, emomusic, pmemo, mtg_jamendo_moodtheme or fourq")
    add_data_home(p, required=True, help="the dataset's folder")
    add_output(p, help="cache folder (default ~/.cache/m2e/features/<model>/<dataset>)")
    p.add_argument("--limit", type=int, default=None, help="only the first N tracks (smoke runs)")
    p.add_argument("--mert", default=None, help="music2emo: MERT hub id or local directory")
    p.add_argument("--chords", choices=("auto", "btc", "offline"), default="auto",
                   help="music2emo: chord recogniser, as in predict (auto = BTC when its weights are available, "
                   "else offline with a warning; btc = BTC or exit 2)")
    p.add_argument("--chord-model", default=None, help="music2emo: BTC chord model (.pt), as in predict")
    add_device(p, help="music2emo: compute device: auto (default; GPU when present), cpu, cuda, cuda:N")
    add_progress(p)
    p.set_defaults(func=run)


def dataset_tracks(dataset: str, data_home: str) -> list[tuple[str, str]]:
    """(track_id, audio path) of every track of a dataset, through the project's loaders."""
    from m2e_plugin import loaders

    ds = loaders.initialize(dataset, data_home=data_home)
    return [(tid, ds.track(tid).audio_path) for tid in ds.track_ids]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from m2e_plugin.training import features as F

    if args.model == "lite":
        import torch

        # The descriptors are small ops: intra-op threads only add spin-waiting on a shared CPU (measured 8x slower).
        torch.set_num_threads(1)
    if args.limit is not None and args.limit < 1:
        print(f"m2e features: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else F.default_cache_root() / "features" / args.model / args.dataset
    if out.exists() and not out.is_dir():
        print(f"m2e features: {out} is a file, not a folder for the cache", file=sys.stderr)
        return 2
    try:
        tracks = dataset_tracks(args.dataset, data_home_for(args.data_home, args.dataset))
        if args.model == "lite":
            extract, desc = F.lite_extractor()
        else:
            extract, desc = F.music2emo_extractor(mert=args.mert, chords=args.chords, chord_model=args.chord_model,
                                                 device=args.device)
        desc = {**desc, "dataset": args.dataset}
        manifest = F.build_cache(tracks, out, extract, desc, progress=progress_mode(args), limit=args.limit)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"m2e features: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "done": len(manifest["done"]), "failed": manifest["failed"]}))
    return 1 if manifest["failed"] else 0
