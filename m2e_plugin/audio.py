"""Audio input: decode, mix to mono, resample, validate; report what decoding lost.

Behaviour every face of m2e relies on (documented in the README, "Audio input"):

* Sources: a path, ``"-"`` (standard input), bytes, a binary file object, or ``(samples, sr)``. Standard input,
  bytes, file objects and pipes (FIFOs, ``<(...)`` process substitution) are copied once to a temporary file
  (:func:`audio_source`), so any format ffmpeg reads works and long inputs never sit in memory.
* Files are decoded with soundfile (WAV, FLAC, OGG/Vorbis/Opus, MP3 with libsndfile >= 1.1); anything soundfile
  cannot read (M4A/AAC, WMA, ...) goes through ``ffmpeg`` when it is on the PATH.
* Decoding degrades, never drops: when soundfile stops before the length the header promises (damaged data, a
  cut file), ffmpeg decodes the rest, resynchronising past damage; every decodable second is kept and what was
  lost is reported, one warning per damaged region (``{"code", "start", "seconds_lost", "message"}``, see
  :func:`stream_audio`; :mod:`m2e_plugin.audio_losses` finds the regions).
* Any channel count is mixed to mono by averaging channels; any sample rate is resampled with torchaudio's
  band-limited sinc resampler. Samples are float32 in [-1, 1] (integer PCM is scaled by soundfile).
* Missing file, directory, device or other special file, unreadable (permission) or non-audio file, zero-length
  audio and NaN/inf samples raise :class:`AudioError` naming the source and the cause. Digital silence is valid.
* :func:`check_audio` decides what "usable" means for every face (predict, extract, stream, loaders, validate):
  at least one decodable, finite sample.
* Long files need not be held in memory: :func:`stream_audio` yields fixed-length mono blocks at the target rate.

This module is over 400 lines because decoding, its recovery and the input kinds belong together: one place
decides what a source yields and what counts as lost.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Union

import numpy as np

from m2e_plugin.audio_losses import FrameScan, wav_promised_frames

AudioInput = Union[str, os.PathLike, tuple, bytes, bytearray, memoryview, IO[bytes]]

# Extensions the batch tools pick up when given a folder.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma")

# The path that means standard input on the command line and in the API.
STDIN = "-"

# A decode this much shorter than the header's length still counts as complete: codec delay and padding, and MP3
# headers without a Xing/LAME frame count, whose length libsndfile estimates (real 30 s clips decode 0.14 s short).
# 1 % of the promised length, at least 0.05 s and at most 1 s.
COMPLETE_TOLERANCE_S = 0.05
COMPLETE_TOLERANCE_SHARE = 0.01
COMPLETE_TOLERANCE_MAX_S = 1.0


def complete_tolerance(promised_seconds: float) -> float:
    """Seconds a decode may fall short of the header's length and still count as complete."""
    return min(COMPLETE_TOLERANCE_MAX_S, max(COMPLETE_TOLERANCE_S, COMPLETE_TOLERANCE_SHARE * promised_seconds))

# Frames per soundfile read.
_SOUNDFILE_CHUNK = 8192
# A 16-24 kHz MP3 up to this many samples (64 MB as float32: 5.8 min of 24 kHz stereo) is read whole; longer ones
# are streamed by ffmpeg (see _decode).
_WHOLE_READ_MAX_SAMPLES = 1 << 24

log = logging.getLogger(__name__)


class AudioError(ValueError):
    """Audio that cannot be used: names the source and the cause."""

    def __init__(self, source, cause: str):
        self.source = str(source)
        self.cause = cause
        super().__init__(f"{self.source}: {cause}")


@dataclass(frozen=True)
class AudioInfo:
    """What is known about a file before decoding it (or, from :func:`check_audio` with ``decode=True``, after)."""

    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


class SpooledAudio(os.PathLike):
    """A temporary copy of a one-shot source (stdin, pipe, bytes, file object); ``label`` names the original."""

    def __init__(self, path: str, label: str):
        self.path = path
        self.label = label

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"SpooledAudio({self.label!r})"


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


