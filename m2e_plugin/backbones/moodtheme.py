"""The MTG-Jamendo baseline mood/theme CNN (56 tags = Music2Emo's), its exact mel front end and calibrated moods.

API (for the lite backend)
--------------------------
``MoodThemeCNN.load(weights_dir=None) -> MoodThemeCNN``
    the network alone (logits; ``raw_logits(network, windows)`` runs the front end and the length handling).
``MoodTagger.load(weights_dir=None) -> MoodTagger``
    the network (``moodtheme.safetensors``) and its card (``moodtheme.json``: provenance, sha256, tag order,
    calibration) from ``m2e_plugin/models/weights/``.
``tagger.predict_moods(y, sr) -> np.ndarray (56,)``
    **calibrated** probabilities in ``labels.MOOD_TAGS`` order for mono audio ``y`` of any length and rate
    (0.5 means "predicted": ``probs > 0.5`` are the predicted moods). Level-normalised first
    (:mod:`m2e_plugin.backbones.level`); silence gives all zeros.
``tagger.predict_windows(windows, sr) -> np.ndarray (n, 56)``
    the same for a list of equally long windows (timeline 10 s, live 3 s), batched.
``tagger.thresholds``
    the per-tag thresholds on the raw network probability that calibrated 0.5 corresponds to.
``predict_moods(y, sr)``
    module-level shortcut with one cached tagger.

Front end (as the MTG-Jamendo baseline's essentia ``melspectrograms.py``; no essentia at run time, it is AGPL)
-------------------------------------------------------------------------------------------------------
12 kHz mono; frames of 512 samples every 256, the first one starting at -256 (centred, zero padded; a signal of
n samples gives ceil(n/256)+1 frames); symmetric Hann (0.5 - 0.5 cos(2 pi i / 511)); power spectrum; 96 Slaney mel
bands 0-6 kHz, triangles normalised to unit area ("unit_tri"); 20*log10 with values below 1e-10 set to -200 dB.
The filterbank equals essentia's MelBands to 1e-6; the whole front end is held to an essentia-made fixture by
``tests/test_moodtheme.py``.

Network (``scripts/baseline/model.py`` of MTG/mtg-jamendo-dataset)
------------------------------------------------------------------
input BatchNorm; 5 x [3x3 conv (64-128-128-128-64 channels) -> BatchNorm -> ELU -> max pool (2,4) (2,4) (2,4)
(3,5) (4,4) over (mel, time)]; dense 64 -> 56; sigmoid. Trained on 96 x 1366 frames (29.1 s).

Lengths: input of >= 1366 frames is cut into round(T/1366) evenly spaced 1366-frame crops whose logits are
averaged (a 30 s clip: its centred 29.1 s; a 3 min track: 6 crops). Shorter input (timeline and live windows) is
reflection-padded in time (its mel frames mirrored at its end, repeatedly if need be) to 640 frames up to 6.8 s
(live windows; the last time pooling then takes the 2 remaining steps) or to 1280 from 6.8 to 27.3 s (timeline
windows; the original pooling exactly); 27.3-29.1 s runs as is. Per-length logit offsets in the card (fitted so
that windows of 1/3/10/20 s are predicted at the whole-clip rates) calibrate the result. Reflection padding agreed
best with the whole clip among tiling the mel frames, looping the audio, reflection padding and a max over the
window alone. 640 frames cost a third of 1366 and lose agreement (3 s windows, 30 clips: median r of the 56 raw
probabilities with the whole clip's 0.69 against 0.85 padded to 1366, 56 against 151 ms), a price paid for the live
budget (``benchmarks/bench_moodtheme.py strategies``). Agreement of calibrated windows with their whole clip: the
card's ``calibration.figures``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from m2e_plugin.backbones.level import normalise_level
from m2e_plugin.labels import MOOD_TAGS

SR = 12000
N_FFT = 512
HOP = 256
N_MELS = 96
INPUT_FRAMES = 1366  # 29.1 s: the training excerpt
MIN_FRAMES = 1280  # the time pooling (4*4*4*5*4) reduces 1280..1599 frames to one
SHORT_FRAMES = 640  # windows up to 6.8 s (live) are reflection-padded to this: half the cost of MIN_FRAMES
DB_FLOOR = -200.0
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
WEIGHTS_NAME = "moodtheme.safetensors"
CARD_NAME = "moodtheme.json"

_POOLS = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))
_CHANNELS = (1, 64, 128, 128, 128, 64)


def _hz_to_slaney_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(f >= 1000.0, log_part, f * 3.0 / 200.0)


def _slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0), m * 200.0 / 3.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(96, 257) float64: Slaney-mel triangles over 0-6 kHz, each of unit area (essentia's ``unit_tri``)."""
    edges = _slaney_mel_to_hz(np.linspace(0.0, _hz_to_slaney_mel(SR / 2), N_MELS + 2))
    freqs = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = np.where((freqs >= lo) & (freqs < mid), (freqs - lo) / (mid - lo), 0.0)
    falling = np.where((freqs >= mid) & (freqs < hi), (hi - freqs) / (hi - mid), 0.0)
    return (rising + falling) * 2.0 / (hi - lo)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / (N_FFT - 1))


