"""OSC out: destinations, each with a mapping (see :mod:`~m2e_plugin.realtime.mapping`) and its own sender thread.

Each output step goes out with one timetag, split into bundles of at most 1,472 bytes (one Ethernet frame, no IP
fragmentation) that share that timetag. A destination that is slow to resolve, down or refusing never delays the
others: resolution and sending run on its own thread; errors are counted and logged (rate-limited).

Profiles (``--profile NAME`` or ``host:port@NAME``) are the shipped mappings ``default``, ``resolume``,
``touchdesigner``, ``wekinator``, ``max`` (``realtime/mappings/*.yaml``), or a mapping file of your own
(``host:port@show.yaml``). Mappings with ``heartbeat: true`` (default, resolume and wekinator excepted) also get
the ``/m2e/status`` heartbeat once a second: state, uptime (s), model updates, skipped windows, input overflows,
last latency (ms), model name, input level of the latest window (dBFS), xruns, input state
(live/opening/lost/stopped).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.parsing import osc_types

from m2e_plugin.realtime.mapping import Mapping, MappingError, load_mapping

log = logging.getLogger("m2e.realtime.osc")

Messages = list[tuple[str, list]]
STATUS_ADDRESS = "/m2e/status"  # the heartbeat


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
    quadrant_changed: bool = False  # the (hysteresis) quadrant changed at this step
    features: dict | None = None  # fast features (level_db, peak_db, level, onset, tempo, beat_phase)
    beat: bool = False  # a beat was detected since the previous step


_MAPPINGS: dict[str, Mapping] = {}


def get_mapping(name: str) -> Mapping:
    """The mapping for a profile name or file, loaded once per process (destinations naming the same mapping
    share its event state, so an event is detected once per step)."""
    mapping = _MAPPINGS.get(name)
    if mapping is None:
        mapping = _MAPPINGS[name] = load_mapping(name)
    return mapping


class Destination:
    """One OSC receiver, with its own sender thread and socket.

    Name resolution and sending happen on that thread, so a host whose DNS lookup takes seconds, or a dead one,
    delays nothing but itself. Live, the thread sends the newest packets only: when it falls behind, the oldest
    waiting step is dropped (counted in ``dropped``). A file replayed without pace passes ``wait`` to :meth:`put`
    instead, so every step goes out (back-pressure on the analysis, never on live audio).
    """

    RETRY_RESOLVE_S = 5.0
    LOG_EVERY_S = 10.0
    QUEUE = 4  # steps waiting at most (~130 ms at 30 Hz)

    def __init__(self, host: str, port: int, profile: str = "default"):
        self.host, self.port, self.profile = host, int(port), profile
        self.mapping = get_mapping(profile)
        self.address: tuple | None = None  # resolved socket address: (ip, port), or IPv6's 4-tuple
        self.sent = 0  # steps (state or heartbeat) sent whole
        self.datagrams = 0
        self.errors = 0
        self.dropped = 0  # steps dropped because this destination's thread was behind (slow resolution)
        self.last_error = ""
        self._next_resolve = 0.0
        self._resolve_error = ""
        self._next_log = 0.0
        self._queue: deque[list[bytes]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 as written on the command line
        return f"{host}:{self.port}@{self.profile}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"m2e-osc-{self.label}", daemon=True)
        self._thread.start()

    def put(self, packets: list[bytes], wait: float = 0.0) -> None:
        """Queue one step's datagrams; when the queue is full, wait up to ``wait`` seconds for room (0: never
        block), then drop the oldest waiting step."""
        with self._cond:
            if wait > 0 and len(self._queue) >= self.QUEUE:
                self._cond.wait_for(lambda: len(self._queue) < self.QUEUE or self._closing, timeout=wait)
            if len(self._queue) >= self.QUEUE:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(packets)
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue

    def close(self, timeout: float = 0.5) -> None:
        """Send what is queued (within ``timeout``), then stop; a thread stuck resolving is abandoned."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None and (self._thread is None or not self._thread.is_alive()):
            self._sock.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                packets = self._queue.popleft()
                self._cond.notify_all()  # room for a producer waiting in put()
            if self._resolve():
                self._deliver(packets)

    def _deliver(self, packets: list[bytes]) -> None:
        try:
            for data in packets:
                self._sock.sendto(data, self.address)
                self.datagrams += 1
            self.sent += 1
        except OSError as exc:  # refused, unreachable, buffer full: this destination only
            self._fail(f"send failed: {exc}")

    def _resolve(self) -> bool:
        if self.address is not None:
            return True
        now = time.monotonic()
        if now < self._next_resolve:  # between lookups: the step is lost for the same reason as the last one
            self._fail(self._resolve_error or "host not resolved yet")
            return False
        self._next_resolve = now + self.RETRY_RESOLVE_S
        try:
            info = socket.getaddrinfo(self.host, self.port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
            # IPv4 first: "localhost" often lists ::1 first, where receivers bound to 0.0.0.0 never listen
            family, _, _, _, address = min(info, key=lambda entry: entry[0] != socket.AF_INET)
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            self._resolve_error = f"cannot resolve host: {exc}"
            self._fail(self._resolve_error)
            return False
        sock.setblocking(False)  # a full send buffer drops a packet, never stalls the thread
        self._sock, self.address = sock, address
        return True

    def _fail(self, why: str) -> None:
        self.errors += 1
        self.last_error = why
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + self.LOG_EVERY_S
            log.warning("OSC destination %s: %s (%d errors so far; other destinations unaffected)",
                        self.label, why, self.errors)


class PrintDestination(Destination):
    """``-``: a dry run. Each step's datagrams, decoded again, as text lines on standard output, one per message:
    ``<timetag, Unix seconds> <address> <arguments>`` (strings quoted). Decoding the bytes a receiver would get
    checks a mapping without one; steps are never dropped (the writer waits, as a pipe makes it).

    ``on_closed`` is called once when standard output goes away (``| head``): the stream stops instead of
    analysing for no one.
    """

    def __init__(self, profile: str = "default", *, on_closed=None, stream=None):
        super().__init__("-", 0, profile)
        self.on_closed = on_closed
        self.stream = stream  # None: sys.stdout when written (so it follows a redirection)
        self._closed = False

    @property
    def label(self) -> str:
        return f"-@{self.profile}"

    def put(self, packets: list[bytes], wait: float = 0.0) -> None:
        super().put(packets, wait=max(wait, 1.0))  # a dry run shows every step; live audio never waits on it

    def _resolve(self) -> bool:
        return True

    def _deliver(self, packets: list[bytes]) -> None:
        if self._closed:
            self.dropped += 1
            return
        lines = [format_message(address, args, timetag) for data in packets
                 for timetag, address, args in decode_datagram(data)]
        try:
            out = self.stream if self.stream is not None else sys.stdout
            out.write("".join(line + "\n" for line in lines))
            out.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:  # ValueError: a closed file object
            self._closed = True
            self.errors += 1  # not _fail's warning: the reader leaving (`| head`) is how a dry run ends
            self.last_error = f"standard output closed ({exc.__class__.__name__})"
            if self.on_closed is not None:
                self.on_closed()
            return
        self.datagrams += len(packets)
        self.sent += 1


def decode_datagram(data: bytes) -> list[tuple[float, str, list]]:
    """``(timetag, address, args)`` of every message in an OSC datagram (bundles unpacked; timetag as Unix seconds,
    0.0 for a bare message)."""
    # Not OscPacket: it replaces every timetag already past with the time of decoding.
    if OscBundle.dgram_is_bundle(data):
        out = []
        bundle = OscBundle(data)
        for content in bundle:
            if isinstance(content, OscBundle):
                out.extend(decode_datagram(content.dgram))
            else:
                out.append((float(bundle.timestamp), content.address, list(content.params)))
        return out
    message = OscMessage(data)
    return [(0.0, message.address, list(message.params))]


def format_message(address: str, args: list, timetag: float = 0.0) -> str:
    """One message as a text line: ``<timetag> <address> <args...>`` (floats to 6 significant digits)."""
    def text(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:.6g}"
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    return " ".join([f"{timetag:.3f}", address, *(text(a) for a in args)])


def parse_destination(text: str, default_profile: str = "default", *, on_closed=None) -> Destination:
    """Parse ``host:port``, ``host:port@profile``, ``:port`` or ``port`` (host 127.0.0.1), or a host alone
    (``host``, ``host@profile``, ``[::1]``; the profile's port); ``-`` or ``-@profile`` prints the messages on
    standard output instead (:class:`PrintDestination`, which calls ``on_closed`` when standard output goes away)."""
    spec, _, profile = str(text).strip().partition("@")
    profile = profile or default_profile
    try:
        mapping = get_mapping(profile)
    except MappingError as exc:
        raise ValueError(f"OSC destination {text!r}: {exc}") from None
    if spec == "-":
        return PrintDestination(profile, on_closed=on_closed)
    host, sep, port_text = spec.rpartition(":")
    if not sep:
        host, port_text = "", spec
    if (spec.startswith("[") and spec.endswith("]")) or (not sep and spec and not spec.isdigit()):
        host, port_text = spec, str(mapping.port)  # a host alone: the profile's port, as with no --osc at all
    elif not spec:
        port_text = str(mapping.port)
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"OSC destination {text!r}: port {port_text!r} is not a number (use host:port)") from None
    if not 0 < port < 65536:
        raise ValueError(f"OSC destination {text!r}: port {port} is out of range 1-65535")
    return Destination(host, port, profile)


