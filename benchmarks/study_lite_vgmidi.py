"""Does extra labelled audio lift `lite`'s cross-validated quadrant accuracy? VGMIDI pieces, rendered, added to every
training fold of the product's cross-validation (issue 11).

    python benchmarks/study_lite_vgmidi.py extract --vgmidi ../shared/data/vgmidi --rendering fluidr3-piano
    python benchmarks/study_lite_vgmidi.py extract --vgmidi ../shared/data/vgmidi --rendering timgm-piano
    python benchmarks/study_lite_vgmidi.py cv --data-home ../shared/data/4q-dev --vgmidi ../shared/data/vgmidi
    python benchmarks/study_lite_vgmidi.py transfer --data-home ../shared/data/4q-dev --vgmidi ../shared/data/vgmidi

VGMIDI (Ferreira & Whitehead 2019; no licence file, research use) labels a piece's phrases with valence and arousal
signs (-1/+1). Only phrase 0's label is used, for the piece's opening: the first ``SECONDS`` s (the 4Q clips' length)
of ``labelled/midi/<piece>.mid``, every part played as acoustic grand piano (the arrangements are piano; 19 of 410
parts name another program) by a soundfont of :mod:`m2e_plugin.harmony.renderings` (``fluidr3-piano`` = FluidR3 GM,
``timgm-piano`` = TimGM6mb) through fluidsynth (:func:`m2e_plugin.harmony.evaluation.render`, 22.05 kHz). Renders go
to ``~/.cache/m2e/vgmidi-renders/<rendering>/``, features to ``~/.cache/m2e/features/lite-vgmidi/<rendering>/``
(``extract`` is resumable: :func:`m2e_plugin.training.features.build_cache`): per 3 s patch the MSD penultimate and
MTT pooled vectors, computed by :func:`m2e_plugin.backbones.musicnn.embed_audio` exactly as the lite cache's
(level-normalised patches), so the ``even`` / ``odd`` views are the training views of the 4Q clips. The quadrant of
(valence sign, arousal sign) is :func:`m2e_plugin.labels.quadrant`'s (Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A).

``cv`` runs each variant over fold seeds 0, 1, 2 with the product's code: the 4Q clips and folds of
:func:`m2e_plugin.training.lite.cross_validate` (``stratified_group_folds`` by artist, the inner validation split),
the committed config (its ``seed`` set to the fold seed) trained by ``fit_head``, scored on the ``even`` view of the
test clips, the quadrant softmax temperature-scaled on the pooled out-of-fold outputs, metrics by
``quadrant_metrics``. The VGMIDI clips join the training clips of every fold (never the inner validation split,
never scored). The trainer has no sample weights: ``weight 0.3`` = a seeded 30 % of the pieces (every rendering of
a chosen piece). The ``baseline`` row (no extra clips) must reproduce ``m2e train --model lite``'s CV.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
SECONDS = 30.0
RENDERINGS = ("fluidr3-piano", "timgm-piano")
FEATURE_VERSION = "lite-vgmidi-1-musicnn-msd-mtt-30s"
# name -> (renderings whose clips join each training fold, share of the pieces)
VARIANTS = {
    "baseline (no extra clips)": ((), 0.0),
    "+ VGMIDI FluidR3, weight 1": (("fluidr3-piano",), 1.0),
    "+ VGMIDI FluidR3, weight 0.3": (("fluidr3-piano",), 0.3),
    "+ VGMIDI FluidR3 & TimGM, weight 1": (RENDERINGS, 1.0),
    "+ VGMIDI FluidR3 & TimGM, weight 0.3": (RENDERINGS, 0.3),
}


def default_dirs() -> tuple[Path, Path]:
    """(renders, features) under the m2e cache root: outside the repository."""
    from m2e_plugin.cache import cache_root

    return cache_root() / "vgmidi-renders", cache_root() / "features" / "lite-vgmidi"


def vgmidi_pieces(root: Path) -> list[dict]:
    """One entry per piece: ``{"id", "midi", "quadrant"}`` from its phrase 0's valence/arousal signs."""
    from m2e_plugin.labels import VA_MID, quadrant

    table = Path(root) / "vgmidi_labelled.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: VGMIDI label table not found")
    pieces = []
    with table.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stem, phrase = Path(row["midi"]).stem.rsplit("_", 1)
            if phrase != "0":
                continue  # the opening is rendered; later phrases' labels describe later music
            midi = Path(root) / "labelled" / "midi" / f"{stem}.mid"
            if not midi.is_file():
                raise FileNotFoundError(f"{midi}: MIDI file of label row {row['id']} not found")
            pieces.append({"id": row["id"], "midi": midi,
                           "quadrant": quadrant(VA_MID + float(row["valence"]), VA_MID + float(row["arousal"]))})
    return pieces