def check_samples(samples: np.ndarray, source="<array>", *, at: tuple[int, int] | None = None) -> np.ndarray:
    """Raise AudioError for empty or non-finite audio; return float32 samples. ``at``: ``(first frame, rate)`` of
    a block of a longer stream, so the error says where the bad samples start (a count would be the block's)."""
    x = np.asarray(samples)
    if not np.issubdtype(x.dtype, np.number):
        raise AudioError(source, f"samples must be numeric, got dtype {x.dtype}")
    if x.size == 0:
        raise AudioError(source, "audio is empty (zero samples)")
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        if at is not None:
            first = (at[0] + int(np.argmin(finite))) / at[1]
            raise AudioError(source, f"audio contains NaN/inf samples, the first at {first:.2f} s")
        raise AudioError(source, f"audio contains {int((~finite).sum())} NaN/inf samples")
    return x


# ---------------------------------------------------------------------------------------------------- sources

def _is_array(source) -> bool:
    return isinstance(source, (tuple, np.ndarray)) or (
        hasattr(source, "__array__") and not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)))


def _label(source) -> str:
    return source.label if isinstance(source, SpooledAudio) else str(Path(os.fspath(source)).expanduser())


def _checked_path(source) -> tuple[str, bool]:
    """``(path, is_pipe)`` of a path source; AudioError for anything that is not a readable file or pipe."""
    text = os.fsdecode(os.fspath(source))
    if not text:  # Path("") is ".", which would be called a directory
        raise AudioError("''", "an empty path")
    if "://" in text and not Path(text).exists():  # Path() would fold the "//" and call it a missing file
        raise AudioError(text, "a URL: m2e reads local files, standard input (-) and bytes; download it first")
    p = Path(text).expanduser()
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise AudioError(p, "file not found") from None
    except PermissionError:
        raise AudioError(p, "permission denied (cannot reach the file)") from None
    except OSError as exc:
        raise AudioError(p, f"cannot access the file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(p, "is a directory, not an audio file")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise AudioError(p, "is a device (special file), not an audio file")
    if stat.S_ISSOCK(mode):
        raise AudioError(p, "is a socket, not an audio file")
    pipe = stat.S_ISFIFO(mode)
    if not pipe:
        try:
            with open(p, "rb"):
                pass
        except PermissionError:
            raise AudioError(p, "permission denied (no read permission)") from None
        except OSError as exc:
            raise AudioError(p, f"cannot open the file ({exc.strerror or exc})") from None
        if p.stat().st_size == 0:
            raise AudioError(p, "file is empty (0 bytes)")
    return str(p), pipe


@contextlib.contextmanager
def audio_source(source: AudioInput) -> Iterator:
    """A form of ``source`` that can be read more than once, for the duration of the ``with`` block.

    Paths to regular files and arrays pass through (paths checked: AudioError names a missing file, a directory,
    a device, a permission problem, an empty file). Standard input (``"-"``), pipes (FIFO, ``/dev/fd/N``), bytes
    and binary file objects are copied in 1 MiB chunks to a temporary file, removed on exit, and given as a
    :class:`SpooledAudio` whose ``label`` names the original in messages.
    """
    if _is_array(source) or isinstance(source, SpooledAudio):
        yield source
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        reader, label, close = None, "<bytes>", False
    elif hasattr(source, "read"):
        name = getattr(source, "name", None)
        reader, label, close = source, name if isinstance(name, str) else "<file object>", False
    elif isinstance(source, (str, os.PathLike)):
        if os.fspath(source) == STDIN:
            if sys.stdin is None or sys.stdin.isatty():  # reading a terminal would wait for ever
                raise AudioError("<stdin>", "standard input is a terminal, not audio: pipe a file into it "
                                 "(cat song.mp3 | m2e predict -)")
            reader, label, close = sys.stdin.buffer, "<stdin>", False
        else:
            path, pipe = _checked_path(source)
            if not pipe:
                yield source
                return
            reader, label, close = open(path, "rb"), path, True
    else:
        raise TypeError(f"audio must be a path, '-' (stdin), bytes, a binary file object or (samples, sr); "
                        f"got {type(source).__name__}")
    fd, tmp = tempfile.mkstemp(prefix="m2e-input-", suffix=Path(label).suffix if label[:1] != "<" else "")
    try:
        with os.fdopen(fd, "wb") as out:
            if reader is None:
                out.write(source)
            else:
                try:
                    first = reader.read(0)
                except OSError as exc:
                    raise AudioError(label, f"cannot read ({exc.strerror or exc})") from None
                if isinstance(first, str):
                    raise TypeError(f"{label}: file object is in text mode; open it in binary mode ('rb')")
                shutil.copyfileobj(reader, out, 1 << 20)
        if close:
            reader.close()
        if os.path.getsize(tmp) == 0:
            raise AudioError(label, "input is empty (0 bytes)")
        yield SpooledAudio(tmp, label)
    finally:
        if close and not reader.closed:
            reader.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------------------- public API

def info(path) -> AudioInfo:
    """Header information (sample rate, channels, frames) without decoding; ffprobe for formats soundfile lacks."""
    if isinstance(path, SpooledAudio):
        fs_path, label = os.fspath(path), path.label
    else:
        fs_path, pipe = _checked_path(path)
        label = fs_path
        if pipe:
            raise AudioError(label, "is a pipe: it can be read once, as a stream (its header cannot be probed first)")
    import soundfile as sf

    try:
        i = sf.info(fs_path)
        return AudioInfo(label, int(i.samplerate), int(i.channels), int(i.frames))
    except Exception as exc:
        sf_error = exc
    probe = _ffprobe(fs_path)
    if probe is None:
        if shutil.which("ffprobe") is None:
            raise AudioError(label, f"not a readable audio file ({_short(sf_error)}; ffmpeg is not installed to try)")
        raise AudioError(label, f"not a readable audio file ({_short(sf_error)})")
    return AudioInfo(label, probe.sample_rate, probe.channels, probe.frames)


def check_audio(source: AudioInput, *, decode: bool = False, warnings: list | None = None) -> AudioInfo:
    """Decide whether ``source`` is usable audio (the one test every face applies); raise AudioError if not.

    ``decode=False`` reads only the header; ``decode=True`` decodes everything as prediction would, so damage
    and truncation are found: the file stays usable when any audio decodes, and what was lost goes to
    ``warnings`` (logged when ``warnings`` is None). Returns header information, or with ``decode=True`` the
    decoded length.
    """
    with audio_source(source) as src:
        if _is_array(src):
            x, sr = load_audio(src)
            return AudioInfo("<array>", sr, 1, x.size)
        if not decode:
            meta = info(src)
            if meta.frames <= 0:
                raise AudioError(meta.path, "audio has zero frames")
            return meta
        native, channels, blocks = _decode(os.fspath(src), _label(src), 30.0, warnings)
        frames = sum(block.size for block in blocks)
        return AudioInfo(_label(src), native, channels, frames)


def load_audio(source: AudioInput, sr: int | None = None, *, target_sr: int | None = None,
               warnings: list | None = None) -> tuple[np.ndarray, int]:
    """Decode a source or take an array; return (mono float32 samples, sample rate).

    Parameters
    ----------
    source : path, "-", bytes, binary file object, or (np.ndarray, sr) tuple or np.ndarray
        Audio to decode (see :func:`audio_source`), or samples. Arrays need ``sr`` (given here or in the tuple).
    sr : int, optional
        Sample rate of an array ``source``.
    target_sr : int, optional
        Resample to this rate. ``None`` keeps the native rate.
    warnings : list, optional
        Receives what decoding lost (see :func:`stream_audio`); ``None`` logs it instead.
    """
    if isinstance(source, tuple):
        if len(source) != 2 or not (_is_array(source[0]) or isinstance(source[0], list)):
            raise TypeError("audio tuple must be (samples, sample_rate)")
        if sr is not None and sr != source[1]:  # two rates for one array: neither may win silently
            raise ValueError(f"two sample rates for one array: {source[1]!r} in the tuple and sr={sr!r}")
        source, sr = source
    if _is_array(source):
        if sr is None:
            raise TypeError("an audio array needs its sample rate: load_audio((samples, sr)) or sr=...")
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) and not (
                isinstance(sr, (float, np.floating)) and float(sr).is_integer()):
            raise TypeError(f"the sample rate must be a whole number of Hz, got {sr!r}")  # 22050.5, "22050"
        if int(sr) <= 0:
            raise AudioError("<array>", f"invalid sample rate {sr}")
        x = check_samples(to_mono(_pcm_to_float(np.asarray(source))), "<array>")
        native = int(sr)
        label = "<array>"
    else:
        with audio_source(source) as src:
            label = _label(src)
            native, _, blocks = _decode(os.fspath(src), label, 30.0, warnings)
            x = np.concatenate(list(blocks))
    if target_sr is not None and int(target_sr) != native:
        x = resample(x, native, int(target_sr))
        native = int(target_sr)
    if x.size == 0:
        raise AudioError(label, "audio is empty after resampling")
    return x, native


