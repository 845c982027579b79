"""The head study's row normalisation (benchmarks/study_lite_heads.py): only the chosen kinds' pooled rows are
scaled to unit length, and the product's trainer standardises those rows."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("study_lite_heads")


def _data(study):
    rng = np.random.default_rng(0)
    n = 8
    patches = {"msd_penultimate": [rng.normal(3.0, 1.0, (4, 5)) for _ in range(n)],
               "mtt_pooled": [rng.normal(0.0, 10.0, (4, 6)) for _ in range(n)]}
    return study.UnitRows([f"t{i}" for i in range(n)], [i % 4 for i in range(n)], [f"a{i}" for i in range(n)],
                          patches, {k: [p[:2] for p in v] for k, v in patches.items()})


def test_only_the_chosen_kinds_rows_are_unit_length(study):
    data = _data(study)
    data.unit = ("mtt_pooled",)
    mtt, y = data.rows(range(8), ["even", "odd"], "mean", "mtt_pooled")
    msd, _ = data.rows(range(8), ["even", "odd"], "mean", "msd_penultimate")
    np.testing.assert_allclose(np.linalg.norm(mtt, axis=1), 1.0, rtol=1e-6)
    assert len(y) == 16 and np.linalg.norm(msd, axis=1).min() > 3.0  # MSD rows as pooled
    expected = np.mean(data.patches["mtt_pooled"][2][0::2], axis=0)
    np.testing.assert_allclose(mtt[2], expected / np.linalg.norm(expected), rtol=1e-5)


def test_the_trainer_standardises_the_unit_rows(study):
    from m2e_plugin.training.lite import fit_lite, load_config

    data = _data(study)
    data.unit = ("mtt_pooled",)
    config = {**load_config(), **load_config()["members"]["mtt_pooled"]}
    model, _ = fit_lite(config, data, np.arange(8), kind="mtt_pooled", epochs=1)
    unit, _ = data.rows(range(8), config["views"], "mean", "mtt_pooled")
    np.testing.assert_allclose(model.feature_mean.numpy(), unit.mean(0), atol=1e-6)


def test_patch_subset_views_pool_the_right_patches(study):
    data = _data(study)
    p = data.patches["msd_penultimate"][3]
    first, second = data.view(3, "halves")
    np.testing.assert_array_equal(first, p[:2])
    np.testing.assert_array_equal(second, p[2:])
    subsets = data.view(3, "rand8")
    assert len(subsets) == 8 and all(s.shape == (2, 5) for s in subsets)

    def picked(patches, sets):  # which patches each subset holds
        return [sorted(int(np.flatnonzero((patches == row).all(1))[0]) for row in s) for s in sets]

    msd = picked(p, subsets)
    mtt = picked(data.patches["mtt_pooled"][3], data.view(3, "rand8", "mtt_pooled"))
    assert msd == mtt and len({tuple(x) for x in msd}) > 1  # both members the same patches; not all one subset
    x, y = data.rows(range(8), ["even", "odd", "rand8"], "mean", "msd_penultimate")
    assert x.shape[0] == len(y) == 8 * 10