def render_opening(midi: Path, rendering, out: Path) -> Path:
    """The first ``SECONDS`` s of ``midi`` played as piano by ``rendering``'s soundfont (FLAC, cached)."""
    import pretty_midi

    from m2e_plugin.harmony.evaluation import render

    target = out / f"{midi.stem}.flac"
    if target.is_file():
        return target
    soundfont = rendering.soundfont()
    if soundfont is None:
        raise FileNotFoundError(f"{rendering.name}: soundfont not installed (apt install {rendering.package})")
    out.mkdir(parents=True, exist_ok=True)
    pm = pretty_midi.PrettyMIDI(str(midi))
    pm.instruments = [inst for inst in pm.instruments if not inst.is_drum]
    for inst in pm.instruments:
        inst.program = rendering.program
        inst.notes = [n for n in inst.notes if n.start < SECONDS]  # later notes cannot sound in the opening
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        pm.write(str(Path(tmp) / "opening.mid"))
        render(Path(tmp) / "opening.mid", target, soundfont)
    return target


def extract(vgmidi: Path, rendering_name: str, renders: Path, features: Path, limit: int | None = None,
            progress: str = "auto") -> None:
    import torch

    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, embed_audio, load_musicnn
    from m2e_plugin.harmony.renderings import rendering
    from m2e_plugin.training.features import build_cache

    torch.set_num_threads(1)
    chosen = rendering(rendering_name)
    net, mtt = load_musicnn(), load_musicnn(checkpoint="MTT_musicnn")

    def embed(midi: str) -> dict[str, np.ndarray]:
        audio, _ = load_audio(render_opening(Path(midi), chosen, renders / chosen.name), target_sr=SAMPLE_RATE)
        emb = embed_audio(net, audio[: int(SECONDS * SAMPLE_RATE)], pooled_by=mtt)
        return {"penultimate": emb.penultimate, "mtt_pooled": emb.pooled,
                "level_dbfs": np.asarray(emb.level_dbfs, dtype=np.float64)}

    manifest = build_cache([(p["id"], p["midi"]) for p in vgmidi_pieces(vgmidi)], features / chosen.name, embed,
                           {"version": FEATURE_VERSION, "rendering": chosen.description, "seconds": SECONDS},
                           limit=limit, progress=progress)
    print(f"{chosen.name}: {len(manifest['done'])} pieces cached, {len(manifest['failed'])} failed", file=sys.stderr)


