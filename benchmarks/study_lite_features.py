"""Which representation lifts `lite`'s quadrant accuracy? A study on the 600 shared 4Q clips (issue 11), not shipped.

    python benchmarks/study_lite_features.py extract --wheel /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl \
        --data-home ../shared/data/4q-dev          # ~25 min of one thread on a loaded 2-core machine
    python benchmarks/study_lite_features.py extract-vgg --wheel /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl \
        --data-home ../shared/data/4q-dev          # musicnn's MSD vgg (benchmarks/musicnn_vgg.py), ~5 min
    python benchmarks/study_lite_features.py cv --data-home ../shared/data/4q-dev

``extract`` stores, per clip, in its own cache (default ``~/.cache/m2e/features/lite-study/fourq``; the lite
training cache is only read): the MSD musicnn's pooled 1506-d vector of every 3 s patch (max and mean over time of
the 753 channels the penultimate layer is computed from), the MTT musicnn's pooled vector and penultimate embedding
(weights converted from the same wheel by :mod:`m2e_plugin.backbones.convert_musicnn`), and the MTG-Jamendo mood
CNN's 64-d embedding and 56 logits of the whole clip (as the backend computes them, level-normalised).
``extract-vgg`` adds, in ``<cache>/msd_vgg/<clip>.npz`` (the existing files stay untouched), musicnn's MSD-trained
vgg on the same patches (:mod:`musicnn_vgg`): its 256-d embedding (flattened pool5, the layer the tag output reads),
512-d pooled conv4/conv5 maps and 50 MSD tag logits per patch.

``cv`` runs each configuration over fold seeds 0, 1, 2 (the product's ``stratified_group_folds``, 10 folds, grouped
by artist): standardised features (clipped to +-8, as the head) -> multinomial logistic regression (scikit-learn,
fixed C) trained on the ``even`` and ``odd`` patch views of the training clips, scored on the ``even`` view (the
product's); ``+`` in a name = one regression on concatenated features, ``&`` = the average of the members'
log-probabilities (an ensemble). Accuracy is the quadrant read off the valence and arousal halves, as in
``m2e train --model lite``. The MSD penultimate embeddings come from the lite training cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
DEFAULT_OUT = Path.home() / ".cache" / "m2e" / "features" / "lite-study" / "fourq"
# name -> [(feature sets, C), ...]: one member = one regression, several = an ensemble
CONFIGS = {
    "msd_pen (the shipped representation)": [(("msd_pen",), 0.03)],
    "msd_pooled": [(("msd_pooled",), 0.003)],
    "mtt_pooled": [(("mtt_pooled",), 0.003)],
    "msd_pen + mood_emb": [(("msd_pen", "mood_emb"), 0.01)],
    "msd_pen + mood_logit": [(("msd_pen", "mood_logit"), 0.01)],
    "msd_pen + mtt_pen": [(("msd_pen", "mtt_pen"), 0.01)],
    "msd_pen + mtt_pooled": [(("msd_pen", "mtt_pooled"), 0.003)],
    "msd_pooled + mtt_pooled": [(("msd_pooled", "mtt_pooled"), 0.002)],
    "msd_pen & msd_pooled": [(("msd_pen",), 0.03), (("msd_pooled",), 0.003)],
    "msd_pen & mtt_pooled": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003)],
    "msd_pen & msd_pooled & mtt_pooled": [(("msd_pen",), 0.03), (("msd_pooled",), 0.003), (("mtt_pooled",), 0.003)],
    "vgg_emb": [(("vgg_emb",), 0.01)],
    "vgg_pooled": [(("vgg_pooled",), 0.003)],
    "msd_pen & vgg_emb": [(("msd_pen",), 0.03), (("vgg_emb",), 0.01)],
    "msd_pen & mtt_pooled & vgg_emb": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003), (("vgg_emb",), 0.01)],
    "msd_pen + vgg_emb": [(("msd_pen", "vgg_emb"), 0.01)],
    "vgg_emb (C 0.003)": [(("vgg_emb",), 0.003)],
    "vgg_emb (C 0.03)": [(("vgg_emb",), 0.03)],
    "msd_pen & vgg_pooled": [(("msd_pen",), 0.03), (("vgg_pooled",), 0.003)],
    "msd_pen & mtt_pooled & vgg_pooled": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003), (("vgg_pooled",), 0.003)],
    "msd_pen + vgg_pooled": [(("msd_pen", "vgg_pooled"), 0.003)],
    "msd_pen + vgg_logit": [(("msd_pen", "vgg_logit"), 0.01)],
}
CLIP_LEVEL = ("mood_emb", "mood_logit")  # one vector per clip (the mood CNN sees the whole clip)


def extract(wheel: Path, data_home: Path, out: Path, limit: int | None = None) -> None:
    import torch

    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones import moodtheme
    from m2e_plugin.backbones.convert_musicnn import convert
    from m2e_plugin.backbones.level import normalise_level
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, level_normalised_patches, load_musicnn

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        convert(wheel, Path(tmp) / "mtt.safetensors", checkpoint="MTT_musicnn")
        mtt = load_musicnn(Path(tmp) / "mtt.safetensors")
    msd, mood = load_musicnn(), moodtheme.MoodThemeCNN.load()
    files = sorted(data_home.glob("Q[1-4]/*.mp3"))[:limit]
    from tqdm import tqdm

    for path in tqdm(files, desc="study features", unit="clip"):
        target = out / f"{path.stem}.npz"
        if target.is_file():
            continue
        with torch.inference_mode():
            y16, _ = load_audio(path, target_sr=SAMPLE_RATE)
            cut, _ = level_normalised_patches(y16)
            msd_pooled, _ = msd.pooled_and_penultimate(cut)
            mtt_pooled, mtt_pen = mtt.pooled_and_penultimate(cut)
            y12, _ = load_audio(path, target_sr=moodtheme.SR)
            mel = moodtheme._network_inputs(moodtheme.log_mel(normalise_level(y12, moodtheme.SR).audio))
            emb = mood.embedding(torch.from_numpy(mel))
            logits = mood.dense(emb)
        np.savez(out / f".{path.stem}.tmp.npz", msd_pooled=msd_pooled.numpy(), mtt_pooled=mtt_pooled.numpy(),
                 mtt_pen=mtt_pen.numpy(), mood_emb=emb.mean(0).numpy(), mood_logit=logits.mean(0).numpy())
        os.replace(out / f".{path.stem}.tmp.npz", target)


def extract_vgg(wheel: Path, data_home: Path, out: Path, limit: int | None = None) -> None:
    import torch
    from musicnn_vgg import clip_patches, load_vgg, run_vgg
    from tqdm import tqdm

    torch.set_num_threads(1)
    (out / "msd_vgg").mkdir(parents=True, exist_ok=True)
    vgg = load_vgg(wheel)
    for path in tqdm(sorted(data_home.glob("Q[1-4]/*.mp3"))[:limit], desc="vgg features", unit="clip"):
        target = out / "msd_vgg" / f"{path.stem}.npz"
        if target.is_file():
            continue
        res = run_vgg(vgg, clip_patches(path))
        tmp = out / "msd_vgg" / f".{path.stem}.tmp.npz"
        np.savez(tmp, vgg_emb=res["embedding"], vgg_pooled=res["pooled"], vgg_logit=res["logits"])
        os.replace(tmp, target)


def _rows(feats: dict, sets, i: int, sel: slice):
    """One clip's row for patch selection ``sel`` (None where the selection holds no patch)."""
    n = len(feats["msd_pen"][i])
    idx = np.arange(n)[sel]
    if not len(idx):
        return None
    return np.concatenate([feats[k][i] if k in CLIP_LEVEL else feats[k][i][idx].mean(0) for k in sets])