MAX_DATAGRAM = 1472  # one Ethernet frame (1500) minus IPv4 and UDP headers: no IP fragmentation


def build_message(address: str, args: list) -> bytes:
    msg = OscMessageBuilder(address)
    for a in args:
        msg.add_arg(a)
    return msg.build().dgram


def build_bundles(messages: Messages, timetag: float, limit: int = MAX_DATAGRAM) -> list[bytes]:
    """``messages`` as OSC bundles of at most ``limit`` bytes each, all stamped with ``timetag`` (seconds since
    the Unix epoch). A message that alone exceeds the limit travels in a bundle of its own."""
    header = b"#bundle\0" + osc_types.write_date(timetag)
    out: list[bytes] = []
    parts: list[bytes] = []
    size = len(header)
    for address, args in messages:
        element = build_message(address, args)
        element = osc_types.write_int(len(element)) + element
        if parts and size + len(element) > limit:
            out.append(header + b"".join(parts))
            parts, size = [], len(header)
        parts.append(element)
        size += len(element)
    if parts:
        out.append(header + b"".join(parts))
    return out


def build_bundle(messages: Messages, timetag: float) -> bytes:
    """One OSC bundle (bytes) holding all ``messages``, whatever its size."""
    return build_bundles(messages, timetag, limit=1 << 30)[0]


