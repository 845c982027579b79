"""Calibration of the mood/theme CNN's 56 outputs, so that predicted moods are few and coherent.

The raw baseline probabilities are poorly scaled (most tags never pass 0.5, a few pass it everywhere). Method,
fitted on a broad corpus of real music (the 600 4Q clips: four emotion quadrants, many styles):

- **Thresholds by prior rate.** For tag k with prior frequency pi_k in the MTG-Jamendo training split
  (``labels.TAG_PRIORS``), the threshold is the (1 - RATE_SCALE * pi_k) quantile of the tag's whole-clip logits on
  the corpus: each tag is predicted for RATE_SCALE times as many clips as it is tagged on in MTG-Jamendo (about 1.8
  tags a track there). The calibrated probability is sigmoid(logit - threshold_k): 0.5 means "predicted", and one
  global 0.5 threshold applies to every tag.
- **Why RATE_SCALE = 2.** Tags co-occur, so at the plain prior rate (scale 1) 48.3 % of the 4Q clips got no mood at
  all (median 1, mean 1.8 a clip). Scale 2 gives the median clip 2 moods (23.3 % none, mean 3.6) with antonym pairs
  on 3.3 % of clips (split-half out of sample: median 2, 23.2 % none, 2.7 % antonym pairs); scale 2.5 gives median
  3 but 5.5 % antonym pairs, scale 3 7.3 % (the card's ``calibration.figures.rate_scale_alternatives``). A uniform
  scale did better than rates growing as pi_k^0.5 or pi_k^0.75 at the same mean count (more clips left without a
  mood: 29.7 % and 27.3 % at a mean of 3.6; an exploratory check, not kept in the code).
- **Short inputs.** A window shorter than the 29.1 s training crop sees a max over less time, so its logits are
  lower and differently spread. For each length in ``SHORT_SECONDS`` the per-tag offset moves that tag's (1 - pi_k)
  quantile of window logits (the centred window of each corpus clip) onto the whole-clip threshold, so windows
  are predicted at the same rates as whole clips; lengths in between interpolate in log(seconds), the training
  length has offset 0.

The figures written with the calibration (``calibration.figures`` in the card): predicted moods per clip, the rate
of clips with an antonym pair (:func:`m2e_plugin.labels.mood_set_figures`), both in-sample and split-half
out-of-sample (thresholds fitted on one half of the clips by index parity, measured on the other), and the
agreement of calibrated window predictions with the whole clip's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m2e_plugin.backbones.level import normalise_level
from m2e_plugin.backbones.moodtheme import HOP, INPUT_FRAMES, SR, MoodThemeCNN, raw_logits
from m2e_plugin.labels import MOOD_TAGS, TAG_PRIORS, mood_set_figures

SHORT_SECONDS = (1.0, 3.0, 10.0, 20.0)
RATE_SCALE = 2.0  # each tag is predicted at twice its MTG-Jamendo rate (module docstring: why)
ALTERNATIVE_RATE_SCALES = (1.0, 1.5, 2.0, 2.5, 3.0)  # whose figures the card keeps, to show the choice
TRAINING_SECONDS = INPUT_FRAMES * HOP / SR  # 29.14 s


def corpus_logits(network: MoodThemeCNN, files: list[Path], seconds=SHORT_SECONDS) -> dict[str, np.ndarray]:
    """Whole-clip logits (n_clips, 56), and for each window length the logits of the clip's centred window
    (n_windows, 56) with the index of its clip; windows are level-normalised one by one as at run time."""
    from tqdm import tqdm

    from m2e_plugin.audio import load_audio

    full, windows, owners = [], {s: [] for s in seconds}, {s: [] for s in seconds}
    for i, path in enumerate(tqdm(files, desc="moodtheme calibration", unit="clip")):
        y, _ = load_audio(path, target_sr=SR)
        whole = normalise_level(y, SR)
        if whole.level.silent:
            raise ValueError(f"{path}: silent clip in the calibration corpus")
        full.append(raw_logits(network, [whole.audio])[0])
        for s in seconds:  # one window per clip and length, centred (the network is the cost)
            n = int(round(s * SR))
            if len(y) >= n:
                part = normalise_level(y[(len(y) - n) // 2 :][:n], SR)
                if not part.level.silent:
                    windows[s].append(raw_logits(network, [part.audio]))
                    owners[s].append([i])
    out = {"full": np.array(full)}
    for s in seconds:
        out[f"windows_{s:g}"] = np.concatenate(windows[s])
        out[f"owners_{s:g}"] = np.concatenate(owners[s])
    return out


def prior_thresholds(logits: np.ndarray, priors=TAG_PRIORS, rate_scale: float = RATE_SCALE) -> np.ndarray:
    """Per-tag logit threshold: the (1 - rate_scale * prior) quantile of the tag's logits (a rate of at most 0.5)."""
    return np.array([np.quantile(logits[:, k], 1.0 - min(0.5, rate_scale * p)) for k, p in enumerate(priors)])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def agreement(window_probs: np.ndarray, owners: np.ndarray, full_probs: np.ndarray) -> dict[str, float]:
    """How a clip's windows agree with the clip: Pearson r of the 56 calibrated probabilities (median over windows),
    Jaccard overlap of the predicted sets (mean over windows where either predicts something), and the share of
    windows whose top tag is among the clip's top 5."""
    ref = full_probs[owners]
    r = [np.corrcoef(w, f)[0, 1] for w, f in zip(window_probs, ref)]
    pw, pf = window_probs > 0.5, ref > 0.5
    union = (pw | pf).sum(axis=1)
    jaccard = ((pw & pf).sum(axis=1)[union > 0] / union[union > 0]).mean()
    top5 = np.argsort(-ref, axis=1)[:, :5]
    top1_in_top5 = np.mean([w.argmax() in t for w, t in zip(window_probs, top5)])
    return {"median_pearson_r": round(float(np.median(r)), 4), "mean_jaccard": round(float(jaccard), 4),
            "top1_in_clip_top5": round(float(top1_in_top5), 4)}


