"""The PyTorch port of basic-pitch's NMP network against the original (fixture made by
benchmarks/basic_pitch_reference.py with the wheel's nmp.onnx and onnxruntime), its windowing over long audio, and
its note posteriors on synthetic chords."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from m2e_plugin.backbones import basic_pitch as B
from m2e_plugin.harmony import transcription as T

FIXTURE = Path(__file__).parent / "resources" / "basic_pitch_parity.npz"
SR = 22050


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model():
    return B.load_transcriber()


def test_fixture_comes_from_the_shipped_wheel(reference):
    from safetensors import safe_open

    with safe_open(str(B.default_weights()), framework="pt") as fh:
        meta = fh.metadata()
    assert str(reference["wheel_sha256"]) == meta["wheel_sha256"]
    assert "onnxruntime" in str(reference["made_with"])


def test_network_matches_onnxruntime(reference, model):
    from m2e_plugin.backbones.convert_basic_pitch import parity_windows

    frames = reference["frames"]
    with torch.inference_mode():
        contour, note, onset = (x.numpy()[:, frames] for x in model(torch.from_numpy(parity_windows())))
        notes_only = model.notes(torch.from_numpy(parity_windows())).numpy()[:, frames]
    for ours, name in ((contour, "contour"), (note, "note"), (onset, "onset")):
        np.testing.assert_allclose(ours, reference[name], atol=2e-5, err_msg=name)
    np.testing.assert_array_equal(notes_only, note)
    # The check has teeth: the chord and the noise window differ by far more than the tolerance.
    assert np.abs(reference["note"][0] - reference["note"][1]).max() > 0.3


def _tones(midis, seconds, start=0.0):
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for m in midis:
        f = 440.0 * 2 ** ((m - 69) / 12)
        y += sum(0.15 / h * np.sin(2 * np.pi * f * h * t) for h in (1, 2, 3, 4))
    y *= np.minimum(1.0, t / 0.01)  # no click
    return y.astype(np.float32)


def test_silence_and_short_input_give_finite_low_posteriors(model):
    run = B.note_posteriors_runner(model)
    for n in (0, 1, 100, T.WINDOW_SAMPLES + 5):
        sal = T.note_salience(np.zeros(n, np.float32), run)
        assert sal.shape == (72, 1 + max(n, T.GRID_HOP) // T.GRID_HOP)  # padded to one hop, as the CQT
        assert np.isfinite(sal).all() and sal.max() < 0.3


def test_windowed_track_equals_each_window_on_its_own(model):
    """Frames of a long signal, computed a batch of windows at a time, are the network's frames of the window that
    owns them, on one 256-sample grid from sample 0 (a note starting at 3.0 s shows at frame 3.0 * 22050 / 256)."""
    run = B.note_posteriors_runner(model)
    y = np.concatenate([np.zeros(int(3.0 * SR), np.float32), _tones([69], 4.0)])
    frames = np.concatenate(list(T.network_frames(y, run, batch=1)))
    assert frames.shape == (1 + y.size // 256, 88)
    start = T.WINDOW_HOP - T.EDGE_FRAMES * T.FRAME_HOP  # window 1
    alone = run(y[None, start:start + T.WINDOW_SAMPLES])[0]
    np.testing.assert_allclose(frames[T.KEPT_FRAMES:2 * T.KEPT_FRAMES], alone[T.EDGE_FRAMES:T.EDGE_FRAMES +
                                                                                T.KEPT_FRAMES], atol=1e-6)
    a4 = frames[:, 69 - 21]
    onset = int(np.argmax(a4 > 0.5))
    assert abs(onset - 3.0 * SR / 256) <= 4  # within ~50 ms
    pooled = T.pool_to_grid(iter([frames[:7], frames[7:300], frames[300:]]), frames.shape[0])
    np.testing.assert_allclose(pooled, T.pool_to_grid(iter([frames]), frames.shape[0]), atol=1e-6)


def test_posteriors_name_the_notes_of_chords(model):
    """A minor then F major, harmonic tones: the strongest pitch classes are the chords' own."""
    run = B.note_posteriors_runner(model)
    y = np.concatenate([_tones([57, 60, 64], 2.0), _tones([53, 57, 60], 2.0)])
    sal = T.note_salience(y, run)
    for (a, b), pcs in (((5, 35), {9, 0, 4}), ((50, 80), {5, 9, 0})):
        chroma = sal[:, a:b].reshape(6, 12, -1).sum(axis=(0, 2))
        assert set(np.argsort(chroma)[-3:]) == pcs


def test_default_run_is_loaded_once_per_device_and_its_recogniser_uses_it(monkeypatch):
    """recognize_chords(device=...) runs the transcription network through that device's cached runner."""
    from m2e_plugin.harmony import chords as C

    assert T.default_run("cpu") is T.default_run("cpu")
    asked = []
    monkeypatch.setattr(C, "default_run", lambda device: asked.append(device) or T.default_run("cpu"))
    y = _tones([57, 60, 64], 2.0)
    assert C.recognize_chords(y, SR, device="meta-test") == C.recognize_chords(y, SR)
    assert asked == ["meta-test", "cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_network_on_cuda_matches_cpu(model):
    y = np.concatenate([_tones([57, 60, 64], 2.0), _tones([53, 57, 60], 2.0)])
    cpu = T.note_salience(y, B.note_posteriors_runner(B.load_transcriber(), "cpu"))
    gpu = T.note_salience(y, B.note_posteriors_runner(B.load_transcriber(), "cuda"))
    assert np.abs(gpu - cpu).max() < 0.02  # cuDNN's TF32 convolutions, not bit-identical
