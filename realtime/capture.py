"""Audio sources for the sidecar: a live input device (PortAudio in a capture process) and a file replayed in
real time.

Both write mono float32 frames into a :class:`~m2e_plugin.realtime.ringbuffer.RingBuffer` at their own sample
rate; the engine resamples each window to the model's rate. The device's ring lives in shared memory, written by
the capture process (:mod:`~m2e_plugin.realtime.capture_process`), so the model never delays the audio callback.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
import time

from m2e_plugin.audio import info as audio_info, stream_audio
from m2e_plugin.realtime.capture_process import (  # noqa: F401 - re-exported for `m2e devices` and callers
    CaptureError, find_input_device, import_sounddevice, list_input_devices)
from m2e_plugin.realtime.ringbuffer import OVERFLOWS, XRUNS, RingBuffer, shared_size

log = logging.getLogger("m2e.realtime.capture")

# Ring size: the longest window the control port may ask for, plus slack so a stalled scheduler loses nothing.
MAX_WINDOW_S = 60.0
RING_SLACK_S = 10.0


class Source:
    """Base class: owns the ring buffer and the counters the sidecar reports."""

    realtime = True  # False: a file read as fast as the consumer allows (back-pressure, no skipped windows)
    running = False  # start() was called

    def __init__(self, sample_rate: int, capacity_seconds: float):
        self.sample_rate = int(sample_rate)
        self.ring = RingBuffer(int(round(capacity_seconds * self.sample_rate)))
        self.state = "live"  # live / opening / lost / stopped (a device source reopens itself after a loss)
        # Audio continuity: frames before `epoch_start` belong to an earlier opening of the input, and a window
        # must not straddle the gap. `epoch` counts openings.
        self.epoch = 0
        self.epoch_start = 0
        self.opened_at: float | None = None  # monotonic time audio started to flow (first opening)
        self.closed_at: float | None = None
        self.finished = threading.Event()  # set when a finite source has delivered everything
        self.error: BaseException | None = None
        # What decoding lost (a file's damaged or truncated regions, as ``m2e predict`` reports them)
        self.warnings: list[dict] = []
        self.description = ""

    @property
    def overflows(self) -> int:
        """Device-reported input overflows (audio lost before it reached the ring)."""
        return self.ring.counter(OVERFLOWS)

    @property
    def xruns(self) -> int:
        """Callbacks that carried any status flag from the audio server (overflow, underflow, priming)."""
        return self.ring.counter(XRUNS)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Free the ring's memory (after the engine stopped reading it)."""


