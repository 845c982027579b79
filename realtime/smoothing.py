"""Smoothing between model updates: valence/arousal filters and a flicker-free top mood.

The model updates once per hop (0.5-2 Hz) while OSC goes out at a steady rate (20-60 Hz). Each output tick
filters towards the latest model value, so the receivers see a glide instead of steps, and the top mood only
changes when a challenger leads clearly for a while (hysteresis + dwell time).
"""

from __future__ import annotations

import math

import numpy as np


class ExponentialSmoother:
    """Time-aware exponential moving average: ``y += (1 - exp(-dt / tau)) * (x - y)``.

    Parameters
    ----------
    tau : float
        Time constant in seconds (0 = no smoothing). Independent of the tick rate, unlike a per-sample alpha.
    """

    def __init__(self, tau: float = 0.5):
        if tau < 0:
            raise ValueError(f"smoothing time constant must be >= 0, got {tau}")
        self.tau = float(tau)
        self.value = None
        self._t = None

    def reset(self) -> None:
        self.value = None
        self._t = None

    def __call__(self, x, t: float):
        """Filter ``x`` (float or array) observed at time ``t`` (seconds); returns the smoothed value."""
        x = np.asarray(x, dtype=np.float64) if not np.isscalar(x) else float(x)
        if self.value is None or self.tau == 0:
            self.value, self._t = x, t
            return self.value
        dt = max(0.0, t - self._t)
        self._t = t
        alpha = 1.0 - math.exp(-dt / self.tau)
        self.value = self.value + alpha * (x - self.value)
        return self.value


