"""The shared level normalisation: exact gain invariance above the silence floor, robustness to single peaks,
silence reported and never amplified."""

from __future__ import annotations

import math

import numpy as np
import pytest

from m2e_plugin.backbones.level import (
    SILENCE_FLOOR_DBFS,
    TARGET_DBFS,
    gain_db_for,
    measure_level,
    normalise_level,
)
from m2e_plugin.demo import synth_music

SR = 16000


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return synth_music(6.0, SR).astype(np.float64)


def test_sine_level_is_its_rms(music):
    t = np.arange(SR * 2) / SR
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert measure_level(sine, SR).dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)


@pytest.mark.parametrize("gain_db", [-40.0, -20.0, -6.0, 0.0, 6.0, 17.3])
def test_exactly_gain_invariant(music, gain_db):
    ref = normalise_level(music, SR)
    g = 10 ** (gain_db / 20)
    out = normalise_level(g * music, SR)
    assert not out.level.silent
    assert out.level.dbfs == pytest.approx(ref.level.dbfs + gain_db, abs=1e-9)
    np.testing.assert_allclose(out.audio, ref.audio, rtol=1e-6, atol=1e-7)
    # measuring filters again, which takes a trace more below 20 Hz
    assert measure_level(out.audio, SR).dbfs == pytest.approx(TARGET_DBFS, abs=1e-3)


def test_gain_invariant_with_pauses_and_quiet_passages(music):
    # A pause and a -30 dB passage: the gate must pick the same blocks at any gain.
    y = np.concatenate([music, np.zeros(SR), 0.03 * music, music[: SR // 3]])
    a, b = normalise_level(y, SR), normalise_level(y * 10 ** (-25 / 20), SR)
    np.testing.assert_allclose(a.audio, b.audio, rtol=1e-6, atol=1e-7)


def test_pauses_do_not_pull_the_level_down(music):
    padded = np.concatenate([music, np.zeros(len(music) * 3)])
    assert measure_level(padded, SR).dbfs == pytest.approx(measure_level(music, SR).dbfs, abs=0.3)


def test_single_peak_moves_the_level_little(music):
    quiet = 0.01 * music
    clicked = quiet.copy()
    clicked[len(clicked) // 2] = 1.0  # a full-scale click, 40 dB above the music's peaks
    assert measure_level(clicked, SR).dbfs - measure_level(quiet, SR).dbfs < 1.0


def test_silence_is_reported_not_amplified(music):
    for y in (np.zeros(SR), np.zeros(0), 10 ** ((SILENCE_FLOOR_DBFS - 10) / 20) * music / np.sqrt(np.mean(music**2))):
        out = normalise_level(y, SR)
        assert out.level.silent and out.gain_db == 0.0
        if len(y):  # filtered (DC and sub-20 Hz gone), never scaled up
            assert np.sqrt(np.mean(np.square(out.audio, dtype=np.float64))) <= np.sqrt(np.mean(y**2)) + 1e-12
    assert measure_level(np.zeros(100), SR).dbfs == -math.inf
    assert gain_db_for(measure_level(np.zeros(100), SR)) == 0.0


def test_a_dc_offset_changes_neither_the_level_nor_the_normalised_audio(music):
    """An offset is inaudible; before it was removed, one of -0.13 full scale moved a soundtrack's arousal by 1.1."""
    for offset in (0.3, -0.13, 1e-3):
        assert measure_level(music + offset, SR).dbfs == pytest.approx(measure_level(music, SR).dbfs, abs=1e-9)
        np.testing.assert_allclose(normalise_level(music + offset, SR).audio, normalise_level(music, SR).audio,
                                   atol=1e-5)


def test_sub_audio_rumble_changes_neither_the_level_nor_the_normalised_audio(music):
    """Content below 20 Hz is inaudible and lossy codecs drop it; it once moved a soundtrack's answer by 0.5."""
    t = np.arange(len(music)) / SR
    rumble = 0.2 * np.sin(2 * np.pi * 3.0 * t) + 0.1 * np.sin(2 * np.pi * 7.0 * t + 1.0)
    assert abs(measure_level(music + rumble, SR).dbfs - measure_level(music, SR).dbfs) < 0.1
    a, b = normalise_level(music + rumble, SR).audio, normalise_level(music, SR).audio
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.01 * np.sqrt(np.mean(b**2))


def test_a_constant_is_silence():
    """An interface's idle input with an offset carries no music: it must not be amplified and analysed."""
    for value in (0.1, -0.5, 1.0):
        level = measure_level(np.full(SR, value, dtype=np.float32), SR)
        assert level.silent and gain_db_for(level) == 0.0


def test_just_above_the_floor_is_music(music):
    y = 10 ** ((SILENCE_FLOOR_DBFS + 3) / 20) * music / np.sqrt(np.mean(music**2))
    out = normalise_level(y, SR)
    assert not out.level.silent and out.gain_db > 50


def test_shorter_than_a_block(music):
    short = music[:200]
    out = normalise_level(short, SR)
    assert np.sqrt(np.mean(out.audio.astype(np.float64) ** 2)) == pytest.approx(10 ** (TARGET_DBFS / 20), rel=1e-5)


def test_bad_input_raises(music):
    with pytest.raises(ValueError, match="NaN or inf"):
        measure_level(np.array([0.0, np.nan]), SR)
    with pytest.raises(ValueError, match="mono"):
        measure_level(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError, match="sample rate"):
        measure_level(music, 0)


def test_target_is_typical_of_mastered_music(shared_data):
    """TARGET_DBFS sits within 2 dB of the median gated level of 40 real (commercial, mastered) 4Q clips."""
    from m2e_plugin.audio import load_audio

    files = sorted((shared_data / "4q-dev").glob("Q*/*.mp3"))[::15]
    if len(files) < 30:
        pytest.skip(f"4Q clips not available under {shared_data / '4q-dev'}")
    levels = []
    for f in files:
        y, sr = load_audio(f, target_sr=12000)
        levels.append(measure_level(y, sr).dbfs)
    assert abs(np.median(levels) - TARGET_DBFS) < 2.0
