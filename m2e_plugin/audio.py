"""Audio input: decode, mix to mono, resample, validate.

Behaviour every face of m2e relies on (documented in the README, "Audio input"):

* Files are decoded with soundfile (WAV, FLAC, OGG/Vorbis/Opus, MP3 with libsndfile >= 1.1); anything soundfile
  cannot read (M4A/AAC, WMA, ...) goes through ``ffmpeg`` when it is on the PATH.
* Any channel count is mixed to mono by averaging channels; any sample rate is resampled with torchaudio's
  band-limited sinc resampler. Samples are float32 in [-1, 1] (integer PCM is scaled by soundfile).
* Missing file, unreadable or non-audio file, zero-length audio and NaN/inf samples raise :class:`AudioError`
  naming the file and the cause. Digital silence is valid input (models return their "silence" prediction).
* Long files need not be held in memory: :func:`stream_audio` yields fixed-length mono blocks at the target rate.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np

AudioInput = Union[str, os.PathLike, tuple]

# Extensions the batch tools pick up when given a folder.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma")


class AudioError(ValueError):
    """Audio that cannot be used: names the source and the cause."""

    def __init__(self, source, cause: str):
        self.source = str(source)
        self.cause = cause
        super().__init__(f"{self.source}: {cause}")


@dataclass(frozen=True)
class AudioInfo:
    """What is known about a file before decoding it."""

    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels. Accepts (n,), (n, channels) as soundfile returns, or (channels, n) with channels <= 64."""
    x = np.asarray(samples)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {x.shape}")
    if x.size == 0:  # averaging an empty axis would invent NaN samples
        return np.zeros(0, dtype=np.float32)
    # soundfile/sounddevice give (frames, channels); torch-style arrays give (channels, frames).
    channel_axis = 0 if (x.shape[0] <= 64 and x.shape[0] < x.shape[1]) else 1
    return x.mean(axis=channel_axis)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (torchaudio; the one resampler of m2e). Returns float32."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if int(orig_sr) == int(target_sr) or x.size == 0:
        return x
    import torch

    with torch.no_grad():
        return _resampler(int(orig_sr), int(target_sr))(torch.from_numpy(x)).numpy()


@functools.lru_cache(maxsize=8)
def _resampler(orig_sr: int, target_sr: int):
    # The sinc kernel is built once per rate pair: rebuilding it per call cost tens of ms for ratios such as
    # 44100 -> 16000, which the realtime path pays for every window.
    import torchaudio

    import torch

    return torchaudio.transforms.Resample(orig_sr, target_sr, dtype=torch.float32)  # as the functional form


def _pcm_to_float(x: np.ndarray) -> np.ndarray:
    """Integer PCM arrays (int16, int32, uint8, ...) to float in [-1, 1], as soundfile does for files."""
    if np.issubdtype(x.dtype, np.signedinteger):
        return x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    if np.issubdtype(x.dtype, np.unsignedinteger):
        half = float(2 ** (8 * x.dtype.itemsize - 1))
        return (x.astype(np.float32) - half) / half
    return x


def check_samples(samples: np.ndarray, source="<array>") -> np.ndarray:
    """Raise AudioError for empty or non-finite audio; return float32 samples."""
    x = np.asarray(samples)
    if not np.issubdtype(x.dtype, np.number):
        raise AudioError(source, f"samples must be numeric, got dtype {x.dtype}")
    if x.size == 0:
        raise AudioError(source, "audio is empty (zero samples)")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise AudioError(source, f"audio contains {bad} NaN/inf samples")
    return x


def info(path) -> AudioInfo:
    """Header information (sample rate, channels, frames) without decoding; ffprobe for formats soundfile lacks."""
    path = _existing_file(path)
    import soundfile as sf

    try:
        i = sf.info(path)
        return AudioInfo(path, int(i.samplerate), int(i.channels), int(i.frames))
    except Exception as exc:
        sf_error = exc
    probe = _ffprobe(path)
    if probe is None:
        if shutil.which("ffprobe") is None:
            raise AudioError(path, f"not a readable audio file ({_short(sf_error)}; ffmpeg is not installed to try)")
        raise AudioError(path, f"not a readable audio file ({_short(sf_error)})")
    return probe


