"""A single-producer ring buffer for live audio, in process memory or in shared memory.

The producer is the audio callback (in the capture process) or the file reader (a thread); it only copies samples
in and bumps a counter, never takes a lock, so it cannot be blocked by the inference side. Readers copy a span out
by absolute frame index and then check that the producer did not lap them while they copied (a torn read is
reported, never returned).

Shared layout (one block; see :class:`RingBuffer`): a header of int64 counters, a table of write stamps
``(frames written, monotonic time)`` and the float32 samples. ``time.monotonic`` is the system-wide
CLOCK_MONOTONIC on Linux and macOS, so stamps written by the capture process are comparable with the reader's.
"""

from __future__ import annotations

import time

import numpy as np

# Header slots (int64).
WRITTEN, STAMPS, OVERFLOWS, XRUNS, CALLBACKS = range(5)
HEADER_SLOTS = 8
STAMP_SLOTS = 512


def shared_size(capacity: int) -> int:
    """Bytes a shared ring of ``capacity`` frames needs."""
    return 8 * HEADER_SLOTS + 16 * STAMP_SLOTS + 4 * int(capacity)


class RingBuffer:
    """Fixed-size float32 mono ring indexed by absolute frame numbers.

    Parameters
    ----------
    capacity : int
        Frames kept. Spans older than ``written - capacity`` are gone.
    buffer : writable buffer, optional
        Memory to live in (a ``multiprocessing.shared_memory.SharedMemory.buf`` of :func:`shared_size` bytes) so
        that another process can write while this one reads. Private memory when omitted.

    Notes
    -----
    Exactly one writer, any number of readers. ``written`` is an aligned int64 stored after the samples are in
    place, so a reader that sees ``written >= end`` sees the samples. Memory is allocated once; nothing grows.
    The counters in the header (overflows, xruns, callbacks) are written by the capture callback only.
    """

    def __init__(self, capacity: int, buffer=None):
        if int(capacity) <= 0:
            raise ValueError(f"ring buffer capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        if buffer is None:
            buffer = bytearray(shared_size(self.capacity))
        elif len(buffer) < shared_size(self.capacity):
            raise ValueError(f"shared ring buffer too small: {len(buffer)} bytes for {self.capacity} frames")
        self._header = np.frombuffer(buffer, dtype=np.int64, count=HEADER_SLOTS)
        self._stamps = np.frombuffer(buffer, dtype=np.float64, count=2 * STAMP_SLOTS,
                                     offset=8 * HEADER_SLOTS).reshape(STAMP_SLOTS, 2)
        self._buf = np.frombuffer(buffer, dtype=np.float32, count=self.capacity,
                                  offset=8 * HEADER_SLOTS + 16 * STAMP_SLOTS)
        # Lowest frame a back-pressured writer must not overwrite yet (set by the consumer of a file source in the
        # same process); None = never wait.
        self.reader_floor: int | None = None

    def release(self) -> None:
        """Drop the views on the buffer (a SharedMemory block cannot be closed while views exist); the counters
        and stamps stay readable (copied), the samples are gone."""
        self._header = self._header.copy()
        self._stamps = self._stamps.copy()
        self._buf = np.zeros(0, dtype=np.float32)
        self.capacity = 0

    @property
    def written(self) -> int:
        """Total frames written since creation."""
        return int(self._header[WRITTEN])

    def counter(self, slot: int) -> int:
        return int(self._header[slot])

    def count(self, slot: int, n: int = 1) -> None:
        """Add to a header counter (writer side only)."""
        self._header[slot] += n

    def write(self, frames: np.ndarray) -> None:
        """Append mono frames (producer only). Frames beyond ``capacity`` in one call keep only the tail."""
        x = np.asarray(frames, dtype=np.float32).reshape(-1)
        n = x.shape[0]
        if n == 0:
            return
        cap = self.capacity
        written = int(self._header[WRITTEN])
        tail = x[-cap:] if n > cap else x
        m = tail.shape[0]
        start = (written + n - m) % cap
        first = min(m, cap - start)
        self._buf[start : start + first] = tail[:first]
        if first < m:
            self._buf[: m - first] = tail[first:]
        stamp = int(self._header[STAMPS])
        self._stamps[stamp % STAMP_SLOTS] = (written + n, time.monotonic())
        self._header[STAMPS] = stamp + 1
        self._header[WRITTEN] = written + n

    def write_mixed(self, frames: np.ndarray) -> None:
        """Append ``(frames, channels)`` audio mixed to mono by averaging channels."""
        x = np.asarray(frames)
        if x.ndim == 2:
            x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
        self.write(x)

    def free_space(self) -> int:
        """Frames that can be written before reaching ``reader_floor`` (``capacity`` when there is no floor)."""
        floor = self.reader_floor
        if floor is None:
            return self.capacity
        return max(0, self.capacity - (self.written - floor))

    def read(self, end: int, length: int) -> np.ndarray | None:
        """Copy frames ``[end - length, end)``; None when they are not all written yet or were overwritten."""
        end = int(end)
        length = int(length)
        start = end - length
        written = self.written
        if length <= 0 or length > self.capacity or start < 0 or end > written:
            return None
        if written - start > self.capacity:
            return None
        cap = self.capacity
        s = start % cap
        first = min(length, cap - s)
        out = np.empty(length, dtype=np.float32)
        out[:first] = self._buf[s : s + first]
        if first < length:
            out[first:] = self._buf[: length - first]
        # The writer may have lapped us while we copied: then part of `out` is newer audio. Report it as lost.
        if self.written - start > self.capacity:
            return None
        return out

    def _recent_stamps(self) -> np.ndarray:
        count = int(self._header[STAMPS])
        n = min(count, STAMP_SLOTS)
        if n == 0:
            return np.empty((0, 2))
        idx = (np.arange(count - n, count)) % STAMP_SLOTS
        return self._stamps[idx].copy()

    @property
    def last_write_time(self) -> float | None:
        """Monotonic time of the latest write (None before the first)."""
        count = int(self._header[STAMPS])
        if count == 0:
            return None
        return float(self._stamps[(count - 1) % STAMP_SLOTS, 1])

    def arrival_time(self, frame: int) -> float | None:
        """Monotonic time at which frame index ``frame - 1`` was written (None when no longer known)."""
        stamps = self._recent_stamps()
        hits = np.nonzero(stamps[:, 0] >= frame)[0]
        return float(stamps[hits[0], 1]) if hits.size else None
