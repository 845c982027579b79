"""Test-only emotion backends and OSC helpers for the realtime tests (no tests here).

``FeatureBackend`` derives valence/arousal from simple signal features (so its output follows the audio and is
deterministic) and mood probabilities from the distance to each tag's word-norm valence/arousal; ``SlowBackend``
takes ``DELAY`` seconds per window (slower than the hop); ``FlakyBackend`` fails every other window;
``HangBackend`` stops returning after a few windows; ``BrokenBackend`` returns NaN for every window. They are registered per test through the
``m2e_register_models`` hook, in a fresh plugin registry (see :func:`register_test_backends`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import numpy as np

from m2e_plugin import hookimpl
from m2e_plugin.backends.base import EmotionBackend, Prediction
from m2e_plugin.labels import MOOD_TAGS, TAG_VALENCE_AROUSAL


class FeatureBackend(EmotionBackend):
    name = "rt-feature"
    version = "test"
    sample_rate = 16000
    window_seconds = 2.0
    hop_seconds = 1.0
    mood_tags = MOOD_TAGS

    def __init__(self, device: str = "cpu", **_):
        self.device = device
        self.calls = 0

    def predict_track(self, blocks) -> Prediction:
        x = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks])
        self.calls += 1
        rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
        zcr = float(np.mean(np.abs(np.diff(np.sign(x))) > 0)) if x.size > 1 else 0.0
        arousal = 1.0 + 8.0 * min(1.0, rms * 4.0)
        valence = 1.0 + 8.0 * min(1.0, zcr * 10.0)
        va = np.array(list(TAG_VALENCE_AROUSAL.values()))
        dist = np.hypot(va[:, 0] - valence, va[:, 1] - arousal)
        probs = np.exp(-dist / 1.5)
        return Prediction(valence=valence, arousal=arousal, mood_probabilities=probs.astype(np.float32))


class SlowBackend(FeatureBackend):
    name = "rt-slow"
    DELAY = 0.6

    def predict_track(self, blocks) -> Prediction:
        time.sleep(self.DELAY)
        return super().predict_track(blocks)


class FlakyBackend(FeatureBackend):
    name = "rt-flaky"

    attempts = 0

    def predict_track(self, blocks) -> Prediction:
        self.attempts += 1
        if self.attempts % 2:
            raise RuntimeError("simulated model failure")
        return super().predict_track(blocks)


class HangBackend(FeatureBackend):
    """Answers ``ANSWERS`` calls (the warm-up included), then never returns (a wedged model or driver).
    ``M2E_TEST_HANG_AFTER`` overrides ``ANSWERS`` in a subprocess."""

    name = "rt-hang"
    ANSWERS = 3

    def predict_track(self, blocks) -> Prediction:
        answers = int(os.environ.get("M2E_TEST_HANG_AFTER", self.ANSWERS))
        if self.calls >= answers:
            threading.Event().wait()  # forever
        return super().predict_track(blocks)


class BrokenBackend(FeatureBackend):
    """Answers its warm-up, then gives an unusable prediction (NaN arousal) for every window."""

    name = "rt-broken"

    def predict_track(self, blocks) -> Prediction:
        good = super().predict_track(blocks)
        if self.calls == 1:
            return good
        return Prediction(valence=good.valence, arousal=float("nan"), mood_probabilities=good.mood_probabilities)


TEST_MODELS = (FeatureBackend, SlowBackend, FlakyBackend, HangBackend, BrokenBackend)


class ModelsPlugin:
    """A model plugin registering the given backend classes through the hook, as a third party would."""

    def __init__(self, *classes):
        self.classes = classes or TEST_MODELS

    @hookimpl
    def m2e_register_models(self, register):
        for cls in self.classes:
            register(cls)


def register_test_models(monkeypatch, *classes) -> None:
    """Register ``classes`` (default: the test models above) in a fresh plugin registry; the test's end restores
    the old."""
    from m2e_plugin import plugins

    monkeypatch.setattr(plugins, "_state", plugins._State())
    plugins.register_plugin(ModelsPlugin(*classes), name="m2e-test-models")


def register_test_backends(monkeypatch) -> None:
    register_test_models(monkeypatch)


class OscCollector:
    """A python-osc UDP server on 127.0.0.1 that records every packet: (receive time, timetag or None, messages)."""

    def __init__(self):
        from pythonosc import osc_bundle, osc_message
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.packets: list[tuple[float, float | None, list[tuple[str, list]]]] = []
        collector = self

        class Recording(Dispatcher):
            def call_handlers_for_packet(self, data, client_address):
                if osc_bundle.OscBundle.dgram_is_bundle(data):
                    b = osc_bundle.OscBundle(data)
                    msgs = [(m.address, list(m.params)) for m in b if isinstance(m, osc_message.OscMessage)]
                    collector.packets.append((time.time(), b.timestamp, msgs))
                else:
                    m = osc_message.OscMessage(data)
                    collector.packets.append((time.time(), None, [(m.address, list(m.params))]))
                return super().call_handlers_for_packet(data, client_address)

        # Blocking (one thread): packets are recorded in arrival order, which the timetag checks rely on.
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), Recording())
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def bundles(self, address: str = "/m2e/valence"):
        """(timetag, {address: args}) for the steps that contain ``address``: a step larger than one datagram
        arrives as several bundles with the same timetag, merged here."""
        steps: dict[float, dict] = {}
        for _, tt, msgs in list(self.packets):
            if tt is not None:
                steps.setdefault(tt, {}).update(dict(msgs))
        return [(tt, msgs) for tt, msgs in steps.items() if address in msgs]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its whole group; SIGKILL after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # the group is gone already
        proc.wait(timeout=10)
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def free_udp_port() -> int:
    """A UDP port with nothing listening (bound, read, released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class DevToolsPage:
    """A tiny Chrome DevTools Protocol client (stdlib websocket) for one page target.

    Enough for ``Runtime.evaluate``: client frames are masked text frames; server frames may be fragmented and use
    16/64-bit lengths. Every socket operation has a timeout, so a wedged browser fails the test instead of hanging.
    """

    def __init__(self, ws_url: str, timeout: float = 10.0):
        import base64
        import os
        from urllib.parse import urlparse

        u = urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools handshake refused: {head[:200]!r}")
        self._buf = head.split(b"\r\n\r\n", 1)[1]
        self._id = 0

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_text(self, text: str) -> None:
        import os
        import struct

        payload = text.encode()
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _recv_message(self) -> str:
        import struct

        parts = []
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            payload = self._recv_exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x1, 0x0):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def evaluate(self, expression: str):
        """Evaluate a JavaScript expression in the page and return its value (JSON-able)."""
        import json

        self._id += 1
        self._send_text(json.dumps({"id": self._id, "method": "Runtime.evaluate",
                                    "params": {"expression": expression, "returnByValue": True}}))
        while True:
            reply = json.loads(self._recv_message())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"Runtime.evaluate failed: {reply['error']}")
                result = reply["result"]
                if "exceptionDetails" in result:
                    raise RuntimeError(f"page raised: {result['exceptionDetails'].get('text')} "
                                       f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
                return result["result"].get("value")

    def close(self) -> None:
        self.sock.close()
