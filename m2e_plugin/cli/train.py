"""`m2e train`: train the `lite` model (4Q clips) or a Music2Emo multitask student with KD (cached features)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from m2e_plugin.cli.options import add_data_home, add_device, add_output, add_progress, data_homes, progress_mode


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train lite or a Music2Emo head from cached features",
        description="lite: cross-validate and train the embedded model on 4Q clips (features from `m2e features "
        "--model lite --dataset fourq`). music2emo: single-task AttnCK teachers, then an MTAttnCK student on all "
        "--dataset entries with knowledge distillation (reference recipe). Writes safetensors + a JSON model card.",
    )
    p.add_argument("--model", choices=("lite", "music2emo"), default="lite", help="model to train (default lite)")
    p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help="music2emo: dataset to train on (repeat; any subset of mtg_jamendo_moodtheme, deam, "
                        "emomusic, pmemo); lite: fourq (default)")
    add_data_home(p, repeat=True, required=True,
                  help="where dataset NAME lives; NAME= may be left out when training on one dataset")
    p.add_argument("--cache", action="append", default=None, metavar="[NAME=]DIR",
                   help="feature cache (default ~/.cache/m2e/features/<model>/<dataset>)")
    add_output(p, required=True, metavar="WEIGHTS",
               help="output weights (.safetensors); the model card goes beside it")
    p.add_argument("--config", default=None, help="lite: JSON config (default: the committed configs/lite.json)")
    p.add_argument("--no-cv", action="store_true", help="lite: skip cross-validation (final fit only)")
    p.add_argument("--no-kd", action="store_true", help="music2emo: no teachers / distillation")
    p.add_argument("--kd-weight", type=float, default=None,
                   help="music2emo: weight of the distillation loss against the labels (default 0.8)")
    p.add_argument("--kd-temperature", type=float, default=None,
                   help="music2emo: softmax/sigmoid temperature of the teachers' targets (default 1)")
    p.add_argument("--lr", type=float, default=None, help="music2emo: Adam learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=None, help="music2emo: tracks per batch (default 8)")
    p.add_argument("--max-epochs", type=int, default=None, help="music2emo: epoch limit (default 500)")
    p.add_argument("--patience", type=int, default=None,
                   help="music2emo: stop after this many epochs without validation improvement (default 10)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: lite's config's, 0; music2emo 0); for lite it also draws the folds")
    add_device(p, default=None, help="music2emo: compute device: auto (default; GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--jamendo-split", type=int, default=None, choices=range(5), metavar="{0..4}",
                   help="MTG-Jamendo official split number (default 0)")
    add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from m2e_plugin.training.features import default_cache_root

    command = "m2e train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    try:
        if args.model == "lite":
            from m2e_plugin.training.lite import load_config, train_lite

            other = [d for d in (args.dataset or []) if d != "fourq"]
            if other:
                raise ValueError(f"--model lite trains on the 4Q clips only (--dataset fourq); got {', '.join(other)}")
            _check_model_options(args)
            home = _homes(args.data_home, ["fourq"])["fourq"]
            caches = _homes(args.cache, ["fourq"], option="--cache")
            cache = caches.get("fourq", default_cache_root() / "features" / "lite" / "fourq")
            config = load_config(args.config)
            if args.seed is not None:
                config["seed"] = args.seed
            _, card = train_lite(home, cache, config=config, out=args.output, cv=not args.no_cv,
                                 progress=progress_mode(args) != "never", command=command)
            print(json.dumps({"output": args.output, "metrics": card["metrics"]}))
            return 0
        from m2e_plugin.backends.base import resolve_device
        from m2e_plugin.training import music2emo as M
        from m2e_plugin.training.trainer import TrainConfig

        datasets = args.dataset or []
        if not datasets:
            raise ValueError("give at least one --dataset for --model music2emo")
        _check_model_options(args)
        for key, value in MUSIC2EMO_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        _check_music2emo_options(args, datasets)
        homes = _homes(args.data_home, datasets)
        caches = _homes(args.cache, datasets, option="--cache")
        cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience,
                          kd=not args.no_kd, kd_weight=args.kd_weight, kd_temperature=args.kd_temperature,
                          seed=args.seed, device=resolve_device(args.device),
                          verbose=progress_mode(args) != "never")
        data = {}
        for name in datasets:
            if name not in homes:
                raise ValueError(f"no --data-home for dataset {name}")
            cache = caches.get(name, default_cache_root() / "features" / "music2emo" / name)
            data[name] = M.load_splits(name, homes[name], cache, jamendo_split=args.jamendo_split)
            if "train" not in data[name]:  # a KeyError traceback from the trainer before
                raise ValueError(f"{name}: no track of its train split in {homes[name]}")
        student, _, histories = M.train_recipe(data, cfg)
        metrics = {n: _test_metrics(M, student, n, s["test"]) for n, s in data.items() if "test" in s}
        card = {"name": "music2emo-student", "datasets": datasets, "config": cfg.to_dict(), "command": command,
                "best_epoch": histories["student"].best_epoch + 1, "test_metrics": metrics,
                "outputs": {"moods": "56 MTG-Jamendo logits (sigmoid)", "va": "valence, arousal on 1-9"}}
        M.save_student(student, args.output, card)
        print(json.dumps({"output": args.output, "test_metrics": metrics}))
        return 0
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:  # NotImplementedError: no split lists (PMEmo)
        print(f"m2e train: {exc}", file=sys.stderr)
        return 2


def _test_metrics(M, student, name, split) -> dict:
    """Test metrics of the trained student; an undefined metric is None (null), as in `m2e evaluate`.

    A test split of one track (or one where no tag has both classes) raised ValueError after training: exit 2 and
    the trained weights never written. NaN was printed as ``NaN``, which is not JSON.
    """
    import math

    try:
        scores = M.evaluate_head(student, split)
    except ValueError as exc:
        print(f"m2e train: {name}: test metrics undefined ({exc})", file=sys.stderr)
        return {k: None for k in (("pr_auc", "roc_auc") if M.task_of(name) == "moods" else
                                  ("r2_valence", "r2_arousal", "rmse_valence", "rmse_arousal"))}
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in scores.items()}



# Options of one model only (None = not given): given to the other, they were silently ignored.
MUSIC2EMO_DEFAULTS = {"kd_weight": 0.8, "kd_temperature": 1.0, "lr": 1e-4, "batch_size": 8, "max_epochs": 500,
                      "patience": 10, "seed": 0, "device": "auto", "jamendo_split": 0}
LITE_ONLY = ("config", "no_cv")


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_model_options(args: argparse.Namespace) -> None:
    """Refuse an option the chosen model does not read (it was ignored without a word)."""
    if args.model == "lite":
        unread = [k for k in MUSIC2EMO_DEFAULTS if k != "seed" and getattr(args, k) is not None]
        unread += ["no_kd"] if args.no_kd else []
        problem = "options of --model music2emo only; lite's recipe is its --config (configs/lite.json)"
    else:
        unread = [k for k in LITE_ONLY if getattr(args, k) not in (None, False)]
        problem = "options of --model lite only"
        if not unread and args.no_kd:
            unread = [k for k in ("kd_weight", "kd_temperature") if getattr(args, k) is not None]
            problem = "options of the distillation, which --no-kd turns off"
    if unread:
        raise ValueError(f"{', '.join(_option(k) for k in unread)}: {problem}")


def _homes(values, datasets, *, option: str = "--data-home") -> dict[str, str]:
    """:func:`data_homes`, refusing a NAME this training does not use (a typo trained without that folder)."""
    homes = data_homes(values, datasets, option=option)
    unused = sorted(set(homes) - set(datasets))
    if unused:
        raise ValueError(f"{option} names {', '.join(unused)}, which this training does not use "
                         f"(datasets: {', '.join(datasets)})")
    return homes


# The datasets the Music2Emo recipe trains on (4Q has no official split and no MTG/VA labels of the recipe's).
MUSIC2EMO_DATASETS = ("mtg_jamendo_moodtheme", "deam", "emomusic", "pmemo")


def _check_music2emo_options(args: argparse.Namespace, datasets) -> None:
    """Refuse, before any feature is read, what would crash or silently train nonsense after minutes of work."""
    import math
    from pathlib import Path

    unknown = [d for d in datasets if d not in MUSIC2EMO_DATASETS]
    problem = (
        f"--model music2emo trains on {', '.join(MUSIC2EMO_DATASETS)}; got {', '.join(unknown)}" if unknown else
        f"--batch-size must be at least 1, got {args.batch_size}" if args.batch_size < 1 else
        f"--max-epochs must be at least 1, got {args.max_epochs}" if args.max_epochs < 1 else
        f"--patience must be at least 0, got {args.patience}" if args.patience < 0 else
        f"--kd-weight is a share between 0 and 1, got {args.kd_weight:g}"
        if not (math.isfinite(args.kd_weight) and 0.0 <= args.kd_weight <= 1.0) else
        f"--kd-temperature must be a positive number, got {args.kd_temperature:g}"
        if not (math.isfinite(args.kd_temperature) and args.kd_temperature > 0) else
        f"-o {args.output} is a folder; give the weights file to write (e.g. student.safetensors)"
        if Path(args.output).is_dir() else
        # the weights are safetensors whatever the name; `--checkpoint` picks its reader by suffix, so `-o x.ckpt`
        # or `-o x` trained, then predict/evaluate refused the file as "not a PyTorch checkpoint"
        f"-o {args.output}: the weights are written as safetensors; name the file *.safetensors"
        if Path(args.output).suffix != ".safetensors" else None)
    if problem:
        raise ValueError(problem)