def log_mel(y: np.ndarray) -> np.ndarray:
    """(96, ceil(n/256)+1) float32 dB mel spectrogram of 12 kHz mono audio (the module docstring's front end)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"moodtheme: expected mono 1-D audio, got shape {y.shape}")
    n_frames = -(-len(y) // HOP) + 1
    padded = np.zeros((n_frames - 1) * HOP + N_FFT)
    padded[N_FFT // 2 : N_FFT // 2 + len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    mel = mel_filterbank() @ power.T
    return np.where(mel < 1e-10, DB_FLOOR, 20.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32)


class MoodThemeCNN(nn.Module):
    """The baseline CNN; parameter names as in the original state dict. ``forward`` returns logits (B, 56)."""

    def __init__(self, n_tags: int = len(MOOD_TAGS)):
        super().__init__()
        self.bn_init = nn.BatchNorm2d(1)
        for i in range(1, 6):
            setattr(self, f"conv_{i}", nn.Conv2d(_CHANNELS[i - 1], _CHANNELS[i], 3, padding=1))
            setattr(self, f"bn_{i}", nn.BatchNorm2d(_CHANNELS[i]))
        self.dense = nn.Linear(_CHANNELS[-1], n_tags)

    @classmethod
    def load(cls, weights_dir: str | Path | None = None) -> MoodThemeCNN:
        """The shipped network (``moodtheme.safetensors``), in eval mode."""
        from safetensors.torch import load_file

        network = cls()
        network.load_state_dict(load_file(str(Path(weights_dir or WEIGHTS_DIR) / WEIGHTS_NAME)))
        # channels-last convolutions run about twice as fast on CPU (oneDNN); results agree to ~1e-5
        return network.to(memory_format=torch.channels_last).eval()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` (B, 96, T) dB. T in 1280..1599 is the original network exactly; shorter T pools in ceil mode
        (a global max where the input is shorter than a kernel); longer T ends with a max over the remaining time."""
        return self.dense(self.embedding(mel))

    def embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 64): the last conv block's channels after the final max, the input of the dense layer."""
        x = self.bn_init(mel.unsqueeze(1))
        short = x.shape[-1] < MIN_FRAMES
        for i, (pool_f, pool_t) in enumerate(_POOLS, start=1):
            x = getattr(self, f"bn_{i}")(getattr(self, f"conv_{i}")(x))
            # The original is max_pool(elu(x)); ELU is increasing, so elu(max_pool(x)) is the same values bit for
            # bit, with ELU on 8-20x fewer elements (it took two thirds of the network's time on channels-last maps).
            x = F.elu(F.max_pool2d(x, (pool_f, min(pool_t, x.shape[-1])), ceil_mode=short))
        return x.amax(dim=(2, 3))


