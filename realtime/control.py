"""OSC control in: pause/resume and live parameter changes, on a UDP port bound to 127.0.0.1 by default.

Addresses (one argument where a value is needed; ints and floats are both accepted for numbers):

``/m2e/ctl/pause``, ``/m2e/ctl/resume``
    Stop / restart inference (OSC keeps flowing with the last values; the heartbeat says ``paused``). With no
    argument, or one that is true / non-zero: a control surface's momentary button sends 1 on press and 0 on
    release, so the press acts and the release (0) is ignored.
``/m2e/ctl/paused <0|1>``
    For a toggle: 1 pauses, 0 resumes.
``/m2e/ctl/window <seconds>``, ``/m2e/ctl/hop <seconds>``
    Window length and hop, from the next window on (live and paced input; a file read without pace is analysed
    in one pass with the windows it started with, so these are refused there).
``/m2e/ctl/model <name>``
    Load another model in the background and switch when it is ready.
``/m2e/ctl/threshold <0-1>``
    Probability a secondary tag needs to be listed in ``/m2e/moods``.

Anything else (unknown address, wrong argument count or type, a datagram that is not OSC) is ignored with a
log line; the stream is never affected.

The methods are one table, :data:`COMMANDS`: the port dispatches on it and OSCQuery (:mod:`.oscquery`) advertises
it, with each method's type, range and current setting.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pythonosc import osc_packet

log = logging.getLogger("m2e.realtime.control")

PREFIX = "/m2e/ctl/"


class ControlServer:
    """Receive control messages and apply them to a running sidecar.

    Parameters
    ----------
    sidecar : Sidecar or None
        What the messages act on (``engine``, ``runner``, ``output``). The CLI binds the port before the model
        loads and the sidecar attaches itself later; messages that arrive before are ignored.
    port : int
        UDP port (0: pick a free one; read :attr:`port` after construction).
    host : str
        Interface to bind; 127.0.0.1 by default so that only this machine can steer the show.
    """

    def __init__(self, sidecar, port: int, host: str = "127.0.0.1"):
        self.sidecar = sidecar
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, int(port)))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"cannot bind the OSC control port {host}:{port}: {exc}") from exc
        self._sock.settimeout(0.1)  # so stop() is noticed quickly
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0
        self.rejected = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="m2e-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                messages = [m.message for m in osc_packet.OscPacket(data).messages]
            except Exception as exc:
                self.rejected += 1
                log.warning("control: ignored a datagram from %s:%s that is not OSC (%s)", addr[0], addr[1], exc)
                continue
            for msg in messages:
                try:
                    self.apply(msg.address, list(msg.params))
                    self.applied += 1
                except (ValueError, TypeError) as exc:
                    self.rejected += 1
                    log.warning("control: ignored %s %s: %s", msg.address, list(msg.params), exc)

    def apply(self, address: str, args: list[Any]) -> None:
        """Apply one control message; raises ValueError/TypeError for malformed ones (nothing is changed)."""
        if not address.startswith(PREFIX):
            raise ValueError(f"unknown address (control messages start with {PREFIX})")
        sc = self.sidecar
        if sc is None:
            raise ValueError("the stream is still starting")
        command = COMMANDS.get(address[len(PREFIX):])
        if command is None:
            raise ValueError("unknown control command")
        command.apply(sc, args)


def _pause_or_resume(name: str):
    def apply(sc, args: list) -> None:
        if len(args) > 1:
            raise TypeError(f"{name} takes no argument or one (a button's 1 / 0), got {len(args)}")
        if args and not _switch(args[0]):
            return  # a momentary button's release
        (sc.engine.pause if name == "pause" else sc.engine.resume)()
        log.info("control: %s", name)
    return apply


def _set_paused(sc, args: list) -> None:
    _expect(args, 1, "paused")
    (sc.engine.pause if _switch(args[0]) else sc.engine.resume)()
    log.info("control: %s", "pause" if sc.engine.paused else "resume")


def _window_or_hop(name: str):
    def apply(sc, args: list) -> None:
        _expect(args, 1, name)
        value = _number(args[0])
        if sc.engine.file_mode:  # it said "window = 5 s" and went on with the windows it started with
            raise ValueError(f"{name} cannot change with --no-pace (the file is analysed in one pass)")
        (sc.engine.set_window if name == "window" else sc.engine.set_hop)(value)
        log.info("control: %s = %g s", name, value)
        if sc.engine.window is not None and sc.engine.hop > sc.engine.window:  # as SparseWindowsWarning says
            log.warning("control: hop %g s is longer than the window %g s: %g s of audio after each window is "
                        "not analysed", sc.engine.hop, sc.engine.window, sc.engine.hop - sc.engine.window)
    return apply


def _set_threshold(sc, args: list) -> None:
    _expect(args, 1, "threshold")
    value = _number(args[0])
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {value}")
    sc.output.threshold = value
    log.info("control: threshold = %g", value)


def _set_model(sc, args: list) -> None:
    _expect(args, 1, "model")
    if not isinstance(args[0], str) or not args[0]:
        raise TypeError("model needs a name (string)")
    from m2e_plugin.plugins import get_model

    get_model(args[0])  # ValueError naming the registered models for an unknown name
    sc.runner.request(args[0], reason="control")


def _seconds_range() -> list[dict]:
    from m2e_plugin.realtime.capture import MAX_WINDOW_S

    from m2e_plugin.analysis import MIN_WINDOW_HOP_S

    return [{"MIN": MIN_WINDOW_HOP_S, "MAX": MAX_WINDOW_S}]


def _model_names() -> list[dict]:
    from m2e_plugin.plugins import get_models

    return [{"VALS": sorted(get_models())}]


@dataclass(frozen=True)
class Command:
    """One control method: how a message is applied, and how OSCQuery (:mod:`.oscquery`) describes it.

    ``type`` holds the OSC type tags of its argument ("": none needed), ``value`` the current setting of a running
    sidecar (None: nothing to read back), ``writable`` whether a message can change it now, ``range`` the
    OSCQuery RANGE entries."""

    apply: Callable[[Any, list], None]
    description: str
    type: str = ""
    value: Callable[[Any], list] | None = None
    writable: Callable[[Any], bool] = lambda sc: True
    range: Callable[[], list[dict]] | None = None


def _live_windows(sc) -> bool:
    return not sc.engine.file_mode


# The one table of control methods: ControlServer.apply dispatches on it and OSCQuery advertises it.
COMMANDS: dict[str, Command] = {
    "pause": Command(_pause_or_resume("pause"), "stop inference (no argument, or a button's 1; its 0 is ignored)"),
    "resume": Command(_pause_or_resume("resume"), "restart inference (no argument, or a button's 1)"),
    "paused": Command(_set_paused, "inference paused (a toggle: 1 pauses, 0 resumes)", "T",
                      lambda sc: [bool(sc.engine.paused)]),
    "window": Command(_window_or_hop("window"), "analysis window, seconds (fixed with --no-pace)", "f",
                      lambda sc: [] if sc.engine.window is None else [float(sc.engine.window)], _live_windows,
                      _seconds_range),
    "hop": Command(_window_or_hop("hop"), "seconds between analyses (fixed with --no-pace)", "f",
                   lambda sc: [float(sc.engine.hop)], _live_windows, _seconds_range),
    "threshold": Command(_set_threshold, "probability a secondary tag needs to be listed in the moods", "f",
                         lambda sc: [float(sc.output.threshold)], range=lambda: [{"MIN": 0.0, "MAX": 1.0}]),
    "model": Command(_set_model, "the model (a new one loads in the background and is switched to when ready)",
                     "s", lambda sc: [str(sc.runner.name)], range=_model_names),
}


def _expect(args: list, n: int, command: str) -> None:
    if len(args) != n:
        raise TypeError(f"{command} takes {n} argument{'s' if n != 1 else ''}, got {len(args)}")


def _switch(value) -> bool:
    """A button's or toggle's state: a bool, or a number (non-zero = on), as control surfaces send them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value == value:  # not NaN
        return value != 0
    raise TypeError(f"expected 1/0 or true/false, got {type(value).__name__} {value!r}")


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)
