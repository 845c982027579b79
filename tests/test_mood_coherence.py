"""The mood-coherence benchmark's yardstick (benchmarks/mood_coherence.py): which predicted moods contradict a clip's
true quadrant."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from m2e_plugin.labels import MOOD_TAGS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mood_coherence.py"


def _bench():
    spec = importlib.util.spec_from_file_location("mood_coherence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _moods(*tags):
    row = np.zeros(len(MOOD_TAGS), dtype=bool)
    row[[MOOD_TAGS.index(t) for t in tags]] = True
    return row


def test_contradictions_count_moods_on_the_wrong_side_of_the_true_quadrant():
    predicted = np.stack([_moods("happy", "film"),        # Q1: happy agrees, film takes no side
                          _moods("happy", "calm"),        # Q2 (-V +A): both contradict
                          _moods("sad", "calm", "epic"),  # Q3: both agree
                          _moods("party")])               # Q4 (+V -A): party is active: contradicts
    figures = _bench().contradictions(predicted, np.array([0, 1, 2, 3]))
    assert figures["sided_moods"] == 6 and figures["moods"] == 8
    assert figures["sided_consistent"] == 3
    assert figures["sided_contradicting"] == 0.5 and figures["clips_contradicting"] == 0.5
