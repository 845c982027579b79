"""Audio sources for the sidecar: a live input device (sounddevice / PortAudio) and a file replayed in real time.

Both write mono float32 frames into a :class:`~m2e_plugin.realtime.ringbuffer.RingBuffer` at their own sample
rate; the engine resamples each window to the model's rate. The PortAudio callback only mixes and copies: no
locks, no allocation beyond the mono mix, no Python logging.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from m2e_plugin.audio import info as audio_info, stream_audio
from m2e_plugin.realtime.ringbuffer import RingBuffer

log = logging.getLogger("m2e.realtime.capture")

# Ring size: the longest window the control port may ask for, plus slack so a stalled scheduler loses nothing.
MAX_WINDOW_S = 60.0
RING_SLACK_S = 10.0


class CaptureError(RuntimeError):
    """The input cannot be opened (no PortAudio, unknown device, bad file)."""


def import_sounddevice():
    """Import sounddevice, turning a missing PortAudio library into a clear :class:`CaptureError`."""
    try:
        import sounddevice as sd
    except ImportError as exc:
        raise CaptureError("live input needs the sounddevice package (pip install sounddevice); "
                           "a file can still be streamed with --input FILE") from exc
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise CaptureError(
            "live input needs the PortAudio library, which was not found "
            "(Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio). "
            "A file can still be streamed with --input FILE."
        ) from exc
    return sd


def list_input_devices() -> list[dict[str, Any]]:
    """Input-capable devices: index, name, host API, input channels, default sample rate, default flag."""
    sd = import_sounddevice()
    apis = sd.query_hostapis()
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    out = []
    for i, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] <= 0:
            continue
        out.append({
            "index": i,
            "name": dev["name"],
            "hostapi": apis[dev["hostapi"]]["name"],
            "channels": int(dev["max_input_channels"]),
            "samplerate": float(dev["default_samplerate"]),
            "default": i == default_in,
        })
    return out


def find_input_device(spec: str | int | None) -> dict[str, Any]:
    """Resolve ``spec`` (None = system default, an index, or a case-insensitive name or name fragment)."""
    devices = list_input_devices()
    if not devices:
        raise CaptureError("no audio input devices found (is a loopback driver such as BlackHole, JACK or "
                           "PipeWire running? see `m2e devices`)")
    if spec is None or spec == "":
        for d in devices:
            if d["default"]:
                return d
        return devices[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        for d in devices:
            if d["index"] == index:
                return d
        raise CaptureError(f"input device {index} does not exist or has no input channels; "
                           f"inputs: {', '.join(str(d['index']) for d in devices)} (see `m2e devices`)")
    exact = [d for d in devices if d["name"].lower() == text.lower()]
    if exact:
        return exact[0]
    partial = [d for d in devices if text.lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise CaptureError(f"no input device matches {text!r}; inputs: "
                           + "; ".join(f"{d['index']}: {d['name']}" for d in devices))
    raise CaptureError(f"input device name {text!r} is ambiguous: "
                       + "; ".join(f"{d['index']}: {d['name']}" for d in partial) + " (give the index)")


class Source:
    """Base class: owns the ring buffer and the counters the sidecar reports."""

    realtime = True  # False: a file read as fast as the consumer allows (back-pressure, no skipped windows)

    def __init__(self, sample_rate: int, capacity_seconds: float):
        self.sample_rate = int(sample_rate)
        self.ring = RingBuffer(int(round(capacity_seconds * self.sample_rate)))
        self.overflows = 0  # device-reported input overflows (frames lost before reaching us)
        self.finished = threading.Event()  # set when a finite source has delivered everything
        self.error: BaseException | None = None
        self.description = ""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class SoundDeviceSource(Source):
    """Live input through sounddevice: device by name or index, channels mixed to mono.

    Parameters
    ----------
    device : str or int, optional
        Name (or unique fragment) or index; None for the system default input.
    samplerate : float, optional
        Capture rate; the device's default when omitted.
    channels : int, optional
        Channels to open (mixed to mono); min(2, device channels) when omitted.
    blocksize : int
        Frames per callback.
    """

    def __init__(self, device: str | int | None = None, *, samplerate: float | None = None,
                 channels: int | None = None, blocksize: int = 1024,
                 capacity_seconds: float = MAX_WINDOW_S + RING_SLACK_S):
        self._sd = import_sounddevice()
        dev = find_input_device(device)
        sr = int(samplerate or dev["samplerate"])
        super().__init__(sr, capacity_seconds)
        self.device = dev
        self.channels = int(channels or min(2, dev["channels"]))
        if not 1 <= self.channels <= dev["channels"]:
            raise CaptureError(f"input device {dev['index']} ({dev['name']}) has {dev['channels']} input channels, "
                               f"{self.channels} requested")
        self.blocksize = int(blocksize)
        self.description = f"device {dev['index']}: {dev['name']} ({dev['hostapi']}, {self.channels} ch, {sr} Hz)"
        self._stream = None

    def _callback(self, indata, frames, time_info, status) -> None:
        # Runs on PortAudio's thread: copy and count, nothing else.
        if status.input_overflow:
            self.overflows += 1
        self.ring.write_mixed(indata)

    def start(self) -> None:
        try:
            self._stream = self._sd.InputStream(
                device=self.device["index"], channels=self.channels, samplerate=self.sample_rate,
                blocksize=self.blocksize, dtype="float32", callback=self._callback)
            self._stream.start()
        except Exception as exc:
            raise CaptureError(f"cannot open {self.description}: {exc}") from exc

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()  # abort, not stop: do not wait for buffers to drain at shutdown
            finally:
                stream.close()


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
    """

    def __init__(self, path, *, pace: bool = True, loop: bool = False, max_seconds: float | None = None,
                 block_seconds: float = 0.02, capacity_seconds: float = MAX_WINDOW_S + RING_SLACK_S):
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
        self.description = f"file {self.path} ({meta.sample_rate} Hz, {'paced' if pace else 'no pace'})"
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
        self._thread = threading.Thread(target=self._run, name="m2e-file-source", daemon=True)
        self._thread.start()

    def _blocks(self):
        while True:
            yield from stream_audio(self.path, self.sample_rate, block_seconds=self.block_seconds)
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
            self.finished.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
