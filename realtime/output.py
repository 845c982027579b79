"""The output thread: smooths model updates and sends OSC at a steady rate, plus the status heartbeat.

A fresh model result is sent at once (that bundle's send time is what the latency figures measure); between
results, bundles go out every ``1 / rate`` seconds with the smoothed values gliding towards the latest result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from m2e_plugin.labels import TOP_MOOD_FLOOR, normalise_va
from m2e_plugin.realtime.engine import WindowResult
from m2e_plugin.realtime.osc import EmotionState, OscOut
from m2e_plugin.realtime.smoothing import ExponentialSmoother, MoodHysteresis, QuadrantHysteresis, make_smoother

# Below this confidence the input says nothing about the quadrant (lite: quieter than -65 dBFS, silence 0).
QUADRANT_HOLD_CONFIDENCE = 0.5

log = logging.getLogger("m2e.realtime.output")


class Output:
    """Smoothing, hysteresis and paced sending.

    Parameters
    ----------
    osc : OscOut or None
        Where bundles go (None: only the monitor / listeners).
    rate : float
        Bundles per second between model updates (0: only on updates).
    smoothing : {"euro", "ema", "none"}
        Valence/arousal filter; ``amount`` is the one-euro min cutoff (Hz) or the EMA time constant (s).
    mood_tau : float
        EMA time constant (s) for the mood probabilities.
    margin, dwell : float
        Top-mood hysteresis: a challenger must lead by ``margin`` for ``dwell`` seconds.
    top_k : int
        At most this many tags in ``/m2e/moods``: the stable top mood, then others above ``threshold``.
    threshold : float
        Probability a tag other than the top one needs to be listed.
    status : callable
        Returns the heartbeat fields (dict) once per ``status_every`` seconds.
    listeners : list of callables
        Called with a JSON-able snapshot after each send (the monitor page).
    quadrant_margin, quadrant_dwell : float
        Quadrant hysteresis (0-1 scale) and dwell (s): see :class:`QuadrantHysteresis`.
    features : callable, optional
        Returns ``(fast feature dict, beat since last call)`` for each step (see :mod:`.features`).
    live : callable, optional
        Returns False while the input delivers nothing: then no values are sent (they would be stale), only the
        heartbeat.
    """

    def __init__(self, osc: OscOut | None, *, rate: float = 30.0, smoothing: str = "euro", amount: float = 1.0,
                 mood_tau: float = 0.5, margin: float = 0.05, dwell: float = 1.0, top_k: int = 3,
                 threshold: float = 0.5, status: Callable[[], dict[str, Any]] | None = None,
                 status_every: float = 1.0, listeners: list | None = None, live: Callable[[], bool] | None = None,
                 quadrant_margin: float = 0.03, quadrant_dwell: float = 2.0,
                 features: Callable[[], tuple[dict, bool]] | None = None):
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.osc = osc
        self.rate = float(rate)
        self.top_k = max(1, int(top_k))
        self.threshold = float(threshold)
        self._va = (make_smoother(smoothing, amount), make_smoother(smoothing, amount))
        self._moods = ExponentialSmoother(mood_tau)
        self._margin, self._dwell = margin, dwell
        self._hysteresis: MoodHysteresis | None = None
        self._status = status
        self.status_every = float(status_every)
        self.listeners = list(listeners or [])
        self._live = live or (lambda: True)
        self._quadrant = QuadrantHysteresis(quadrant_margin, quadrant_dwell)
        self._features = features
        self.withheld = 0  # ticks not sent because the input was not live
        self._stale = False
        # Results not sent yet. Normally at most one; a few when the model outpaces this thread (a file without
        # pace): each still gets its own bundle. Bounded, the oldest is dropped (counted in `coalesced`).
        self._pending: deque[WindowResult] = deque(maxlen=16)
        self.coalesced = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: WindowResult | None = None
        # Bounded: the last 20000 latencies (hours at 0.5 s hops); the median/p95 are over these.
        self.latencies_ms: deque[float] = deque(maxlen=20000)
        self.last_latency_ms = 0.0
        self.sent = 0  # state bundles sent
        self.sent_fresh = 0  # of which carried a new model result
        self.state: EmotionState | None = None

    # Called on the worker thread: store and wake, nothing else.
    def push(self, result: WindowResult) -> None:
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.coalesced += 1
            self._pending.append(result)
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="m2e-output", daemon=True)
        self._thread.start()

    def stop(self, final_status: str = "stopped") -> None:
        """Stop the thread after sending any result still pending, then a last heartbeat."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._step(time.monotonic())
        self.send_status(final_status)

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def send_status(self, state: str | None = None) -> None:
        if self.osc is None or self._status is None:
            return
        fields = self._status()
        if state is not None:
            fields["state"] = state
        self.osc.send_status(status_args(fields, self.last_latency_ms))

    def _run(self) -> None:
        now = time.monotonic()
        next_tick = now
        next_status = now
        period = 1.0 / self.rate if self.rate > 0 else None
        while not self._stop.is_set():
            deadline = next_status if period is None else min(next_tick, next_status)
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            try:
                self._step(now, tick=period is not None and now >= next_tick)
                if period is not None and now >= next_tick:
                    # Keep the cadence; after a stall, resume it instead of sending a burst of catch-up ticks.
                    next_tick = max(next_tick + period, now + 0.25 * period)
                if now >= next_status:
                    self.send_status()
                    next_status = max(next_status + self.status_every, now)
            except Exception as exc:  # never let one bad step end the output
                log.error("output step failed: %s: %s", type(exc).__name__, exc)

    def _step(self, now: float, tick: bool = False) -> bool:
        """Send a bundle per pending result (fresh), or one if a tick is due; returns whether any was fresh."""
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        if not pending:
            return self._send_one(now, None, tick)
        for result in pending:
            self._send_one(now, result, tick)
        return True

    def _send_one(self, now: float, result: WindowResult | None, tick: bool) -> bool:
        fresh = result is not None
        if fresh:
            self._latest = result
        latest = self._latest
        if latest is None or not (fresh or tick):
            return fresh
        if not self._live():
            self._stale = True  # the input went away: values resume with the first result after it is back
        elif fresh:
            self._stale = False
        if not fresh and self._stale:
            self.withheld += 1
            return fresh
        if self._hysteresis is None or self._hysteresis.tags != latest.tags:
            # First result, or a model switch changed the tag set: restart the per-tag state.
            self._hysteresis = MoodHysteresis(latest.tags, self._margin, self._dwell)
            self._moods.reset()
        v = self._va[0](latest.result["valence"], now)
        a = self._va[1](latest.result["arousal"], now)
        probs = np.asarray(self._moods(latest.probs, now), dtype=np.float64)
        top = self._hysteresis.update(probs, now)
        if top is not None and probs[latest.tags.index(top)] < TOP_MOOD_FLOOR:
            # silence (every mood decays to 0): no mood, not the last song's (or the first tag) for ever
            top = None
            self._hysteresis.reset()
        # Near silence (a model's confidence under QUADRANT_HOLD_CONFIDENCE: lite below -65 dBFS) the point glides
        # toward silence's answer; the quadrant holds, so the gap between songs fires no quadrant event.
        confidence = latest.result.get("confidence")
        hold = isinstance(confidence, (int, float)) and confidence < QUADRANT_HOLD_CONFIDENCE
        if hold:
            q, changed = self._quadrant.hold(normalise_va(v), normalise_va(a))
        else:
            q, changed = self._quadrant.update(normalise_va(v), normalise_va(a), now)
        feats, beat = self._features() if self._features is not None else (None, False)
        order = np.argsort(-probs)
        moods = [] if top is None else [top] + [latest.tags[i] for i in order
                                                if latest.tags[i] != top and probs[i] > self.threshold][: self.top_k - 1]
        latency_ms = (time.monotonic() - latest.window_end_time) * 1000.0 if fresh else self.last_latency_ms
        state = EmotionState(valence=float(v), arousal=float(a), quadrant=q, moods=moods, tags=latest.tags,
                             probs=probs, latency_ms=latency_ms, fresh=fresh, quadrant_changed=changed,
                             features=feats, beat=beat)
        if self.osc is not None:
            self.osc.send_state(state, time.time())
        if fresh:
            # Measured after the datagrams left: end of window -> bundle sent.
            self.last_latency_ms = (time.monotonic() - latest.window_end_time) * 1000.0
            self.latencies_ms.append(self.last_latency_ms)
            self.sent_fresh += 1
        self.sent += 1
        self.state = state
        if self.listeners:
            snap = snapshot(state, latest)
            for listener in self.listeners:
                listener(snap)
        return fresh


