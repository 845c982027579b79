"""`m2e evaluate`: run a model on a dataset split and print the paper's metrics (JSON, or the table)."""

from __future__ import annotations

import argparse
import json
import sys

from m2e_plugin.cli.options import (add_data_home, add_device, add_format, add_model_files, add_progress,
                                    data_home_for, model_file_options, progress_mode)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on a dataset split (paper metrics)",
        description="Predict every track of a split end to end and print the paper's table: macro PR-AUC / ROC-AUC "
        "(MTG-Jamendo), R² per dimension (DEAM, EmoMusic, PMEmo), quadrant accuracy / macro-F1 / valence and "
        "arousal ROC-AUC (4Q, all clips: note that lite was trained on the shared 4Q clips).",
    )
    p.add_argument("--model", default="lite", help="lite (default), music2emo or a plugin's model")
    p.add_argument("--dataset", required=True, help="deam, emomusic, pmemo, mtg_jamendo_moodtheme or fourq")
    add_data_home(p, required=True, help="the dataset's folder")
    p.add_argument("--split", default=None,
                   help="train, validation, test (default) or all (the default for 4Q, which has no official split)")
    p.add_argument("--limit", type=int, default=None, help="only the first N tracks")
    add_device(p)
    add_model_files(p, key_input=True)
    add_format(p, help="json (default) or table (the paper's markdown table)")
    add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from m2e_plugin.training.evaluate import evaluate_model, format_table

    if args.limit is not None and args.limit < 1:  # 0 scored every track, -1 all but the last
        print(f"m2e evaluate: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    options = model_file_options(args, args.model)
    try:
        home = data_home_for(args.data_home, args.dataset)
        result = evaluate_model(args.model, args.dataset, home, args.split, limit=args.limit,
                                device=args.device, progress=progress_mode(args), **options)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m2e evaluate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, allow_nan=False) if args.format == "json" else format_table(result))
    for warning in result["decoder_warnings"].values():
        print(f"m2e evaluate: {warning}", file=sys.stderr)
    if result["failed"]:  # scored on the others, as the exit status says (1: some inputs failed)
        print(f"m2e evaluate: {len(result['failed'])} tracks failed (scored without them; see \"failed\")",
              file=sys.stderr)
        return 1
    return 0
