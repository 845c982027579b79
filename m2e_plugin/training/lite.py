"""Train and cross-validate the embedded `lite` model (v2) on the 4Q clips, with this project's :class:`Trainer`.

Rebuild the shipped weights exactly (deterministic from the config's seed, one torch thread)::

    m2e features --model lite --dataset fourq --data-home ../shared/data/4q-dev
    m2e train --model lite --data-home ../shared/data/4q-dev --out m2e_plugin/models/weights/lite.safetensors

Recipe
------
* Clips come from the project's ``fourq`` loader (quadrant, artist); features from the cache of
  :mod:`m2e_plugin.training.lite_features` (musicnn MSD penultimate embeddings and MTT pooled vectors of
  level-normalised 3 s patches).
* The head has one linear member per feature kind (config ``members``, each overriding the shared settings); their
  quadrant log-probabilities are averaged (:class:`~m2e_plugin.models.lite.LiteEnsemble`). A member with
  ``fixed_epochs`` trains that many epochs on all its training clips with no early stopping: with no dropout and
  weight decay 1/(C n) it converges to the L2-regularised logistic regression of ``benchmarks/study_lite_features.py``
  (which found the MSD & MTT pair 0.018 better than MSD alone).
* A clip is seen through **views**, each pooled into one training row (:func:`~m2e_plugin.models.lite.pool_embeddings`):
  ``even`` = patches 0, 2, 4, ... — exactly what the backend computes on a 30 s block, the view every metric is
  measured on; ``odd`` = the other patches; ``codec`` = odd patches after a lossy round trip (AAC/Opus/MP3);
  ``patches`` = every single 3 s patch (the realtime window). The config's ``views`` lists those used in training.
* Task: ``quadrant`` (4-way cross-entropy). Cross-validation: stratified by quadrant, grouped by artist, seeded; in
  each fold an inner artist-grouped split of the training clips drives early stopping (members without
  ``fixed_epochs``); the final model is trained on every clip for each member's median best epoch count. The
  quadrant softmax is temperature-scaled on the pooled out-of-fold outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.models.lite import axis_probabilities, pool_embeddings, quadrant_softmax, valence_arousal
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


# cache arrays of each feature kind a head member reads: (every patch, the codec view's patches)
CACHE_KEYS = {"msd_penultimate": ("penultimate", "codec_penultimate"),
              "mtt_pooled": ("mtt_pooled", "codec_mtt_pooled")}


def member_configs(config: dict) -> dict[str, dict]:
    """{feature kind: that member's training config}: the config with the member's own overrides (``members``;
    a config without ``members`` has one member, the MSD penultimate)."""
    members = config.get("members") or {"msd_penultimate": {}}
    base = {k: v for k, v in config.items() if k != "members"}
    return {kind: {**base, **overrides} for kind, overrides in members.items()}


class FourQFeatures:
    """The 4Q clips (through the ``fourq`` loader) with their cached musicnn patch embeddings, per feature kind
    (``patches[kind]``: (P, d) per clip; ``codec[kind]``: the codec view's patches)."""

    def __init__(self, track_ids, quadrants, artists, patches: dict[str, list], codec: dict[str, list]):
        self.track_ids = list(track_ids)
        self.y = np.asarray(quadrants, dtype=np.int64)
        ids: dict[str, int] = {}
        self.groups = np.array([ids.setdefault((a or t).lower(), len(ids)) for a, t in zip(artists, self.track_ids)])
        self.patches = patches
        self.codec = codec

    @property
    def penultimate(self) -> list[np.ndarray]:
        """The MSD penultimate embeddings (P, 200) of every clip."""
        return self.patches["msd_penultimate"]

    @classmethod
    def load(cls, data_home, cache, kinds=("msd_penultimate",)) -> "FourQFeatures":
        from m2e_plugin import loaders
        from m2e_plugin.training.features import load_cache

        ds = loaders.initialize("fourq", data_home=str(data_home))
        ids = sorted(ds.track_ids)
        tracks = [ds.track(t) for t in ids]
        return cls(ids, [QUADRANT_NAMES.index(t.quadrant) for t in tracks], [t.artist for t in tracks],
                   {k: load_cache(cache, ids, CACHE_KEYS[k][0]) for k in kinds},
                   {k: load_cache(cache, ids, CACHE_KEYS[k][1]) for k in kinds})

    def view(self, i: int, name: str, kind: str = "msd_penultimate") -> list[np.ndarray]:
        """The patch sets of clip ``i`` that view ``name`` pools into rows."""
        p = self.patches[kind][i]
        if name == "even":
            return [p[0::2]]
        if name == "odd":
            return [p[1::2]] if len(p) > 1 else []
        if name == "codec":
            return [self.codec[kind][i]]
        if name == "patches":
            return [p[j: j + 1] for j in range(len(p))]
        raise ValueError(f"unknown view {name!r}; one of {VIEWS}")

    def rows(self, idx, views, pooling: str, kind: str = "msd_penultimate") -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in views:
            for i in idx:
                for patch_set in self.view(int(i), name, kind):
                    xs.append(pool_embeddings(patch_set, pooling))
                    ys.append(self.y[i])
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    def head_rows(self, idx, views, pooling: str, kinds) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Rows of every member's features, row for row the same clips and patches: ({kind: x}, y)."""
        rows = {k: self.rows(idx, views, pooling, k) for k in kinds}
        return {k: x for k, (x, _) in rows.items()}, next(iter(rows.values()))[1]


def fit_lite(config: dict, data: FourQFeatures, train_idx, val_idx=None, *, epochs: int | None = None,
             kind: str = "msd_penultimate"):
    """Train one member (a LiteModel on feature ``kind``, with ``config`` already the member's) on ``train_idx``
    (early stopping on the ``even`` view of ``val_idx``, or fixed epochs)."""
    from m2e_plugin.models.lite import LiteModel

    x, y = data.rows(train_idx, config["views"], config["pooling"], kind)
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
        vx, vy = data.rows(val_idx, ["even"], config["pooling"], kind)
        val = [TaskData("fourq-val", {"features": torch.from_numpy(vx)}, {"quadrant": torch.from_numpy(vy)})]
    trainer = Trainer(model, {"quadrant": Task("quadrant", "multiclass")}, cfg)
    history = trainer.fit([TaskData("fourq", {"features": x}, {"quadrant": y})], val)
    return model, history


def fit_head(config: dict, data: FourQFeatures, train_idx, val_idx=None, *, epochs: dict | None = None):
    """Train every member of the head (:func:`fit_lite`); returns (LiteEnsemble, {kind: best epoch count}).

    A member with ``fixed_epochs`` is not early-stopped: it trains on ``train_idx`` and ``val_idx`` together for
    that many epochs (with its weight decay it then converges to the L2-regularised logistic regression)."""
    from m2e_plugin.models.lite import LiteEnsemble

    models, best = {}, {}
    for kind, member in member_configs(config).items():
        if "fixed_epochs" in member:
            every = train_idx if val_idx is None else np.union1d(train_idx, val_idx)
            models[kind], _ = fit_lite(member, data, every, kind=kind, epochs=int(member["fixed_epochs"]))
            best[kind] = int(member["fixed_epochs"])
            continue
        models[kind], hist = fit_lite(member, data, train_idx, val_idx, kind=kind,
                                      epochs=None if epochs is None else epochs[kind])
        best[kind] = hist.best_epoch + 1
    return LiteEnsemble.of(models), best


def predict_logits(model, x) -> np.ndarray:
    """Quadrant outputs (N, 4) of pooled features: ``x`` an array for a LiteModel, {kind: array} for a
    LiteEnsemble (whose outputs are averaged log-probabilities)."""
    model.eval()
    with torch.no_grad():
        if isinstance(x, dict):
            out = model({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in x.items()})
        else:
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

    pv, pa = axis_probabilities(quad_probs)
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


def cv_splits(config: dict, y: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fit, inner validation, test) clip indices of each cross-validation fold: ``config["folds"]`` folds
    stratified by quadrant and grouped by artist (``config["seed"]``), and inside each fold's training clips the
    artist-grouped early-stopping split (a ``config["inner_validation"]`` share). The one split of the product's CV
    and of the studies that compare with it."""
    seed = int(config["seed"])
    splits = []
    for k, test_idx in enumerate(stratified_group_folds(y, groups, int(config["folds"]), seed)):
        train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
        inner = stratified_group_folds(y[train_idx], groups[train_idx],
                                       max(2, round(1 / float(config["inner_validation"]))), seed + k)
        val_idx = train_idx[inner[0]]
        splits.append((np.setdiff1d(train_idx, val_idx), val_idx, test_idx))
    return splits


def out_of_fold(config: dict, data: FourQFeatures, *, progress: bool = True) -> dict:
    """The cross-validation's out-of-fold quadrant logits (artist-grouped, quadrant-stratified folds of
    :func:`cv_splits`): ``{"even" | "odd" | "codec": (clips, 4), "patches": [(logits, y) per fold],
    "best_epochs": {member: [per fold]}}``; ``even`` is the product's view."""
    y = data.y
    kinds = list(member_configs(config))
    folds = cv_splits(config, y, data.groups)
    oof = {"even": np.zeros((len(y), 4)), "odd": np.zeros((len(y), 4)), "codec": np.zeros((len(y), 4))}
    patches = []
    best_epochs = {k: [] for k in kinds}
    for k, (fit_idx, val_idx, test_idx) in enumerate(folds):
        model, best = fit_head(config, data, fit_idx, val_idx)
        for kind in kinds:
            best_epochs[kind].append(best[kind])
        for name in oof:
            oof[name][test_idx] = predict_logits(model, data.head_rows(test_idx, [name], config["pooling"], kinds)[0])
        px, py = data.head_rows(test_idx, ["patches"], config["pooling"], kinds)
        patches.append((predict_logits(model, px), py))
        if progress:
            acc = np.mean(oof["even"][test_idx].argmax(1) == y[test_idx])
            print(f"fold {k + 1}/{len(folds)}: {len(test_idx)} clips, best epochs {best}, "
                  f"argmax accuracy {acc:.3f}", file=sys.stderr)
    return {**oof, "patches": patches, "best_epochs": best_epochs, "folds": len(folds)}


def cross_validate(config: dict, data: FourQFeatures, *, progress: bool = True) -> dict:
    """Artist-grouped, quadrant-stratified k-fold CV; pooled out-of-fold metrics of the ``even`` (product) view,
    of the ``codec`` view and of single 3 s patches, and each member's best epochs."""
    y = data.y
    oof = out_of_fold(config, data, progress=progress)
    patch_logits = [logits for logits, _ in oof["patches"]]
    patch_y = [py for _, py in oof["patches"]]
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
                   ratings=rating_spread(probs, float(config["va_scale"])), folds=oof["folds"],
                   best_epochs=oof["best_epochs"])
    return metrics


def train_lite(data_home, cache, *, config: dict | None = None, out=None, cv: bool = True,
               progress: bool = True, command: str | None = None) -> tuple[object, dict]:
    """Cross-validate (optional), train the final model on all clips and write weights + model card to ``out``."""
    from m2e_plugin.models.lite import save_lite
    from m2e_plugin.training.lite_card import model_card

    config = config or load_config()
    # One thread: bit-for-bit reproducible sums whatever the machine, and faster for these tiny matrices.
    torch.set_num_threads(1)
    members = member_configs(config)
    data = FourQFeatures.load(data_home, cache, kinds=list(members))
    metrics = cross_validate(config, data, progress=progress) if cv else None
    epochs = {k: int(np.median(metrics["best_epochs"][k])) if metrics else int(m["final_epochs"])
              for k, m in members.items()}
    model, _ = fit_head(config, data, np.arange(len(data.y)), epochs=epochs)
    card = model_card(config, data, metrics, epochs, command)
    if out:
        save_lite(model, out, card)
    return model, card
