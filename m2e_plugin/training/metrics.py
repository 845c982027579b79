"""Metrics exactly as Music2Emo and the MediaEval Emotion-in-Music task report them, in plain NumPy.

* Mood tagging: macro ROC-AUC and macro PR-AUC (average precision) over the tags: each tag is scored on its own
  and the scores are averaged with equal weight (scikit-learn's ``average="macro"``; torchmetrics' multilabel
  ``average="macro"``). Average precision is the step-wise sum ``sum_n (R_n - R_{n-1}) P_n`` over distinct score
  thresholds (no interpolation), as scikit-learn and torchmetrics compute it.
* Valence/arousal: coefficient of determination R^2 per dimension, ``1 - SS_res / SS_tot``.

Reproduces the published MediaEval 2019 VGGish baseline (ROC-AUC 0.725821, PR-AUC 0.107734) from its prediction
file; see ``tests/test_training_metrics.py``.
"""

from __future__ import annotations

import numpy as np


def _check_pair(y_true, y_score, name: str, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if t.shape != s.shape:
        raise ValueError(f"{name}: y_true shape {t.shape} != y_score shape {s.shape}")
    if t.ndim != 2 or (width is not None and t.shape[1] != width):
        raise ValueError(f"{name}: expected arrays of shape (N, {width or 'K'}), got {t.shape}")
    if t.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 samples, got {t.shape[0]}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: y_score contains NaN or inf")
    return t, s


def binary_roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve of one binary label (ties count 1/2: the Mann-Whitney statistic).

    Returns NaN when ``y_true`` holds one class only.
    """
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true, y_score) -> float:
    """Average precision (PR-AUC) of one binary label; NaN when there is no positive."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # Evaluate only at the last index of each run of equal scores (a threshold admits all ties at once).
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mood_scores(y_true, y_score) -> dict:
    """Macro PR-AUC and ROC-AUC over the tag columns, as the paper reports them.

    Parameters
    ----------
    y_true : array (N, 56) of {0, 1} / bool
        Ground-truth multi-hot tags.
    y_score : array (N, 56) of float
        Scores (probabilities or logits: both metrics depend only on the order).

    Returns
    -------
    dict
        ``pr_auc``, ``roc_auc`` (macro means over tags with both classes present), ``n_tags`` (tags scored),
        ``pr_auc_per_tag``, ``roc_auc_per_tag`` (lists, NaN for a tag without positives or negatives).
    """
    t, s = _check_pair(y_true, y_score, "mood_scores")
    roc = np.array([binary_roc_auc(t[:, j], s[:, j]) for j in range(t.shape[1])])
    ap = np.array([average_precision(t[:, j], s[:, j]) for j in range(t.shape[1])])
    valid = np.isfinite(roc)
    if not valid.any():
        raise ValueError("mood_scores: no tag has both positive and negative examples")
    return {
        "pr_auc": float(np.mean(ap[valid])),
        "roc_auc": float(np.mean(roc[valid])),
        "n_tags": int(valid.sum()),
        "pr_auc_per_tag": ap.tolist(),
        "roc_auc_per_tag": roc.tolist(),
    }


def r2_score(y_true, y_pred) -> float:
    """Coefficient of determination of one dimension (can be negative; NaN for constant ``y_true``)."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    ss_tot = np.sum((y - y.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - np.sum((y - p) ** 2) / ss_tot)


def va_scores(y_true, y_pred) -> dict:
    """R^2 (and RMSE) per dimension for (N, 2) valence/arousal arrays, on the scale they are given in (1-9).

    Returns ``r2_valence``, ``r2_arousal``, ``rmse_valence``, ``rmse_arousal``.
    """
    t, p = _check_pair(y_true, y_pred, "va_scores", width=2)
    t = t.astype(np.float64)
    rmse = np.sqrt(np.mean((t - p) ** 2, axis=0))
    return {"r2_valence": r2_score(t[:, 0], p[:, 0]), "r2_arousal": r2_score(t[:, 1], p[:, 1]),
            "rmse_valence": float(rmse[0]), "rmse_arousal": float(rmse[1])}


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over ``n_classes`` single-label classes."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    f1 = []
    for c in range(n_classes):
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))
