"""`m2e train`: train the `lite` model (4Q clips) or a Music2Emo multitask student with KD (cached features)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train lite or a Music2Emo head from cached features",
        description="lite: cross-validate and train the embedded model on 4Q clips (features from `m2e features "
        "--model lite --dataset fourq`). music2emo: single-task AttnCK teachers, then an MTAttnCK student on all "
        "--dataset entries with knowledge distillation (reference recipe). Writes safetensors + a JSON model card.",
    )
    p.add_argument("--model", choices=("lite", "music2emo"), default="lite")
    p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help="music2emo: dataset to train on (repeat; any subset of mtg_jamendo_moodtheme, deam, "
                        "emomusic, pmemo); lite: fourq (default)")
    p.add_argument("--data-home", action="append", required=True, metavar="[NAME=]DIR",
                   help="dataset folder; NAME=DIR when several datasets")
    p.add_argument("--cache", action="append", default=None, metavar="[NAME=]DIR",
                   help="feature cache (default ~/.cache/m2e/features/<model>/<dataset>)")
    p.add_argument("--out", required=True, help="output weights (.safetensors); the model card goes beside it")
    p.add_argument("--config", default=None, help="lite: JSON config (default: the committed configs/lite.json)")
    p.add_argument("--no-cv", action="store_true", help="lite: skip cross-validation (final fit only)")
    p.add_argument("--no-kd", action="store_true", help="music2emo: no teachers / distillation")
    p.add_argument("--kd-weight", type=float, default=0.8)
    p.add_argument("--kd-temperature", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-epochs", type=int, default=500)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jamendo-split", type=int, default=0)
    p.set_defaults(func=run)


def _named(values, datasets: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" in v:
            k, d = v.split("=", 1)
            out[k] = d
        elif len(datasets) == 1:
            out[datasets[0]] = v
        else:
            raise ValueError(f"{what} {v!r}: write NAME=DIR when training on several datasets")
    return out


def run(args: argparse.Namespace) -> int:
    from m2e_plugin.training.features import default_cache_root

    command = "m2e train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    try:
        if args.model == "lite":
            from m2e_plugin.training.lite import load_config, train_lite

            home = args.data_home[0].split("=", 1)[-1]
            cache = (args.cache[0].split("=", 1)[-1] if args.cache
                     else default_cache_root() / "features" / "lite" / "fourq")
            _, card = train_lite(home, cache, config=load_config(args.config), out=args.out, cv=not args.no_cv,
                                 command=command)
            print(json.dumps({"out": args.out, "metrics": card["metrics"]}))
            return 0
        from m2e_plugin.training import music2emo as M
        from m2e_plugin.training.trainer import TrainConfig

        datasets = args.dataset or []
        if not datasets:
            raise ValueError("give at least one --dataset for --model music2emo")
        homes = _named(args.data_home, datasets, "--data-home")
        caches = _named(args.cache, datasets, "--cache")
        cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience,
                          kd=not args.no_kd, kd_weight=args.kd_weight, kd_temperature=args.kd_temperature,
                          seed=args.seed, device=args.device, verbose=True)
        data = {}
        for name in datasets:
            if name not in homes:
                raise ValueError(f"no --data-home for dataset {name}")
            cache = caches.get(name, default_cache_root() / "features" / "music2emo" / name)
            data[name] = M.load_splits(name, homes[name], cache, jamendo_split=args.jamendo_split)
        student, _, histories = M.train_recipe(data, cfg)
        metrics = {n: M.evaluate_head(student, s["test"]) for n, s in data.items() if "test" in s}
        card = {"name": "music2emo-student", "datasets": datasets, "config": cfg.to_dict(), "command": command,
                "best_epoch": histories["student"].best_epoch + 1, "test_metrics": metrics,
                "outputs": {"moods": "56 MTG-Jamendo logits (sigmoid)", "va": "valence, arousal on 1-9"}}
        M.save_student(student, args.out, card)
        print(json.dumps({"out": args.out, "test_metrics": metrics}))
        return 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"m2e train: {exc}", file=sys.stderr)
        return 2
