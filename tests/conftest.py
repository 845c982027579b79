"""Shared fixtures. Real data lives in ``../shared/data`` beside the checkout (CI has it there too); tests that need
it use the ``shared_data`` fixture, which skips with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from m2e_plugin.demo import synth_music

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M2E_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (set M2E_SHARED_DATA to its location)")
    return SHARED_DATA


@pytest.fixture
def music_wav(tmp_path) -> Path:
    """A 5 s stereo 44.1 kHz WAV of synthetic music."""
    import soundfile as sf

    y = synth_music(5.0, 44100)
    path = tmp_path / "music.wav"
    sf.write(path, np.stack([y, 0.8 * y], axis=1), 44100)
    return path


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A fresh plugin manager for the test; plugin modules it imported (``m2e_*`` other than m2e_plugin) are
    forgotten afterwards, so the next test's tmp_path plugins load anew."""
    import sys

    from m2e_plugin import plugins

    monkeypatch.delenv("M2E_LOAD_PLUGINS", raising=False)
    before = set(sys.modules)
    plugins.reset()
    yield
    plugins.reset()
    for name in set(sys.modules) - before:
        if name.startswith("m2e_") and not name.startswith("m2e_plugin"):
            del sys.modules[name]
