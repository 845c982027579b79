"""Progress on stderr for long work, and decoder noise turned into one warning per file.

* :class:`Progress`: a tqdm bar when stderr is a terminal; with ``mode="always"`` and stderr redirected, plain
  lines at most every few seconds (never ``\\r`` counters in a log); nothing with ``mode="never"`` or when stderr is
  not a terminal in ``mode="auto"``. :meth:`Progress.position` shows where the work is inside a long file.
* :func:`native_stderr_captured`: C libraries (libmpg123 inside libsndfile) write straight to file descriptor 2,
  which breaks bars and floods logs. Inside this context fd 2 goes to a temporary file while Python's own stderr
  still reaches the terminal; the caller turns what was captured into one warning (:func:`decoder_warning`).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from typing import Iterator

MODES = ("auto", "always", "never")
_LINE_INTERVAL_S = 5.0  # plain-line mode: at most one line this often (plus the final one)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def reporting_blocks(blocks, sample_rate: int, on_audio):
    """``blocks`` unchanged, calling ``on_audio(seconds read so far)`` after each (``on_audio`` None: ``blocks``)."""
    if on_audio is None:
        return blocks

    def generate():
        samples = 0
        for block in blocks:
            samples += len(block)
            on_audio(samples / sample_rate)
            yield block

    return generate()


def terminal_bar(mode: str, stream=None) -> bool:
    """Whether a third-party tqdm bar may be drawn: ``mode`` allows progress and stderr is a terminal (a bar's
    ``\\r`` redraws never go into a log, whatever the mode)."""
    return mode != "never" and _is_terminal(stream if stream is not None else sys.stderr)


class Progress:
    """Progress of ``total`` items (files, tracks) on stderr.

    Parameters
    ----------
    total : int
        Number of items.
    desc : str
        Prefix, e.g. ``"m2e predict"``.
    unit : str
        Item name for the counter (``"file"``, ``"track"``).
    mode : {"auto", "always", "never"}
        ``auto``: only when stderr is a terminal; ``always``: also when redirected (as plain lines); ``never``.
    stream : file, optional
        Defaults to ``sys.stderr`` at construction time.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "file", mode: str = "auto", stream=None):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        stream = stream if stream is not None else sys.stderr
        if _fileno(stream) == 2:
            # A descriptor of our own: while fd 2 is captured (native_stderr_captured) the bar still shows.
            stream.flush()
            stream = _text_stream(os.dup(2), stream)
            self._own_stream = stream
        self.stream = stream
        self.total, self.desc, self.unit = int(total), desc, unit
        self.count = 0
        self.failed = 0
        self._started = time.monotonic()
        self._last_line = 0.0
        self._where = ""
        terminal = _is_terminal(self.stream)
        self.enabled = mode == "always" or (mode == "auto" and terminal)
        self._bar = None
        if self.enabled and terminal:
            from tqdm import tqdm

            # Width measured once: dynamic_ncols drew nothing on terminals that report 0 columns (some ptys).
            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, leave=True, mininterval=0.5)

    def update(self, n: int = 1, *, failed: bool = False) -> None:
        """``n`` more items finished (``failed``: one of them failed)."""
        self.count += n
        self.failed += int(failed)
        self._where = ""
        if self._bar is not None:
            if self.failed:
                self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
            self._bar.update(n)
        elif self.enabled:
            self._line(force=self.count >= self.total)

    def position(self, label: str, done_s: float, total_s: float | None = None) -> None:
        """Where the current item is: ``done_s`` seconds of audio of ``total_s`` (when known)."""
        where = f"{label} {clock(done_s)}"
        if total_s:
            where += f"/{clock(total_s)} ({min(100.0, 100.0 * done_s / total_s):.0f}%)"
        self._where = where
        if self._bar is not None:
            self._bar.set_postfix_str(where)  # tqdm throttles the redraw itself
        elif self.enabled:
            self._line()

    def write(self, message: str) -> None:
        """A message line (warning, failure) that does not break the bar; always shown, even with progress off."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def _line(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_line < _LINE_INTERVAL_S:
            return
        self._last_line = now
        elapsed = now - self._started
        rate = f", {self.count / elapsed:.2f} {self.unit}s/s" if self.count and elapsed > 0 else ""
        failed = f", {self.failed} failed" if self.failed else ""
        where = f", {self._where}" if self._where else ""
        print(f"{self.desc}: {self.count}/{self.total} {self.unit}s{rate}{failed}{where} [{clock(elapsed)}]",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        own = getattr(self, "_own_stream", None)
        if own is not None:
            self._own_stream = None
            own.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Captured:
    """What a C library wrote to fd 2 inside :func:`native_stderr_captured` (``text`` once the block ended)."""

    text = ""

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if line.strip()]


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[_Captured]:
    """Send fd 2 to a temporary file for the block; Python's ``sys.stderr`` keeps reaching the real stderr.

    Where fd 2 cannot be redirected (no such descriptor, e.g. some embedded interpreters) it does nothing.
    """
    captured = _Captured()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield captured
        return
    python_stderr = sys.stderr
    real = None
    if getattr(python_stderr, "fileno", None) is not None and _fileno(python_stderr) == 2:
        # sys.stderr writes to fd 2 itself: point it at the saved descriptor for the duration.
        real = _text_stream(os.dup(saved), python_stderr)
        sys.stderr = real
    sink = tempfile.TemporaryFile()
    try:
        os.dup2(sink.fileno(), 2)
        yield captured
    finally:
        try:
            os.dup2(saved, 2)
        finally:
            os.close(saved)
            if real is not None:
                sys.stderr = python_stderr
                real.close()
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")
            sink.close()


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def _text_stream(fd: int, like) -> io.TextIOWrapper:
    """An unbuffered text stream on ``fd`` with ``like``'s encoding (a terminal keeps its isatty())."""
    return io.TextIOWrapper(os.fdopen(fd, "wb", buffering=0), encoding=getattr(like, "encoding", None) or "utf-8",
                            errors="backslashreplace", line_buffering=True, write_through=True)


def decoder_warning(source: str, captured: _Captured) -> str | None:
    """One warning line for what the decoder wrote while reading ``source`` (None when it wrote nothing)."""
    lines = captured.lines
    if not lines:
        return None
    return (f"warning: {source}: the decoder reported {len(lines)} problem(s) (damaged frames are skipped); "
            f"first: {lines[0]}")
