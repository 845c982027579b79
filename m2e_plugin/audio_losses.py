"""Where decoding lost audio: every damaged region of a file, its start and the seconds it cost.

:mod:`m2e_plugin.audio` knows *that* a decode fell short (soundfile stopped early, ffmpeg skipped data); this module
finds *where*, from ``ffprobe -show_frames``: the decoded frames with their byte position, size, timestamp and
sample count, streamed through a temporary file so a 2-hour MP3 costs ~25 MB of disk and constant memory.

A region is lost between two consecutive decoded frames when

* the bytes do not follow on (formats whose packets lie back to back in the file, such as MP3, ADTS, MP4/M4A,
  FLAC): the missing bytes, at the file's average bytes per decoded second, give the seconds lost. MP3 needs the
  bytes: ffmpeg's MP3 demuxer counts timestamps from the packets it parsed, so garbage costs no time there.
* or, for formats whose packets share a page (Ogg), the timestamps jump: the jump is the seconds lost.

A cut WAV file is found from its RIFF header (:func:`wav_promised_frames`): libsndfile and ffprobe both give the
length of the data that is there, not the length the header declares.

The estimates are then reconciled with the length the header promises: scaled to add up to the shortfall when they
explain it, and what they leave unexplained is lost at the end (``truncated``).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass

# Share of frame-to-frame transitions that must be byte-contiguous for byte gaps to mean lost data.
_CONTIGUOUS_SHARE = 0.9
# Regions closer than this (seconds of decoded audio) are one region: random bytes can hold a frame header that
# decodes, splitting one damaged stretch in two.
_MERGE_WITHIN_S = 1.0


@dataclass
class Region:
    """Audio lost inside a file: ``start`` in the file's time, ``seconds`` lost there."""

    start: float
    seconds: float


