"""The capture process: PortAudio input in a process of its own, writing into a shared-memory ring.

Why a process: the audio callback is Python (sounddevice), so in the model's process it would wait for the GIL
whenever inference holds it, and the device would overflow. Here the callback shares its interpreter with nothing
but an idle supervision loop. A second reason: when the audio server dies, PortAudio calls (``abort``, ``close``,
``Pa_Terminate`` at exit) can block forever; a process can always be killed, a thread cannot.

Protocol with the parent (:class:`m2e_plugin.realtime.capture.DeviceSource`), one JSON object per line:

* child -> parent on stdout: ``{"event": "device", ...}`` (the resolved device), ``{"event": "opened"}``,
  ``{"event": "error", "message": ...}`` (then exit 2), ``{"event": "lost", "message": ...}`` (then exit 3).
* parent -> child on stdin: ``{"shm": NAME, "capacity": FRAMES}`` once the parent made the ring; closing stdin
  (or SIGTERM) asks the child to stop. The child ignores SIGINT: the parent decides when capture ends.

This module also holds the device helpers (listing, lookup) because the child must import nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any


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


# -- the child process ------------------------------------------------------------------------------------------

def _say(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _attach(name: str):
    from multiprocessing import resource_tracker, shared_memory

    shm = shared_memory.SharedMemory(name=name)
    # The parent owns the block; without this, this process's tracker would unlink it when we exit (Python < 3.13).
    try:
        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 - documented workaround
    except Exception:
        pass
    return shm


def child_main(argv: list[str] | None = None) -> None:
    """Entry point of the capture process (``python -m m2e_plugin.realtime.capture_process``)."""
    p = argparse.ArgumentParser(prog="m2e-capture")
    p.add_argument("--device", default=None)
    p.add_argument("--samplerate", type=float, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--blocksize", type=int, default=1024)
    p.add_argument("--loss-seconds", type=float, default=1.0)
    a = p.parse_args(argv)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    try:
        sd = import_sounddevice()
        dev = find_input_device(a.device)
        sr = int(a.samplerate or dev["samplerate"])
        channels = int(a.channels or min(2, dev["channels"]))
        if not 1 <= channels <= dev["channels"]:
            raise CaptureError(f"input device {dev['index']} ({dev['name']}) has {dev['channels']} input channels, "
                               f"{channels} requested")
    except Exception as exc:
        _say("error", message=str(exc))
        os._exit(2)
    _say("device", index=dev["index"], name=dev["name"], hostapi=dev["hostapi"], samplerate=sr, channels=channels,
         description=f"device {dev['index']}: {dev['name']} ({dev['hostapi']}, {channels} ch, {sr} Hz)")

    line = sys.stdin.readline()
    if not line:
        os._exit(0)
    spec = json.loads(line)
    from m2e_plugin.realtime.ringbuffer import CALLBACKS, OVERFLOWS, XRUNS, RingBuffer

    shm = _attach(spec["shm"])
    ring = RingBuffer(int(spec["capacity"]), shm.buf)

    def callback(indata, frames, time_info, status):
        # PortAudio's thread: count, copy, nothing else (no locks, no logging).
        if status:
            ring.count(XRUNS)
            if status.input_overflow:
                ring.count(OVERFLOWS)
        ring.write_mixed(indata)
        ring.count(CALLBACKS)

    try:
        stream = sd.InputStream(device=dev["index"], channels=channels, samplerate=sr, blocksize=a.blocksize,
                                dtype="float32", callback=callback)
        stream.start()
    except Exception as exc:
        _say("error", message=f"cannot open device {dev['index']} ({dev['name']}): {exc}")
        os._exit(2)
    _say("opened")

    def watch_stdin():  # the parent closes our stdin to stop us, and so does its death
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    last_count, last_change = ring.counter(CALLBACKS), time.monotonic()
    while not stop.wait(0.05):
        count = ring.counter(CALLBACKS)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > a.loss_seconds or not stream.active:
            why = "the stream stopped" if not stream.active else f"no audio for {now - last_change:.1f} s"
            _say("lost", message=f"{why} (audio server gone or device unplugged?)")
            os._exit(3)  # never call into PortAudio again: with the server gone it may block forever
    # Asked to stop: close the stream politely if PortAudio answers quickly, then leave regardless.
    closer = threading.Thread(target=lambda: (stream.abort(), stream.close()), daemon=True)
    closer.start()
    closer.join(0.5)
    os._exit(0)


if __name__ == "__main__":
    child_main()
