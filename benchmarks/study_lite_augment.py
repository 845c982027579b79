"""Does label-preserving audio augmentation of the training clips lift `lite`'s CV? A study on the 600 shared 4Q
clips (issue 11): speed perturbation (the clip resampled so that it plays ``f`` times faster: pitch and tempo move
together, ``f`` = 0.94 / 1.06 is about -1 / +1 semitone); optionally a pure pitch shift (``--semitones``).

    python benchmarks/study_lite_augment.py extract --data-home ../shared/data/4q-dev --factors 0.94 1.06
        # ~16 min per factor of one thread on the loaded 2-core machine (1.6 s per clip)
    python benchmarks/study_lite_augment.py cv --data-home ../shared/data/4q-dev --factors 0.94 1.06 \
        --configs baseline speed0.94 speed1.06 speed clean-twice      # ~12 min

Result (README, lite section): speed perturbation lowers the CV mean accuracy (0.733-0.739 against 0.746), so lite
does not use it.

``extract`` stores, per factor and clip, ``<out>/speed<f>/<clip>.npz`` (default out
``~/.cache/m2e/features/lite-augment/fourq``; the lite training cache is only read) with the same arrays the lite
cache holds for the clean clip — MSD musicnn ``penultimate`` (P, 200) and MTT musicnn ``mtt_pooled`` (P, 1506) of
the non-overlapping 3 s patches of the level-normalised 16 kHz audio (:func:`~m2e_plugin.backbones.musicnn.embed_audio`
with ``pooled_by`` the MTT network, as :mod:`m2e_plugin.training.lite_features`) — of every ``--patch-step``-th patch
(default 1: all of them; 2 halves the cost). Resumable: the feature cache's
:func:`~m2e_plugin.training.features.build_cache` skips clips already done. ``--limit 20`` times a few clips.
The clip is decoded at 16 kHz and resampled from ``16000 f`` Hz to 16 kHz (torchaudio's band-limited ``resample``).
``--semitones`` (view ``pitch<n>``, e.g. ``--factors --semitones -2 2``) uses torchaudio's ``pitch_shift`` (phase
vocoder, then a resample by 2^(n/12), whose rational ratio makes a long filter): 16 s per clip on the loaded
machine, ten times a speed factor, so the study did not run it over the 600 clips.

``cv`` runs the product's cross-validation (:func:`m2e_plugin.training.lite.cross_validate`: the same
``stratified_group_folds``, the committed config with its ``seed`` set to 0, 1, 2, the product's members and scoring
of the clean ``even`` view of the test clips) per seed in the same process: the baseline (the config's views)
and the same with each factor's view ``speed<f>`` added to every member's training views. That view pools the
perturbed clip's stored patches into two rows, as the clean ``even`` and ``odd`` views do: its patches 0, 2, 4, ...
and 1, 3, 5, ... Augmented rows are only ever training rows: the test clips are scored on their clean views
exactly as in the baseline. ``--configs`` picks variants (``baseline``, ``speed`` = all factors, ``speed<f>`` = one
factor, ``pitch`` / ``pitch<n>`` likewise, ``all`` = every augmentation, ``clean-twice`` = a control: the clean
``even`` and ``odd`` views listed twice, the same training objective with as many optimiser steps per epoch as one
factor's rows add, since members train a fixed number of epochs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("MKL_NUM_THREADS", "1")
from m2e_plugin.training.lite import FourQFeatures, member_configs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling study's table row
from study_lite_features import table_row  # noqa: E402
from paths import cache_dir  # benchmarks/paths.py

DEFAULT_OUT = cache_dir("features", "lite-augment", "fourq")
DEFAULT_LITE_CACHE = cache_dir("features", "lite", "fourq")
AUGMENT_VERSION = "lite-augment-1-{kind}"  # kind: speed or pitch
AUG_KEYS = {"msd_penultimate": "penultimate", "mtt_pooled": "mtt_pooled"}


def factor_name(factor: float) -> str:
    return f"speed{factor:g}"


def pitch_name(semitones: float) -> str:
    return f"pitch{semitones:+g}"


def augmentations(factors, semitones) -> dict[str, tuple[str, float]]:
    """{view name: (kind, amount)} of the chosen speed factors and pitch shifts."""
    out = {factor_name(f): ("speed", f) for f in factors or []}
    out.update({pitch_name(n): ("pitch", n) for n in semitones or []})
    return out


def perturb(audio: np.ndarray, sr: int, kind: str, amount: float) -> np.ndarray:
    """Speed perturbation (:func:`speed_perturb`) or a pure pitch shift of ``amount`` semitones (torchaudio's
    phase-vocoder ``pitch_shift``: tempo kept)."""
    if kind == "speed":
        return speed_perturb(audio, sr, amount)
    import torch
    import torchaudio.functional as AF

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return AF.pitch_shift(x, sr, amount).numpy()


def speed_perturb(audio: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """``audio`` played ``factor`` times faster (resampled, band-limited: pitch and tempo scale together)."""
    import torch
    import torchaudio.functional as AF

    orig = int(round(sr * factor))
    return AF.resample(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), orig, sr).numpy()


def fourq_tracks(data_home) -> list[tuple[str, str]]:
    from m2e_plugin import loaders

    ds = loaders.initialize("fourq", data_home=str(data_home))
    return [(t, ds.track(t).audio_path) for t in sorted(ds.track_ids)]


def cmd_extract(args) -> None:
    import torch

    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.convert_musicnn import sha256_of
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, default_weights, embed_audio, load_musicnn
    from m2e_plugin.training.features import build_cache

    torch.set_num_threads(1)
    net, mtt = load_musicnn(), load_musicnn(checkpoint="MTT_musicnn")
    tracks = fourq_tracks(args.data_home)
    for name, (kind, amount) in augmentations(args.factors, args.semitones).items():

        def extract(path: str, kind=kind, amount=amount) -> dict[str, np.ndarray]:
            audio, _ = load_audio(path, target_sr=SAMPLE_RATE)
            emb = embed_audio(net, perturb(audio, SAMPLE_RATE, kind, amount), patch_step=args.patch_step,
                              pooled_by=mtt)
            return {"penultimate": emb.penultimate, "mtt_pooled": emb.pooled}

        amount_key = "factor" if kind == "speed" else "semitones"
        description = {"version": AUGMENT_VERSION.format(kind=kind), amount_key: amount, "patch_step": args.patch_step,
                       "sample_rate": SAMPLE_RATE, "musicnn_sha256": sha256_of(default_weights()),
                       "musicnn_mtt_sha256": sha256_of(default_weights("MTT_musicnn"))}
        start = time.perf_counter()
        manifest = build_cache(tracks, Path(args.out) / name, extract, description, progress=args.progress,
                               limit=args.limit)
        print(f"{name}: {len(manifest['done'])} clips cached, {len(manifest['failed'])} failed, "
              f"{time.perf_counter() - start:.1f} s this run", file=sys.stderr)


class AugmentedFourQ(FourQFeatures):
    """The product's :class:`FourQFeatures` plus, per augmentation, a view of that name (``speed<f>``,
    ``pitch<n>``): the perturbed clip's even and odd stored patches, pooled into two rows
    (``aug[view][kind]``: (P, d) per clip)."""

    aug: dict[str, dict[str, list]] = {}

    def view(self, i, name, kind="msd_penultimate"):
        if name in self.aug:
            p = self.aug[name][kind][i]
            return [p[0::2], p[1::2]] if len(p) > 1 else [p]
        return super().view(i, name, kind)


def load_augmented(data_home, lite_cache, out, names, kinds) -> AugmentedFourQ:
    from m2e_plugin.training.features import load_cache

    data = AugmentedFourQ.load(data_home, lite_cache, kinds=kinds)
    data.aug = {n: {k: load_cache(Path(out) / n, data.track_ids, AUG_KEYS[k]) for k in kinds} for n in names}
    return data


def with_views(config: dict, extra: list[str]) -> dict:
    """The config with ``extra`` views added to the training views of every member."""
    out = dict(config)
    out["views"] = list(config["views"]) + extra
    out["members"] = {k: {**(config.get("members") or {}).get(k, {}), "views": list(m["views"]) + extra}
                      for k, m in member_configs(config).items()}
    return out


def cmd_cv(args) -> None:
    import torch

    from m2e_plugin.training.lite import cross_validate, load_config

    torch.set_num_threads(1)
    config = load_config(args.config)
    kinds = list(member_configs(config))
    augs = list(augmentations(args.factors, args.semitones))
    # control: the clean views twice, the same objective with as many optimiser steps as one factor adds
    names = {"baseline": [], "clean-twice": ["even", "odd"], "speed": [factor_name(f) for f in args.factors or []],
             "pitch": [pitch_name(n) for n in args.semitones or []], "all": augs}
    names.update({n: [n] for n in augs})
    chosen = args.configs or ["baseline", "speed"]
    unknown = [c for c in chosen if c not in names]
    if unknown:
        raise SystemExit(f"unknown --configs {unknown}; one of {sorted(names)}")
    needed = sorted({v for c in chosen for v in names[c]} & set(augs))
    data = load_augmented(args.data_home, args.cache, args.out, needed, kinds)
    rows = []
    for name in chosen:
        per_seed = []
        for seed in args.seeds:
            cfg = with_views({**config, "seed": seed}, names[name])
            start = time.perf_counter()
            m = cross_validate(cfg, data, progress=False)
            per_seed.append(m)
            print(f"{name} seed {seed}: accuracy {m['quadrant_accuracy']:.4f}, valence AUC {m['valence_roc_auc']:.4f},"
                  f" arousal AUC {m['arousal_roc_auc']:.4f}, codec view {m['codec_view']['quadrant_accuracy']:.4f},"
                  f" single patch {m['single_3s_patch']['quadrant_accuracy']:.4f}"
                  f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        rows.append(table_row(name, per_seed))
    print("\n| training views | accuracy, seeds " + " / ".join(map(str, args.seeds))
          + " | mean | valence AUC | arousal AUC |\n|---|---|---|---|---|")
    print("\n".join(rows))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("extract", "cv"):
        s = sub.add_parser(name, help=f"{name} (see the module docstring)")
        s.add_argument("--data-home", required=True, help="the 4Q dataset (../shared/data/4q-dev)")
        s.add_argument("--out", default=str(DEFAULT_OUT), help="augmentation cache root (one folder per factor)")
        s.add_argument("--factors", type=float, nargs="*", default=[0.94, 1.06], help="speed factors")
        s.add_argument("--semitones", type=float, nargs="*", default=[], help="pitch shifts (semitones), e.g. -2 2")
        if name == "extract":
            s.add_argument("--patch-step", type=int, default=1, help="embed every n-th patch (2 = the even ones)")
            s.add_argument("--limit", type=int, default=None, help="only the first N clips (timing)")
            s.add_argument("--progress", default="auto", help="auto, always or never")
        else:
            s.add_argument("--cache", default=str(DEFAULT_LITE_CACHE), help="the lite training feature cache")
            s.add_argument("--config", default=None, help="lite training config (default: the committed one)")
            s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fold seeds")
            s.add_argument("--configs", nargs="+", default=None,
                           help="baseline, speed (all factors), pitch (all shifts), all, one view's name (speed<f>, "
                                "pitch<n>) or clean-twice (control); default baseline speed")
    args = p.parse_args(argv)
    {"extract": cmd_extract, "cv": cmd_cv}[args.cmd](args)


if __name__ == "__main__":
    main()
