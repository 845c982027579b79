"""Train and cross-validate the embedded `lite` model on the 4Q clips, with this project's :class:`Trainer`.

Rebuild the shipped weights exactly (deterministic from the config's seed)::

    m2e features --model lite --dataset fourq --data-home ../shared/data/4q-dev
    m2e train --model lite --data-home ../shared/data/4q-dev --config m2e_plugin/training/configs/lite.json \
        --cv --out m2e_plugin/models/weights/lite.safetensors

Recipe
------
* Inputs: the lite front end's clip descriptors (:mod:`m2e_plugin.backbones.lite`); with ``window_augmentation``
  the 10 s / 5 s-hop window descriptors of each training clip are added as extra rows with the clip's labels (the
  model then also fits the timeline and realtime windows). Evaluation always uses whole clips.
* Tasks: ``quadrant`` (4-way cross-entropy) and ``moods`` (frequency-weighted BCE over :data:`LITE_MOOD_TAGS`,
  priors = training positive rates, as the reference weights the 56 MTG tags).
* Cross-validation: stratified by quadrant, grouped by artist (a few artists have several clips: they never
  straddle train and test), seeded. In each fold an inner artist-grouped split of the training clips drives early
  stopping; the final model is trained on every clip for the median best epoch count of the folds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.training.fourq import (LITE_MOOD_TAGS, MOOD_WORDS, QUADRANT_NAMES, artist_groups, mood_targets,
                                       read_fourq)
from m2e_plugin.training.trainer import Task, TaskData, Trainer, TrainConfig

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "lite.json"


def load_config(path=None) -> dict:
    """The lite training config (JSON); ``None`` gives the committed default."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: lite training config not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def stratified_group_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of ``n_folds`` folds: every group in one fold, class counts balanced across folds.

    Greedy: groups are visited in a seeded random order (largest first) and each goes to the fold where it most
    reduces the squared deviation from the per-fold class targets (the idea of scikit-learn's
    StratifiedGroupKFold, written out so the runtime needs no scikit-learn).
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    uniq = np.unique(groups)
    counts = np.stack([np.array([np.sum((groups == g) & (y == c)) for c in classes]) for g in uniq])
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    target = counts.sum(0) / n_folds
    fold_counts = np.zeros((n_folds, len(classes)))
    assign = np.empty(len(uniq), dtype=int)
    for gi in order:
        cost = [np.sum((fold_counts[f] + counts[gi] - target) ** 2) - np.sum((fold_counts[f] - target) ** 2)
                for f in range(n_folds)]
        best = int(np.argmin(np.array(cost) + 1e-9 * fold_counts.sum(1)))
        assign[gi] = best
        fold_counts[best] += counts[gi]
    group_fold = dict(zip(uniq, assign))
    fold_of = np.array([group_fold[g] for g in groups])
    return [np.flatnonzero(fold_of == f) for f in range(n_folds)]


def _rows(idx, clip_x, windows, y_q, y_m, augment: bool):
    xs, qs, ms = [clip_x[idx]], [y_q[idx]], [y_m[idx]]
    if augment:
        for i in idx:
            w = windows[i]
            xs.append(w)
            qs.append(np.full(len(w), y_q[i]))
            ms.append(np.repeat(y_m[i : i + 1], len(w), axis=0))
    return (torch.from_numpy(np.concatenate(xs)).float(), torch.from_numpy(np.concatenate(qs)).long(),
            torch.from_numpy(np.concatenate(ms)).float())


def fit_lite(config: dict, clip_x, windows, y_q, y_m, train_idx, val_idx=None, *, epochs: int | None = None):
    """Train one LiteModel on ``train_idx`` (early stopping on ``val_idx`` clips, or a fixed ``epochs``)."""
    from m2e_plugin.models.lite import LiteModel

    x, q, m = _rows(train_idx, clip_x, windows, y_q, y_m, bool(config.get("window_augmentation", True)))
    torch.manual_seed(int(config["seed"]))
    model = LiteModel(x.shape[1], y_m.shape[1], hidden=int(config["hidden"]), dropout=float(config["dropout"]))
    model.set_standardisation(x)
    priors = tuple(float(p) for p in np.clip(m.numpy().mean(0), 1e-3, 1 - 1e-3))
    tasks = {"quadrant": Task("quadrant", "multiclass"),
             "moods": Task("moods", "multilabel", priors=priors, weight=float(config["mood_loss_weight"]))}
    cfg = TrainConfig(lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
                      batch_size=int(config["batch_size"]),
                      max_epochs=int(epochs if epochs is not None else config["max_epochs"]),
                      patience=int(config["patience"]), min_delta=float(config["min_delta"]), seed=int(config["seed"]))
    train = [TaskData("fourq", {"features": x}, {"quadrant": q, "moods": m})]
    val = None
    if val_idx is not None and epochs is None:
        vx, vq, vm = _rows(val_idx, clip_x, windows, y_q, y_m, False)
        val = [TaskData("fourq-val", {"features": vx}, {"quadrant": vq, "moods": vm})]
    trainer = Trainer(model, tasks, cfg)
    history = trainer.fit(train, val)
    return model, history


