"""Other heads on lite 2.2's own cached features: do row normalisation, other classifiers or unequal member
weights lift `lite`'s CV? A study on the 600 shared 4Q clips (issue 11). It reads only the lite training cache
(``m2e features --model lite --dataset fourq --data-home ../shared/data/4q-dev`` builds it).

    python benchmarks/study_lite_heads.py trainer --data-home ../shared/data/4q-dev     # ~9 min of one thread
    python benchmarks/study_lite_heads.py weights --data-home ../shared/data/4q-dev     # ~4 min
    python benchmarks/study_lite_heads.py sklearn --data-home ../shared/data/4q-dev     # ~12 min on two threads
    python benchmarks/study_lite_heads.py views --data-home ../shared/data/4q-dev       # ~20 min of one thread
    python benchmarks/study_lite_heads.py grouping --data-home ../shared/data/4q-dev    # ~5 min of one thread

Result (README, lite section): none beats lite 2.2; the product keeps its heads.

``trainer`` runs the product's cross-validation (:func:`~m2e_plugin.training.lite.cross_validate`, the committed
config with ``seed`` 0 / 1 / 2) with each member's pooled rows optionally scaled to unit Euclidean length before
the member standardises them (``l2``), at the MTT member's weight decay 0.3 (the shipped one), 0.1 and 1.

``weights`` trains each member alone (:func:`~m2e_plugin.training.lite.out_of_fold`, same folds) and scores the
weighted product of experts ``w log p(MSD) + (1 - w) log p(MTT)``, its quadrant read off the valence and arousal
halves as the product does (uncalibrated; lite averages with w = 0.5).

``views`` trains both members on more views of each training clip than the product's ``even`` and ``odd``
patch halves: also the clip's first and second half (``halves``), or eight random half-size patch subsets
(``rand8``), the within-clip variety as augmentation.

``grouping`` compares the product's artist-grouped folds with clip-level folds (each clip its own group): what
clips of artists the model has heard score, against the unseen artists the product's figure is about.

``sklearn`` is a second harness, scikit-learn on the same folds and rows (training clips' ``even`` and ``odd``
rows, test clips' ``even`` row): standardised logistic regression (C 0.03 MSD, 0.003 MTT, the study's
counterparts of the members' weight decays), the same with unit-length rows, shrinkage LDA (Ledoit-Wolf) and an
RBF SVM (C 1, Platt probabilities), members combined as log-probability averages.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("MKL_NUM_THREADS", "1")
from m2e_plugin.training.lite import FourQFeatures, cv_splits, load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paths import cache_dir  # benchmarks/paths.py
from study_lite_features import table_row

LITE_CACHE = cache_dir("features", "lite", "fourq")
KINDS = ("msd_penultimate", "mtt_pooled")
SEEDS = (0, 1, 2)
HEADER = "| head | accuracy, seeds 0 / 1 / 2 | mean | valence AUC | arousal AUC |\n|---|---|---|---|---|"


def unit_length(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class UnitRows(FourQFeatures):
    """The product's features with the pooled rows of the kinds in ``unit`` scaled to unit length (the member's
    standardisation then sees those rows)."""

    unit: tuple[str, ...] = ()

    def view(self, i, name, kind="msd_penultimate"):
        """The product's views, plus the ``views`` study's patch subsets: ``halves`` (the first and the second half
        of the clip's patches) and ``rand8`` (eight random half-size subsets, seeded by the clip, so both members
        see the same patches)."""
        p = self.patches[kind][i]
        if name in ("halves", "rand8") and len(p) < 2:
            return [p]
        if name == "halves":
            return [p[: len(p) // 2], p[len(p) // 2:]]
        if name == "rand8":
            rng = np.random.default_rng(1000 + int(i))
            return [p[np.sort(rng.choice(len(p), size=len(p) // 2, replace=False))] for _ in range(8)]
        return super().view(i, name, kind)

    def rows(self, idx, views, pooling, kind="msd_penultimate"):
        x, y = super().rows(idx, views, pooling, kind)
        return (unit_length(x).astype(np.float32) if kind in self.unit else x), y


def load(data_home) -> UnitRows:
    return UnitRows.load(data_home, LITE_CACHE, kinds=KINDS)


def cmd_trainer(args) -> None:
    from m2e_plugin.training.lite import cross_validate

    data = load(args.data_home)
    base = load_config()
    variants = [("lite 2.2 (reproduced)", (), 0.3), ("MTT rows unit length", ("mtt_pooled",), 0.3),
                ("MTT rows unit length, MTT weight decay 0.1", ("mtt_pooled",), 0.1),
                ("MTT rows unit length, MTT weight decay 1", ("mtt_pooled",), 1.0),
                ("both members' rows unit length", KINDS, 0.3)]
    rows = []
    for name, unit, mtt_decay in variants:
        data.unit = unit
        config = copy.deepcopy(base)
        config["members"]["mtt_pooled"]["weight_decay"] = mtt_decay
        per_seed = []
        for seed in SEEDS:
            start = time.perf_counter()
            per_seed.append(m := cross_validate({**config, "seed": seed}, data, progress=False))
            print(f"{name} seed {seed}: {m['quadrant_accuracy']:.4f} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
        rows.append(table_row(name, per_seed))
    print(HEADER + "\n" + "\n".join(rows))


def cmd_views(args) -> None:
    """More training views per clip (patch subsets: within-clip variety as augmentation), both members."""
    from m2e_plugin.training.lite import cross_validate

    data = load(args.data_home)
    base = load_config()
    variants = [("even, odd + temporal halves", ["even", "odd", "halves"]),
                ("even, odd + 8 random half-size subsets", ["even", "odd", "rand8"])]
    rows = []
    for name, views in variants:
        config = copy.deepcopy(base)
        for member in config["members"].values():
            member["views"] = views
        per_seed = []
        for seed in SEEDS:
            per_seed.append(m := cross_validate({**config, "seed": seed}, data, progress=False))
            print(f"{name} seed {seed}: {m['quadrant_accuracy']:.4f}", file=sys.stderr, flush=True)
        rows.append(table_row(name, per_seed))
    print(HEADER + "\n" + "\n".join(rows))


def cmd_grouping(args) -> None:
    """Unseen artists against unseen clips: lite's CV with artist-grouped folds (the product's) and with each clip
    its own group (folds stratified by quadrant only), to read what a test set sharing artists with the training
    clips would score."""
    from m2e_plugin.training.lite import cross_validate

    data = load(args.data_home)
    _, per_artist = np.unique(data.groups, return_counts=True)
    shared = per_artist[per_artist > 1].sum()
    print(f"{len(data.y)} clips, {len(per_artist)} artists; {shared} clips ({shared / len(data.y):.1%}) share their "
          f"artist with another clip; most clips by one artist: {per_artist.max()}", file=sys.stderr, flush=True)
    artists = data.groups
    rows = []
    for name, groups in (("artist-grouped folds (the product's protocol)", artists),
                         ("clip-level folds (an artist's clips may sit in training and test)", np.arange(len(data.y)))):
        data.groups = groups
        per_seed = []
        for seed in SEEDS:
            per_seed.append(m := cross_validate({**load_config(), "seed": seed}, data, progress=False))
            print(f"{name} seed {seed}: {m['quadrant_accuracy']:.4f}", file=sys.stderr, flush=True)
        rows.append(table_row(name, per_seed))
    data.groups = artists
    print(HEADER + "\n" + "\n".join(rows))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def cmd_weights(args) -> None:
    from m2e_plugin.training.lite import out_of_fold, quadrant_metrics

    data = load(args.data_home)
    base = load_config()
    weights = np.round(np.arange(0.3, 0.71, 0.05), 2)
    acc = {w: [] for w in weights}
    for seed in SEEDS:
        logp = {}
        for kind in KINDS:
            config = {**copy.deepcopy(base), "seed": seed}
            config["members"] = {kind: base["members"][kind]}
            logp[kind] = log_softmax(out_of_fold(config, data, progress=False)["even"])
        for w in weights:
            combined = np.exp(log_softmax(w * logp["msd_penultimate"] + (1 - w) * logp["mtt_pooled"]))
            acc[w].append(quadrant_metrics(data.y, combined)["quadrant_accuracy"])
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    print("| MSD weight w | accuracy, seeds 0 / 1 / 2 | mean |\n|---|---|---|")
    for w in weights:
        print(f"| {w:.2f} | {' / '.join(f'{a:.3f}' for a in acc[w])} | {np.mean(acc[w]):.3f} |")


def cmd_sklearn(args) -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from m2e_plugin.training.lite import quadrant_metrics

    data = load(args.data_home)
    base = load_config()

    def logistic(c):
        return lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))

    def lda():
        return lambda: make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))

    def svm():
        return lambda: make_pipeline(StandardScaler(), SVC(C=1.0, probability=True, random_state=0))

    msd, mtt = KINDS
    variants = {
        "logistic & logistic": [(msd, logistic(0.03), False), (mtt, logistic(0.003), False)],
        "logistic & logistic, MTT rows unit length": [(msd, logistic(0.03), False), (mtt, logistic(0.003), True)],
        "logistic & logistic, both unit length": [(msd, logistic(0.03), True), (mtt, logistic(0.003), True)],
        "MTT logistic alone": [(mtt, logistic(0.003), False)],
        "MTT logistic alone, rows unit length": [(mtt, logistic(0.003), True)],
        "shrinkage LDA & shrinkage LDA": [(msd, lda(), False), (mtt, lda(), False)],
        "RBF SVM & RBF SVM": [(msd, svm(), False), (mtt, svm(), False)],
    }
    rows = []
    for name, members in variants.items():
        per_seed = []
        for seed in SEEDS:
            logp = np.zeros((len(data.y), 4))
            for fit_idx, val_idx, test_idx in cv_splits({**base, "seed": seed}, data.y, data.groups):
                train_idx = np.union1d(fit_idx, val_idx)
                for kind, make, unit in members:
                    x, y = data.rows(train_idx, ["even", "odd"], "mean", kind)
                    xt, _ = data.rows(test_idx, ["even"], "mean", kind)
                    if unit:
                        x, xt = unit_length(x), unit_length(xt)
                    proba = make().fit(x, y).predict_proba(xt)
                    logp[test_idx] += np.log(np.clip(proba, 1e-9, 1.0)) / len(members)
            per_seed.append(quadrant_metrics(data.y, np.exp(logp) / np.exp(logp).sum(1, keepdims=True)))
        print(f"{name}: {np.mean([m['quadrant_accuracy'] for m in per_seed]):.4f}", file=sys.stderr, flush=True)
        rows.append(table_row(name, per_seed))
    print(HEADER + "\n" + "\n".join(rows))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("trainer", "weights", "sklearn", "views", "grouping"):
        s = sub.add_parser(name, help=f"{name} (see the module docstring)")
        s.add_argument("--data-home", required=True, help="the 4Q dataset (../shared/data/4q-dev)")
    args = p.parse_args(argv)
    {"trainer": cmd_trainer, "weights": cmd_weights, "sklearn": cmd_sklearn, "views": cmd_views,
     "grouping": cmd_grouping}[args.cmd](args)


if __name__ == "__main__":
    main()