class DeviceSource(Source):
    """Live input captured by a child process (see :mod:`~m2e_plugin.realtime.capture_process`) into a
    shared-memory ring, supervised from here: a lost device is logged, reported (``state``) and reopened.

    Constructing it opens the device (a clear :class:`CaptureError` when that fails); :meth:`start` begins
    supervising; :meth:`stop` always returns within about a second, whatever the audio server does.

    Parameters
    ----------
    device : str or int, optional
        Name (or unique fragment) or index; None for the system default input. Reopening after a loss looks the
        device up again by its exact name (indices change when an audio server restarts).
    samplerate : float, optional
        Capture rate; the device's default when omitted. Kept for reopening.
    channels : int, optional
        Channels to open (mixed to mono); min(2, device channels) when omitted.
    blocksize : int
        Frames per callback.
    open_timeout : float
        Seconds to wait for the capture process to open the device.
    """

    RETRY_S = 1.0  # between reopen attempts
    STALL_S = 2.0  # no new frames for this long while "live" = lost (backs up the child's own check)
    LOSS_S = 1.0  # the child's check: no callback for this long

    def __init__(self, device: str | int | None = None, *, samplerate: float | None = None,
                 channels: int | None = None, blocksize: int = 1024,
                 capacity_seconds: float = MAX_WINDOW_S + RING_SLACK_S, open_timeout: float = 20.0):
        self.spec = device
        self.blocksize = int(blocksize)
        self.channels = channels
        self.capacity_seconds = float(capacity_seconds)
        self.open_timeout = float(open_timeout)
        self._stop = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._shm = None
        self._thread: threading.Thread | None = None
        self.state = "opening"
        self.losses = 0
        self.reopens = 0
        self.lost_since: float | None = None  # first moment of the current loss
        self._next_try = 0.0
        self.last_error = ""
        try:
            info = self._open(device, samplerate, channels, timeout=self.open_timeout)
        except BaseException:
            self.close()  # the ring may exist already (the device opened, then refused the rate)
            raise
        # Reopen exactly this device at exactly this rate (the ring is sized for it).
        self.name = info["name"]
        self.channels = info["channels"]
        self.device = info
        self.description = info["description"]

    # -- child process management ------------------------------------------------------------------------------
    def _spawn(self, device, samplerate, channels) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "m2e_plugin.realtime.capture_process", "--blocksize", str(self.blocksize),
               "--loss-seconds", str(self.LOSS_S)]
        if device is not None:
            cmd += ["--device", str(device)]
        if samplerate:
            cmd += ["--samplerate", str(samplerate)]
        if channels:
            cmd += ["--channels", str(channels)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read_events, args=(proc,), name="m2e-capture-events", daemon=True).start()
        return proc

    def _read_events(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                self._events.put((proc, json.loads(line)))
            except ValueError:
                continue
        self._events.put((proc, {"event": "exit"}))

    def _next_event(self, proc, deadline: float) -> dict | None:
        """The next event of ``proc`` before ``deadline`` (older processes' events are dropped)."""
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                owner, event = self._events.get(timeout=min(0.1, remaining))
            except queue.Empty:
                continue
            if owner is proc:
                return event
        return None

    def _open(self, device, samplerate, channels, timeout: float) -> dict:
        """Spawn a capture process and bring it to "opened"; raises CaptureError (and kills it) on failure."""
        proc = self._spawn(device, samplerate, channels)
        deadline = time.monotonic() + timeout
        try:
            event = self._next_event(proc, deadline)
            if event is None or event["event"] != "device":
                raise CaptureError(self._failure(event, timeout))
            if self._shm is None:  # first open: size the ring for the device's rate
                from multiprocessing import shared_memory

                Source.__init__(self, event["samplerate"], self.capacity_seconds)
                self._shm = shared_memory.SharedMemory(create=True, size=shared_size(self.ring.capacity))
                self.ring = RingBuffer(self.ring.capacity, self._shm.buf)
            elif int(event["samplerate"]) != self.sample_rate:
                raise CaptureError(f"device came back at {event['samplerate']} Hz, the stream runs at "
                                   f"{self.sample_rate} Hz")
            proc.stdin.write(json.dumps({"shm": self._shm.name, "capacity": self.ring.capacity}) + "\n")
            proc.stdin.flush()
            opened = self._next_event(proc, deadline)
            if opened is None or opened["event"] != "opened":
                raise CaptureError(self._failure(opened, timeout))
        except BaseException:
            self._kill(proc)
            raise
        self._proc = proc
        self.opened_at = self.opened_at or time.monotonic()
        self.epoch_start = self.ring.written
        self.epoch += 1
        self.state = "live"
        return event

    def _failure(self, event, timeout) -> str:
        if self._stop.is_set():
            return "stopped while opening the input"
        if event is None:
            return f"the input did not open within {timeout:g} s"
        return event.get("message") or "the capture process ended unexpectedly"

    @staticmethod
    def _kill(proc: subprocess.Popen, grace: float = 0.5) -> None:
        """End a capture process within ``grace`` + a little: close its stdin, then SIGTERM, then SIGKILL."""
        try:
            proc.stdin.close()
        except Exception:
            pass
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()  # stuck in PortAudio (audio server gone): the only way out
                try:
                    proc.wait(1.0)
                except subprocess.TimeoutExpired:
                    log.error("capture process %d does not die", proc.pid)

    # -- supervision -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        self._thread = threading.Thread(target=self._supervise, name="m2e-capture-supervisor", daemon=True)
        self._thread.start()

    def _lost(self, why: str) -> None:
        self.state = "lost"
        self.losses += 1
        self.lost_since = self._next_try = time.monotonic()
        self.last_error = why
        log.warning("input lost: %s; %s; reopening it when it comes back", self.description, why)
        if self._proc is not None:
            self._kill(self._proc)
            self._proc = None

    def _supervise(self) -> None:
        last_written, last_change = self.ring.written, time.monotonic()
        next_log = 0.0
        logged_xruns, next_xrun_log = 0, 0.0
        while not self._stop.wait(0.05):
            now = time.monotonic()
            if now >= next_xrun_log and self.xruns > logged_xruns:  # throttled: one line per 30 s at most
                next_xrun_log, logged_xruns = now + 30.0, self.xruns
                log.warning("input: %d overflows, %d xruns so far (audio server or machine overloaded?)",
                            self.overflows, self.xruns)
            if self.state == "live":
                written = self.ring.written
                if written != last_written:
                    last_written, last_change = written, now
                try:
                    owner, event = self._events.get_nowait()
                except queue.Empty:
                    owner, event = None, None
                if owner is self._proc and event is not None and event["event"] in ("lost", "exit", "error"):
                    self._lost(event.get("message") or "the capture process ended")
                elif now - last_change > self.STALL_S:
                    self._lost(f"no audio for {now - last_change:.1f} s")
                continue
            if now < self._next_try:
                continue
            try:
                self._open(self.name, self.sample_rate, self.channels, timeout=5.0)
            except CaptureError as exc:
                self.last_error = str(exc)
                self._next_try = time.monotonic() + self.RETRY_S
                if now >= next_log:  # one line per 30 s while the device stays away
                    next_log = now + 30.0
                    log.warning("input still unavailable (%s); retrying", exc)
                continue
            self.reopens += 1
            log.warning("input reopened after %.1f s: %s", time.monotonic() - self.lost_since, self.description)
            last_written, last_change = self.ring.written, time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._proc is not None:
            self._kill(self._proc)
            self._proc = None
        self.state = "stopped"
        self.closed_at = time.monotonic()

    def close(self) -> None:
        """Free the shared ring (after the engine stopped reading it)."""
        if self._shm is not None:
            self.ring.release()
            try:
                self._shm.close()
            except BufferError:  # a reader still holds a view: let the OS reclaim it at exit
                pass
            self._shm.unlink()
            self._shm = None



class FileSource(Source):
    """Replay an audio file into the ring: paced in real time, or as fast as the engine consumes.

    Parameters
    ----------
    path : str or Path
        Any file :func:`m2e_plugin.audio.stream_audio` reads.
    pace : bool
        True: one second of audio per second (like a live input). False: as fast as possible, but with
        back-pressure from the engine, so no window is skipped (tests, soak runs, offline use).
    loop : bool
        Start again at the end of the file.
    max_seconds : float, optional
        Stop after this much audio (useful with ``loop``).
    block_seconds : float
        Size of each write, similar to a sound card's callback block.
    name : str, optional
        The input as the user named it, for the description (``-``: standard input, read from a temporary copy).
    """

    def __init__(self, path, *, pace: bool = True, loop: bool = False, max_seconds: float | None = None,
                 block_seconds: float = 0.02, capacity_seconds: float = MAX_WINDOW_S + RING_SLACK_S,
                 name: str | None = None):
        try:
            meta = audio_info(path)
        except Exception as exc:
            raise CaptureError(str(exc)) from exc
        super().__init__(meta.sample_rate, capacity_seconds)
        self.path = str(path)
        self.realtime = bool(pace)
        self.loop = bool(loop)
        self.max_seconds = max_seconds
        self.max_frames = None if max_seconds is None else int(max_seconds * self.sample_rate)
        self.block_seconds = float(block_seconds)
        # name: what the user gave (standard input "-" is read from a temporary copy)
        self.name = name or self.path
        self.description = f"file {self.name} ({meta.sample_rate} Hz, {'paced' if pace else 'no pace'})"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def decode_at(self, sample_rate: int, block_seconds: float) -> None:
        """Decode at the model's rate in the model's blocks (before :meth:`start`; the engine's no-pace file mode).

        The file is then resampled exactly as ``m2e predict`` resamples it, so the shared analysis pass gives the
        same windows and values.
        """
        capacity_seconds = max(self.ring.capacity / self.sample_rate, 2.0 * float(block_seconds))
        self.sample_rate = int(sample_rate)
        self.ring = RingBuffer(int(round(capacity_seconds * self.sample_rate)))
        self.block_seconds = float(block_seconds)
        if self.max_seconds is not None:
            self.max_frames = int(self.max_seconds * self.sample_rate)

    def start(self) -> None:
        self.running = True
        self.opened_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="m2e-file-source", daemon=True)
        self._thread.start()

    def _blocks(self):
        first_pass = True
        while True:
            found: list[dict] = []
            yield from stream_audio(self.path, self.sample_rate, block_seconds=self.block_seconds, warnings=found)
            if first_pass:  # a looped file loses the same seconds each time: say it once
                for warning in found:
                    log.warning("input %s: %s", self.name, warning["message"])
                self.warnings.extend(found)
                first_pass = False
            if not self.loop:
                return

    def _run(self) -> None:
        ring = self.ring
        t0 = time.monotonic()
        try:
            for block in self._blocks():
                if self._stop.is_set():
                    return
                if self.max_frames is not None:
                    block = block[: max(0, self.max_frames - ring.written)]
                    if block.size == 0:
                        break
                if self.realtime:
                    ring.write(block)
                    delay = t0 + ring.written / self.sample_rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                else:
                    while ring.free_space() < block.size:
                        if self._stop.wait(0.002):
                            return
                    ring.write(block)
        except Exception as exc:  # a decode error part-way: report it, end the stream cleanly
            self.error = exc
            log.error("file source stopped: %s", exc)
        finally:
            self.finished.set()  # the state stays "live" until stop(): the scheduler reads the last windows

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state = "stopped"
        self.closed_at = time.monotonic()
