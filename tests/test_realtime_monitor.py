"""The live monitor page in a real headless Chromium: the valence/arousal point must move with the stream."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.demo import synth_music
from test_realtime_support import DevToolsPage, register_test_backends, stop_process_group

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def sidecar_with_monitor(tmp_path, monkeypatch):
    from m2e_plugin.realtime.capture import FileSource
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.monitor import MonitorServer
    from m2e_plugin.realtime.sidecar import Sidecar

    register_test_backends(monkeypatch)
    # Loud then quiet halves so the feature backend's arousal (RMS) visibly moves the point.
    y = synth_music(4.0, 22050)
    y = np.concatenate([y, 0.1 * y])
    path = tmp_path / "music.wav"
    sf.write(path, y, 22050)
    sc = Sidecar(FileSource(path, pace=True, loop=True), ModelRunner("rt-feature"), [], window=1.0, hop=0.25,
                 rate=20, monitor=MonitorServer(0))
    sc.start()
    yield sc
    sc.stop()


def test_monitor_serves_page_state_and_events(sidecar_with_monitor):
    url = sidecar_with_monitor.monitor.url
    with urllib.request.urlopen(url, timeout=5) as r:
        html = r.read().decode()
    assert 'id="plane"' in html and "monitor.js" in html
    with urllib.request.urlopen(url + "monitor.js", timeout=5) as r:
        assert "EventSource" in r.read().decode()
    deadline = time.monotonic() + 10
    state = {}
    while time.monotonic() < deadline and "valence" not in state:
        with urllib.request.urlopen(url + "state", timeout=5) as r:
            state = json.loads(r.read())
        time.sleep(0.1)
    # The page shows what OSC sends: 0-1 (the 1-9 values ride along as *_raw).
    assert 0 <= state["valence"] <= 1 and 0 <= state["arousal"] <= 1 and state["quadrant"] in (1, 2, 3, 4)
    assert 1 <= state["valence_raw"] <= 9 and "level_db" in state["features"]
    with urllib.request.urlopen(url + "events", timeout=5) as r:
        events, statuses, kind = [], [], "message"
        while len(events) < 2 or not statuses:
            line = r.readline().decode()
            if line.startswith("event: "):
                kind = line[7:].strip()
            elif line.startswith("data: "):
                (statuses if kind == "status" else events).append(json.loads(line[6:]))
                kind = "message"
    assert all(0 <= e["arousal"] <= 1 for e in events)
    assert statuses[0]["state"] in ("running", "warming up") and "overflows" in statuses[0]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url + "nope", timeout=5)


@pytest.mark.timeout(180)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_monitor_page_in_headless_chromium(sidecar_with_monitor, tmp_path):
    url = sidecar_with_monitor.monitor.url
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen([CHROMIUM, *FLAGS, "--window-size=1920,1080", f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    page = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, "chromium exited at start-up"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        ws_url = None
        while ws_url is None and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.loads(r.read()) if t.get("type") == "page" and t["url"].startswith(url)]
            ws_url = pages[0]["webSocketDebuggerUrl"] if pages else None
            time.sleep(0.1)
        assert ws_url, "the monitor page never opened in chromium"
        page = DevToolsPage(ws_url)
        # The target shows the URL while the navigation is still pending: wait for the real document.
        ready = f"location.href.startsWith({json.dumps(url)}) && document.readyState === 'complete'"
        while not page.evaluate(ready):
            assert time.monotonic() < deadline, "the monitor page did not finish loading"
            time.sleep(0.1)
        probe = ("JSON.stringify({steps: +document.body.dataset.steps,"
                 " model_updates: +document.body.dataset.modelUpdates, state: document.body.dataset.state,"
                 " cx: +document.getElementById('point').getAttribute('cx'),"
                 " cy: +document.getElementById('point').getAttribute('cy'),"
                 " valence: document.getElementById('valence').textContent,"
                 " moods: document.getElementById('moods').textContent,"
                 " rows: document.querySelectorAll('#probs tr').length,"
                 " plane: document.getElementById('plane').getBoundingClientRect().height,"
                 " quadrant_lit: document.querySelectorAll('.quad.on').length})")
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen.append(json.loads(page.evaluate(probe)))
            if seen[-1]["steps"] >= 40 and len({s["cy"] for s in seen}) >= 3:
                break
            time.sleep(0.2)
        last = seen[-1]
        assert last["state"] == "live" and last["steps"] >= 40, last
        assert 1 <= last["model_updates"] <= last["steps"], last  # the model answers windows, not every step
        assert 0 <= float(last["valence"]) <= 1
        assert last["moods"] and last["rows"] == 8 and last["quadrant_lit"] == 1
        assert last["plane"] >= 800, "the plane should fill a full-HD second screen"
        # Drawn inside the plane, and moving: the loud/quiet halves move the point vertically.
        assert all(10 <= s["cx"] <= 410 and 10 <= s["cy"] <= 410 for s in seen if s["steps"])
        assert len({s["cy"] for s in seen if s["steps"]}) >= 3, seen
        # The state follows the stream: paused, then live again.
        sidecar_with_monitor.engine.pause()
        state = "document.body.dataset.state"
        deadline = time.monotonic() + 10
        while page.evaluate(state) != "paused":
            assert time.monotonic() < deadline, "the page never showed the pause"
            time.sleep(0.1)
        sidecar_with_monitor.engine.resume()
        while page.evaluate(state) != "live":
            assert time.monotonic() < deadline + 10, "the page never came back to live"
            time.sleep(0.1)
    finally:
        if page is not None:
            page.close()
        stop_process_group(proc)


def test_monitor_answers_head_and_ignores_clients_that_vanish(sidecar_with_monitor, capsys):
    """`curl -I` got 501; a browser closing mid-request printed a ConnectionResetError traceback on stderr."""
    import socket
    import struct

    url = sidecar_with_monitor.monitor.url
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) > 0 and r.read() == b""
    host, port = sidecar_with_monitor.monitor.host, sidecar_with_monitor.monitor.port
    for _ in range(3):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        s.close()
    time.sleep(0.5)
    with urllib.request.urlopen(url + "state", timeout=5) as r:  # still serving
        assert r.status == 200
    assert "Traceback" not in capsys.readouterr().err