def predict_logits(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(quadrant logits (N, 4), mood logits (N, K)) for clip descriptors ``x``."""
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(x, dtype=np.float32)))
    return out["quadrant"].numpy().astype(np.float64), out["moods"].numpy().astype(np.float64)


def quadrant_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def predict_probs(model, x: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(quadrant probabilities (N, 4), mood probabilities (N, K)) for clip descriptors ``x``."""
    q, m = predict_logits(model, x)
    return quadrant_softmax(q, temperature), 1.0 / (1.0 + np.exp(-m))


def fit_temperature(logits: np.ndarray, y_q: np.ndarray) -> dict:
    """Temperature scaling (Guo et al. 2017) of the quadrant softmax on out-of-fold logits: the temperature that
    minimises the negative log-likelihood. It keeps every clip's ranking of quadrants and makes the probabilities
    (hence lite's valence/arousal, which are probabilities on the 1-9 axis) mean what they say."""

    def nll(t: float) -> float:
        p = quadrant_softmax(logits, t)[np.arange(len(y_q)), y_q]
        return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 141))
    losses = [nll(t) for t in grid]
    best = float(grid[int(np.argmin(losses))])
    return {"quadrant_temperature": round(best, 4), "nll_uncalibrated": round(nll(1.0), 4),
            "nll_calibrated": round(nll(best), 4), "fitted_on": "pooled out-of-fold logits of the cross-validation"}


def quadrant_metrics(y_q: np.ndarray, quad_probs: np.ndarray) -> dict:
    """Quadrant accuracy / macro-F1 (quadrant from the valence and arousal halves, as the product reports it) and
    valence / arousal ROC-AUC (Q1+Q4 vs Q2+Q3; Q1+Q2 vs Q3+Q4)."""
    from m2e_plugin.training.metrics import binary_roc_auc, macro_f1

    pv = quad_probs[:, 0] + quad_probs[:, 3]
    pa = quad_probs[:, 0] + quad_probs[:, 1]
    pred = np.where(pa >= 0.5, np.where(pv >= 0.5, 0, 1), np.where(pv >= 0.5, 3, 2))
    return {
        "quadrant_accuracy": float(np.mean(pred == y_q)),
        "quadrant_macro_f1": macro_f1(y_q, pred, 4),
        "valence_roc_auc": binary_roc_auc(np.isin(y_q, [0, 3]), pv),
        "arousal_roc_auc": binary_roc_auc(np.isin(y_q, [0, 1]), pa),
        "n_clips": int(len(y_q)),
    }


def load_fourq_features(data_home, cache) -> tuple[list, np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """(clips, clip descriptors (N, D), window descriptors [(W_i, D)], quadrant ids (N,), mood targets (N, K))."""
    from m2e_plugin.training.features import load_cache

    clips = read_fourq(data_home)
    ids = [c.track_id for c in clips]
    clip_x = np.stack(load_cache(cache, ids, "clip"))
    windows = load_cache(cache, ids, "windows")
    return clips, clip_x, windows, np.array([c.quadrant for c in clips]), mood_targets(clips)


def cross_validate(config: dict, clip_x, windows, y_q, y_m, groups, *, progress: bool = True) -> dict:
    """Artist-grouped, quadrant-stratified k-fold CV; returns pooled out-of-fold metrics and best epochs."""
    from m2e_plugin.training.metrics import binary_roc_auc

    folds = stratified_group_folds(y_q, groups, int(config["folds"]), int(config["seed"]))
    quad_logits = np.zeros((len(y_q), 4))
    mood_probs = np.zeros(y_m.shape)
    best_epochs = []
    for k, test_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(len(y_q)), test_idx)
        inner = stratified_group_folds(y_q[train_idx], groups[train_idx],
                                       max(2, round(1 / float(config["inner_validation"]))), int(config["seed"]) + k)
        val_idx = train_idx[inner[0]]
        fit_idx = np.setdiff1d(train_idx, val_idx)
        model, hist = fit_lite(config, clip_x, windows, y_q, y_m, fit_idx, val_idx)
        best_epochs.append(hist.best_epoch + 1)
        quad_logits[test_idx], fold_moods = predict_logits(model, clip_x[test_idx])
        mood_probs[test_idx] = 1.0 / (1.0 + np.exp(-fold_moods))
        if progress:
            acc = np.mean(quad_logits[test_idx].argmax(1) == y_q[test_idx])
            print(f"fold {k + 1}/{len(folds)}: {len(test_idx)} clips, best epoch {hist.best_epoch + 1}, "
                  f"argmax accuracy {acc:.3f}", file=sys.stderr)
    calibration = fit_temperature(quad_logits, y_q)
    metrics = quadrant_metrics(y_q, quadrant_softmax(quad_logits, calibration["quadrant_temperature"]))
    metrics["calibration"] = calibration
    metrics["uncalibrated"] = quadrant_metrics(y_q, quadrant_softmax(quad_logits))
    mood_auc = {t: binary_roc_auc(y_m[:, j], mood_probs[:, j]) for j, t in enumerate(LITE_MOOD_TAGS)
                if 0 < y_m[:, j].sum() < len(y_m)}
    metrics["mood_roc_auc_macro"] = float(np.mean(list(mood_auc.values())))
    metrics["mood_roc_auc"] = {t: round(v, 4) for t, v in mood_auc.items()}
    metrics["folds"] = len(folds)
    metrics["best_epochs"] = best_epochs
    return metrics


