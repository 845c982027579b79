"""The `m2e stream` sidecar: source -> ring buffer -> engine (windows, model) -> output (smoothing, OSC) + control
and monitor. :class:`Sidecar` wires the parts, runs until a duration, the end of a file, or :meth:`Sidecar.request_stop`
(the CLI calls it from SIGINT/SIGTERM), and shuts everything down in order: input first, sockets last.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from m2e_plugin.realtime.capture import Source
from m2e_plugin.realtime.control import ControlServer
from m2e_plugin.realtime.engine import Engine, ModelRunner
from m2e_plugin.realtime.features import FastFeatures
from m2e_plugin.realtime.monitor import MonitorServer
from m2e_plugin.realtime.osc import Destination, OscOut
from m2e_plugin.realtime.oscquery import OscQueryServer
from m2e_plugin.realtime.output import Output

log = logging.getLogger("m2e.realtime")


class Sidecar:
    """A running emotion follower (heartbeat state ``no input`` when a live input is silent for 2 s).

    Parameters
    ----------
    source : Source
        Live device or file.
    runner : ModelRunner
        The model (swappable while running).
    destinations : list of Destination
        OSC receivers (may be empty when only the monitor page is wanted).
    window, hop : float
        Analysis window and hop in seconds.
    control : ControlServer, optional
        An OSC control port, already bound (the CLI binds ports before loading the model, so a busy port fails
        at once).
    monitor : MonitorServer, optional
        The monitor page's server, already bound.
    oscquery : OscQueryServer, optional
        The OSCQuery server, already bound: it advertises what this sidecar sends and its control settings.
    batch : int
        Windows analysed together when the model is busy (see :class:`Engine`).
    launched : float, optional
        ``time.monotonic()`` when the program started: the heartbeat's uptime counts from it (default: from
        :meth:`start`).
    **output_options
        Passed to :class:`~m2e_plugin.realtime.output.Output` (rate, smoothing, amount, dwell, margin, top_k,
        threshold...).
    """

    NO_INPUT_S = 2.0

    def __init__(self, source: Source, runner: ModelRunner, destinations: list[Destination], *,
                 window: float, hop: float, control: ControlServer | None = None,
                 monitor: MonitorServer | None = None, oscquery: OscQueryServer | None = None, batch: int = 1,
                 osc: OscOut | None = None, launched: float | None = None, **output_options):
        self.source = source
        # The heartbeat ran while the model loaded: a receiver must not see its uptime restart from 0.
        self._launched = launched
        self.runner = runner
        # ``osc``: the destinations' sender, when it already runs (the heartbeat went out while the model loaded).
        self.osc = osc if osc is not None else OscOut(destinations) if destinations else None
        if self.osc is not None:
            # A file without pace may wait for a busy destination, so every analysed window goes out; live never
            # waits.
            self.osc.wait = 0.0 if source.realtime else 1.0
        self.monitor = monitor
        listeners = [self.monitor.publish] if self.monitor is not None else []
        self.features = FastFeatures(source)
        self.output = Output(self.osc, status=self.status, listeners=listeners, live=self.input_live,
                             features=self.features.snapshot, **output_options)
        self.engine = Engine(source, runner, window=window, hop=hop, on_result=self.output.push, batch=batch)
        self.control = control
        if control is not None:
            control.sidecar = self
        self._stop = threading.Event()
        self._started = 0.0
        self._stopped = False
        self._warned_no_input = False
        self.stop_reason = ""
        self.oscquery = oscquery
        if oscquery is not None:
            oscquery.attach(self)  # last: it reads the output and engine from now on

    def input_live(self) -> bool:
        """False while the input delivers nothing (device lost, stalled): values would be stale, so the output
        sends only the heartbeat, which says ``no input``."""
        src = self.source
        if not src.realtime or not self._started or src.finished.is_set():
            return True
        if src.state != "live":
            return False
        last = src.ring.last_write_time
        return time.monotonic() - (last or self._started) <= self.NO_INPUT_S

    def status(self) -> dict[str, Any]:
        """Heartbeat fields: state, uptime, counters, model, input state."""
        e = self.engine
        now = time.monotonic()
        if not self.input_live():
            state = "no input"
            if not self._warned_no_input and not self._stop.is_set():
                self._warned_no_input = True
                last = self.source.ring.last_write_time
                log.warning("no audio has arrived for %.0f s from %s", now - (last or self._started),
                            self.source.description)
        else:
            self._warned_no_input = False
            state = ("paused" if e.paused else "model error" if e.failing
                     else "running" if self.output.sent_fresh else "warming up")
        start = self._launched or self._started
        return {"state": state, "uptime": now - start if start else 0.0,
                "updates": e.updates, "skipped": e.skipped, "overflows": self.source.overflows,
                "xruns": self.source.xruns, "input": self.source.state, "model": self.runner.name,
                "level_db": e.level_db}

    def start(self) -> None:
        self._started = time.monotonic()
        if self.monitor is not None:
            self.monitor.info = {"model": self.runner.name, "source": self.source.description}
            self.monitor.status = self.status
            self.monitor.start()
        self.output.start()
        self.engine.start()  # first: a file read without pace is decoded into a new ring, which the features follow
        self.features.start()
        if self.control is not None:
            self.control.start()
        if self.oscquery is not None:
            self.oscquery.start()
        if not self.source.running:
            self.source.start()  # last: everything that consumes audio is ready

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`wait` to return (safe from a signal handler: it only sets an event)."""
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()

    def wait(self, duration: float | None = None) -> str:
        """Block until ``duration`` seconds passed, the input ended, or a stop was requested; returns why."""
        deadline = None if duration is None else time.monotonic() + float(duration)
        while not self._stop.is_set():
            if self.engine.done.is_set():
                # Let the output thread send the last result before reporting the end.
                end = time.monotonic() + 2.0
                while not self.output.idle() and time.monotonic() < end:
                    time.sleep(0.01)
                self.request_stop("end of input")
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.request_stop("duration reached")
                break
            self._stop.wait(0.1 if remaining is None else min(0.1, remaining))
        return self.stop_reason

    def stop(self) -> None:
        """Shut down in order: input, engine, output (final heartbeat ``stopped``), control, monitor, OSCQuery,
        socket."""
        if self._stopped:
            return
        self._stopped = True
        for step in (self.source.stop, self.engine.stop, self.features.stop, self.output.stop,
                     *(x.stop for x in (self.control, self.monitor, self.oscquery) if x is not None),
                     *((self.osc.close,) if self.osc is not None else ()), self.source.close):
            try:
                step()
            except Exception as exc:  # keep closing the rest
                log.error("shutdown step %s failed: %s", getattr(step, "__qualname__", step), exc)

    def run(self, duration: float | None = None) -> dict[str, Any]:
        """Start, wait, stop; returns :meth:`summary`."""
        self.start()
        try:
            self.wait(duration)
        finally:
            self.stop()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """Counters and latency statistics (JSON-able)."""
        lat = np.asarray(self.output.latencies_ms, dtype=float)
        e = self.engine
        out = {
            "stop_reason": self.stop_reason,
            "model": self.runner.name,
            "source": self.source.description,
            "seconds": round(time.monotonic() - self._started, 3) if self._started else 0.0,
            "audio_seconds": round(self.source.ring.written / self.source.sample_rate, 3),
            "input_open_seconds": (round((self.source.closed_at or time.monotonic()) - self.source.opened_at, 3)
                                   if self.source.opened_at else 0.0),
            "window": e.window,
            "hop": e.hop,
            "windows": e.windows,
            "updates": e.updates,
            "skipped_windows": e.skipped,
            "model_calls": e.batches,
            "overruns": e.overruns,
            "model_errors": e.errors,
            "input_overflows": self.source.overflows,
            "input_xruns": self.source.xruns,
            "input_losses": getattr(self.source, "losses", 0),
            "input_reopens": getattr(self.source, "reopens", 0),
            "input_level_db": round(e.level_db, 1),
            "tempo_bpm": round(self.features.tracker.tempo, 1) if self.features.tracker else None,
            "bundles_sent": self.output.sent,
            "latency_ms_median": round(float(np.median(lat)), 2) if lat.size else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            "inference_ms_median": round(float(np.median(e.inference_ms)), 2) if e.inference_ms else None,
        }
        if self.osc is not None:
            out["destinations"] = [{"destination": d.label, "sent": d.sent, "errors": d.errors, "dropped": d.dropped,
                                    **({"last_error": d.last_error} if d.last_error else {})}
                                   for d in self.osc.destinations]
        if self.source.warnings:
            out["input_warnings"] = list(self.source.warnings)
        if self.source.error is not None:
            out["source_error"] = str(self.source.error)
        return out