def _network_inputs(mel: np.ndarray) -> np.ndarray:
    """(n, 96, frames) for one input: round(T/1366) evenly spaced 1366-frame crops from 29.1 s on (one centred crop
    up to 43.7 s); shorter input as is from 1280 frames, else reflection-padded to 640 (up to 320 frames) or 1280."""
    frames = mel.shape[1]
    if frames < MIN_FRAMES:
        target = SHORT_FRAMES if frames <= SHORT_FRAMES // 2 else MIN_FRAMES
        return np.pad(mel, ((0, 0), (0, target - frames)), mode="reflect")[None]
    if frames <= INPUT_FRAMES:
        return mel[None]
    n = max(1, round(frames / INPUT_FRAMES))
    starts = [(frames - INPUT_FRAMES) // 2] if n == 1 else np.rint(np.linspace(0, frames - INPUT_FRAMES, n)).astype(int)
    return np.stack([mel[:, s : s + INPUT_FRAMES] for s in starts])


@torch.inference_mode()
def raw_logits(network: MoodThemeCNN, windows: list[np.ndarray]) -> np.ndarray:
    """(n, 56) network logits of level-normalised 12 kHz windows (all one length), before calibration."""
    mels = [_network_inputs(log_mel(w)) for w in windows]
    counts = [len(m) for m in mels]
    logits = network(torch.from_numpy(np.concatenate(mels))).double().numpy()
    return np.stack([chunk.mean(axis=0) for chunk in np.split(logits, np.cumsum(counts)[:-1])])


class MoodTagger:
    """Network + card: calibrated mood probabilities for audio of any length (see the module docstring)."""

    def __init__(self, network: MoodThemeCNN, card: dict):
        self.network = network.eval()
        self.card = card
        if tuple(card["tags"]) != MOOD_TAGS:
            raise ValueError(f"{CARD_NAME}: tag order differs from m2e_plugin.labels.MOOD_TAGS")
        cal = card.get("calibration")
        if cal is None:
            raise ValueError(f"{CARD_NAME} has no calibration: run python -m m2e_plugin.backbones.convert_moodtheme")
        self.logit_thresholds = np.asarray(cal["logit_thresholds"], dtype=np.float64)
        self.thresholds = 1.0 / (1.0 + np.exp(-self.logit_thresholds))
        # seconds -> per-tag logit offset for inputs shorter than a training crop, interpolated in log(seconds)
        self._offset_seconds = np.asarray(cal["short_input_seconds"], dtype=np.float64)
        self._offsets = np.asarray(cal["short_input_logit_offsets"], dtype=np.float64)

    @classmethod
    def load(cls, weights_dir: str | Path | None = None) -> MoodTagger:
        wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        return cls(MoodThemeCNN.load(wdir), json.loads((wdir / CARD_NAME).read_text()))

    def _length_offset(self, n_samples: int) -> np.ndarray:
        """Per-tag logit offset for an input of this many 12 kHz samples (zero from the training length on)."""
        seconds = n_samples / SR
        if seconds >= INPUT_FRAMES * HOP / SR or len(self._offset_seconds) == 0:
            return np.zeros(len(MOOD_TAGS))
        x = np.log(np.clip(seconds, self._offset_seconds[0], self._offset_seconds[-1]))
        grid = np.log(self._offset_seconds)
        return np.array([np.interp(x, grid, self._offsets[:, k]) for k in range(len(MOOD_TAGS))])

    def predict_windows(self, windows, sr: int) -> np.ndarray:
        """(n, 56) calibrated probabilities for equally long mono windows at rate ``sr``; silent windows give 0."""
        from m2e_plugin.audio import resample

        out = np.zeros((len(windows), len(MOOD_TAGS)))
        prepared, index = [], []
        for i, w in enumerate(windows):
            norm = normalise_level(resample(np.asarray(w, dtype=np.float32), sr, SR) if sr != SR else w, SR)
            if not norm.level.silent:
                prepared.append(norm.audio)
                index.append(i)
        if prepared:
            logits = raw_logits(self.network, prepared) + self._length_offset(len(prepared[0]))
            out[index] = 1.0 / (1.0 + np.exp(-(logits - self.logit_thresholds)))
        return out

    def predict_moods(self, y, sr: int) -> np.ndarray:
        """(56,) calibrated probabilities of one mono input of any length; all zero for silence."""
        return self.predict_windows([y], sr)[0]


@lru_cache(maxsize=1)
def _default_tagger() -> MoodTagger:
    return MoodTagger.load()


def predict_moods(y, sr: int) -> np.ndarray:
    """(56,) calibrated mood probabilities with the shipped weights (cached); see :class:`MoodTagger`."""
    return _default_tagger().predict_moods(y, sr)
