"""A live monitor page: the valence/arousal point (0-1, as OSC sends it) on the Russell plane, the quadrant (with
hysteresis), top moods, input level and tempo, and the stream's state (live / paused / no input / warming up) and
counters (overflows, xruns, skipped windows). Scales to a full second screen.

``m2e stream --monitor PORT`` serves it on http://127.0.0.1:PORT/. The page (``monitor/index.html`` +
``monitor/monitor.js``, package data) subscribes to ``/events``, a server-sent-events stream (output steps as
plain messages, the heartbeat as ``status`` events once a second); ``/state`` and ``/status`` return the latest of
each as JSON. Standard library only. Clients are capped and each stream is rate-limited, so a
forgotten browser tab cannot slow the sidecar down.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable

log = logging.getLogger("m2e.realtime.monitor")

_ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
           "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/monitor.js": ("monitor.js", "text/javascript; charset=utf-8")}


def _asset(name: str) -> bytes:
    return resources.files("m2e_plugin.realtime").joinpath("monitor", name).read_bytes()


class _QuietServer(ThreadingHTTPServer):
    """A browser that closes a tab mid-request is routine, not a traceback on the sidecar's stderr. ``label`` names
    the server in log lines (the OSCQuery server is one too)."""

    label = "monitor"
    daemon_threads = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            log.debug("%s: %s went away (%s)", self.label, client_address[0], exc)
        else:
            log.warning("%s: request from %s failed: %s: %s", self.label, client_address[0], type(exc).__name__, exc)


class MonitorServer:
    """HTTP server for the monitor page.

    Parameters
    ----------
    port : int
        TCP port (0: any free port; read :attr:`port`).
    host : str
        Interface; 127.0.0.1 by default (the page is for the performer's machine).
    max_clients : int
        Concurrent event streams allowed; more get HTTP 503.
    max_rate : float
        Events per second per client at most.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", *, max_clients: int = 8, max_rate: float = 20.0):
        self._cond = threading.Condition()
        self._latest: bytes | None = None
        self._version = 0
        self._clients = 0
        self._stopping = threading.Event()
        self.max_clients = int(max_clients)
        self.min_interval = 1.0 / float(max_rate)
        self.info: dict[str, Any] = {}
        # Returns the heartbeat fields (set by the sidecar); sent as a "status" event once a second.
        self.status: Callable[[], dict[str, Any]] | None = None
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "m2e-monitor"

            def log_message(self, fmt, *args):  # keep stderr for the sidecar's own messages
                log.debug("monitor %s: " + fmt, self.client_address[0], *args)

            head = False

            def do_HEAD(self):  # `curl -I`, link checkers: the GET's headers, no body
                self.head = True
                if self.path.split("?", 1)[0] == "/events":
                    self._send(HTTPStatus.OK, b"", "text/event-stream")
                else:
                    self.do_GET()

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in _ASSETS:
                    name, ctype = _ASSETS[path]
                    self._send(HTTPStatus.OK, _asset(name), ctype)
                elif path == "/state":
                    with monitor._cond:
                        body = monitor._latest or b"{}"
                    self._send(HTTPStatus.OK, body, "application/json")
                elif path == "/status":
                    self._send(HTTPStatus.OK, monitor._status_json(), "application/json")
                elif path == "/info":
                    self._send(HTTPStatus.OK, json.dumps(monitor.info).encode(), "application/json")
                elif path == "/events":
                    monitor._serve_events(self)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

            def _send(self, status, body: bytes, ctype: str):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if not self.head:
                    self.wfile.write(body)

        try:
            self._httpd = _QuietServer((host, int(port)), Handler)
        except OSError as exc:
            raise OSError(f"cannot bind the monitor page on {host}:{port}: {exc}") from exc
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Make ``snapshot`` the latest state; event streams pick it up (only the newest, never a backlog)."""
        data = json.dumps(snapshot, separators=(",", ":")).encode()
        with self._cond:
            self._latest = data
            self._version += 1
            self._cond.notify_all()

    def _serve_events(self, handler: BaseHTTPRequestHandler) -> None:
        with self._cond:
            if self._clients >= self.max_clients:
                full = True
            else:
                full = False
                self._clients += 1
        if full:
            handler._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many monitor clients\n", "text/plain")
            return
        try:
            handler.send_response(HTTPStatus.OK)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Cache-Control", "no-store")
            handler.send_header("Connection", "keep-alive")
            handler.end_headers()
            handler.wfile.write(b"retry: 1000\n\n")
            handler.wfile.flush()
            seen = -1
            next_status = 0.0
            while not self._stopping.is_set():
                with self._cond:
                    self._cond.wait_for(lambda: self._version != seen or self._stopping.is_set(),
                                        timeout=max(0.0, next_status - time.monotonic()))
                    data, version = self._latest, self._version
                if self._stopping.is_set():
                    break
                if version != seen and data is not None:
                    seen = version
                    handler.wfile.write(b"data: " + data + b"\n\n")
                if time.monotonic() >= next_status:  # the state is shown even when no values flow
                    next_status = time.monotonic() + 1.0
                    handler.wfile.write(b"event: status\ndata: " + self._status_json() + b"\n\n")
                handler.wfile.flush()
                self._stopping.wait(self.min_interval)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the browser went away
        finally:
            with self._cond:
                self._clients -= 1

    def _status_json(self) -> bytes:
        fields: dict[str, Any] = {"state": "warming up"}
        if self.status is not None:
            try:
                fields = dict(self.status())
            except Exception as exc:  # never let the page break the sidecar
                log.debug("monitor status failed: %s", exc)
        fields["source"] = self.info.get("source", "")
        return json.dumps(fields, separators=(",", ":"), default=str).encode()

    def start(self) -> None:
        """Serve (once; a second call does nothing: `m2e stream` serves while the model loads)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="m2e-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:  # shutdown() would wait forever for a loop that never started
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
