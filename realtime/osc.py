"""OSC out: address profiles for the common hosts, and a sender that reaches several destinations.

Each output step is one bundle with one timetag, so a receiver updates every value atomically. A destination
that is down, unresolvable or refusing never stops the others: errors are counted and logged (rate-limited).

Profiles (``--profile`` or ``host:port@profile``):

``default``
    ``/m2e/valence``, ``/m2e/arousal`` (0-1), ``/m2e/valence_raw``, ``/m2e/arousal_raw`` (1-9), ``/m2e/quadrant``
    (int 1-4), ``/m2e/moods`` (top tags, strings), ``/m2e/mood/<tag>`` (0-1), ``/m2e/latency_ms``.
``resolume``
    Floats 0-1 only (what Resolume parameters take): ``/m2e/valence``, ``/m2e/arousal``, ``/m2e/quadrant/<1-4>``
    (1.0 for the current quadrant, else 0.0: usable as clip triggers), ``/m2e/mood/<tag>``. Resolume listens on
    UDP 7000 by default.
``touchdesigner``
    Flat, numeric addresses so an OSC In CHOP makes one channel per value: ``/m2e_valence``, ``/m2e_arousal``,
    ``/m2e_valence_raw``, ``/m2e_arousal_raw``, ``/m2e_quadrant``, ``/m2e_top_index`` (index into the tag list),
    ``/m2e_mood_<tag>``, ``/m2e_latency_ms``.
``wekinator``
    One ``/wek/inputs`` message of floats: valence, arousal (0-1), then every mood probability in tag order
    (2 + the number of tags the model emits: 58 for all 56 MTG-Jamendo tags, 18 for ``lite``'s 16). Wekinator
    listens on UDP 6448 by default.

Every profile but ``wekinator`` also gets the ``/m2e/status`` heartbeat: state, uptime (s), model updates,
skipped windows, input overflows, last latency (ms), model name, input level of the latest window (dBFS).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from m2e_plugin.labels import normalise_va

log = logging.getLogger("m2e.realtime.osc")

Messages = list[tuple[str, list]]


@dataclass
class EmotionState:
    """What one output step carries (values already smoothed)."""

    valence: float  # 1-9
    arousal: float  # 1-9
    quadrant: int  # 1-4
    moods: list[str]  # top tags, most relevant first
    tags: tuple[str, ...]  # tag order of ``probs``
    probs: np.ndarray  # (len(tags),) in [0, 1]
    latency_ms: float  # end of the latest analysed window -> this step
    fresh: bool = False  # True when this step carries a new model output


def _default(s: EmotionState) -> Messages:
    msgs: Messages = [
        ("/m2e/valence", [normalise_va(s.valence)]),
        ("/m2e/arousal", [normalise_va(s.arousal)]),
        ("/m2e/valence_raw", [float(s.valence)]),
        ("/m2e/arousal_raw", [float(s.arousal)]),
        ("/m2e/quadrant", [int(s.quadrant)]),
        ("/m2e/moods", list(s.moods)),
    ]
    msgs += [(f"/m2e/mood/{t}", [float(p)]) for t, p in zip(s.tags, s.probs)]
    msgs.append(("/m2e/latency_ms", [float(s.latency_ms)]))
    return msgs


def _resolume(s: EmotionState) -> Messages:
    msgs: Messages = [("/m2e/valence", [normalise_va(s.valence)]), ("/m2e/arousal", [normalise_va(s.arousal)])]
    msgs += [(f"/m2e/quadrant/{q}", [1.0 if q == s.quadrant else 0.0]) for q in (1, 2, 3, 4)]
    msgs += [(f"/m2e/mood/{t}", [float(p)]) for t, p in zip(s.tags, s.probs)]
    return msgs


def _touchdesigner(s: EmotionState) -> Messages:
    top = s.tags.index(s.moods[0]) if s.moods and s.moods[0] in s.tags else -1
    msgs: Messages = [
        ("/m2e_valence", [normalise_va(s.valence)]),
        ("/m2e_arousal", [normalise_va(s.arousal)]),
        ("/m2e_valence_raw", [float(s.valence)]),
        ("/m2e_arousal_raw", [float(s.arousal)]),
        ("/m2e_quadrant", [float(s.quadrant)]),
        ("/m2e_top_index", [float(top)]),
    ]
    msgs += [(f"/m2e_mood_{t}", [float(p)]) for t, p in zip(s.tags, s.probs)]
    msgs.append(("/m2e_latency_ms", [float(s.latency_ms)]))
    return msgs


def _wekinator(s: EmotionState) -> Messages:
    return [("/wek/inputs", [normalise_va(s.valence), normalise_va(s.arousal)] + [float(p) for p in s.probs])]


@dataclass(frozen=True)
class Profile:
    name: str
    build: Callable[[EmotionState], Messages]
    default_port: int
    heartbeat: bool = True


PROFILES: dict[str, Profile] = {
    "default": Profile("default", _default, 9000),
    "resolume": Profile("resolume", _resolume, 7000),
    "touchdesigner": Profile("touchdesigner", _touchdesigner, 9000),
    "wekinator": Profile("wekinator", _wekinator, 6448, heartbeat=False),
}


@dataclass
class Destination:
    """One OSC receiver."""

    host: str
    port: int
    profile: str = "default"
    address: tuple[str, int] | None = None  # resolved (ip, port)
    sent: int = 0
    errors: int = 0
    last_error: str = ""
    _next_resolve: float = field(default=0.0, repr=False)
    _next_log: float = field(default=0.0, repr=False)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}@{self.profile}"


def parse_destination(text: str, default_profile: str = "default") -> Destination:
    """Parse ``host:port``, ``host:port@profile``, ``:port`` or ``port`` (host 127.0.0.1)."""
    spec, _, profile = str(text).strip().partition("@")
    profile = profile or default_profile
    if profile not in PROFILES:
        raise ValueError(f"OSC destination {text!r}: unknown profile {profile!r} (use {', '.join(PROFILES)})")
    host, sep, port_text = spec.rpartition(":")
    if not sep:
        host, port_text = "", spec
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"OSC destination {text!r}: port {port_text!r} is not a number (use host:port)") from None
    if not 0 < port < 65536:
        raise ValueError(f"OSC destination {text!r}: port {port} is out of range 1-65535")
    return Destination(host, port, profile)


def build_bundle(messages: Messages, timetag: float) -> bytes:
    """One OSC bundle (bytes) holding ``messages``, stamped with ``timetag`` (seconds since the Unix epoch)."""
    bundle = OscBundleBuilder(timetag)
    for address, args in messages:
        msg = OscMessageBuilder(address)
        for a in args:
            msg.add_arg(a)
        bundle.add_content(msg.build())
    return bundle.build().dgram


def build_message(address: str, args: list) -> bytes:
    msg = OscMessageBuilder(address)
    for a in args:
        msg.add_arg(a)
    return msg.build().dgram


class OscOut:
    """Send bundles to several destinations over one non-blocking UDP socket.

    Parameters
    ----------
    destinations : list of Destination
        Receivers; each has its own profile.
    """

    RETRY_RESOLVE_S = 5.0
    LOG_EVERY_S = 10.0

    def __init__(self, destinations: list[Destination]):
        if not destinations:
            raise ValueError("at least one OSC destination is needed")
        self.destinations = destinations
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)  # a full send buffer must drop a packet, never stall the output thread
        self.bundles = 0
        self._last_timetag = 0.0
        for d in destinations:
            self._resolve(d)

    def _resolve(self, d: Destination) -> bool:
        now = time.monotonic()
        if d.address is not None:
            return True
        if now < d._next_resolve:
            return False
        d._next_resolve = now + self.RETRY_RESOLVE_S
        try:
            info = socket.getaddrinfo(d.host, d.port, socket.AF_INET, socket.SOCK_DGRAM)
            d.address = info[0][4][:2]
            return True
        except OSError as exc:
            self._fail(d, f"cannot resolve host: {exc}")
            return False

    def _fail(self, d: Destination, why: str) -> None:
        d.errors += 1
        d.last_error = why
        now = time.monotonic()
        if now >= d._next_log:
            d._next_log = now + self.LOG_EVERY_S
            log.warning("OSC destination %s: %s (%d errors so far; other destinations unaffected)",
                        d.label, why, d.errors)

    def _send(self, d: Destination, data: bytes) -> None:
        if not self._resolve(d):
            return
        try:
            self._sock.sendto(data, d.address)
            d.sent += 1
        except OSError as exc:  # refused, unreachable, buffer full: this destination only
            self._fail(d, f"send failed: {exc}")

    def send_state(self, state: EmotionState, timetag: float | None = None) -> None:
        """Send one bundle per destination (built once per profile), all stamped with the same timetag."""
        timetag = time.time() if timetag is None else timetag
        # Strictly increasing timetags, even for bundles built within the clock's resolution or after a clock step.
        timetag = max(timetag, self._last_timetag + 1e-6)
        self._last_timetag = timetag
        cache: dict[str, bytes] = {}
        for d in self.destinations:
            data = cache.get(d.profile)
            if data is None:
                data = cache[d.profile] = build_bundle(PROFILES[d.profile].build(state), timetag)
            self._send(d, data)
        self.bundles += 1

    def send_status(self, args: list, timetag: float | None = None) -> None:
        """The ``/m2e/status`` heartbeat, to every destination whose profile takes it."""
        data = build_bundle([("/m2e/status", args)], time.time() if timetag is None else timetag)
        for d in self.destinations:
            if PROFILES[d.profile].heartbeat:
                self._send(d, data)

    def close(self) -> None:
        self._sock.close()