def _whole_clip_figures(full: np.ndarray, halves, rate_scale: float) -> dict:
    """Mood figures of whole clips at ``rate_scale``, in sample and split-half (thresholds from the other half)."""
    out_of_sample = np.zeros_like(full, dtype=bool)
    for fit_half, test_half in (halves, halves[::-1]):
        out_of_sample[test_half] = full[test_half] > prior_thresholds(full[fit_half], rate_scale=rate_scale)
    return {"in_sample": mood_set_figures(full > prior_thresholds(full, rate_scale=rate_scale)),
            "split_half": mood_set_figures(out_of_sample)}


def fit(logits: dict[str, np.ndarray], seconds=SHORT_SECONDS, rate_scale: float = RATE_SCALE) -> dict:
    """Thresholds, short-input offsets and their figures from :func:`corpus_logits` output."""
    full = logits["full"]
    thresholds = prior_thresholds(full, rate_scale=rate_scale)
    offsets = [thresholds - prior_thresholds(logits[f"windows_{s:g}"], rate_scale=rate_scale) for s in seconds]
    halves = [np.arange(len(full)) % 2 == parity for parity in (0, 1)]
    # the choice of rate_scale: whole-clip figures of the alternatives (in sample and split-half)
    alternatives = {scale: _whole_clip_figures(full, halves, scale)
                    for scale in sorted({*ALTERNATIVE_RATE_SCALES, rate_scale})}
    figures = {"whole_clips_in_sample": alternatives[rate_scale]["in_sample"],
               "whole_clips_split_half": alternatives[rate_scale]["split_half"],
               "rate_scale_alternatives": {f"{scale:g}": alternatives[scale] for scale in ALTERNATIVE_RATE_SCALES}}
    full_probs = _sigmoid(full - thresholds)
    for s, offset in zip(seconds, offsets):
        win_probs = _sigmoid(logits[f"windows_{s:g}"] + offset - thresholds)
        figures[f"windows_{s:g}s"] = {
            "n_windows": int(len(win_probs)),
            **mood_set_figures(win_probs > 0.5),
            **agreement(win_probs, logits[f"owners_{s:g}"], full_probs),
        }
    return {
        "method": "per-tag thresholds: the (1 - rate_scale * prior) quantile of whole-clip logits on the corpus "
        "(prior = tag frequency in MTG-Jamendo split-0 train, labels.TAG_PRIORS); calibrated p = sigmoid(logit - threshold), "
        "0.5 = predicted; inputs shorter than 29.1 s add a per-tag logit offset (quantile matching of windows of "
        "that length to the same rates), interpolated in log(seconds)",
        "rate_scale": float(rate_scale),
        "logit_thresholds": [float(t) for t in thresholds],
        "short_input_seconds": [*map(float, seconds), TRAINING_SECONDS],
        "short_input_logit_offsets": [[float(v) for v in o] for o in offsets] + [[0.0] * len(MOOD_TAGS)],
        "figures": figures,
    }


def calibrate(network: MoodThemeCNN, fourq_dir: Path, rate_scale: float = RATE_SCALE) -> dict:
    """The card's ``calibration`` section, fitted on the 4Q clips under ``fourq_dir`` (Q1..Q4/*.mp3)."""
    files = sorted(Path(fourq_dir).glob("Q[1-4]/*.mp3"))
    if len(files) < 100:
        raise ValueError(f"{fourq_dir}: expected the 4Q clips (Q1..Q4/*.mp3), found {len(files)}")
    result = fit(corpus_logits(network.eval(), files), rate_scale=rate_scale)
    result["corpus"] = f"{len(files)} clips of the 4Q audio emotion dataset (Panda et al. 2018), ../shared/data/4q-dev"
    return result
