"""`m2e evaluate`: run a model on a dataset split and print the paper's metrics table (JSON with --json)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on a dataset split (paper metrics)",
        description="Predict every track of a split end to end and print the paper's table: macro PR-AUC / ROC-AUC "
        "(MTG-Jamendo), R² per dimension (DEAM, EmoMusic, PMEmo), quadrant accuracy / macro-F1 / valence and "
        "arousal ROC-AUC (4Q, all clips: note that lite was trained on the shared 4Q clips).",
    )
    p.add_argument("--model", default="lite", help="lite (default) or music2emo")
    p.add_argument("--dataset", required=True, help="deam, emomusic, pmemo, mtg_jamendo_moodtheme or fourq")
    p.add_argument("--data-home", required=True)
    p.add_argument("--split", default="test", help="train, validation, test (default) or all")
    p.add_argument("--limit", type=int, default=None, help="only the first N tracks")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights", default=None, help="lite: another lite checkpoint")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from m2e_plugin.training.evaluate import evaluate_model, format_table

    options = {"weights": args.weights} if args.weights else {}
    try:
        result = evaluate_model(args.model, args.dataset, args.data_home, args.split, limit=args.limit,
                                device=args.device, **options)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m2e evaluate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    if result["failed"]:
        print(f"m2e evaluate: {len(result['failed'])} tracks failed", file=sys.stderr)
    return 0