def load_audio(source: AudioInput, sr: int | None = None, *, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a file or take an array; return (mono float32 samples, sample rate).

    Parameters
    ----------
    source : path or (np.ndarray, sr) tuple or np.ndarray
        A path to an audio file, or samples. Arrays need ``sr`` (given here or inside the tuple).
    sr : int, optional
        Sample rate of an array ``source``.
    target_sr : int, optional
        Resample to this rate. ``None`` keeps the native rate.
    """
    if isinstance(source, tuple):
        if len(source) != 2:
            raise TypeError("audio tuple must be (samples, sample_rate)")
        source, sr = source
    if isinstance(source, np.ndarray) or (hasattr(source, "__array__") and not isinstance(source, (str, os.PathLike))):
        if sr is None:
            raise TypeError("an audio array needs its sample rate: load_audio((samples, sr)) or sr=...")
        if int(sr) <= 0:
            raise AudioError("<array>", f"invalid sample rate {sr}")
        x = check_samples(to_mono(_pcm_to_float(np.asarray(source))), "<array>")
        native = int(sr)
        label = "<array>"
    else:
        path = _existing_file(source)
        x, native = _decode_file(path)
        # Decoders give (frames, channels): average axis 1 (to_mono's shape guess could pick the wrong axis
        # for files with fewer frames than channels).
        x = check_samples(x.mean(axis=1) if x.shape[0] else x[:, 0], path)
        label = path
    if target_sr is not None and int(target_sr) != native:
        x = resample(x, native, int(target_sr))
        native = int(target_sr)
    if x.size == 0:
        raise AudioError(label, "audio is empty after resampling")
    return x, native


def stream_audio(source: AudioInput, target_sr: int, *, block_seconds: float = 30.0, sr: int | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks of ``block_seconds`` at ``target_sr`` (the last one may be shorter).

    Files are decoded block by block (soundfile, or an ``ffmpeg`` pipe for formats soundfile lacks), so memory stays
    at one block whatever the file's length; arrays are cut into blocks (they are in memory already).
    """
    block_out = max(1, int(round(block_seconds * target_sr)))
    if isinstance(source, (str, os.PathLike)):
        path = _existing_file(source)
        import soundfile as sf

        try:
            handle = sf.SoundFile(path)
        except Exception:
            handle = None
        if handle is not None:
            with handle:
                native = int(handle.samplerate)
                block_in = max(1, int(round(block_seconds * native)))
                produced = False
                while True:
                    try:
                        data = handle.read(block_in, dtype="float32", always_2d=True)
                    except Exception as exc:  # truncated/corrupt stream mid-file
                        if produced:
                            raise AudioError(path, f"decoding failed part-way ({_short(exc)})") from exc
                        raise AudioError(path, f"not a readable audio file ({_short(exc)})") from exc
                    if data.shape[0] == 0:
                        break
                    block = check_samples(data.mean(axis=1), path)
                    produced = True
                    yield resample(block, native, target_sr)
                if not produced:
                    raise AudioError(path, "audio is empty (zero samples)")
            return
        # Formats soundfile lacks (M4A/AAC, WMA, ...): stream ffmpeg's PCM output so long files stay bounded too.
        piped = _stream_with_ffmpeg(path, target_sr, block_seconds)
        if piped is not None:
            yield from piped
            return
    samples, _ = load_audio(source, sr=sr, target_sr=target_sr)
    for start in range(0, samples.size, block_out):
        yield samples[start : start + block_out]


def _existing_file(path) -> str:
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise AudioError(p, "file not found")
    if p.is_dir():
        raise AudioError(p, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "file is empty (0 bytes)")
    return str(p)


def _decode_file(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, native = sf.read(path, dtype="float32", always_2d=True)
        return data, int(native)
    except Exception as sf_error:
        decoded = _decode_with_ffmpeg(path)
        if decoded is None:
            raise AudioError(path, f"not a readable audio file ({_short(sf_error)})") from None
        return decoded


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    # libsndfile reports undecodable MP3 data as "File does not exist or is not a regular file"; the file was
    # checked to exist before decoding, so that text would send the user looking in the wrong place.
    if "does not exist or is not a regular file" in line:
        return "unrecognised format or corrupt data"
    # soundfile quotes the path ("Error opening '/x/y.mp3': ..."); the AudioError already names the file.
    return re.sub(r"^Error opening .*?: ", "", line)


def _ffprobe(path: str) -> AudioInfo | None:
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels,duration",
           "-of", "default=noprint_wrappers=1", path]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (subprocess.TimeoutExpired, OSError):
        return None
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    try:
        sr = int(fields["sample_rate"])
        ch = int(fields["channels"])
        dur = float(fields.get("duration", "0") or 0)
    except (KeyError, ValueError):
        return None
    return AudioInfo(path, sr, ch, int(dur * sr))


def _stream_with_ffmpeg(path: str, target_sr: int, block_seconds: float) -> Iterator[np.ndarray] | None:
    """Blocks of ffmpeg-decoded mono audio at ``target_sr``; None when ffmpeg cannot read the file at all."""
    exe = shutil.which("ffmpeg")
    probe = _ffprobe(path)
    if exe is None or probe is None or probe.channels <= 0 or probe.sample_rate <= 0:
        return None
    cmd = [exe, "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "-acodec", "pcm_f32le",
           "-ac", str(probe.channels), "-ar", str(probe.sample_rate), "-"]

    def generate() -> Iterator[np.ndarray]:
        frame_bytes = 4 * probe.channels
        block_bytes = max(1, int(round(block_seconds * probe.sample_rate))) * frame_bytes
        # stderr goes to a file: a pipe nobody drains could fill up on a corrupt stream and stall ffmpeg.
        errfile = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errfile)
        produced = False
        try:
            while True:
                chunk = proc.stdout.read(block_bytes)
                usable = len(chunk) - len(chunk) % frame_bytes
                if usable:
                    data = np.frombuffer(chunk[:usable], dtype=np.float32).reshape(-1, probe.channels)
                    block = check_samples(data.mean(axis=1), path)
                    produced = True
                    yield resample(block, probe.sample_rate, target_sr)
                if len(chunk) < block_bytes:
                    break
            proc.stdout.close()
            code = proc.wait()
            errfile.seek(0)
            err = errfile.read().decode("utf-8", "replace").strip()
        finally:
            if proc.poll() is None:  # consumer stopped early (or an error): do not leave ffmpeg running
                proc.kill()
                proc.wait()
            errfile.close()
        if not produced:
            cause = err.splitlines()[-1] if err else "no audio decoded"
            raise AudioError(path, f"not a readable audio file (ffmpeg: {cause})" if code else "audio is empty (zero samples)")
        if code != 0:
            raise AudioError(path, f"decoding failed part-way (ffmpeg: {err.splitlines()[-1] if err else code})")

    return generate()


def _decode_with_ffmpeg(path: str) -> tuple[np.ndarray, int] | None:
    """Decode with ffmpeg to float32 PCM at the native rate and channel count; None when impossible."""
    exe = shutil.which("ffmpeg")
    probe = _ffprobe(path)
    if exe is None or probe is None:
        return None
    cmd = [exe, "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "-acodec", "pcm_f32le",
           "-ac", str(probe.channels), "-ar", str(probe.sample_rate), "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=3600)
    except (subprocess.TimeoutExpired, OSError):
        return None
    if proc.returncode != 0 or not proc.stdout:
        return None
    data = np.frombuffer(proc.stdout, dtype=np.float32)
    usable = data.size - data.size % probe.channels
    return data[:usable].reshape(-1, probe.channels), probe.sample_rate
