"""The harmony study's features (benchmarks/study_lite_harmony.py): chord shares and roots relative to the key."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("study_lite_harmony")


def _record(tonic, mode, chords):
    scores = np.zeros((2, 12))
    scores[0, 0], scores[1, 9] = 0.8, 0.6  # C major best, A minor second
    salience = np.zeros((6, 12))
    salience[:, [0, 4, 7]] = 1.0  # a C major triad in every octave
    return {"key_scores": scores.tolist(), "key": [tonic, mode, 0.7], "chords": chords,
            "note_salience_mean": salience.ravel().tolist()}


def test_features_describe_chords_relative_to_the_key(study):
    chords = [[0.0, 2.0, "C:maj"], [2.0, 4.0, "A:min"], [4.0, 6.0, "G:7"], [6.0, 7.0, "N"]]
    f = study.harmony_features(_record("C", "major", chords))
    assert f.shape == (47,)
    np.testing.assert_allclose(f[:5], [0.8, 0.6, 0.2, 0.0, 0.7])
    np.testing.assert_allclose(f[5:11], [4 / 7, 2 / 7, 1 / 7, 2 / 7, 3 / 7, 3])
    np.testing.assert_allclose(f[11:23][[0, 4, 7]], 1 / 3)  # the pitch-class profile, rotated to C
    roots = f[23:].reshape(2, 12)
    assert roots[0, 0] == pytest.approx(2 / 7) and roots[0, 7] == pytest.approx(2 / 7)  # C, G (major family)
    assert roots[1, 9] == pytest.approx(2 / 7) and roots.sum() == pytest.approx(6 / 7)  # A minor
    # the relative minor shares the frame; a transposed song (E major, flats spelled) gives the same features
    same = study.harmony_features(_record("A", "minor", chords))
    np.testing.assert_allclose(same[5:], f[5:])
    up = [[0.0, 2.0, "E:maj"], [2.0, 4.0, "Db:min"], [4.0, 6.0, "B:7"], [6.0, 7.0, "N"]]
    moved = study.harmony_features(_record("E", "major", up))
    np.testing.assert_allclose(moved[23:], f[23:])