class OneEuroFilter:
    """One-euro filter (Casiez, Roussel & Vogel, CHI 2012): smooth when still, responsive when moving.

    Parameters
    ----------
    min_cutoff : float
        Cutoff frequency (Hz) at rest; lower = smoother.
    beta : float
        How fast the cutoff rises with speed; higher = less lag on fast changes.
    d_cutoff : float
        Cutoff (Hz) for the derivative estimate.
    """

    def __init__(self, min_cutoff: float = 0.5, beta: float = 0.5, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("one-euro filter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self.value = None
        self._dx = 0.0
        self._t = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: float, t: float) -> float:
        x = float(x)
        if self.value is None:
            self.value, self._t = x, t
            return x
        dt = t - self._t
        if dt <= 0:
            return self.value
        self._t = t
        dx = (x - self.value) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * abs(self._dx)
        self.value = self.value + self._alpha(cutoff, dt) * (x - self.value)
        return self.value


def make_smoother(kind: str, amount: float):
    """Build a scalar smoother: ``kind`` is ``"ema"`` (amount = time constant, s), ``"euro"`` (amount =
    min cutoff, Hz) or ``"none"``."""
    if kind == "ema":
        return ExponentialSmoother(amount)
    if kind == "euro":
        return OneEuroFilter(min_cutoff=amount)
    if kind == "none":
        return ExponentialSmoother(0.0)
    raise ValueError(f"unknown smoothing {kind!r}; use ema, euro or none")


class MoodHysteresis:
    """Keep the top mood stable: switch only when a challenger beats it by ``margin`` for ``dwell`` seconds.

    Parameters
    ----------
    tags : sequence of str
        Tag names aligned with the probability vectors given to :meth:`update`.
    margin : float
        Probability lead the challenger needs over the current top mood.
    dwell : float
        Seconds the same challenger must keep that lead before the switch.
    """

    def __init__(self, tags, margin: float = 0.05, dwell: float = 1.0):
        self.tags = tuple(tags)
        self.margin = float(margin)
        self.dwell = float(dwell)
        self.current: int | None = None
        self._challenger: int | None = None
        self._since = 0.0
        self.switches = 0

    def reset(self) -> None:
        """Forget the current top mood (it faded out): the next one shows at once."""
        self.current = None
        self._challenger = None

    def update(self, probs, t: float) -> str | None:
        """Feed the (smoothed) probabilities at time ``t``; returns the current top tag."""
        p = np.asarray(probs, dtype=np.float64)
        if p.size == 0:
            return None
        best = int(np.argmax(p))
        if self.current is None or self.current >= p.size:
            self.current = best
            self._challenger = None
            return self.tags[best]
        if best != self.current and p[best] > p[self.current] + self.margin:
            if self._challenger != best:
                self._challenger, self._since = best, t
            if t - self._since >= self.dwell:
                self.current = best
                self._challenger = None
                self.switches += 1
        else:
            self._challenger = None
        return self.tags[self.current]


def _quadrant(positive: bool, active: bool) -> int:
    """Russell quadrant 1-4 of the valence and arousal sides."""
    return (1 if positive else 2) if active else (4 if positive else 3)


class QuadrantHysteresis:
    """A Russell quadrant that never flaps: the point must be ``margin`` past an axis (0-1 scale) and stay in the
    new quadrant for ``dwell`` seconds before the quadrant changes.

    A value sitting on a boundary keeps the current quadrant; a diagonal move that crosses a third quadrant for
    less than ``dwell`` seconds never shows it; two changes are always at least ``dwell`` seconds apart. The first
    quadrant counts as a change (a quadrant event connects the first column at once), and :meth:`hold` keeps the
    quadrant while the input says nothing (silence between songs must not fire an event).

    Parameters
    ----------
    margin : float
        Distance past the midpoint (on the 0-1 scale) that counts as being on the other side.
    dwell : float
        Seconds the candidate quadrant must hold.
    """

    def __init__(self, margin: float = 0.03, dwell: float = 2.0):
        self.margin = float(margin)
        self.dwell = float(dwell)
        self.current: int | None = None
        self._candidate: int | None = None
        self._since = 0.0
        self.changes = 0

    def _side(self, x: float, positive_now: bool | None) -> bool:
        if positive_now is None:
            return x >= 0.5
        return x >= 0.5 - self.margin if positive_now else x > 0.5 + self.margin

    def update(self, valence01: float, arousal01: float, t: float) -> tuple[int, bool]:
        """Feed the (smoothed) 0-1 valence/arousal at time ``t``; returns (quadrant 1-4, changed now)."""
        cur = self.current
        pv = None if cur is None else cur in (1, 4)
        pa = None if cur is None else cur in (1, 2)
        q = _quadrant(self._side(valence01, pv), self._side(arousal01, pa))
        if cur is None:
            self.current = q
            return q, True
        if q == cur:
            self._candidate = None
            return cur, False
        if q != self._candidate:
            self._candidate, self._since = q, t
        if t - self._since >= self.dwell:
            self.current, self._candidate = q, None
            self.changes += 1
            return q, True
        return cur, False

    def hold(self, valence01: float, arousal01: float) -> tuple[int, bool]:
        """The quadrant stays as it is (and a pending change is forgotten); before any quadrant was settled, the
        point's own quadrant is reported without being settled."""
        self._candidate = None
        if self.current is not None:
            return self.current, False
        return _quadrant(valence01 >= 0.5, arousal01 >= 0.5), False


class EdgeTrigger:
    """Schmitt trigger with a dwell time: turns on when the value stays above ``threshold + hysteresis / 2`` for
    ``dwell`` seconds, off when it stays below ``threshold - hysteresis / 2`` as long.

    ``update`` returns ``"onset"``, ``"offset"`` or None, so a value hovering around the threshold never flaps.
    """

    def __init__(self, threshold: float = 0.5, hysteresis: float = 0.1, dwell: float = 2.0):
        self.high = float(threshold) + float(hysteresis) / 2
        self.low = float(threshold) - float(hysteresis) / 2
        self.dwell = float(dwell)
        self.on = False
        self._since: float | None = None

    def update(self, value: float, t: float) -> str | None:
        crossing = value < self.low if self.on else value > self.high
        if not crossing:
            self._since = None
            return None
        if self._since is None:
            self._since = t
        if t - self._since < self.dwell:
            return None
        self.on, self._since = not self.on, None
        return "onset" if self.on else "offset"
