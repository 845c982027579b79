"""musicnn (Pons & Serra 2019), the MSD-trained network, in PyTorch, with its exact front end.

Architecture as the ``musicnn`` 0.1.0 wheel's ``models.py`` builds it (``build_musicnn`` with 64 mid-end filters and
200 back-end units), weights converted from the wheel's TF1 checkpoint by :mod:`m2e_plugin.backbones.convert_musicnn`:

* front end: input BatchNorm; timbral convs (7 x 38) and (7 x 67), 204 filters each (time padded 3 + 3), temporal
  convs (128/64/32 x 1), 51 filters each (TF 'same': the odd padding frame goes at the end); each is ReLU ->
  BatchNorm -> max over frequency (561 channels);
* mid-end: three 1-D convs (64 filters, kernel 7, ReLU -> BatchNorm), the 2nd and 3rd with residual additions,
  concatenated with the front end (753 channels);
* back-end: max and mean over time, interleaved per channel as TF's flatten leaves them (1506), BatchNorm,
  dense 200 + ReLU + BatchNorm = the **penultimate** embedding, dense 50 = the MSD tag logits (taggram = sigmoid).

TF BatchNorm uses epsilon 1e-3. Front end (``extractor.batch_data``): 16 kHz mono, |STFT|^2 (512-point periodic
Hann, hop 256, centred with reflection as the librosa the network was trained with), 96 Slaney mel bands (0-8 kHz,
Slaney-normalised as librosa's default), ``log10(10000 x + 1)`` in float32 (the original casts to float16 first,
which overflows on loud frames under NumPy 2), patches of 187 frames (3 s).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, hop_length=256) + 1
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP  # audio that yields exactly one patch with a centred STFT
BN_EPS = 1e-3
PENULTIMATE_DIM = 200
POOLED_DIM = 1506  # max and mean over time of the 753 front/mid-end channels: what the dense layer reads
MSD_TAGS = ('rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s',
            'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul',
            'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies',
            'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop',
            '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal',
            'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy')
# (kernel length over time, TF 'same' padding before, after) of the three temporal convs.
_TEMPORAL = ((128, 63, 64), (64, 31, 32), (32, 15, 16))


@lru_cache(maxsize=1)
def _frontend_constants() -> tuple[torch.Tensor, torch.Tensor]:
    import torchaudio.functional as AF

    window = torch.hann_window(N_FFT, periodic=True)
    mel = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney",
                             mel_scale="slaney")
    return window, mel.float()


def log_mel(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(frames, 96) float32 musicnn input of mono 16 kHz audio: log10(10000 * mel power + 1)."""
    window, mel = _frontend_constants()
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if x.numel() < N_FFT // 2 + 1:  # reflection padding needs more samples than half a frame
        x = F.pad(x, (0, N_FFT // 2 + 1 - x.numel()))
    spec = torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    return torch.log10(10000.0 * (power.T @ mel) + 1.0)


def patches(mel: torch.Tensor, hop_frames: int = PATCH_FRAMES) -> torch.Tensor:
    """(P, 187, 96) patches of a (frames, 96) log-mel, as ``batch_data`` cuts them (tail dropped). A log-mel shorter
    than one patch is repeated to fill it (the training's ``repeat-pad`` of short clips)."""
    n = mel.shape[0]
    if n < PATCH_FRAMES:
        mel = mel.repeat(-(-PATCH_FRAMES // max(n, 1)), 1)[:PATCH_FRAMES]
        n = PATCH_FRAMES
    starts = range(0, n - PATCH_FRAMES + 1, hop_frames)
    return torch.stack([mel[s: s + PATCH_FRAMES] for s in starts])


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS)


class MusiCNN(nn.Module):
    """The musicnn network (MSD/MTT variants share it). ``forward`` maps (B, 187, 96) log-mel patches to
    ``(logits (B, 50), penultimate (B, 200))``.

    ``exact=False`` (default) applies each front-end ReLU + BatchNorm after the max over frequency: BN(ReLU(.)) is
    monotone per channel (non-decreasing where the BN scale is >= 0, non-increasing where < 0), so the max over
    frequency of BN(ReLU(h)) is BN(ReLU(max h)) or BN(ReLU(min h)). Same result up to float rounding (parity test),
    without normalising the full (B, T, F, C) feature maps. ``exact=True`` runs the graph literally.
    """

    def __init__(self, n_tags: int = 50, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList([nn.Conv2d(1, 204, (7, int(0.4 * N_MELS))),
                                      nn.Conv2d(1, 204, (7, int(0.7 * N_MELS)))])
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k, _, _ in _TEMPORAL])
        self.front_bn = nn.ModuleList([_bn(c) for c in (204, 204, 51, 51, 51)])
        self.mid_conv = nn.ModuleList([nn.Conv1d(561, 64, 7), nn.Conv1d(64, 64, 7), nn.Conv1d(64, 64, 7)])
        self.mid_bn = nn.ModuleList([_bn(64) for _ in range(3)])
        self.pool_bn = _bn(POOLED_DIM)
        self.dense = nn.Linear(POOLED_DIM, PENULTIMATE_DIM)
        self.dense_bn = _bn(PENULTIMATE_DIM)
        self.out = nn.Linear(PENULTIMATE_DIM, n_tags)

    def _freq_max(self, h: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
        """max over frequency of BN(ReLU(h)) for conv output h (B, C, T, F) -> (B, C, T)."""
        if self.exact:
            b, c, t, f = h.shape
            y = bn(F.relu(h).permute(0, 3, 1, 2).reshape(b * f, c, t)).reshape(b, f, c, t)
            return y.amax(1)
        # min h = -max(-h): one reduction instead of two (negation is exact, so is this)
        sign = torch.where(bn.weight / torch.sqrt(bn.running_var + bn.eps) >= 0, 1.0, -1.0)[None, :, None, None]
        picked = (h * sign).amax(-1) * sign[..., 0]
        return bn(F.relu(picked))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, penultimate = self.pooled_and_penultimate(x)
        return self.out(penultimate), penultimate

    def pooled_and_penultimate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled (B, 1506): max and mean over time of the 753 front/mid-end channels, penultimate (B, 200))."""
        pooled = self.pooled(x)
        return pooled, self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1506): max and mean over time of the 753 front/mid-end channels (what the dense layer reads)."""
        z = self.input_bn(x.unsqueeze(1))  # (B, 1, T, F)
        padded = F.pad(z, (0, 0, 3, 3))
        front = [self._freq_max(conv(padded), bn) for conv, bn in zip(self.timbral, self.front_bn[:2])]
        for (conv, bn), (_, before, after) in zip(zip(self.temporal, self.front_bn[2:]), _TEMPORAL):
            front.append(self._freq_max(conv(F.pad(z, (0, 0, before, after))), bn))
        h0 = torch.cat(front, 1)  # (B, 561, T)
        h1 = self.mid_bn[0](F.relu(self.mid_conv[0](F.pad(h0, (3, 3)))))
        h2 = self.mid_bn[1](F.relu(self.mid_conv[1](F.pad(h1, (3, 3))))) + h1
        h3 = self.mid_bn[2](F.relu(self.mid_conv[2](F.pad(h2, (3, 3))))) + h2
        h = torch.cat([h0, h1, h2, h3], 1)  # (B, 753, T)
        return torch.stack([h.amax(-1), h.mean(-1)], -1).flatten(1)  # TF order: (max, mean) per channel


# checkpoint of the musicnn wheel -> the package's converted weights
WEIGHTS_FILES = {"MSD_musicnn": "musicnn_msd.safetensors", "MTT_musicnn": "musicnn_mtt.safetensors"}


def default_weights(checkpoint: str = "MSD_musicnn") -> Path:
    """The converted weights of ``checkpoint`` (MSD_musicnn or MTT_musicnn) shipped inside the package."""
    if checkpoint not in WEIGHTS_FILES:
        raise ValueError(f"no shipped musicnn weights for {checkpoint!r}; one of {', '.join(WEIGHTS_FILES)}")
    return Path(str(resources.files("m2e_plugin.models").joinpath(f"weights/{WEIGHTS_FILES[checkpoint]}")))


def load_musicnn(path=None, *, exact: bool = False, checkpoint: str = "MSD_musicnn") -> MusiCNN:
    """A :class:`MusiCNN` in eval mode with weights from ``path`` (default: the shipped weights of ``checkpoint``)."""
    from safetensors.torch import load_file

    path = Path(path) if path else default_weights(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: musicnn weights not found (convert them with "
                                f"`python -m m2e_plugin.backbones.convert_musicnn WHEEL --checkpoint {checkpoint}`)")
    state = load_file(str(path))
    model = MusiCNN(n_tags=int(state["out.weight"].shape[0]), exact=exact)
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.inference_mode()
def embed_patches(model: MusiCNN, mel_patches: torch.Tensor, batch: int = 16, *, pooled_by: MusiCNN | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(taggram (P, 50) sigmoid, penultimate (P, 200), pooled (P, 1506) of ``pooled_by`` or None) of (P, 187, 96)
    patches."""
    device = next(model.parameters()).device  # the patches are built on the CPU; the model may sit on a GPU
    tags, pens, pools = [], [], []
    for start in range(0, mel_patches.shape[0], batch):
        chunk = mel_patches[start: start + batch].to(device)
        logits, pen = model(chunk)
        tags.append(torch.sigmoid(logits))
        pens.append(pen)
        if pooled_by is not None:
            pools.append(pooled_by.pooled(chunk))
    return (torch.cat(tags).cpu().numpy(), torch.cat(pens).cpu().numpy(),
            torch.cat(pools).cpu().numpy() if pooled_by is not None else None)


class PatchEmbeddings(NamedTuple):
    penultimate: np.ndarray  # (P, 200)
    taggram: np.ndarray  # (P, 50)
    level_dbfs: float  # gated level of the input before normalisation
    silent: bool  # below the level module's silence floor (then nothing was normalised)
    pooled: np.ndarray | None = None  # (P, 1506) of the second network (``pooled_by``), if one was given


def level_normalised_patches(audio: np.ndarray):
    """``(patches (P, 187, 96), level)``: the non-overlapping 3 s log-mel patches of mono 16 kHz ``audio`` after
    level normalisation (:mod:`m2e_plugin.backbones.level`; short input is repeat-padded to one patch) and the
    input's measured level. The single front end of `lite`, in training and at run time."""
    from m2e_plugin.backbones.level import normalise_level

    norm = normalise_level(np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
    return patches(log_mel(norm.audio)), norm.level


def embed_audio(model: MusiCNN, audio: np.ndarray, *, first_patch: int = 0, patch_step: int = 1,
                pooled_by: MusiCNN | None = None) -> PatchEmbeddings:
    """musicnn embeddings of mono 16 kHz ``audio`` (:func:`level_normalised_patches`), for patches ``first_patch``,
    ``first_patch + patch_step``, ... (at least one patch); with ``pooled_by`` (lite's MTT network) also that
    network's pooled vectors of the same patches."""
    cut, level = level_normalised_patches(audio)
    chosen = cut[first_patch::patch_step] if first_patch < cut.shape[0] else cut[-1:]
    taggram, penultimate, pooled = embed_patches(model, chosen, pooled_by=pooled_by)
    return PatchEmbeddings(penultimate, taggram, float(level.dbfs), bool(level.silent), pooled)
