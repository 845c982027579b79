"""Which representation lifts `lite`'s quadrant accuracy? A study on the 600 shared 4Q clips (issue 11); its best
pair (MSD penultimate & MTT pooled) became lite 2.1. Over 400 lines because every configuration of the study, with
the feature extraction and the cross-validation it needs, stays in one place where one command reruns it.

    python benchmarks/study_lite_features.py extract --wheel /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl \
        --data-home ../shared/data/4q-dev          # ~25 min of one thread on a loaded 2-core machine
    python benchmarks/study_lite_features.py extract-vgg --wheel /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl \
        --data-home ../shared/data/4q-dev          # musicnn's MSD vgg (benchmarks/musicnn_vgg.py), ~5 min
    python benchmarks/study_lite_features.py extract-vgg --checkpoint MTT_vgg --wheel ... --data-home ...  # MTT vgg
    python benchmarks/study_lite_features.py extract-mode --data-home ../shared/data/4q-dev   # chroma, ~1 min
    python benchmarks/study_lite_features.py cv --data-home ../shared/data/4q-dev

``extract`` stores, per clip, in its own cache (default ``~/.cache/m2e/features/lite-study/fourq``; the lite
training cache is only read): the MSD musicnn's pooled 1506-d vector of every 3 s patch (max and mean over time of
the 753 channels the penultimate layer is computed from), the MTT musicnn's pooled vector and penultimate embedding
(weights converted from the same wheel by :mod:`m2e_plugin.backbones.convert_musicnn`), and the MTG-Jamendo mood
CNN's 64-d embedding and 56 logits of the whole clip (as the backend computes them, level-normalised).
``extract-vgg`` adds, in ``<cache>/msd_vgg/<clip>.npz`` (the existing files stay untouched), musicnn's MSD-trained
vgg on the same patches (:mod:`musicnn_vgg`): its 256-d embedding (flattened pool5, the layer the tag output reads),
512-d pooled conv4/conv5 maps and 50 MSD tag logits per patch (``--checkpoint MTT_vgg``: the MTT-trained vgg in
``<cache>/mtt_vgg/``, keys ``mttvgg_*``). ``extract-mode`` adds, in ``<cache>/mode/``, per 3 s
patch the sums of a cheap STFT chroma of the level-normalised audio and major/minor triad frame counts, from which
``mode`` (16 key-profile / mode cues of any set of patches, :func:`mode_features`) is computed.

``cv`` runs each configuration over fold seeds 0, 1, 2 (the product's ``stratified_group_folds``, 10 folds, grouped
by artist): standardised features (clipped to +-8, as the head) -> multinomial logistic regression (scikit-learn,
fixed C) trained on the ``even`` and ``odd`` patch views of the training clips, scored on the ``even`` view (the
product's); ``+`` in a name = one regression on concatenated features, ``&`` = the average of the members'
log-probabilities (an ensemble). Accuracy is the quadrant read off the valence and arousal halves, as in
``m2e train --model lite``. The MSD penultimate embeddings come from the lite training cache.
Variants: ``test`` = the views a test clip is scored on (``both``: even and odd averaged; ``all``: one row of every
patch); ``head`` ``va`` = separate binary valence and arousal regressions combined into quadrant probabilities;
a C of ``None`` = chosen per outer fold by 5-fold inner CV (log-loss); ``moods`` = AllMusic moods of the ``fourq``
loader predicted out of fold by ridge regression (stacking); ``head`` ``trainer`` = the product's trainer
(``fit_lite``, the committed config with the member's overrides) instead of the regression.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from paths import cache_dir  # benchmarks/paths.py

os.environ.setdefault("OMP_NUM_THREADS", "1")
DEFAULT_OUT = cache_dir("features", "lite-study", "fourq")
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
    # the mood CNN as a third ensemble member (concatenated to MSD it lowered accuracy)
    "msd_pen & mtt_pooled & mood_emb": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003), (("mood_emb",), 0.01)],
    "msd_pen & mtt_pooled & mood_logit": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003), (("mood_logit",), 0.01)],
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
    # musicnn's MTT-trained vgg (extract-vgg --checkpoint MTT_vgg), same C as the MSD vgg's rows
    "mttvgg_emb": [(("mttvgg_emb",), 0.01)],
    "mttvgg_pooled": [(("mttvgg_pooled",), 0.003)],
    "msd_pen & mttvgg_pooled": [(("msd_pen",), 0.03), (("mttvgg_pooled",), 0.003)],
    "msd_pen & mtt_pooled & mttvgg_emb": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003), (("mttvgg_emb",), 0.01)],
    "msd_pen & mtt_pooled & mttvgg_pooled": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003),
                                             (("mttvgg_pooled",), 0.003)],
    "msd_pen & mtt_pooled & vgg_pooled & mttvgg_pooled": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003),
                                                          (("vgg_pooled",), 0.003), (("mttvgg_pooled",), 0.003)],
    # run-time choices (issue 11, step 1): test views, separate valence/arousal heads, C by inner CV (None)
    "msd_pen, scored on even & odd": {"members": [(("msd_pen",), 0.03)], "test": "both"},
    "msd_pen, scored on all patches": {"members": [(("msd_pen",), 0.03)], "test": "all"},
    "msd_pen, inner-CV C": {"members": [(("msd_pen",), None)]},
    "msd_pen, valence & arousal heads": {"members": [(("msd_pen",), (0.03, 0.03))], "head": "va"},
    "msd_pen, valence & arousal heads, inner-CV C": {"members": [(("msd_pen",), None)], "head": "va"},
    "msd_pen & mtt_pooled, scored on even & odd": {"members": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003)],
                                                   "test": "both"},
    "msd_pen & mtt_pooled, scored on all patches": {"members": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003)],
                                                    "test": "all"},
    "msd_pen & mtt_pooled, inner-CV C": {"members": [(("msd_pen",), None), (("mtt_pooled",), None)]},
    "msd_pen & mtt_pooled, valence & arousal heads": {"members": [(("msd_pen",), (0.03, 0.03)),
                                                                  (("mtt_pooled",), (0.003, 0.003))], "head": "va"},
    # a harmony/mode cue (step 2): 16 chroma/key-profile features of the patches (`extract-mode`)
    "mode": [(("mode",), 0.1)],
    "msd_pen + mode": [(("msd_pen", "mode"), 0.03)],
    "msd_pen & mode": [(("msd_pen",), 0.03), (("mode",), 0.1)],
    "msd_pen & mtt_pooled + mode": [(("msd_pen", "mode"), 0.03), (("mtt_pooled",), 0.003)],
    "msd_pen & mtt_pooled & mode": [(("msd_pen",), 0.03), (("mtt_pooled",), 0.003), (("mode",), 0.1)],
    # AllMusic moods of the fourq loader as auxiliary targets (step 3): ridge-predicted moods (stacked, out of fold)
    "moods(msd_pen)": {"members": [(("moods",), 0.03)], "stack": ("msd_pen",), "alpha": 300.0},
    "msd_pen + moods(msd_pen)": {"members": [(("msd_pen", "moods"), 0.03)], "stack": ("msd_pen",), "alpha": 300.0},
    "msd_pen + moods(msd_pen), alpha 30": {"members": [(("msd_pen", "moods"), 0.03)], "stack": ("msd_pen",),
                                           "alpha": 30.0},
    "msd_pen + moods(msd_pen & mtt_pooled)": {"members": [(("msd_pen", "moods"), 0.03)],
                                              "stack": ("msd_pen", "mtt_pooled"), "alpha": 3000.0},
    # the product's trainer (m2e train --model lite's fit_lite, shipped config + overrides) instead of the regression
    "msd_pen, product trainer": {"members": [(("msd_pen",), {})], "head": "trainer"},
    "msd_pen & mtt_pooled, product trainer": {"members": [(("msd_pen",), {}),
                                                          (("mtt_pooled",), {"views": ["even", "odd", "patches"]})],
                                              "head": "trainer"},
    "msd_pen & mtt_pooled, product trainer, MTT weight decay 0.1, dropout 0.5": {
        "members": [(("msd_pen",), {}), (("mtt_pooled",), {"views": ["even", "odd"], "weight_decay": 0.1,
                                                           "dropout": 0.5})], "head": "trainer"},
    "msd_pen, product trainer, regression-like": {"members": [(("msd_pen",), {
        "views": ["even", "odd"], "dropout": 0.0, "weight_decay": 0.03, "fixed_epochs": 200})], "head": "trainer"},
    "msd_pen & mtt_pooled, product trainer, regression-like": {  # the regression's L2 (1 / (C n)), no dropout
        "members": [(("msd_pen",), {"views": ["even", "odd"], "dropout": 0.0, "weight_decay": 0.03,
                                    "fixed_epochs": 200}),
                    (("mtt_pooled",), {"views": ["even", "odd"], "dropout": 0.0, "weight_decay": 0.3,
                                       "fixed_epochs": 200})], "head": "trainer"},
    # step 4: the winners combined
    "msd_pen & mtt_pooled + mode, scored on even & odd": {"members": [(("msd_pen", "mode"), 0.03),
                                                                      (("mtt_pooled",), 0.003)], "test": "both"},
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


VGG_SETS = {"MSD_vgg": ("msd_vgg", "vgg"), "MTT_vgg": ("mtt_vgg", "mttvgg")}  # checkpoint -> (folder, key prefix)


def extract_vgg(wheel: Path, data_home: Path, out: Path, limit: int | None = None,
                checkpoint: str = "MSD_vgg") -> None:
    import torch
    from musicnn_vgg import clip_patches, load_vgg, run_vgg
    from tqdm import tqdm

    torch.set_num_threads(1)
    folder, prefix = VGG_SETS[checkpoint]
    (out / folder).mkdir(parents=True, exist_ok=True)
    vgg = load_vgg(wheel, checkpoint)
    for path in tqdm(sorted(data_home.glob("Q[1-4]/*.mp3"))[:limit], desc=f"{checkpoint} features", unit="clip"):
        target = out / folder / f"{path.stem}.npz"
        if target.is_file():
            continue
        res = run_vgg(vgg, clip_patches(path))
        tmp = out / folder / f".{path.stem}.tmp.npz"
        np.savez(tmp, **{f"{prefix}_emb": res["embedding"], f"{prefix}_pooled": res["pooled"],
                         f"{prefix}_logit": res["logits"]})
        os.replace(tmp, target)


# Harmony/mode cues (issue 11, step 2): per 3 s patch, from a cheap STFT chroma of the level-normalised audio
CHROMA_N_FFT, CHROMA_HOP = 4096, 1024  # at 16 kHz: 3.9 Hz bins (semitones resolved from ~65 Hz), 64 ms hop
_TRIADS = np.stack([np.roll(np.eye(12)[[0, third, 7]].sum(0), root) for third in (4, 3) for root in range(12)])


def chroma_stats(audio16: np.ndarray) -> np.ndarray:
    """(P, 15) per 3 s patch (musicnn's patches of the same audio): the sum over its voiced frames of the
    frame's pitch-class distribution (12), the number of frames whose best-matching triad is major / minor, and the
    number of voiced frames. Sums, so that any set of patches pools exactly (:func:`mode_features`)."""
    import librosa

    from m2e_plugin.backbones.level import normalise_level
    from m2e_plugin.backbones.musicnn import HOP, PATCH_FRAMES, SAMPLE_RATE

    y = normalise_level(np.asarray(audio16, dtype=np.float32), SAMPLE_RATE).audio
    step = PATCH_FRAMES * HOP
    n_patches = max(1, (len(y) // HOP + 1 - PATCH_FRAMES) // PATCH_FRAMES + 1)
    out = np.zeros((n_patches, 15))
    for p in range(n_patches):
        seg = y[p * step: (p + 1) * step]
        if len(seg) < CHROMA_N_FFT:
            seg = np.pad(seg, (0, CHROMA_N_FFT - len(seg)))
        c = librosa.feature.chroma_stft(y=seg, sr=SAMPLE_RATE, n_fft=CHROMA_N_FFT, hop_length=CHROMA_HOP,
                                        norm=None, tuning=0.0)
        energy = c.sum(0)
        voiced = energy > max(1e-3 * energy.max(), 1e-10)
        if not voiced.any():
            continue
        dist = c[:, voiced] / energy[voiced]
        centred = dist - dist.mean(0)
        best = (_TRIADS - _TRIADS.mean(1, keepdims=True)) @ centred  # (24, frames)
        minor = best.argmax(0) >= 12
        out[p] = np.concatenate([dist.sum(1), [np.sum(~minor), np.sum(minor), voiced.sum()]])
    return out


def mode_features(stats: np.ndarray) -> np.ndarray:
    """16 mode cues of a set of patches' :func:`chroma_stats`: best major-key and best minor-key correlation
    (Krumhansl-Kessler), their difference, the best of both (key clarity), the share of minor-triad frames, and the
    pitch-class distribution rotated to the best major key's tonic (so relative-minor weight sits on degree 9)."""
    from m2e_plugin.harmony.key import key_correlations

    total = stats.sum(0)
    dist = total[:12] / max(total[14], 1.0)
    if not total[14]:
        return np.zeros(16)
    kc = key_correlations(dist, "krumhansl")
    major, minor = kc[0].max(), kc[1].max()
    minor_share = total[13] / max(total[12] + total[13], 1.0)
    return np.concatenate([[major, minor, major - minor, max(major, minor), minor_share],
                           np.roll(dist, -int(kc[0].argmax()))[:11]])


def extract_mode(data_home: Path, out: Path, limit: int | None = None) -> None:
    from tqdm import tqdm

    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE

    (out / "mode").mkdir(parents=True, exist_ok=True)
    for path in tqdm(sorted(data_home.glob("Q[1-4]/*.mp3"))[:limit], desc="mode features", unit="clip"):
        target = out / "mode" / f"{path.stem}.npz"
        if target.is_file():
            continue
        y16, _ = load_audio(path, target_sr=SAMPLE_RATE)
        tmp = out / "mode" / f".{path.stem}.tmp.npz"
        np.savez(tmp, chroma_stats=chroma_stats(y16))
        os.replace(tmp, target)


def _rows(feats: dict, sets, i: int, sel: slice):
    """One clip's row for patch selection ``sel`` (None where the selection holds no patch)."""
    n = len(feats["msd_pen"][i])
    idx = np.arange(n)[sel]
    if not len(idx):
        return None
    return np.concatenate([feats[k][i] if k in CLIP_LEVEL else mode_features(feats["chroma_stats"][i][idx])
                           if k == "mode" else feats[k][i][idx].mean(0) for k in sets])


# C candidates of the inner cross-validation (a member whose C is None gets its C chosen in every outer fold)
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
VIEW_SELECTIONS = {"even": slice(0, None, 2), "odd": slice(1, None, 2), "all": slice(None)}
# test-time scoring: the views whose log-probabilities are averaged ("all" = one row pooled over every patch)
TEST_VIEWS = {"even": ("even",), "both": ("even", "odd"), "all": ("all",)}


def _quadrant_log_proba(x, y, c, head: str):
    """Fit a standardised (clipped +-8) logistic head on rows ``x`` / quadrants ``y``; returns x' -> (n, 4) log P.

    ``head`` ``quadrant``: one 4-way multinomial regression (``c`` a float); ``va``: a binary valence (Q1+Q4) and a
    binary arousal (Q1+Q2) regression (``c`` = (C valence, C arousal)), P(Q1) = P(v+) P(a+), P(Q2) = P(v-) P(a+)...
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    z = np.clip(scaler.transform(x), -8, 8)
    if head == "quadrant":
        model = LogisticRegression(C=c, max_iter=3000).fit(z, y)
        return lambda xt: model.predict_log_proba(np.clip(scaler.transform(xt), -8, 8))
    cv, ca = c
    mv = LogisticRegression(C=cv, max_iter=3000).fit(z, np.isin(y, [0, 3]))
    ma = LogisticRegression(C=ca, max_iter=3000).fit(z, np.isin(y, [0, 1]))

    def log_proba(xt):
        zt = np.clip(scaler.transform(xt), -8, 8)
        pv, pa = mv.predict_proba(zt)[:, 1], ma.predict_proba(zt)[:, 1]
        q = np.stack([pv * pa, (1 - pv) * pa, (1 - pv) * (1 - pa), pv * (1 - pa)], 1)
        return np.log(np.clip(q, 1e-12, 1.0))

    return log_proba


def _train_rows(views: dict, y: np.ndarray, idx) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(views[v][i], y[i]) for v in ("even", "odd") for i in idx if views[v][i] is not None]
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _inner_c(views: dict, y: np.ndarray, groups: np.ndarray, train: np.ndarray, head: str, seed: int):
    """C of the grid with the lowest inner-CV log-loss on the even view (per target for the ``va`` head)."""
    from m2e_plugin.training.lite import stratified_group_folds

    losses = np.zeros((len(C_GRID), 2))  # columns: quadrant (or valence), arousal
    for inner in stratified_group_folds(y[train], groups[train], 5, seed):
        test, fit = train[inner], np.setdiff1d(train, train[inner])
        x, yy = _train_rows(views, y, fit)
        xt = np.stack([views["even"][i] for i in test])
        for k, c in enumerate(C_GRID):
            logp = _quadrant_log_proba(x, yy, c if head == "quadrant" else (c, c), head)(xt)
            if head == "quadrant":
                losses[k, 0] -= logp[np.arange(len(test)), y[test]].sum()
            else:  # the valence and arousal halves of the quadrant probabilities
                p = np.exp(logp)
                for col, pos in ((0, [0, 3]), (1, [0, 1])):
                    ph = np.clip(p[:, pos].sum(1), 1e-12, 1 - 1e-12)
                    hit = np.isin(y[test], pos)
                    losses[k, col] -= np.sum(np.where(hit, np.log(ph), np.log(1 - ph)))
    if head == "quadrant":
        return C_GRID[int(np.argmin(losses[:, 0]))]
    return C_GRID[int(np.argmin(losses[:, 0]))], C_GRID[int(np.argmin(losses[:, 1]))]


def _stacked_moods(x_rows: dict, moods: np.ndarray, y, groups, train, test, alpha: float) -> dict:
    """Predicted AllMusic moods (ridge regression on the clip's standardised features, one output per mood with
    >= 10 training clips) for every view row: out-of-fold (5 inner artist-grouped folds) for the training clips,
    from all training clips for the test clips. {view: (N, K) with rows only where the view exists}."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    from m2e_plugin.training.lite import stratified_group_folds

    keep = moods[train].sum(0) >= 10
    out = {v: np.zeros((len(y), int(keep.sum()))) for v in x_rows}

    def fit_predict(fit, targets):
        rows = [(x_rows[v][i], moods[i, keep]) for v in ("even", "odd") for i in fit if x_rows[v][i] is not None]
        scaler = StandardScaler().fit(np.stack([r[0] for r in rows]))
        model = Ridge(alpha=alpha).fit(np.clip(scaler.transform(np.stack([r[0] for r in rows])), -8, 8),
                                       np.stack([r[1] for r in rows]))
        for v in x_rows:
            has = [i for i in targets if x_rows[v][i] is not None]
            out[v][has] = model.predict(np.clip(scaler.transform(np.stack([x_rows[v][i] for i in has])), -8, 8))

    for inner in stratified_group_folds(y[train], groups[train], 5, 7):
        fit_predict(np.setdiff1d(train, train[inner]), train[inner])
    fit_predict(train, test)
    return out


def _trainer_cv(feats: dict, y: np.ndarray, groups: np.ndarray, members, seed: int) -> np.ndarray:
    """Out-of-fold log-probabilities of heads trained as the product trains lite (``fit_lite``: the committed
    config with the member's overrides, fold and init seed ``seed``, early stopping on an inner artist-grouped split),
    the members' log-probabilities averaged. A member's features: one patch-level set (its codec view, where a
    config's ``views`` asks for it, exists for msd_pen only)."""
    import torch

    from m2e_plugin.training.lite import FourQFeatures, cv_splits, fit_lite, load_config, predict_logits

    torch.set_num_threads(1)
    logp = np.zeros((len(y), 4))
    for (kind,), overrides in members:
        config = {**load_config(), "seed": seed, **overrides}
        data = FourQFeatures([str(i) for i in range(len(y))], y, [None] * len(y), {kind: feats[kind]},
                             {kind: feats["msd_pen_codec"] if kind == "msd_pen" else None})
        data.groups = groups
        for fit, val, test in cv_splits(config, y, groups):
            if "fixed_epochs" in config:  # no early stopping: every training clip, a fixed number of epochs
                model, _ = fit_lite(config, data, np.union1d(fit, val), epochs=int(config["fixed_epochs"]), kind=kind)
            else:
                model, _ = fit_lite(config, data, fit, val, kind=kind)
            rows = data.rows(test, ["even"], "mean", kind)[0]
            out = torch.log_softmax(torch.from_numpy(predict_logits(model, rows)), -1)
            logp[test] += out.numpy() / len(members)
    return logp


def cross_validate(feats: dict, y: np.ndarray, groups: np.ndarray, config, seed: int) -> np.ndarray:
    """Out-of-fold quadrant log-probabilities (N, 4) of one configuration (members, head, test views)."""
    from m2e_plugin.training.lite import stratified_group_folds

    members, head = config["members"], config.get("head", "quadrant")
    test_views = TEST_VIEWS[config.get("test", "even")]
    if head == "trainer":
        return _trainer_cv(feats, y, groups, members, seed)
    logp = np.zeros((len(y), 4))
    for sets, c in members:
        views = {name: [_rows(feats, sets, i, sel) for i in range(len(y))] for name, sel in VIEW_SELECTIONS.items()
                 } if "moods" not in sets else {}
        stack = "moods" in sets  # stacked AllMusic mood predictions (from config["stack"] features) join the row
        if stack:
            stack_rows = {name: [_rows(feats, config["stack"], i, sel) for i in range(len(y))]
                          for name, sel in VIEW_SELECTIONS.items()}
            base = {name: [_rows(feats, [k for k in sets if k != "moods"], i, sel) if sets != ("moods",) else
                           np.zeros(0) for i in range(len(y))] for name, sel in VIEW_SELECTIONS.items()}
        for k, test in enumerate(stratified_group_folds(y, groups, 10, seed)):
            train = np.setdiff1d(np.arange(len(y)), test)
            if stack:
                pm = _stacked_moods(stack_rows, feats["allmusic_moods"], y, groups, train, test, config["alpha"])
                views = {v: [None if stack_rows[v][i] is None else np.concatenate([base[v][i], pm[v][i]])
                             for i in range(len(y))] for v in VIEW_SELECTIONS}
            chosen = _inner_c(views, y, groups, train, head, 100 * seed + k) if c is None else c
            predict = _quadrant_log_proba(*_train_rows(views, y, train), chosen, head)
            total, count = np.zeros((len(test), 4)), np.zeros((len(test), 1))
            for v in test_views:  # a clip with a single patch has no odd view: it is scored on what it has
                has = np.array([views[v][i] is not None for i in test])
                total[has] += predict(np.stack([views[v][i] for i in test[has]]))
                count[has] += 1
            logp[test] += total / count / len(members)
    return logp


TABLE_HEADER = ("| features (`+` concatenated, `&` ensemble) | accuracy, seeds 0 / 1 / 2 | mean | valence AUC "
                "| arousal AUC |\n|---|---|---|---|---|")


def table_row(name: str, per_seed: list[dict]) -> str:
    """One Markdown row of the study tables from each fold seed's :func:`quadrant_metrics`."""
    acc = [r["quadrant_accuracy"] for r in per_seed]
    return (f"| {name} | {' / '.join(f'{a:.3f}' for a in acc)} | {np.mean(acc):.3f} | "
            f"{np.mean([r['valence_roc_auc'] for r in per_seed]):.3f} | "
            f"{np.mean([r['arousal_roc_auc'] for r in per_seed]):.3f} |")


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
    feats["msd_pen_codec"] = data.codec["msd_penultimate"]
    for folder, _ in VGG_SETS.values():
        if all((out / folder / f"{t}.npz").is_file() for t in data.track_ids):
            vgg = [np.load(out / folder / f"{t}.npz") for t in data.track_ids]
            feats.update({k: [s[k] for s in vgg] for k in vgg[0].files})
    from m2e_plugin import loaders

    tags = loaders.initialize("fourq", data_home=str(data_home))
    clip_moods = [set(tags.track(t).moods or []) for t in data.track_ids]
    vocab = sorted(set().union(*clip_moods))
    feats["allmusic_moods"] = np.array([[m in c for m in vocab] for c in clip_moods], dtype=np.float64)
    if all((out / "mode" / f"{t}.npz").is_file() for t in data.track_ids):
        feats["chroma_stats"] = [np.load(out / "mode" / f"{t}.npz")["chroma_stats"] for t in data.track_ids]
    for key, per_clip in feats.items():  # every patch-level set must hold the same patches as msd_pen
        bad = [t for t, a, b in zip(data.track_ids, per_clip, data.penultimate)
               if key not in CLIP_LEVEL + ("allmusic_moods", "msd_pen_codec")
               and len(a) != len(b)]
        if bad:
            sys.exit(f"{key}: patch count differs from the lite cache's for {len(bad)} clips, e.g. {bad[0]}")
    print(TABLE_HEADER)
    for name, members in CONFIGS.items():
        if only and name not in only:
            continue
        config = members if isinstance(members, dict) else {"members": members}
        absent = sorted({k for sets, _ in config["members"] for k in sets} - set(feats) - {"mode", "moods"}
                        | ({"mode"} if "chroma_stats" not in feats and any("mode" in sets for sets, _ in
                                                                            config["members"]) else set()))
        if absent:
            print(f"| {name} | skipped: no {', '.join(absent)} (run `extract-vgg` / `extract-mode`) | | | |",
                  flush=True)
            continue
        res = [quadrant_metrics(data.y, quadrant_softmax(cross_validate(feats, data.y, data.groups, config, s)))
               for s in (0, 1, 2)]
        print(table_row(name, res), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="compute the study features (resumable)")
    v = sub.add_parser("extract-vgg", help="add musicnn's MSD (or MTT) vgg features (resumable)")
    v.add_argument("--checkpoint", choices=list(VGG_SETS), default="MSD_vgg",
                   help="the wheel's vgg network (default MSD_vgg; MTT_vgg's keys are mttvgg_*)")
    for q, what in ((e, "MTT_musicnn"), (v, "MSD_vgg")):
        q.add_argument("--wheel", type=Path, required=True, help=f"musicnn-0.1.0-py3-none-any.whl (for {what})")
        q.add_argument("--limit", type=int, default=None, help="only the first N clips (a check)")
    m = sub.add_parser("extract-mode", help="add the chroma statistics of the mode cues (resumable)")
    m.add_argument("--limit", type=int, default=None, help="only the first N clips (a check)")
    c = sub.add_parser("cv", help="cross-validate the configurations; prints a Markdown table")
    c.add_argument("--only", action="append", default=None, choices=list(CONFIGS), metavar="NAME",
                   help="run only this configuration (repeatable); default all")
    for q in (e, v, m, c):
        q.add_argument("--data-home", type=Path, required=True, help="the 4Q clips (Q1..Q4/*.mp3)")
        q.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT, help=f"study cache (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.cmd == "extract":
        extract(args.wheel, args.data_home, args.output, args.limit)
    elif args.cmd == "extract-mode":
        extract_mode(args.data_home, args.output, args.limit)
    elif args.cmd == "extract-vgg":
        extract_vgg(args.wheel, args.data_home, args.output, args.limit, args.checkpoint)
    else:
        run_cv(args.data_home, args.output, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