def stream_audio(source: AudioInput, target_sr: int, *, block_seconds: float = 30.0, sr: int | None = None,
                 warnings: list | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks of ``block_seconds`` at ``target_sr`` (the last one may be shorter).

    Files are decoded block by block (soundfile, then ``ffmpeg`` for what soundfile cannot read), so memory stays
    at one block whatever the file's length; arrays are cut into blocks (they are in memory already).

    What decoding lost is appended to ``warnings`` (logged when ``warnings`` is None) once the stream ends, as
    ``{"code": "damaged" | "truncated", "start": seconds into the file or None when unknown, "seconds_lost":
    float, "message": str}``, one per damaged region, then one ``truncated`` for audio missing at the end. Audio
    after a damaged region follows on directly (no silence is inserted), so times after ``start`` are earlier than
    in the file by the seconds lost up to there.
    """
    block_out = max(1, int(round(block_seconds * target_sr)))
    if _is_array(source):
        samples, _ = load_audio(source, sr=sr, target_sr=target_sr)
        for start in range(0, samples.size, block_out):
            yield samples[start : start + block_out]
        return
    with audio_source(source) as src:
        native, _, blocks = _decode(os.fspath(src), _label(src), block_seconds, warnings)
        for block in blocks:
            yield resample(block, native, target_sr)


# ---------------------------------------------------------------------------------------------------- decoding

def _decode(path: str, label: str, block_seconds: float, warnings: list | None) -> tuple[int, int, Iterator[np.ndarray]]:
    """``(native rate, channels, mono blocks of block_seconds)``; raises AudioError when nothing can be decoded."""
    import soundfile as sf

    def block(rate: int) -> int:
        return max(1, int(round(block_seconds * rate)))

    try:
        handle = sf.SoundFile(path)
    except Exception as sf_error:
        probe = _ffprobe(path)
        if probe is None or probe.channels <= 0 or probe.sample_rate <= 0 or shutil.which("ffmpeg") is None:
            missing = "; ffmpeg is not installed to try" if shutil.which("ffmpeg") is None else ""
            streams = _stream_types(path)
            if streams and "audio" not in streams:
                raise AudioError(label, f"no audio stream (the file holds {', '.join(sorted(set(streams)))} only)")
            raise AudioError(label, f"not a readable audio file ({_short(sf_error)}{missing})") from None
        return probe.sample_rate, probe.channels, _reblock(_ffmpeg_only(path, label, probe, warnings),
                                                           block(probe.sample_rate))
    native, channels = int(handle.samplerate), int(handle.channels)
    chunk = _SOUNDFILE_CHUNK
    if handle.format == "MP3" and native < 32000:  # soundfile names libsndfile's MPEG major format "MP3"
        # MPEG-2/2.5 layer III (16-24 kHz MP3): libsndfile 1.2's decode depends on the read size. Read in chunks,
        # a valid file could come out with garbled frames (a 32 kb/s tone: samples off by 0.09; 2 of the 600 4Q
        # clips: by up to 0.26) and libmpg123's "part2_3_length too large" lines, reported as damage. One
        # whole-file read decodes exactly (it equals ffmpeg's decode on those files); a file too long to hold
        # whole is streamed by ffmpeg.
        if handle.frames * channels <= _WHOLE_READ_MAX_SAMPLES:
            chunk = max(1, int(handle.frames))
        elif shutil.which("ffmpeg") is not None:
            probe = AudioInfo(path, native, channels, int(handle.frames))
            handle.close()
            return native, channels, _reblock(_ffmpeg_only(path, label, probe, warnings), block(native))
        else:
            _warn(warnings, label, "unreliable_decoder", None, 0.0,
                  "a long 16-24 kHz MP3 decoded in chunks by libsndfile, which can garble some of its frames; "
                  "install ffmpeg for an exact decode")
    return native, channels, _reblock(_soundfile_then_ffmpeg(handle, path, label, warnings, chunk), block(native))


def _soundfile_then_ffmpeg(handle, path, label, warnings, chunk: int = _SOUNDFILE_CHUNK) -> Iterator[np.ndarray]:
    """soundfile's blocks; if it stops short of the header's length, ffmpeg's decode of the rest."""
    native, channels, expected = int(handle.samplerate), int(handle.channels), int(handle.frames)
    if handle.format in ("WAV", "WAVEX"):  # libsndfile gives a cut WAV the length of what is there
        expected = max(expected, wav_promised_frames(path) or 0)
    read, failure = 0, None
    with handle:
        while True:
            try:
                # Small reads: a read that fails returns nothing, so this bounds what a failure hides (and
                # locates damage to within 0.2 s at 44.1 kHz); _reblock makes the blocks.
                data = handle.read(chunk, dtype="float32", always_2d=True)
            except Exception as exc:  # damaged or cut data part-way
                failure = exc
                break
            if data.shape[0] == 0:
                break
            yield check_samples(data.mean(axis=1), label, at=(read, native))
            read += data.shape[0]
    tolerance = complete_tolerance(expected / native) * native
    if failure is None and expected - read <= tolerance:
        if read == 0:
            raise AudioError(label, "audio is empty (zero samples)")
        return
    cause = f" ({_short(failure)})" if failure is not None else ""
    more, errors, losses = 0, [], None
    if shutil.which("ffmpeg") is not None:
        # ffmpeg resynchronises past damaged data; its output up to `read` repeats what soundfile gave. The frame
        # scan that locates every lost region runs alongside it.
        scan = FrameScan(path, native)
        try:
            more, errors = yield from _ffmpeg_pcm(path, label, channels, native, skip_frames=read)
            losses = scan.regions(expected / native, tolerance / native, (read + more) / native)
        finally:
            scan.close()
    elif read == 0:
        raise AudioError(label, f"not a readable audio file{cause or ' (no audio decoded)'}; ffmpeg is not "
                                "installed to try")
    if read == 0 and more == 0:
        raise AudioError(label, f"not a readable audio file{cause}{' (ffmpeg: ' + errors[-1] + ')' if errors else ''}")
    at, promised = read / native, expected / native
    lost = max(0.0, (expected - read - more) / native)
    if failure is not None and not errors and expected - read - more <= tolerance and not (losses and any(losses)):
        return  # libsndfile's own limit (it stops on some valid Opus streams); ffmpeg decoded the rest cleanly
    if losses is not None and (losses[0] or losses[1]):
        _report_losses(warnings, label, losses, promised, (read + more) / native)
    elif more <= tolerance:
        _warn(warnings, label, "truncated", at, lost,
              f"audio ends at {at:.2f} s but the header promises {promised:.2f} s ({lost:.2f} s missing: the file "
              f"is cut short or damaged at the end{'' if shutil.which('ffmpeg') else '; ffmpeg is not installed to try'})")
    else:
        _warn(warnings, label, "damaged", at, lost,
              f"undecodable data at {at:.2f} s{cause}; ffmpeg resumed decoding past it, {lost:.2f} s of the "
              f"{promised:.2f} s lost")


def _report_losses(warnings, label, losses, promised: float | None, decoded: float) -> None:
    """One warning per damaged region, and one for audio missing at the end, from a :class:`FrameScan`."""
    regions, at_end = losses
    of = f" of the {promised:.2f} s" if promised else ""
    for number, region in enumerate(regions, 1):
        where = f" (damaged region {number} of {len(regions)})" if len(regions) > 1 else ""
        _warn(warnings, label, "damaged", region.start, region.seconds,
              f"undecodable data at {region.start:.2f} s{where}: {region.seconds:.2f} s{of} lost, decoding "
              f"resumed after it")
    if at_end:
        end = decoded + sum(region.seconds for region in regions)
        _warn(warnings, label, "truncated", end, at_end,
              f"audio ends at {end:.2f} s but the header promises {promised:.2f} s ({at_end:.2f} s missing: the "
              f"file is cut short or damaged at the end)")


def _ffmpeg_only(path, label, probe: AudioInfo, warnings) -> Iterator[np.ndarray]:
    """Formats soundfile cannot open: ffmpeg's decode, checked against ffprobe's duration."""
    got, errors = yield from _ffmpeg_pcm(path, label, probe.channels, probe.sample_rate, skip_frames=0)
    if got == 0:
        if errors:
            raise AudioError(label, f"not a readable audio file (ffmpeg: {errors[-1]})")
        raise AudioError(label, "audio is empty (zero samples)")
    sr = probe.sample_rate
    lost = max(0.0, (probe.frames - got) / sr)
    promised = probe.duration or None  # streams without a known length promise nothing
    if not errors and (promised is None or lost <= complete_tolerance(probe.duration)):
        return
    # Something was lost: a second pass (only now, so intact files pay nothing) says where.
    losses = FrameScan(path, sr).regions(promised, complete_tolerance(probe.duration), got / sr)
    if losses is not None and (losses[0] or losses[1]):
        _report_losses(warnings, label, losses, promised, got / sr)
    elif errors:
        _warn(warnings, label, "damaged", None, lost,
              f"ffmpeg skipped undecodable data ({len(errors)} decoder errors, e.g. {errors[-1]!r}); "
              f"{lost:.2f} s of the {probe.duration:.2f} s the header gives lost (position unknown)")
    else:
        _warn(warnings, label, "truncated", got / sr, lost,
              f"audio ends at {got / sr:.2f} s but the header promises {probe.duration:.2f} s ({lost:.2f} s missing)")


def _ffmpeg_pcm(path, label, channels: int, sr: int, *, skip_frames: int):
    """Generator of mono chunks decoded by ffmpeg (after ``skip_frames``); returns ``(frames yielded, errors)``."""
    cmd = [shutil.which("ffmpeg"), "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "-acodec", "pcm_f32le",
           "-ac", str(channels), "-ar", str(sr), "-"]
    frame_bytes = 4 * channels
    chunk_bytes = (1 << 20) // frame_bytes * frame_bytes
    # stderr goes to a file: a pipe nobody drains could fill up on a corrupt stream and stall ffmpeg.
    errfile = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errfile)
    produced, to_skip, tail = 0, int(skip_frames), b""
    try:
        while True:
            chunk = proc.stdout.read(chunk_bytes)
            if not chunk:
                break
            chunk = tail + chunk
            usable = len(chunk) - len(chunk) % frame_bytes
            tail = chunk[usable:]
            data = np.frombuffer(chunk[:usable], dtype=np.float32).reshape(-1, channels)
            if to_skip:
                skipped = min(to_skip, data.shape[0])
                data, to_skip = data[skipped:], to_skip - skipped
            if data.shape[0]:
                yield check_samples(data.mean(axis=1), label, at=(skip_frames + produced, sr))
                produced += data.shape[0]
        proc.stdout.close()
        proc.wait()
        errfile.seek(0)
        errors = [line for line in errfile.read().decode("utf-8", "replace").splitlines() if line.strip()]
    finally:
        if proc.poll() is None:  # consumer stopped early (or an error): do not leave ffmpeg running
            proc.kill()
            proc.wait()
        errfile.close()
    return produced, errors