class OscOut:
    """Send each step to several destinations, each through its own thread (see :class:`Destination`).

    Parameters
    ----------
    destinations : list of Destination
        Receivers; each has its own profile.
    """

    def __init__(self, destinations: list[Destination], *, wait: float = 0.0):
        if not destinations:
            raise ValueError("at least one OSC destination is needed")
        self.destinations = destinations
        self.wait = float(wait)  # seconds a step may wait for a busy destination (0 live; > 0 file without pace)
        self.bundles = 0
        # Called with (mapping, messages) for each step's messages once built, per mapping, and with (None, messages)
        # for the heartbeat: OSCQuery's VALUEs.
        self.listeners: list[Callable[[Mapping | None, Messages], None]] = []
        self._last_timetag = 0.0
        for d in destinations:
            d.start()

    def _timetag(self, timetag: float | None) -> float:
        timetag = time.time() if timetag is None else timetag
        # Strictly increasing timetags, even for bundles built within the clock's resolution or after a clock step.
        timetag = max(timetag, self._last_timetag + 1e-6)
        self._last_timetag = timetag
        return timetag

    def send_state(self, state: EmotionState, timetag: float | None = None) -> None:
        """Queue one step for every destination (built once per profile), all with the same timetag."""
        timetag = self._timetag(timetag)
        now = time.monotonic()
        cache: dict[int, list[bytes]] = {}
        for d in self.destinations:
            packets = cache.get(id(d.mapping))
            if packets is None:  # once per mapping and step: its event detectors advance exactly once
                messages = d.mapping.build(state, now)
                packets = cache[id(d.mapping)] = build_bundles(messages, timetag)
                self._tell(d.mapping, messages)
            d.put(packets, self.wait)
        self.bundles += 1

    def send_status(self, args: list, timetag: float | None = None) -> None:
        """The ``/m2e/status`` heartbeat, to every destination whose profile takes it."""
        messages = [(STATUS_ADDRESS, args)]
        packets = build_bundles(messages, self._timetag(timetag))
        for d in self.destinations:
            if d.mapping.heartbeat:
                d.put(packets)
        if any(d.mapping.heartbeat for d in self.destinations):
            self._tell(None, messages)

    def _tell(self, mapping: Mapping | None, messages: Messages) -> None:
        for listener in self.listeners:
            try:
                listener(mapping, messages)
            except Exception as exc:  # an observer never stops the show
                log.error("OSC listener failed: %s: %s", type(exc).__name__, exc)

    def idle(self) -> bool:
        return all(d.idle() for d in self.destinations)

    def close(self, timeout: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        for d in self.destinations:
            d.close(max(0.0, deadline - time.monotonic()))