class FrameScan:
    """A running ``ffprobe -show_frames`` of a file (started at once, in parallel with the decode it checks)."""

    def __init__(self, path: str, sample_rate: int):
        self._rate = int(sample_rate)  # the decoder's rate: frames' sample counts are at this rate
        self._out = tempfile.TemporaryFile()
        self._proc = None
        exe = shutil.which("ffprobe")
        if exe is None:
            return
        cmd = [exe, "-v", "quiet", "-select_streams", "a:0", "-show_entries",
               "frame=pkt_pos,pkt_size,nb_samples,best_effort_timestamp_time", "-of", "compact=p=0",
               path]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                          stderr=subprocess.DEVNULL)
        except OSError:
            self._proc = None

    def close(self) -> None:
        """Stop the scan if it still runs (the decode was abandoned) and drop its output."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()

    def regions(self, promised_seconds: float | None, tolerance: float,
                decoded_seconds: float | None = None) -> tuple[list[Region], float] | None:
        """``(damaged regions, seconds missing at the end)``; None when the scan could not run.

        ``promised_seconds`` is the header's length (None when unknown: then nothing is scaled and no loss at the
        end can be known); ``tolerance`` is the shortfall that still counts as complete; ``decoded_seconds`` is
        what the decode being checked delivered, when it may hold less than the scan's frames.
        """
        if self._proc is None:
            self.close()
            return None
        try:
            if self._proc.wait() != 0:
                return None
            self._out.seek(0)
            return _regions(_frames(self._out, self._rate), promised_seconds, tolerance, decoded_seconds)
        finally:
            self.close()


def _frames(lines, rate: int):
    """``(pos, size, seconds, time)`` per decoded frame; pos/time None where ffprobe has none."""
    for raw in lines:
        fields = dict(item.split("=", 1) for item in raw.decode("ascii", "replace").strip().split("|") if "=" in item)
        samples = _number(fields.get("nb_samples"), int)
        if samples is None:
            continue
        yield (_number(fields.get("pkt_pos"), int), _number(fields.get("pkt_size"), int) or 0, samples / rate,
               _number(fields.get("best_effort_timestamp_time"), float))


def _number(text, kind):
    try:
        return kind(text)
    except (TypeError, ValueError):
        return None


def _regions(frames, promised: float | None, tolerance: float,
             delivered: float | None = None) -> tuple[list[Region], float]:
    # One pass, constant memory except the gaps themselves: (decoded seconds before the gap, bytes, seconds jumped).
    gaps: list[tuple[float, int, float]] = []
    decoded = 0.0
    total_bytes = transitions = contiguous = 0
    longest = 0.0
    end_pos = baseline = None
    for pos, size, duration, time in frames:
        byte_gap = 0
        if end_pos is not None and pos is not None:
            transitions += 1
            byte_gap = pos - end_pos
            contiguous += byte_gap == 0
        # Timestamps minus the audio decoded so far only grow where audio went missing. They also wobble by a
        # fraction of a frame (Vorbis' overlapping blocks: +10 ms, then -10 ms), so a jump counts only above the
        # highest drift seen before.
        time_gap = 0.0
        if time is not None:
            drift = time - decoded
            if baseline is None or drift > baseline:
                time_gap = drift - baseline if baseline is not None else 0.0
                baseline = drift
        if byte_gap > 0 or time_gap > 0:
            gaps.append((decoded, max(0, byte_gap), time_gap))
        decoded += duration
        total_bytes += size
        longest = max(longest, duration)
        end_pos = pos + size if pos is not None else None
    if not decoded:
        return [], 0.0
    by_bytes = transitions > 0 and contiguous >= _CONTIGUOUS_SHARE * transitions
    bytes_per_second = total_bytes / decoded
    # Less than half a frame is timestamp rounding (or the wobble's first appearance), not lost audio.
    noise = 0.5 * longest
    estimates: list[tuple[float, float]] = []  # (decoded seconds before, seconds lost)
    for at, byte_gap, time_gap in gaps:
        lost = max(byte_gap / bytes_per_second if by_bytes else 0.0, time_gap)
        if lost <= noise:
            continue
        if estimates and at - estimates[-1][0] < _MERGE_WITHIN_S:
            estimates[-1] = (estimates[-1][0], estimates[-1][1] + lost)
        else:
            estimates.append((at, lost))
    explained = sum(lost for _, lost in estimates)
    at_end = 0.0
    if promised is not None:
        shortfall = max(0.0, promised - decoded)
        if explained and explained >= shortfall - tolerance:
            scale = shortfall / explained if shortfall > tolerance else 1.0
            estimates = [(at, lost * scale) for at, lost in estimates]
        elif shortfall - explained > tolerance:
            at_end = shortfall - explained
    # ffmpeg's command line drops decoded frames whose timestamps go backwards, which happens right at damage
    # (FLAC: a frame or two per region): the audio delivered lacks them too, so they count in the regions.
    dropped = max(0.0, decoded - delivered) if delivered is not None else 0.0
    explained = sum(lost for _, lost in estimates)
    if dropped and explained:
        estimates = [(at, lost * (1 + dropped / explained)) for at, lost in estimates]
    regions, earlier = [], 0.0
    for at, lost in estimates:
        regions.append(Region(at + earlier, lost))
        earlier += lost
    return regions, at_end


def wav_promised_frames(path: str) -> int | None:
    """Frames a RIFF/WAVE file's ``data`` chunk declares (None: not such a file, or a size left open by a
    streaming writer: 0 or 0xFFFFFFFF)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(12)[:4] != b"RIFF":
                return None
            block_align = None
            while True:
                header = fh.read(8)
                if len(header) < 8:
                    return None
                kind, size = header[:4], struct.unpack("<I", header[4:])[0]
                if kind == b"fmt ":
                    fmt = fh.read(size + size % 2)
                    if len(fmt) >= 14:
                        block_align = struct.unpack("<H", fmt[12:14])[0]
                elif kind == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    fh.seek(size + size % 2, 1)  # chunks are padded to an even size
    except (OSError, struct.error):
        return None
