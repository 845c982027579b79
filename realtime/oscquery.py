"""OSCQuery (the Vidvox OSCQueryProposal): control surfaces and visual tools find out what `m2e stream` sends and
receives over HTTP + JSON, and find the sidecar itself over mDNS.

``m2e stream --oscquery [PORT]`` serves on http://127.0.0.1:PORT/ (``--oscquery-host`` for another interface):

``GET /``
    The namespace: FULL_PATH and CONTENTS for containers; TYPE (OSC type tags), ACCESS, VALUE, RANGE and
    DESCRIPTION for methods. Every address the active profiles send is ACCESS 1 (read-only) with the arguments sent
    last as VALUE (none before the first send), the ``/m2e/status`` heartbeat included when a profile takes it;
    with ``--control`` the control methods are ACCESS 3 with the current setting as VALUE (``pause``/``resume``:
    ACCESS 2, no value; ``window``/``hop``: ACCESS 1 with ``--no-pace``, which refuses them).
``GET /m2e/mood``, ``GET /m2e/ctl/window?VALUE``
    A sub-tree; one attribute (``{"VALUE": [5.0]}``).
``GET /?HOST_INFO``
    NAME, EXTENSIONS, and the control port as OSC_IP / OSC_PORT / OSC_TRANSPORT ``"UDP"``. Without ``--control``
    nothing receives OSC: those three are left out and no node is writable.

Status codes: 404 for an address not in the namespace; 400 for an attribute this server does not serve (``?UNIT``,
``?LISTEN``: no websocket streaming) or a malformed query; 204 for a served attribute the node lacks (VALUE of a
write-only method or of a value not sent yet, RANGE of an unbounded value, CONTENTS of a method).

The output nodes come from :meth:`~m2e_plugin.realtime.mapping.Mapping.outputs` (the rules that build the messages)
and the control nodes from :data:`~m2e_plugin.realtime.control.COMMANDS` (the table the control port dispatches
on), so what is advertised cannot drift from what is sent and received. The tree is built per request: mood
addresses follow a model switch.

With the optional ``zeroconf`` package (``pip install 'm2e[oscquery]'``) the server is advertised as
``_oscjson._tcp`` and the control port as ``_osc._udp``; without it the HTTP server works the same.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from m2e_plugin.realtime.control import COMMANDS, PREFIX, ControlServer
from m2e_plugin.realtime.monitor import _QuietServer
from m2e_plugin.realtime.osc import STATUS_ADDRESS, Messages
from m2e_plugin.realtime.output import STATUS_FIELDS, status_args

log = logging.getLogger("m2e.realtime.oscquery")

NAME = "m2e stream"
# Node attributes served (also one at a time, `?VALUE`); any other is a 400.
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION")
# What HOST_INFO declares: true only for what is implemented (no websocket, so no LISTEN / PATH_* messages).
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TYPE": True, "TAGS": False,
              "EXTENDED_TYPE": False, "UNIT": False, "CRITICAL": False, "CLIPMODE": False, "OVERLOADS": False,
              "HTML": False, "LISTEN": False, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
              "PATH_REMOVED": False}
_ANY_HOST = ("", "0.0.0.0", "::")


def type_tags(args: list) -> str:
    """OSC type tags of ``args`` as python-osc sends them (a bool is ``T`` whatever its value: the method's type)."""
    tags = []
    for arg in args:
        if isinstance(arg, bool):
            tags.append("T")
        elif isinstance(arg, int):
            tags.append("i" if -2**31 <= arg < 2**31 else "h")
        elif isinstance(arg, float):
            tags.append("f")
        elif isinstance(arg, str):
            tags.append("s")
        else:
            raise TypeError(f"no OSC type tag for {type(arg).__name__}")
    return "".join(tags)


def _json_value(value) -> Any:
    if isinstance(value, (bool, int, str)):
        return value
    number = float(value)  # numpy scalars too
    return number if math.isfinite(number) else None  # JSON has no NaN


def _method(address: str, access: int, description: str, tags: str = "", ranges: list | None = None,
            value: list | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"FULL_PATH": address, "ACCESS": access, "DESCRIPTION": description}
    if tags:
        node["TYPE"] = tags
    if ranges and any(r is not None for r in ranges):
        node["RANGE"] = ranges
    if value is not None and access & 1:
        node["VALUE"] = [_json_value(v) for v in value]
    return node


class OscQueryServer:
    """The OSCQuery HTTP server of a sidecar, plus its mDNS advertisement.

    Parameters
    ----------
    port : int
        TCP port (0: any free port; read :attr:`port`).
    host : str
        Interface; 127.0.0.1 by default, like the control port.
    control : ControlServer, optional
        The control port, already bound: its methods are advertised and HOST_INFO names it. None: read-only.
    top_k : int
        At most this many strings in ``moods`` until the sidecar attaches (``--top``).
    advertise : bool
        Register the mDNS services when ``zeroconf`` is installed.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", *, control: ControlServer | None = None, top_k: int = 3,
                 name: str = NAME, advertise: bool = True):
        self.control = control
        self.top_k = int(top_k)
        self.name = name
        self.advertise = advertise
        self.sidecar = None  # attaches itself (attach); until then values and settings are unknown
        self._osc = None
        self._sent: dict[tuple[int, str], list] = {}  # (id of the mapping or 0, address) -> the arguments sent last
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._zc = None
        self._zc_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        oscquery = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "m2e-oscquery"
            timeout = 10  # a client that connects and sends nothing does not hold a thread for ever

            def log_message(self, fmt, *args):  # keep stderr for the sidecar's own messages
                log.debug("OSCQuery %s: " + fmt, self.client_address[0], *args)

            def do_GET(self):
                self._answer(body=True)

            def do_HEAD(self):
                self._answer(body=False)

            def _answer(self, body: bool):
                try:
                    status, content = oscquery.answer(self.path)
                except Exception as exc:  # a bug answers 500; the sidecar goes on
                    log.warning("OSCQuery: %s failed: %s: %s", self.path, type(exc).__name__, exc)
                    status, content = HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n"
                self.send_response(status)
                if status == HTTPStatus.NO_CONTENT:  # no body, by HTTP's rules
                    self.end_headers()
                    return
                if isinstance(content, str):
                    data, ctype = content.encode(), "text/plain; charset=utf-8"
                else:
                    data, ctype = json.dumps(content, separators=(",", ":")).encode(), "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if body:
                    self.wfile.write(data)

        server_class = type("OscQueryHTTPServer", (_QuietServer,), {
            "label": "OSCQuery", "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        try:
            self._httpd = server_class((host, int(port)), Handler)
        except OSError as exc:
            raise OSError(f"cannot bind the OSCQuery port {host}:{port}: {exc}") from exc
        self.host, self.port = self._httpd.server_address[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # --- what is advertised

    def watch(self, osc) -> None:
        """Advertise what ``osc`` (an :class:`~m2e_plugin.realtime.osc.OscOut`) sends, with the values it sends."""
        if osc is not None and osc is not self._osc:
            osc.listeners.append(self.record)
            self._osc = osc

    def attach(self, sidecar) -> None:
        """Called by the sidecar: its model's tags, output values and settings are served from now on."""
        self.sidecar = sidecar
        self.watch(sidecar.osc)

    def record(self, mapping, messages: Messages) -> None:
        """Keep the arguments ``mapping`` (None: the heartbeat) sent last to each address (called on the output
        thread, once per step and mapping). Per mapping: two profiles may send one address with other types."""
        key = id(mapping) if mapping is not None else 0
        with self._lock:
            for address, args in messages:
                self._sent[key, address] = list(args)

    def _tags(self) -> tuple[str, ...]:
        sc = self.sidecar
        if sc is None:
            return ()  # the model is still loading: its mood addresses appear when it is ready
        state = sc.output.state  # the tags of the latest output step (they change with a model switch)
        return tuple(state.tags) if state is not None else tuple(sc.runner.current.backend.mood_tags)

    def methods(self) -> dict[str, dict[str, Any]]:
        """{address: method node} for everything advertised now."""
        sc = self.sidecar
        with self._lock:
            sent = dict(self._sent)  # the lists are replaced, never changed in place: a consistent snapshot
        mappings = list({id(d.mapping): d.mapping for d in self._osc.destinations}.values()) if self._osc else []
        tags = self._tags()
        top_k = sc.output.top_k if sc is not None else self.top_k
        out: dict[str, dict[str, Any]] = {}
        for mapping in mappings:
            for sent_to in mapping.outputs(tags, top_k):
                tags_sent = type_tags(sent_to.args)
                node = out.get(sent_to.address)
                if node is None:  # the first profile sending an address describes it, with the values it sent
                    out[sent_to.address] = _method(sent_to.address, 1, sent_to.description, tags_sent,
                                                   sent_to.ranges, sent.get((id(mapping), sent_to.address)))
                elif node.get("TYPE") != tags_sent:  # one TYPE per address: say what the other profile sends
                    node["DESCRIPTION"] += f"; profile {mapping.origin} sends it as {tags_sent!r}"
        if any(m.heartbeat for m in mappings):
            example = status_args({"state": "", "uptime": 0.0, "updates": 0, "skipped": 0, "overflows": 0,
                                   "model": "", "level_db": 0.0}, 0.0)
            out.setdefault(STATUS_ADDRESS, _method(STATUS_ADDRESS, 1, "heartbeat, once a second: "
                                                   + ", ".join(STATUS_FIELDS), type_tags(example), None,
                                                   sent.get((0, STATUS_ADDRESS))))
        if self.control is not None:
            for name, command in COMMANDS.items():
                readable = command.value is not None
                writable = sc is None or command.writable(sc)
                value = command.value(sc) if readable and sc is not None else None
                out[PREFIX + name] = _method(PREFIX + name, int(readable) | (2 if writable else 0),
                                             command.description, command.type,
                                             command.range() if command.range else None, value)
        return out

    def tree(self) -> dict[str, Any]:
        """The root node, with every container and method below it."""
        sc = self.sidecar
        model = f" (model {sc.runner.name})" if sc is not None else ""
        root: dict[str, Any] = {"FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {},
                                "DESCRIPTION": f"m2e stream: valence, arousal and moods of the audio input{model}"}
        for address, method in sorted(self.methods().items()):
            node = root
            parts = address.strip("/").split("/")
            for i, part in enumerate(parts):
                contents = node.setdefault("CONTENTS", {})
                if part not in contents:
                    contents[part] = {"FULL_PATH": "/" + "/".join(parts[:i + 1]), "ACCESS": 0}
                node = contents[part]
            node.update(method)  # one profile may send /x and another /x/y: a method that is also a container
        return root

    def host_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"NAME": self.name, "EXTENSIONS": dict(EXTENSIONS)}
        if self.control is not None:
            if self.control.host not in _ANY_HOST:  # a wildcard: the address the client reached HTTP on
                info["OSC_IP"] = self.control.host
            info["OSC_PORT"] = self.control.port
            info["OSC_TRANSPORT"] = "UDP"
        return info

    def answer(self, target: str) -> tuple[int, Any]:
        """(HTTP status, JSON-able content or a text) for a request target such as ``/m2e/ctl/window?VALUE``."""
        parts = urlsplit(target)
        path, query = unquote(parts.path) or "/", unquote(parts.query)
        if query == "HOST_INFO":
            return HTTPStatus.OK, self.host_info()
        if query and query not in ATTRIBUTES:
            return HTTPStatus.BAD_REQUEST, f"attribute {query!r} is not served (known: {', '.join(ATTRIBUTES)})\n"
        node = self.tree()
        for part in [p for p in path.split("/") if p]:
            node = node.get("CONTENTS", {}).get(part)
            if node is None:
                return HTTPStatus.NOT_FOUND, f"no OSC address {path}\n"
        if not query:
            return HTTPStatus.OK, node
        if query not in node:
            return HTTPStatus.NO_CONTENT, None
        return HTTPStatus.OK, {query: node[query]}

    # --- serving

    def start(self) -> None:
        """Serve and advertise (once; a second call does nothing: `m2e stream` serves while the model loads)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="m2e-oscquery", daemon=True)
        self._thread.start()
        if not self.advertise:
            return
        try:
            import zeroconf
        except ImportError:
            log.info("OSCQuery: not advertised over mDNS (the zeroconf package is not installed: pip install "
                     "'m2e[oscquery]'); clients connect to %s directly", self.url)
            return
        threading.Thread(target=self._register, args=(zeroconf,), name="m2e-oscquery-mdns", daemon=True).start()

    def _register(self, zeroconf) -> None:
        """Register ``_oscjson._tcp`` (and ``_osc._udp`` for the control port); on a thread: probing takes ~1 s."""
        def addresses(host: str) -> list[str]:
            return zeroconf.get_all_addresses() if host in _ANY_HOST else [host]

        name = f"{self.name} {self.port}"  # two sidecars on one machine get two names
        server = f"m2e-{self.port}.local."
        services = [zeroconf.ServiceInfo("_oscjson._tcp.local.", f"{name}._oscjson._tcp.local.", port=self.port,
                                         properties={"txtvers": "1"}, server=server,
                                         parsed_addresses=addresses(self.host))]
        if self.control is not None:
            services.append(zeroconf.ServiceInfo("_osc._udp.local.", f"{name}._osc._udp.local.",
                                                 port=self.control.port, properties={"txtvers": "1"}, server=server,
                                                 parsed_addresses=addresses(self.control.host)))
        try:
            zc = zeroconf.Zeroconf()
            with self._zc_lock:
                if self._stopping.is_set():
                    zc.close()
                    return
                self._zc = zc
            for info in services:
                zc.register_service(info, allow_name_change=True)
            log.info("OSCQuery: advertised over mDNS as %r (%s)", name,
                     ", ".join(info.type.removesuffix(".local.") for info in services))
        except Exception as exc:  # no multicast route, a closed zeroconf at shutdown...: HTTP still answers
            if not self._stopping.is_set():
                log.warning("OSCQuery: mDNS advertisement failed (%s: %s); clients can still connect to %s",
                            type(exc).__name__, exc, self.url)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:  # shutdown() would wait forever for a loop that never started
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._zc_lock:
            zc, self._zc = self._zc, None
        if zc is not None:
            # Goodbye packets take a few hundred ms: bounded, so the 1.8 s shutdown watchdog is never reached.
            closer = threading.Thread(target=zc.close, name="m2e-oscquery-mdns-close", daemon=True)
            closer.start()
            closer.join(timeout=0.5)
