"""Train and cross-validate the embedded `lite` model (v2) on the 4Q clips, with this project's :class:`Trainer`.

Rebuild the shipped weights exactly (deterministic from the config's seed, one torch thread)::

    m2e features --model lite --dataset fourq --data-home ../shared/data/4q-dev
    m2e train --model lite --data-home ../shared/data/4q-dev --out m2e_plugin/models/weights/lite.safetensors

Recipe
------
* Clips come from the project's ``fourq`` loader (quadrant, artist); features from the cache of
  :mod:`m2e_plugin.training.lite_features` (musicnn MSD penultimate embeddings of level-normalised 3 s patches).
* A clip is seen through **views**, each pooled into one training row (:func:`~m2e_plugin.models.lite.pool_embeddings`):
  ``even`` = patches 0, 2, 4, ... — exactly what the backend computes on a 30 s block, the view every metric is
  measured on; ``odd`` = the other patches; ``codec`` = odd patches after a lossy round trip (AAC/Opus/MP3);
  ``patches`` = every single 3 s patch (the realtime window). The config's ``views`` lists those used in training.
* Task: ``quadrant`` (4-way cross-entropy). Cross-validation: stratified by quadrant, grouped by artist, seeded; in
  each fold an inner artist-grouped split of the training clips drives early stopping; the final model is trained on
  every clip for the median best epoch count. The quadrant softmax is temperature-scaled on the pooled
  out-of-fold logits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.models.lite import pool_embeddings, quadrant_softmax, valence_arousal
from m2e_plugin.training.trainer import Task, TaskData, Trainer, TrainConfig

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "lite.json"
QUADRANT_NAMES = ("Q1", "Q2", "Q3", "Q4")
VIEWS = ("even", "odd", "codec", "patches")


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


class FourQFeatures:
    """The 4Q clips (through the ``fourq`` loader) with their cached musicnn patch embeddings."""

    def __init__(self, track_ids, quadrants, artists, penultimate, codec_penultimate):
        self.track_ids = list(track_ids)
        self.y = np.asarray(quadrants, dtype=np.int64)
        ids: dict[str, int] = {}
        self.groups = np.array([ids.setdefault((a or t).lower(), len(ids)) for a, t in zip(artists, self.track_ids)])
        self.penultimate = penultimate  # list of (P, 200)
        self.codec = codec_penultimate  # list of (P', 200)

    @classmethod
    def load(cls, data_home, cache) -> "FourQFeatures":
        from m2e_plugin import loaders
        from m2e_plugin.training.features import load_cache

        ds = loaders.initialize("fourq", data_home=str(data_home))
        ids = sorted(ds.track_ids)
        tracks = [ds.track(t) for t in ids]
        return cls(ids, [QUADRANT_NAMES.index(t.quadrant) for t in tracks], [t.artist for t in tracks],
                   load_cache(cache, ids, "penultimate"), load_cache(cache, ids, "codec_penultimate"))

    def view(self, i: int, name: str) -> list[np.ndarray]:
        """The patch sets of clip ``i`` that view ``name`` pools into rows."""
        p = self.penultimate[i]
        if name == "even":
            return [p[0::2]]
        if name == "odd":
            return [p[1::2]] if len(p) > 1 else []
        if name == "codec":
            return [self.codec[i]]
        if name == "patches":
            return [p[j: j + 1] for j in range(len(p))]
        raise ValueError(f"unknown view {name!r}; one of {VIEWS}")

    def rows(self, idx, views, pooling: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in views:
            for i in idx:
                for patch_set in self.view(int(i), name):
                    xs.append(pool_embeddings(patch_set, pooling))
                    ys.append(self.y[i])
        return np.stack(xs), np.asarray(ys, dtype=np.int64)


def fit_lite(config: dict, data: FourQFeatures, train_idx, val_idx=None, *, epochs: int | None = None):
    """Train one LiteModel on ``train_idx`` (early stopping on the ``even`` view of ``val_idx``, or fixed epochs)."""
    from m2e_plugin.models.lite import LiteModel

    x, y = data.rows(train_idx, config["views"], config["pooling"])
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    torch.manual_seed(int(config["seed"]))
    model = LiteModel(x.shape[1], hidden=int(config["hidden"]), dropout=float(config["dropout"]))
    model.set_standardisation(x)
    cfg = TrainConfig(lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
                      batch_size=int(config["batch_size"]),
                      max_epochs=int(epochs if epochs is not None else config["max_epochs"]),
                      patience=int(config["patience"]), min_delta=float(config["min_delta"]), seed=int(config["seed"]))
    val = None
    if val_idx is not None and epochs is None:
        vx, vy = data.rows(val_idx, ["even"], config["pooling"])
        val = [TaskData("fourq-val", {"features": torch.from_numpy(vx)}, {"quadrant": torch.from_numpy(vy)})]
    trainer = Trainer(model, {"quadrant": Task("quadrant", "multiclass")}, cfg)
    history = trainer.fit([TaskData("fourq", {"features": x}, {"quadrant": y})], val)
    return model, history


def predict_logits(model, x: np.ndarray) -> np.ndarray:
    """Quadrant logits (N, 4) of pooled features ``x``."""
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(x, dtype=np.float32)))
    return out["quadrant"].numpy().astype(np.float64)


def fit_temperature(logits: np.ndarray, y_q: np.ndarray) -> dict:
    """Temperature scaling (Guo et al. 2017) of the quadrant softmax on out-of-fold logits: the temperature that
    minimises the negative log-likelihood. It keeps every clip's ranking of quadrants and makes the quadrant
    probabilities mean what they say."""

    def nll(t: float) -> float:
        p = quadrant_softmax(logits, t)[np.arange(len(y_q)), y_q]
        return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 141))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
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
        "quadrant_accuracy": round(float(np.mean(pred == y_q)), 4),
        "quadrant_macro_f1": round(macro_f1(y_q, pred, 4), 4),
        "valence_roc_auc": round(binary_roc_auc(np.isin(y_q, [0, 3]), pv), 4),
        "arousal_roc_auc": round(binary_roc_auc(np.isin(y_q, [0, 1]), pa), 4),
        "n": int(len(y_q)),
    }


def rating_spread(quad_probs: np.ndarray, scale: float) -> dict:
    """Percentiles of the valence/arousal the product would output for these quadrant probabilities."""
    v, a = valence_arousal(quad_probs, scale)
    out = {}
    for name, x in (("valence", v), ("arousal", a)):
        out[name] = {"p5": round(float(np.percentile(x, 5)), 3), "p50": round(float(np.percentile(x, 50)), 3),
                     "p95": round(float(np.percentile(x, 95)), 3),
                     "outside_1.5_8.5": round(float(np.mean((x < 1.5) | (x > 8.5))), 4)}
    return out


def cross_validate(config: dict, data: FourQFeatures, *, progress: bool = True) -> dict:
    """Artist-grouped, quadrant-stratified k-fold CV; pooled out-of-fold metrics of the ``even`` (product) view,
    of the ``codec`` view and of single 3 s patches, and the best epochs."""
    y = data.y
    folds = stratified_group_folds(y, data.groups, int(config["folds"]), int(config["seed"]))
    oof = {"even": np.zeros((len(y), 4)), "odd": np.zeros((len(y), 4)), "codec": np.zeros((len(y), 4))}
    patch_logits, patch_y = [], []
    best_epochs = []
    for k, test_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
        inner = stratified_group_folds(y[train_idx], data.groups[train_idx],
                                       max(2, round(1 / float(config["inner_validation"]))), int(config["seed"]) + k)
        val_idx = train_idx[inner[0]]
        model, hist = fit_lite(config, data, np.setdiff1d(train_idx, val_idx), val_idx)
        best_epochs.append(hist.best_epoch + 1)
        for name in oof:
            oof[name][test_idx] = predict_logits(model, data.rows(test_idx, [name], config["pooling"])[0])
        px, py = data.rows(test_idx, ["patches"], config["pooling"])
        patch_logits.append(predict_logits(model, px))
        patch_y.append(py)
        if progress:
            acc = np.mean(oof["even"][test_idx].argmax(1) == y[test_idx])
            print(f"fold {k + 1}/{len(folds)}: {len(test_idx)} clips, best epoch {hist.best_epoch + 1}, "
                  f"argmax accuracy {acc:.3f}", file=sys.stderr)
    calibration = fit_temperature(oof["even"], y)
    t = calibration["quadrant_temperature"]
    probs = quadrant_softmax(oof["even"], t)
    codec_probs = quadrant_softmax(oof["codec"], t)
    metrics = quadrant_metrics(y, probs)
    metrics.update(calibration=calibration, uncalibrated=quadrant_metrics(y, quadrant_softmax(oof["even"])),
                   codec_view=quadrant_metrics(y, codec_probs),
                   # the same (odd) patches before and after the codec: how often the quadrant survives it
                   codec_quadrant_kept=round(float(np.mean(oof["odd"].argmax(1) == oof["codec"].argmax(1))), 4),
                   single_3s_patch=quadrant_metrics(np.concatenate(patch_y),
                                                    quadrant_softmax(np.concatenate(patch_logits), t)),
                   ratings=rating_spread(probs, float(config["va_scale"])), folds=len(folds),
                   best_epochs=best_epochs)
    return metrics


def train_lite(data_home, cache, *, config: dict | None = None, out=None, cv: bool = True,
               progress: bool = True, command: str | None = None) -> tuple[object, dict]:
    """Cross-validate (optional), train the final model on all clips and write weights + model card to ``out``."""
    from m2e_plugin.models.lite import save_lite
    from m2e_plugin.training.lite_card import model_card

    config = config or load_config()
    # One thread: bit-for-bit reproducible sums whatever the machine, and faster for these tiny matrices.
    torch.set_num_threads(1)
    data = FourQFeatures.load(data_home, cache)
    metrics = cross_validate(config, data, progress=progress) if cv else None
    epochs = int(np.median(metrics["best_epochs"])) if metrics else int(config["final_epochs"])
    model, _ = fit_lite(config, data, np.arange(len(data.y)), epochs=epochs)
    card = model_card(config, data, metrics, epochs, command)
    if out:
        save_lite(model, out, card)
    return model, card