def _reblock(chunks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Exactly ``size``-sample blocks (the last may be shorter) from chunks of any length."""
    pending: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        while chunk.size:
            take = min(size - have, chunk.size)
            pending.append(chunk[:take])
            have += take
            chunk = chunk[take:]
            if have == size:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, have = [], 0
    if have:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def _warn(warnings: list | None, label: str, code: str, start: float | None, lost: float, message: str) -> None:
    entry = {"code": code, "start": None if start is None else round(float(start), 3),
             "seconds_lost": round(float(lost), 3), "message": message}
    if warnings is None:
        log.warning("%s: %s", label, message)
    else:
        warnings.append(entry)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    # libsndfile reports undecodable MP3 data as "File does not exist or is not a regular file"; the file was
    # checked to exist before decoding, so that text would send the user looking in the wrong place.
    if "does not exist or is not a regular file" in line:
        return "unrecognised format or corrupt data"
    # soundfile quotes the path ("Error opening '/x/y.mp3': ..."); the AudioError already names the file.
    return re.sub(r"^Error opening .*?: ", "", line)


def _stream_types(path: str) -> list[str]:
    """The codec types of a media file's streams as ffprobe lists them (``video``, ``audio``...); [] when ffprobe is
    absent or cannot read the file."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", path],
                             capture_output=True, text=True, timeout=60)
    except (subprocess.TimeoutExpired, OSError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


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
        raw = fields.get("duration", "")
        dur = float(raw) if raw not in ("", "N/A") else 0.0  # streams without a known length
    except (KeyError, ValueError):
        return None
    return AudioInfo(path, sr, ch, int(dur * sr))