def with_extra_clips(data, extra: list[tuple[dict, list[np.ndarray], list[np.ndarray]]]):
    """A FourQFeatures holding the 4Q clips (same indices and artist groups) followed by the extra clips
    (``(piece, MSD penultimate patches, MTT pooled patches)``), each extra clip its own group."""
    from m2e_plugin.training.lite import QUADRANT_NAMES, FourQFeatures

    kinds = ("msd_penultimate", "mtt_pooled")
    combined = FourQFeatures(
        data.track_ids + [f"vgmidi-{i}" for i in range(len(extra))],
        np.concatenate([data.y, [QUADRANT_NAMES.index(p["quadrant"]) for p, _, _ in extra]]).astype(np.int64),
        [None] * (len(data.y) + len(extra)),
        {k: data.patches[k] + [e[1 + j] for e in extra] for j, k in enumerate(kinds)},
        {k: data.codec[k] + [None] * len(extra) for k in kinds})
    combined.groups = np.concatenate([data.groups, data.groups.max() + 1 + np.arange(len(extra))])
    return combined


def cv_with_extra(config: dict, data, n_fourq: int) -> np.ndarray:
    """Out-of-fold ``even``-view outputs of the 4Q clips (indices < ``n_fourq``) as
    :func:`m2e_plugin.training.lite.cross_validate` computes them, the other clips added to every training set."""
    from m2e_plugin.training.lite import cv_splits, fit_head, member_configs, predict_logits

    y, groups = data.y[:n_fourq], data.groups[:n_fourq]
    extra = np.arange(n_fourq, len(data.y))
    kinds = list(member_configs(config))
    oof = np.zeros((n_fourq, 4))
    for fit_idx, val_idx, test_idx in cv_splits(config, y, groups):
        model, _ = fit_head(config, data, np.concatenate([fit_idx, extra]), val_idx)
        oof[test_idx] = predict_logits(model, data.head_rows(test_idx, ["even"], config["pooling"], kinds)[0])
    return oof


def run_cv(data_home: Path, vgmidi: Path, features: Path, only: list[str] | None = None) -> None:
    import torch

    from m2e_plugin.cache import cache_root
    from m2e_plugin.models.lite import quadrant_softmax
    from m2e_plugin.training.features import load_cache
    from m2e_plugin.training.lite import FourQFeatures, fit_temperature, load_config, quadrant_metrics

    torch.set_num_threads(1)
    data = FourQFeatures.load(data_home, cache_root() / "features" / "lite" / "fourq",
                              kinds=("msd_penultimate", "mtt_pooled"))
    pieces = vgmidi_pieces(vgmidi)
    print("| variant | extra training clips | accuracy, seeds 0 / 1 / 2 | mean | valence AUC | arousal AUC |")
    print("|---|---|---|---|---|---|")
    for name, (renderings, share) in VARIANTS.items():
        if only and name not in only:
            continue
        res = []
        for seed in (0, 1, 2):
            keep = np.random.default_rng(seed).random(len(pieces)) < share  # the same pieces for every rendering
            extra = []
            for r in renderings:
                ids = [p["id"] for p, k in zip(pieces, keep) if k]
                pen = load_cache(features / r, ids, "penultimate")
                mtt = load_cache(features / r, ids, "mtt_pooled")
                extra += list(zip([p for p, k in zip(pieces, keep) if k], pen, mtt))
            config = {**load_config(), "seed": seed}
            oof = cv_with_extra(config, with_extra_clips(data, extra), len(data.y))
            t = fit_temperature(oof, data.y)["quadrant_temperature"]
            res.append(quadrant_metrics(data.y, quadrant_softmax(oof, t)))
            print(f"{name}, seed {seed}: {len(extra)} extra clips, {res[-1]}", file=sys.stderr, flush=True)
        acc = [r["quadrant_accuracy"] for r in res]
        print(f"| {name} | {len(extra)} | {' / '.join(f'{a:.3f}' for a in acc)} | {np.mean(acc):.3f} | "
              f"{np.mean([r['valence_roc_auc'] for r in res]):.3f} | "
              f"{np.mean([r['arousal_roc_auc'] for r in res]):.3f} |", flush=True)


