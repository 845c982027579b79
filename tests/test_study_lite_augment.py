"""The augmentation study's building blocks (benchmarks/study_lite_augment.py): the speed perturbation moves pitch and
duration by its factor, and augmented views add training rows of the same clips and labels."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from m2e_plugin.training.lite import FourQFeatures, load_config, member_configs


@pytest.fixture(scope="module")
def study():
    return load_benchmark("study_lite_augment")


def test_speed_perturb_scales_pitch_and_duration(study):
    sr = 16000
    t = np.arange(3 * sr) / sr
    tone = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    for factor in (0.94, 1.06):
        out = study.speed_perturb(tone, sr, factor)
        assert abs(out.size - tone.size / factor) <= 2
        spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
        peak = np.argmax(spectrum) * sr / out.size
        assert peak == pytest.approx(440.0 * factor, abs=1.0)


def test_augmented_views_are_training_rows_of_the_same_clips(study):
    rng = np.random.default_rng(0)
    kinds = ["msd_penultimate", "mtt_pooled"]
    dims = {"msd_penultimate": 200, "mtt_pooled": 1506}
    clean = {k: [rng.normal(size=(10, d)).astype(np.float32) for _ in range(3)] for k, d in dims.items()}
    data = FourQFeatures(["a", "b", "c"], [0, 2, 3], ["x", "y", "z"], clean, clean)
    augmented = study.AugmentedFourQ(["a", "b", "c"], [0, 2, 3], ["x", "y", "z"], clean, clean)
    augmented.aug = {"speed1.06": {k: [p[:9] + 1 for p in clean[k]] for k in kinds}}
    x, y = augmented.head_rows([0, 2], ["even", "odd", "speed1.06"], "mean", kinds)
    x0, y0 = data.head_rows([0, 2], ["even", "odd"], "mean", kinds)
    assert y.tolist() == y0.tolist() + [0, 0, 3, 3]  # each clip: its even and odd perturbed patches
    np.testing.assert_allclose(x["mtt_pooled"][:4], x0["mtt_pooled"])
    np.testing.assert_allclose(x["msd_penultimate"][4], clean["msd_penultimate"][0][0:9:2].mean(0) + 1, rtol=1e-5)
    cfg = study.with_views(load_config(), ["speed1.06"])
    assert all(m["views"][-1] == "speed1.06" for m in member_configs(cfg).values())
    assert member_configs(cfg)["mtt_pooled"]["weight_decay"] == member_configs(load_config())["mtt_pooled"][
        "weight_decay"]