def cross_validate(feats: dict, y: np.ndarray, groups: np.ndarray, members, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from m2e_plugin.training.lite import stratified_group_folds

    logp = np.zeros((len(y), 4))
    for sets, c in members:
        views = {name: [_rows(feats, sets, i, sel) for i in range(len(y))]
                 for name, sel in (("even", slice(0, None, 2)), ("odd", slice(1, None, 2)))}
        for test in stratified_group_folds(y, groups, 10, seed):
            train = np.setdiff1d(np.arange(len(y)), test)
            pairs = [(views[v][i], y[i]) for v in ("even", "odd") for i in train if views[v][i] is not None]
            x = np.stack([p[0] for p in pairs])
            scaler = StandardScaler().fit(x)
            model = LogisticRegression(C=c, max_iter=3000).fit(np.clip(scaler.transform(x), -8, 8),
                                                                [p[1] for p in pairs])
            xt = np.clip(scaler.transform(np.stack([views["even"][i] for i in test])), -8, 8)
            logp[test] += model.predict_log_proba(xt) / len(members)
    return logp


def run_cv(data_home: Path, out: Path, only: list[str] | None = None) -> None:
    from m2e_plugin.cache import cache_root
    from m2e_plugin.models.lite import quadrant_softmax
    from m2e_plugin.training.lite import FourQFeatures, quadrant_metrics

    data = FourQFeatures.load(data_home, cache_root() / "features" / "lite" / "fourq")
    missing = [t for t in data.track_ids if not (out / f"{t}.npz").is_file()]
    if missing:
        sys.exit(f"{out}: {len(missing)} clips without study features (run `extract` first), e.g. {missing[0]}")
    stored = [np.load(out / f"{t}.npz") for t in data.track_ids]
    feats = {"msd_pen": data.penultimate, **{k: [s[k] for s in stored] for k in stored[0].files}}
    if all((out / "msd_vgg" / f"{t}.npz").is_file() for t in data.track_ids):
        vgg = [np.load(out / "msd_vgg" / f"{t}.npz") for t in data.track_ids]
        feats.update({k: [s[k] for s in vgg] for k in vgg[0].files})
    for key, per_clip in feats.items():  # every patch-level set must hold the same patches as msd_pen
        bad = [t for t, a, b in zip(data.track_ids, per_clip, data.penultimate) if key not in CLIP_LEVEL
               and len(a) != len(b)]
        if bad:
            sys.exit(f"{key}: patch count differs from the lite cache's for {len(bad)} clips, e.g. {bad[0]}")
    print("| features (`+` concatenated, `&` ensemble) | accuracy, seeds 0 / 1 / 2 | mean | valence AUC | arousal AUC |")
    print("|---|---|---|---|---|")
    for name, members in CONFIGS.items():
        if only and name not in only:
            continue
        absent = sorted({k for sets, _ in members for k in sets} - set(feats))
        if absent:
            print(f"| {name} | skipped: no {', '.join(absent)} (run `extract-vgg`) | | | |", flush=True)
            continue
        res = [quadrant_metrics(data.y, quadrant_softmax(cross_validate(feats, data.y, data.groups, members, s)))
               for s in (0, 1, 2)]
        acc = [r["quadrant_accuracy"] for r in res]
        print(f"| {name} | {' / '.join(f'{a:.3f}' for a in acc)} | {np.mean(acc):.3f} | "
              f"{np.mean([r['valence_roc_auc'] for r in res]):.3f} | "
              f"{np.mean([r['arousal_roc_auc'] for r in res]):.3f} |", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="compute the study features (resumable)")
    v = sub.add_parser("extract-vgg", help="add musicnn's MSD vgg features (resumable)")
    for q, what in ((e, "MTT_musicnn"), (v, "MSD_vgg")):
        q.add_argument("--wheel", type=Path, required=True, help=f"musicnn-0.1.0-py3-none-any.whl (for {what})")
        q.add_argument("--limit", type=int, default=None, help="only the first N clips (a check)")
    c = sub.add_parser("cv", help="cross-validate the configurations; prints a Markdown table")
    c.add_argument("--only", action="append", default=None, choices=list(CONFIGS), metavar="NAME",
                   help="run only this configuration (repeatable); default all")
    for q in (e, v, c):
        q.add_argument("--data-home", type=Path, required=True, help="the 4Q clips (Q1..Q4/*.mp3)")
        q.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT, help=f"study cache (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.cmd == "extract":
        extract(args.wheel, args.data_home, args.output, args.limit)
    elif args.cmd == "extract-vgg":
        extract_vgg(args.wheel, args.data_home, args.output, args.limit)
    else:
        run_cv(args.data_home, args.output, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
