"""A single-producer ring buffer for live audio.

The producer is the audio callback (or the file reader); it only copies samples in and bumps a counter, never
takes a lock, so it cannot be blocked by the inference side. Readers copy a span out by absolute frame index and
then check that the producer did not lap them while they copied (a torn read is reported, never returned).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class RingBuffer:
    """Fixed-size float32 mono ring indexed by absolute frame numbers.

    Parameters
    ----------
    capacity : int
        Frames kept. Spans older than ``written - capacity`` are gone.

    Notes
    -----
    Thread model: exactly one writer thread, any number of readers. ``written`` is a plain Python int updated
    after the samples are in place, so a reader that sees ``written >= end`` sees the samples (the GIL orders
    the stores). Memory is allocated once; nothing grows with running time.
    """

    def __init__(self, capacity: int):
        if int(capacity) <= 0:
            raise ValueError(f"ring buffer capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0
        # (frames written after a write, monotonic time of that write): lets the engine tell when a given frame
        # arrived, for latency accounting. A bounded deque: appends are atomic and memory stays flat.
        self._stamps: deque[tuple[int, float]] = deque(maxlen=512)
        # Lowest frame a back-pressured writer must not overwrite yet (set by the consumer); None = never wait.
        self.reader_floor: int | None = None

    @property
    def written(self) -> int:
        """Total frames written since creation."""
        return self._written

    def write(self, frames: np.ndarray) -> None:
        """Append mono frames (producer thread only). Frames beyond ``capacity`` in one call keep only the tail."""
        x = np.asarray(frames, dtype=np.float32).reshape(-1)
        n = x.shape[0]
        if n == 0:
            return
        cap = self.capacity
        tail = x[-cap:] if n > cap else x
        m = tail.shape[0]
        start = (self._written + n - m) % cap
        first = min(m, cap - start)
        self._buf[start : start + first] = tail[:first]
        if first < m:
            self._buf[: m - first] = tail[first:]
        self._written += n
        self._stamps.append((self._written, time.monotonic()))

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
        return max(0, self.capacity - (self._written - floor))

    def read(self, end: int, length: int) -> np.ndarray | None:
        """Copy frames ``[end - length, end)``; None when they are not all written yet or were overwritten."""
        end = int(end)
        length = int(length)
        start = end - length
        if length <= 0 or length > self.capacity or start < 0 or end > self._written:
            return None
        if self._written - start > self.capacity:
            return None
        cap = self.capacity
        s = start % cap
        first = min(length, cap - s)
        out = np.empty(length, dtype=np.float32)
        out[:first] = self._buf[s : s + first]
        if first < length:
            out[first:] = self._buf[: length - first]
        # The writer may have lapped us while we copied: then part of `out` is newer audio. Report it as lost.
        if self._written - start > self.capacity:
            return None
        return out

    @property
    def last_write_time(self) -> float | None:
        """Monotonic time of the latest write (None before the first)."""
        try:
            return self._stamps[-1][1]
        except IndexError:
            return None

    def arrival_time(self, frame: int) -> float | None:
        """Monotonic time at which frame index ``frame - 1`` was written (None when no longer known)."""
        for written, t in list(self._stamps):
            if written >= frame:
                return t
        return None