def train_lite(data_home, cache, *, config: dict | None = None, out=None, cv: bool = True,
               progress: bool = True, command: str | None = None) -> tuple[object, dict]:
    """Cross-validate (optional), train the final model on all clips and write weights + model card to ``out``."""
    from m2e_plugin import __version__
    from m2e_plugin.backbones.lite import HOP, N_FFT, SAMPLE_RATE, feature_names
    from m2e_plugin.models.lite import save_lite

    config = config or load_config()
    # One thread: bit-for-bit reproducible sums whatever the machine, and faster for these tiny matrices.
    torch.set_num_threads(1)
    clips, clip_x, windows, y_q, y_m = load_fourq_features(data_home, cache)
    groups = artist_groups(clips)
    metrics = cross_validate(config, clip_x, windows, y_q, y_m, groups, progress=progress) if cv else None
    epochs = int(np.median(metrics["best_epochs"])) if metrics else int(config.get("final_epochs", 60))
    model, _ = fit_lite(config, clip_x, windows, y_q, y_m, np.arange(len(y_q)), epochs=epochs)
    card = {
        "name": "lite",
        "version": str(config.get("version", "1.0")),
        "package_version": __version__,
        "description": "Compact offline emotion model: torch spectral/rhythm/tonal descriptors -> Russell quadrant "
                       "and mood tags. Valence/arousal are derived from the quadrant probabilities.",
        "sample_rate": SAMPLE_RATE,
        "frontend": {"n_fft": N_FFT, "hop": HOP, "n_features": len(feature_names()),
                     "clip_seconds": 30.0, "window_seconds": 10.0, "hop_seconds": 5.0},
        "outputs": {
            "valence": "1-9; 1 + 8 * P(positive valence) where P(positive valence) = P(Q1) + P(Q4). 5 = undecided; "
                       "this is a calibrated confidence, not a listener rating",
            "arousal": "1-9; 1 + 8 * P(positive arousal) where P(positive arousal) = P(Q1) + P(Q2)",
            "quadrant": "Russell quadrant from valence/arousal (Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A)",
            "mood_probabilities": "independent sigmoid probabilities, only for the tags below",
        },
        "classes": {"quadrant": list(QUADRANT_NAMES), "mood_tags": list(LITE_MOOD_TAGS)},
        "mood_tag_sources": {t: list(w) for t, w in MOOD_WORDS.items()},
        "training_data": {"dataset": "4Q audio emotion dataset (Panda, Malheiro & Paiva 2018)",
                          "clips": int(len(y_q)), "per_quadrant": np.bincount(y_q, minlength=4).tolist(),
                          "mood_labels": "AllMusic mood words mapped onto MTG-Jamendo tags (mood_tag_sources)"},
        "training": {"config": config, "final_epochs": epochs, "command": command,
                     "rebuild": ["m2e features --model lite --dataset fourq --data-home <4Q folder>",
                                 "m2e train --model lite --data-home <4Q folder> --config "
                                 "m2e_plugin/training/configs/lite.json --out <weights>.safetensors"],
                     "trainer": "m2e_plugin.training.trainer.Trainer (Adam, early stopping per CV fold; final fit on "
                                "all clips for the median best epoch count)"},
        "metrics": ({"cross_validation": metrics,
                     "protocol": f"{config['folds']}-fold CV, stratified by quadrant, grouped by artist, seed "
                                 f"{config['seed']}; pooled out-of-fold predictions of whole 30 s clips"}
                    if metrics else None),
        "calibration": (metrics or {}).get("calibration", {"quadrant_temperature": 1.0}),
        "licence": "weights: MIT (this project); trained on 4Q clips (research use, University of Coimbra)",
    }
    if out:
        save_lite(model, out, card)
    return model, card
