"""PyTorch port of basic-pitch's note transcription network "NMP" (Spotify, Apache-2.0; Bittner, Bosch, Rubinstein,
Meseguer-Brocal and Ewert, "A lightweight instrument-agnostic model for polyphonic note transcription and
multipitch estimation", ICASSP 2022).

36 k parameters, trained on many instruments and on the voice. Input: 2 s windows of 22.05 kHz mono audio
(``WINDOW_SAMPLES``); outputs per window (172 frames, hop 256 samples, frame ``j`` centred on sample ``256 j``):

* ``contour``: pitch salience, 264 bins (3 per semitone from A0; semitone ``k``'s centre is bin ``3k + 1``),
* ``note``: note posteriors over the 88 piano keys (A0 .. C8),
* ``onset``: note onset posteriors over the same keys.

The network's constant-Q front end (nnAudio's CQT2010v2: one octave of complex kernels applied to the audio
low-passed and halved eight times) is part of the converted weights: its kernels, anti-alias filter and per-bin
scale are read from the original model (``convert_basic_pitch``), not derived again. The weights file is
``models/weights/basic_pitch_nmp.safetensors``, its provenance in ``basic_pitch_nmp.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 22050
WINDOW_SAMPLES = 43844
FRAME_HOP = 256
WINDOW_FRAMES = 172
CQT_OCTAVES = 9  # the top octave at the full rate, then eight low-passed halvings (hop 256 -> 1 sample)
CQT_BINS_PER_OCTAVE = 36
CQT_BINS = 309  # 103 semitones from A0, the last 309 of the nine octaves' 324 bins
CONTOUR_BINS = 264
NOTE_BINS = 88
# Harmonic stacking: the CQT shifted so that harmonic h of each bin lines up with it (0.5 = the sub-octave).
HARMONICS = (0.5, 1, 2, 3, 4, 5, 6, 7)
HARMONIC_SHIFTS = tuple(int(round(CQT_BINS_PER_OCTAVE * np.log2(h))) for h in HARMONICS)


def default_weights() -> Path:
    return Path(__file__).resolve().parents[1] / "models" / "weights" / "basic_pitch_nmp.safetensors"


class NoteTranscriber(nn.Module):
    """NMP: constant-Q magnitude (dB, scaled to 0-1 per window) -> harmonic stacking -> contour, note and onset
    posteriors. ``forward`` takes ``(batch, 43844)`` audio and returns ``(contour, note, onset)``, each
    ``(batch, 172, bins)``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("cqt_real", torch.zeros(CQT_BINS_PER_OCTAVE, 1, 256))
        self.register_buffer("cqt_imag", torch.zeros(CQT_BINS_PER_OCTAVE, 1, 256))
        self.register_buffer("lowpass", torch.zeros(1, 1, 256))
        self.register_buffer("bin_scale", torch.zeros(CQT_BINS))
        self.register_buffer("input_scale", torch.ones(1))  # the trained batch normalisation of the CQT, folded
        self.register_buffer("input_shift", torch.zeros(1))
        n = len(HARMONICS)
        self.contour_hidden = nn.Conv2d(n, 8, (3, 39), padding=(1, 19))
        self.contour_out = nn.Conv2d(8, 1, (5, 5), padding=(2, 2))
        self.note_hidden = nn.Conv2d(1, 32, (7, 7), stride=(1, 3), padding=(3, 2))
        self.note_out = nn.Conv2d(32, 1, (7, 3), padding=(3, 1))
        self.onset_hidden = nn.Conv2d(n, 32, (5, 5), stride=(1, 3), padding=(2, 1))
        self.onset_out = nn.Conv2d(33, 1, (3, 3), padding=(1, 1))

    def cqt_db(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, 172, 309)`` CQT power in dB, shifted and scaled to 0..1 per window (all 0 for silence)."""
        signal = audio.unsqueeze(1)
        octaves = []
        hop = FRAME_HOP
        for octave in range(CQT_OCTAVES):
            if octave:
                signal = F.conv1d(F.pad(signal, (127, 127)), self.lowpass, stride=2)
                hop //= 2
            padded = F.pad(signal, (128, 128), mode="reflect")
            octaves.append((F.conv1d(padded, self.cqt_real, stride=hop), F.conv1d(padded, self.cqt_imag, stride=hop)))
        # Lowest octave first; the lowest 15 bins are dropped.
        real = torch.cat([r for r, _ in reversed(octaves)], dim=1)[:, -CQT_BINS:] * self.bin_scale[:, None]
        imag = torch.cat([i for _, i in reversed(octaves)], dim=1)[:, -CQT_BINS:] * self.bin_scale[:, None]
        magnitude = torch.sqrt(real * real + imag * imag)
        db = 10.0 * torch.log10(magnitude * magnitude + 1e-10)
        db = db - db.amin(dim=(1, 2), keepdim=True)
        peak = db.amax(dim=(1, 2), keepdim=True)
        db = torch.where(peak == 0, torch.zeros_like(db), db / torch.where(peak == 0, torch.ones_like(peak), peak))
        return db.transpose(1, 2)

    def forward(self, audio: torch.Tensor):
        x = self.stacked_cqt(audio)
        contour, note = self.contour_and_note(x)
        onset = torch.sigmoid(self.onset_out(torch.cat([note, F.relu(self.onset_hidden(x))], dim=1)))
        return contour[:, 0], note[:, 0], onset[:, 0]

    def notes(self, audio: torch.Tensor) -> torch.Tensor:
        """Only the ``(batch, 172, 88)`` note posteriors (the onset branch, a fifth of the cost, is skipped)."""
        return self.contour_and_note(self.stacked_cqt(audio))[1][:, 0]

    def contour_and_note(self, x: torch.Tensor):
        contour = torch.sigmoid(self.contour_out(F.relu(self.contour_hidden(x))))
        return contour, torch.sigmoid(self.note_out(F.relu(self.note_hidden(contour))))

    def stacked_cqt(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, 8, 172, 264)``: the normalised CQT shifted by each harmonic."""
        x = self.cqt_db(audio) * self.input_scale + self.input_shift  # (batch, time, freq)
        stacked = []
        for shift in HARMONIC_SHIFTS:
            if shift >= 0:
                stacked.append(F.pad(x[:, :, shift:], (0, shift)))
            else:
                stacked.append(F.pad(x[:, :, :shift], (-shift, 0)))
        return torch.stack(stacked, dim=1)[:, :, :, :CONTOUR_BINS]


def load_transcriber(path: str | Path | None = None) -> NoteTranscriber:
    """The converted network in eval mode (default: the package's weights)."""
    from safetensors.torch import load_file

    path = Path(path) if path else default_weights()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: basic-pitch NMP weights not found (python -m "
                                "m2e_plugin.backbones.convert_basic_pitch basic_pitch-0.4.0-py2.py3-none-any.whl)")
    model = NoteTranscriber()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def note_posteriors_runner(model: NoteTranscriber | None = None, device: str = "cpu"):
    """A window function for :func:`m2e_plugin.harmony.transcription.note_salience`: ``(windows, 43844)`` float32
    -> ``(windows, 172, 88)`` note posteriors (default: the package's network; run on torch ``device``, no
    gradients; the posteriors come back as a CPU array)."""
    model = (model or load_transcriber()).to(device)

    def run(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(device)
            return model.notes(batch).cpu().numpy()

    return run
