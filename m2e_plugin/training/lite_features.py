"""Training features of the `lite` model (v2): musicnn MSD and MTT embeddings of level-normalised 3 s patches.

The cache entry of a 4Q clip (``m2e features --model lite``) holds:

* ``penultimate`` (P, 200) / ``taggram`` (P, 50): musicnn's penultimate embedding and MSD tag probabilities of every
  non-overlapping 3 s patch of the clip (P = 10 for a 30 s clip), computed exactly as the backend computes them
  (:func:`m2e_plugin.backbones.musicnn.embed_audio`);
* ``mtt_pooled`` (P, 1506): the MTT-trained musicnn's pooled vector (max and mean over time of the 753 channels its
  dense layer reads) of the same patches (:func:`~m2e_plugin.backbones.musicnn.embed_audio` with ``pooled_by``);
* ``codec_penultimate`` (P', 200) / ``codec_mtt_pooled`` (P', 1506): the same for the clip after a lossy round trip
  (AAC 128k, Opus 96k or MP3 128k, chosen by :func:`codec_for`; odd patches only, to halve the cost), a
  training-time augmentation for codec robustness;
* ``level_dbfs`` (): the clip's gated level before normalisation.

Gain needs no augmentation: the input is level-normalised (:mod:`m2e_plugin.backbones.level`), which is exactly
gain-invariant.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import zlib
from typing import Callable

import numpy as np

LITE_FEATURE_VERSION = "lite-features-5-musicnn-msd-mtt-highpass"  # 5: level module removes DC and sub-20 Hz
CODECS = {"aac": ("-c:a", "aac", "-b:a", "128k", ".m4a"), "opus": ("-c:a", "libopus", "-b:a", "96k", ".ogg"),
          "mp3": ("-c:a", "libmp3lame", "-b:a", "128k", ".mp3")}


def codec_for(track_id: str) -> str:
    """Deterministic codec of a clip's augmentation view (stable across runs and machines: CRC-32 of the id)."""
    names = sorted(CODECS)
    return names[zlib.crc32(track_id.encode()) % len(names)]


def codec_round_trip(path: str, codec: str, target_sr: int) -> np.ndarray:
    """Mono audio of ``path`` after encoding with ``codec`` (ffmpeg, at the file's own rate) and decoding again."""
    from m2e_plugin.audio import load_audio

    *args, suffix = CODECS[codec]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "round_trip" + suffix)
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", *args, "-y", out],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{path}: ffmpeg {codec} encoding failed: {proc.stderr.strip()[-300:]}")
        audio, _ = load_audio(out, target_sr=target_sr)
    return audio


def lite_extractor() -> tuple[Callable[[str], dict[str, np.ndarray]], dict]:
    """(path -> arrays, description) for `m2e features --model lite`."""
    import torch

    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, default_weights, embed_audio, load_musicnn

    torch.set_num_threads(1)
    net, mtt = load_musicnn(), load_musicnn(checkpoint="MTT_musicnn")

    def extract(path: str) -> dict[str, np.ndarray]:
        audio, _ = load_audio(path, target_sr=SAMPLE_RATE)
        emb = embed_audio(net, audio, pooled_by=mtt)
        coded = embed_audio(net, codec_round_trip(path, codec_for(os.path.basename(path).rsplit(".", 1)[0]),
                                                       SAMPLE_RATE), first_patch=1, patch_step=2, pooled_by=mtt)
        return {"penultimate": emb.penultimate, "taggram": emb.taggram, "codec_penultimate": coded.penultimate,
                "mtt_pooled": emb.pooled, "codec_mtt_pooled": coded.pooled,
                "level_dbfs": np.asarray(emb.level_dbfs, dtype=np.float64)}

    from m2e_plugin.backbones.convert_musicnn import sha256_of

    return extract, {"version": LITE_FEATURE_VERSION, "sample_rate": SAMPLE_RATE,
                     "musicnn_sha256": sha256_of(default_weights()),
                     "musicnn_mtt_sha256": sha256_of(default_weights("MTT_musicnn")),
                     "codecs": {k: v[:-1] for k, v in CODECS.items()}}