STATUS_FIELDS = ("state", "uptime", "updates", "skipped", "overflows", "latency_ms", "model", "level_db", "xruns",
                 "input")


def status_args(fields: dict[str, Any], latency_ms: float) -> list:
    """The ``/m2e/status`` arguments in :data:`STATUS_FIELDS` order (new fields are only ever appended)."""
    return [str(fields["state"]), float(fields["uptime"]), int(fields["updates"]), int(fields["skipped"]),
            int(fields["overflows"]), float(latency_ms), str(fields["model"]), float(fields["level_db"]),
            int(fields.get("xruns", 0)), str(fields.get("input", "live"))]


def snapshot(state: EmotionState, result: WindowResult) -> dict[str, Any]:
    """A JSON-able view of one output step (what the monitor page draws)."""
    order = np.argsort(-state.probs)[:8]
    return {
        "valence": round(normalise_va(state.valence), 4),  # 0-1: the scale OSC sends
        "arousal": round(normalise_va(state.arousal), 4),
        "valence_raw": round(state.valence, 3),
        "arousal_raw": round(state.arousal, 3),
        "quadrant": state.quadrant,
        "features": {k: round(float(v), 3) for k, v in (state.features or {}).items()},
        "moods": state.moods,
        "top": [[state.tags[i], round(float(state.probs[i]), 4)] for i in order],
        "latency_ms": round(state.latency_ms, 1),
        "model": result.model,
        "stream_time": round(result.stream_time, 3),
        "fresh": state.fresh,
    }