def run_transfer(data_home: Path, vgmidi: Path, features: Path) -> None:
    """The domain gap: the committed recipe trained on all 600 4Q clips, scored on each rendering's VGMIDI clips
    (``even`` view, uncalibrated softmax)."""
    import torch

    from m2e_plugin.cache import cache_root
    from m2e_plugin.models.lite import quadrant_softmax
    from m2e_plugin.training.features import load_cache
    from m2e_plugin.training.lite import (FourQFeatures, fit_head, load_config, member_configs, predict_logits,
                                          quadrant_metrics)

    torch.set_num_threads(1)
    data = FourQFeatures.load(data_home, cache_root() / "features" / "lite" / "fourq",
                              kinds=("msd_penultimate", "mtt_pooled"))
    config = load_config()
    model, _ = fit_head(config, data, np.arange(len(data.y)))
    pieces = vgmidi_pieces(vgmidi)
    ids = [p["id"] for p in pieces]
    print("| 4Q-trained head scored on | clips (labels Q1 / Q2 / Q3 / Q4) | predicted Q1 / Q2 / Q3 / Q4 "
          "| quadrant accuracy | valence AUC | arousal AUC |")
    print("|---|---|---|---|---|---|")
    for r in RENDERINGS:
        extra = list(zip(pieces, load_cache(features / r, ids, "penultimate"), load_cache(features / r, ids,
                                                                                         "mtt_pooled")))
        both = with_extra_clips(data, extra)
        idx = np.arange(len(data.y), len(both.y))
        rows = both.head_rows(idx, ["even"], config["pooling"], list(member_configs(config)))[0]
        probs = quadrant_softmax(predict_logits(model, rows))
        m = quadrant_metrics(both.y[idx], probs)
        pv, pa = probs[:, 0] + probs[:, 3], probs[:, 0] + probs[:, 1]  # the quadrant as quadrant_metrics reads it
        pred = np.where(pa >= 0.5, np.where(pv >= 0.5, 0, 1), np.where(pv >= 0.5, 3, 2))
        counts = " / ".join(str(int(np.sum(q == c))) for q in (both.y[idx],) for c in range(4))
        print(f"| VGMIDI {r} | {m['n']} ({counts}) | {' / '.join(str(int(np.sum(pred == c))) for c in range(4))} "
              f"| {m['quadrant_accuracy']:.3f} | {m['valence_roc_auc']:.3f} | "
              f"{m['arousal_roc_auc']:.3f} |", flush=True)


def main(argv=None) -> int:
    renders, features = default_dirs()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="render the pieces' openings and compute their lite features (resumable)")
    e.add_argument("--rendering", choices=RENDERINGS, required=True, help="the soundfont that plays the pieces")
    e.add_argument("--renders", type=Path, default=renders, help=f"rendered audio (default {renders})")
    e.add_argument("--limit", type=int, default=None, help="only the first N pieces (a check)")
    e.add_argument("--progress", choices=("auto", "always", "never"), default="auto", help="progress bar")
    c = sub.add_parser("cv", help="cross-validate the variants; prints a Markdown table")
    c.add_argument("--only", action="append", default=None, choices=list(VARIANTS), metavar="NAME",
                   help="run only this variant (repeatable); default all")
    t = sub.add_parser("transfer", help="score the 4Q-trained head on the VGMIDI clips (the domain gap)")
    for q in (c, t):
        q.add_argument("--data-home", type=Path, required=True, help="the 4Q clips (Q1..Q4/*.mp3)")
    for q in (e, c, t):
        q.add_argument("--vgmidi", type=Path, required=True, help="the VGMIDI folder (vgmidi_labelled.csv, labelled/)")
        q.add_argument("--features", type=Path, default=features, help=f"feature caches (default {features})")
    args = p.parse_args(argv)
    if args.cmd == "extract":
        extract(args.vgmidi, args.rendering, args.renders, args.features, args.limit, args.progress)
    elif args.cmd == "transfer":
        run_transfer(args.data_home, args.vgmidi, args.features)
    else:
        run_cv(args.data_home, args.vgmidi, args.features, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
