"""Metrics: known values on toy data, and the published MediaEval 2019 VGGish baseline reproduced from its files."""

from __future__ import annotations

import numpy as np
import pytest

from m2e_plugin.training.metrics import (average_precision, binary_roc_auc, macro_f1, mood_scores, r2_score,
                                         va_scores)


def test_binary_roc_auc_known_values():
    assert binary_roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert binary_roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # ties count one half
    assert binary_roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert np.isnan(binary_roc_auc([1, 1], [0.2, 0.3]))


def test_average_precision_known_values():
    # ranks: 0.8 (pos) P=1 R=.5 ; 0.4 (neg) ; 0.35 (pos) P=2/3 R=1  -> .5*1 + .5*2/3
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 1 / 3)
    # a tie between a positive and a negative at the top: one threshold, precision 1/2
    assert average_precision([1, 0], [0.7, 0.7]) == pytest.approx(0.5)


def test_mood_and_va_scores_shapes_and_errors():
    rng = np.random.default_rng(0)
    y = rng.random((50, 56)) < 0.2
    y[0] = True
    y[1] = False
    s = mood_scores(y, y + 0.01 * rng.random((50, 56)))
    assert s["roc_auc"] == pytest.approx(1.0) and s["pr_auc"] == pytest.approx(1.0) and s["n_tags"] == 56
    with pytest.raises(ValueError, match="shape"):
        mood_scores(y, np.zeros((50, 55)))
    t = rng.normal(5, 1, (40, 2))
    v = va_scores(t, t)
    assert v["r2_valence"] == pytest.approx(1.0) and v["rmse_arousal"] == pytest.approx(0.0)
    assert va_scores(t, np.full_like(t, 5.0) + t.mean(0) - 5.0)["r2_arousal"] == pytest.approx(0.0, abs=1e-12)
    assert r2_score([1, 2, 3], [3, 2, 1]) == pytest.approx(-3.0)
    assert macro_f1([0, 1, 2, 3], [0, 1, 2, 2], 4) == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)


def test_metrics_agree_with_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.random((300, 12)) < 0.3
    s = np.round(rng.random((300, 12)) + 0.3 * y, 2)  # rounded: plenty of ties
    ours = mood_scores(y, s)
    assert ours["roc_auc"] == pytest.approx(sk.roc_auc_score(y, s, average="macro"), abs=1e-12)
    assert ours["pr_auc"] == pytest.approx(sk.average_precision_score(y, s, average="macro"), abs=1e-12)


@pytest.mark.shared_data
def test_reproduces_mediaeval_vggish_baseline(shared_data):
    root = shared_data / "mtg-jamendo" / "results" / "mediaeval"
    truth = np.load(root / "groundtruth.npy", allow_pickle=False)
    pred = np.load(root / "baseline_vggish_predictions.npy", allow_pickle=False)
    published = dict(line.split("\t") for line in (root / "baseline_vggish_results.tsv").read_text().split("\n")
                     if "\t" in line)
    s = mood_scores(truth, pred)
    assert truth.shape == (4231, 56)
    assert s["roc_auc"] == pytest.approx(float(published["ROC-AUC-macro"]), abs=5e-7)
    assert s["pr_auc"] == pytest.approx(float(published["PR-AUC-macro"]), abs=5e-7)
