"""`m2e stream --oscquery`: the OSCQuery namespace of a running sidecar, queried over HTTP (urllib: no extra
needed), by a third-party client (python-oscquery, skipped when absent) and found over mDNS (zeroconf).

Every test starts the real CLI in a subprocess on a looping file (the test-only ``rt-feature`` model: fast, the
same tags as lite) and polls with a deadline instead of sleeping.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from test_realtime_cli import m2e
from test_realtime_support import OscCollector, free_udp_port

from m2e_plugin.labels import MOOD_TAGS

PINNED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # other jobs share the machine


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, target: str, host: str = "127.0.0.1"):
    """(HTTP status, decoded JSON or text or None) of ``GET target``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{target}", timeout=5) as reply:
            status, body, ctype = reply.status, reply.read(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, body, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if not body:
        return status, None
    return status, json.loads(body) if ctype.startswith("application/json") else body.decode()


def poll(predicate, timeout: float = 60.0, what: str = "condition"):
    """The predicate's first truthy result within ``timeout`` seconds (a loaded machine can be slow to start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except (OSError, urllib.error.URLError):  # the server is not up yet
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def methods(node: dict) -> dict[str, dict]:
    """{address: node} of every method (a node with an ACCESS other than 0) in a tree."""
    out = {node["FULL_PATH"]: node} if node.get("ACCESS", 0) else {}
    for child in node.get("CONTENTS", {}).values():
        out.update(methods(child))
    return out


class Stream:
    """`m2e stream` on a looping file in a subprocess; stderr is read as it comes (the chosen port is logged)."""

    def __init__(self, wav, *args: str, env: dict | None = None):
        self.proc = m2e("stream", "--input", str(wav), "--loop", "--model", "rt-feature", "--device", "cpu",
                        "--window", "1", "--hop", "0.25", "--rate", "10", *args, env={**PINNED, **(env or {})})
        self.err: list[str] = []
        self._reader = threading.Thread(target=lambda: self.err.extend(iter(self.proc.stderr.readline, "")),
                                        daemon=True)
        self._reader.start()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def collectors():
    made = [OscCollector(), OscCollector()]
    yield made
    for c in made:
        c.close()


def test_oscquery_advertises_what_the_profiles_send_and_follows_the_stream(music_wav, collectors):
    default, maxmsp = collectors
    ctl, oq = free_udp_port(), free_tcp_port()
    stream = Stream(music_wav, "--osc", f"127.0.0.1:{default.port}", "--osc", f"127.0.0.1:{maxmsp.port}@max",
                    "--control", str(ctl), "--oscquery", str(oq))
    try:
        poll(lambda: get(oq, "/m2e/valence?VALUE")[0] == 200, what="a first value")
        status, tree = get(oq, "/")
        assert status == 200 and tree["FULL_PATH"] == "/" and tree["ACCESS"] == 0
        nodes = methods(tree)

        # Every address either profile sent is advertised, read-only, with the type it went out with; an address
        # both send with other types (/m2e/tempo: 'f' by default, 'ff' by max) is the first's, the other said.
        received: dict[str, list] = {}
        for c in (maxmsp, default):  # default's last: its messages describe the addresses both send
            for _, _, messages in list(c.packets):
                received.update(messages)
        assert {"/m2e/valence", "/m2e/va", "/m2e/status", "/m2e/moods"} <= received.keys()
        missing = received.keys() - nodes.keys()
        assert not missing, f"sent but not advertised: {sorted(missing)}"
        for address, args in received.items():
            node = nodes[address]
            assert node["ACCESS"] == 1 and node["DESCRIPTION"]
            if address != "/m2e/moods":  # 0 to --top strings: TYPE gives the most
                sent_types = "".join("f" if isinstance(a, float) else "i" if isinstance(a, int) else "s"
                                     for a in args)
                assert node["TYPE"] == sent_types, address
        assert nodes["/m2e/tempo"]["DESCRIPTION"].endswith("profile max sends it as 'ff'")
        for tag in MOOD_TAGS:  # the model's tags: both profiles' /m2e/mood/{tag}
            assert nodes[f"/m2e/mood/{tag}"]["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}]
        assert nodes["/m2e/va"]["TYPE"] == "ff" and nodes["/m2e/moods"]["TYPE"] == "sss"  # --top 3
        # Nothing is advertised that neither profile sends: the outputs not seen yet are the events.
        unsent = {a for a, n in nodes.items() if n["ACCESS"] == 1} - received.keys()
        assert all("event" in nodes[a]["DESCRIPTION"] for a in unsent), sorted(unsent)
        assert all("VALUE" not in nodes[a] for a in unsent)  # no value before one is sent

        # VALUE is the latest value sent: one the receiver got, and it moves with the music.
        first = get(oq, "/m2e/valence_raw?VALUE")[1]["VALUE"]
        def sent() -> list[float]:
            return [args[0] for _, _, messages in list(default.packets) for address, args in messages
                    if address == "/m2e/valence_raw"]

        poll(lambda: any(abs(v - first[0]) < 1e-5 for v in sent()), 10, "the VALUE among the values sent")
        poll(lambda: get(oq, "/m2e/valence_raw?VALUE")[1]["VALUE"] != first, what="VALUE to follow the stream")
        heartbeat = poll(lambda: get(oq, "/m2e/status?VALUE")[1]["VALUE"], what="a heartbeat")
        assert heartbeat[6] == "rt-feature"
        poll(lambda: get(oq, "/m2e/status?VALUE")[1]["VALUE"][0] == "running", 10, "the heartbeat to say running")

        # Control methods come from the control port's table, with their current settings ...
        ctl_nodes = {a[len("/m2e/ctl/"):]: n for a, n in nodes.items() if a.startswith("/m2e/ctl/")}
        assert ctl_nodes.keys() == {"pause", "resume", "paused", "window", "hop", "threshold", "model"}
        assert ctl_nodes["window"]["VALUE"] == [1.0] and ctl_nodes["hop"]["VALUE"] == [0.25]
        assert ctl_nodes["threshold"]["VALUE"] == [0.5] and ctl_nodes["paused"]["VALUE"] == [False]
        assert ctl_nodes["model"]["VALUE"] == ["rt-feature"]
        assert "rt-feature" in ctl_nodes["model"]["RANGE"][0]["VALS"]
        assert ctl_nodes["window"]["ACCESS"] == 3 and ctl_nodes["pause"]["ACCESS"] == 2
        assert "VALUE" not in ctl_nodes["pause"] and "TYPE" not in ctl_nodes["pause"]
        # ... and a write through OSC changes what HTTP reports.
        from pythonosc.udp_client import SimpleUDPClient

        client = SimpleUDPClient("127.0.0.1", ctl)
        client.send_message("/m2e/ctl/window", 1.5)
        client.send_message("/m2e/ctl/threshold", 0.2)
        client.send_message("/m2e/ctl/paused", 1)
        poll(lambda: get(oq, "/m2e/ctl/window?VALUE")[1] == {"VALUE": [1.5]}, 10, "the new window")
        assert get(oq, "/m2e/ctl/threshold?VALUE")[1]["VALUE"][0] == pytest.approx(0.2)
        poll(lambda: get(oq, "/m2e/ctl/paused?VALUE")[1] == {"VALUE": [True]}, 10, "paused")
        poll(lambda: get(oq, "/m2e/status?VALUE")[1]["VALUE"][0] == "paused", 10, "the heartbeat to say paused")
        client.send_message("/m2e/ctl/resume", [])
        poll(lambda: get(oq, "/m2e/ctl/paused?VALUE")[1] == {"VALUE": [False]}, 10, "resumed")

        # HOST_INFO names the control port; sub-trees and attributes; errors.
        status, info = get(oq, "/?HOST_INFO")
        assert status == 200 and info["NAME"] == "m2e stream"
        assert (info["OSC_IP"], info["OSC_PORT"], info["OSC_TRANSPORT"]) == ("127.0.0.1", ctl, "UDP")
        assert info["EXTENSIONS"]["VALUE"] and info["EXTENSIONS"]["ACCESS"] and not info["EXTENSIONS"]["LISTEN"]
        status, mood = get(oq, "/m2e/mood/")
        assert status == 200 and mood["FULL_PATH"] == "/m2e/mood" and set(mood["CONTENTS"]) == set(MOOD_TAGS)
        assert get(oq, "/m2e/ctl/window?TYPE") == (200, {"TYPE": "f"})
        assert get(oq, "/m2e/ctl/pause?VALUE") == (204, None)  # write-only
        assert get(oq, "/m2e/valence_raw?RANGE") == (204, None)  # sent as it is: no range
        assert get(oq, "/m2e?VALUE") == (204, None)  # a container
        assert get(oq, "/m2e/nothing")[0] == 404 and get(oq, "/nothing?VALUE")[0] == 404
        for bad in ("?UNIT", "?LISTEN", "?VALUE=1", "?VALUE&TYPE", "?value"):
            assert get(oq, "/m2e/valence" + bad)[0] == 400, bad

        # Malformed requests never hurt the sidecar: garbage, bad escapes, another method, a half request, a
        # silent connection.
        for request, answer in ((b"\x00\xff garbage\r\n\r\n", b""), (b"GET /%ff%zz?VALUE HTTP/1.1\r\n\r\n", b" 404 "),
                                (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", b" 501 ")):
            with socket.create_connection(("127.0.0.1", oq), timeout=5) as raw:
                raw.sendall(request)
                reply = b"".join(iter(lambda: raw.recv(4096), b""))  # read to the server's close
            assert answer in reply.split(b"\r\n")[0], reply[:80]
        silent = socket.create_connection(("127.0.0.1", oq), timeout=5)
        half = socket.create_connection(("127.0.0.1", oq), timeout=5)
        half.sendall(b"GET /m2e/valence HTT")
        assert get(oq, "/m2e/valence?ACCESS") == (200, {"ACCESS": 1})
        silent.close()
        half.close()

        # Bound to 127.0.0.1 only: another loopback address (Linux) or nothing answers there.
        assert f"OSCQuery: http://127.0.0.1:{oq}/ (control methods on UDP {ctl})" in "".join(stream.err)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", oq), timeout=2).close()
        assert stream.proc.poll() is None
    finally:
        code = stream.stop()
    assert code == 143, "".join(stream.err)
    with socket.socket() as s:  # the port was released (SO_REUSEADDR, as servers bind: closed connections linger)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", oq))
        s.listen()


def test_oscquery_without_control_is_read_only_and_works_without_zeroconf(music_wav, tmp_path, monkeypatch):
    """`--oscquery` alone: any free port (logged), no control method, no OSC port in HOST_INFO. zeroconf hidden:
    one log line says so and HTTP answers the same."""
    (tmp_path / "zeroconf.py").write_text("raise ImportError('hidden by the test')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the launcher puts it after the tests' folder
    collector = OscCollector()
    stream = Stream(music_wav, "--osc", f"127.0.0.1:{collector.port}@resolume", "--oscquery")
    try:
        line = poll(lambda: next((x for x in stream.err if "OSCQuery: http://" in x), None), what="the URL")
        assert "read-only: no --control" in line
        port = int(line.split("OSCQuery: http://127.0.0.1:")[1].split("/")[0])
        assert port > 0
        poll(lambda: get(port, "/m2e/valence?VALUE")[0] == 200, what="a first value")
        assert any("not advertised over mDNS (the zeroconf package is not installed" in x for x in stream.err)
        nodes = methods(get(port, "/")[1])
        assert "/composition/layers/1/video/opacity" in nodes and "/m2e/status" not in nodes  # no heartbeat
        assert not any(a.startswith("/m2e/ctl") for a in nodes) and all(n["ACCESS"] == 1 for n in nodes.values())
        assert nodes["/composition/layers/1/video/opacity"]["RANGE"] == [{"MIN": 0.2, "MAX": 1.0}]
        assert nodes["/composition/columns/1/connect"]["TYPE"] == "i"  # the quadrant event, args [1]
        status, info = get(port, "/?HOST_INFO")
        assert status == 200 and not {"OSC_IP", "OSC_PORT", "OSC_TRANSPORT"} & info.keys()
    finally:
        code = stream.stop()
        collector.close()
    assert code == 143, "".join(stream.err)


def test_window_and_hop_are_read_only_without_pace(wav_no_pace_sidecar):
    nodes = methods(wav_no_pace_sidecar.tree())
    assert nodes["/m2e/ctl/window"]["ACCESS"] == 1 and nodes["/m2e/ctl/window"]["VALUE"] == [2.0]
    assert nodes["/m2e/ctl/hop"]["ACCESS"] == 1 and nodes["/m2e/ctl/threshold"]["ACCESS"] == 3


@pytest.fixture
def wav_no_pace_sidecar(music_wav, monkeypatch):
    """An OSCQuery server on a sidecar (in this process) reading a file without pace, not started."""
    from m2e_plugin.realtime.capture import FileSource
    from m2e_plugin.realtime.control import ControlServer
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.oscquery import OscQueryServer
    from m2e_plugin.realtime.sidecar import Sidecar
    from test_realtime_support import register_test_backends

    register_test_backends(monkeypatch)
    control = ControlServer(None, 0)
    server = OscQueryServer(0, control=control, advertise=False)
    sc = Sidecar(FileSource(str(music_wav), pace=False), ModelRunner("rt-feature"), [], window=2.0, hop=0.5,
                 control=control, oscquery=server)
    yield server
    sc.stop()


def test_a_third_party_client_reads_the_namespace(music_wav, collectors):
    """python-oscquery (the PyPI fork of tinyoscquery, VRChat tools' library): its client, given the address and
    port as an mDNS record would, reads HOST_INFO and nodes."""
    pytest.importorskip("pythonoscquery")
    from pythonoscquery.osc_query_client import OSCQueryClient
    from pythonoscquery.shared.osc_access import OSCAccess
    from zeroconf import ServiceInfo

    ctl, oq = free_udp_port(), free_tcp_port()
    stream = Stream(music_wav, "--osc", f"127.0.0.1:{collectors[0].port}", "--control", str(ctl),
                    "--oscquery", str(oq))
    try:
        poll(lambda: get(oq, "/m2e/mood/calm?VALUE")[0] == 200, what="a first value")
        client = OSCQueryClient(ServiceInfo("_oscjson._tcp.local.", "m2e._oscjson._tcp.local.", port=oq,
                                            parsed_addresses=["127.0.0.1"]))
        info = client.get_host_info()
        assert (info.name, info.osc_ip, info.osc_port, info.osc_transport) == ("m2e stream", "127.0.0.1", ctl, "UDP")
        window = client.query_node("/m2e/ctl/window")
        assert window.access == OSCAccess.READWRITE_VALUE and window.value == [1.0]
        moods = client.query_node("/m2e/mood")
        assert {n.full_path for n in moods.contents} == {f"/m2e/mood/{t}" for t in MOOD_TAGS}
        assert all(n.access == OSCAccess.READONLY_VALUE and 0.0 <= n.value[0] <= 1.0 for n in moods.contents)
        assert client.query_node("/m2e/nothing") is None  # its answer to a 404
    finally:
        code = stream.stop()
    assert code == 143, "".join(stream.err)


def test_the_sidecar_is_found_over_mdns(music_wav, collectors):
    """With zeroconf installed, a browser finds `_oscjson._tcp` on the HTTP port and `_osc._udp` on the control
    port (multicast on this machine's interfaces)."""
    zeroconf = pytest.importorskip("zeroconf")
    ctl, oq = free_udp_port(), free_tcp_port()
    stream = Stream(music_wav, "--osc", f"127.0.0.1:{collectors[0].port}", "--control", str(ctl),
                    "--oscquery", str(oq))
    zc = zeroconf.Zeroconf()
    try:
        poll(lambda: any("advertised over mDNS" in x for x in stream.err), what="the advertisement")
        name = f"m2e stream {oq}"
        found = {}
        for kind, port in (("_oscjson._tcp.local.", oq), ("_osc._udp.local.", ctl)):
            found[kind] = poll(lambda kind=kind: zc.get_service_info(kind, f"{name}.{kind}", timeout=2000), 20,
                               f"{kind} over mDNS")
            assert found[kind].port == port and "127.0.0.1" in found[kind].parsed_addresses()
    finally:
        zc.close()
        code = stream.stop()
    assert code == 143, "".join(stream.err)
