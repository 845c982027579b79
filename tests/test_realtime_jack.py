"""Live input through a real audio server: a private JACK server with the dummy driver (jackd2), a JACK
metronome client routed into the capture port, and `m2e stream --device` capturing it through PortAudio.

Skipped when jackd is not installed or does not start. Every process has a timeout and is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from test_realtime_cli import MODEL, check_bundles, m2e
from test_realtime_support import OscCollector, stop_process_group

JACK_TOOLS = ("jackd", "jack_wait", "jack_lsp", "jack_connect", "jack_metro")
pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in JACK_TOOLS),
                       reason=f"JACK tools missing ({', '.join(JACK_TOOLS)}; apt-get install jackd2)"),
    pytest.mark.timeout(180),
]


@pytest.fixture
def jack_server():
    """Environment of a private JACK server (unique name, so other JACK users on the machine are untouched)."""
    name = f"m2e-test-{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "1024"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    clients = []
    try:
        ready = subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True, text=True, timeout=20)
        if ready.returncode != 0 or server.poll() is not None:
            pytest.skip(f"jackd -d dummy did not start: {ready.stdout.strip()} {ready.stderr.strip()}")
        # A metronome client: a real signal source inside the JACK graph (240 bpm clicks).
        metro = subprocess.Popen(["jack_metro", "-n", "metro", "-b", "240"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        clients.append(metro)
        yield env
    finally:
        for p in clients:
            stop_process_group(p)
        stop_process_group(server)


def _ports(env) -> list[str]:
    out = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10).stdout
    return out.split()


def test_live_capture_through_jack(jack_server):
    env = jack_server
    listing = m2e("devices", "--format", "json", env=env)
    out, err = listing.communicate(timeout=60)
    jack_inputs = [json.loads(line) for line in out.splitlines() if "JACK" in json.loads(line)["hostapi"]]
    if not jack_inputs:
        pytest.skip(f"PortAudio does not see the JACK host API (built without JACK support?): {err.strip()}")
    device = jack_inputs[0]
    assert device["samplerate"] == 48000

    collector = OscCollector()
    duration = 6.0
    proc = m2e("stream", "--device", str(device["index"]), "--duration", str(duration), "--model", MODEL,
               "--compute", "cpu", "--window", "1", "--hop", "0.5", "--rate", "20",
               "--osc", f"127.0.0.1:{collector.port}", env=env, start_new_session=True)
    try:
        # Route the metronome into the sidecar's capture port as soon as PortAudio has registered it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            inputs = [p for p in _ports(env) if p.startswith("PortAudio") and ":in" in p]
            if inputs:
                break
            time.sleep(0.1)
        assert inputs, "the stream never registered a JACK input port"
        link = subprocess.run(["jack_connect", "metro:240_bpm", inputs[0]], env=env, capture_output=True,
                              text=True, timeout=10)
        assert link.returncode == 0, link.stderr
        out, err = proc.communicate(timeout=duration + 60)
    finally:
        stop_process_group(proc)
        collector.close()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "duration reached"
    assert "JACK" in summary["source"]
    # Real-time pace: the JACK clock delivered about one second of audio per second of running.
    assert 0.8 * duration <= summary["audio_seconds"] <= 1.05 * duration + 0.5, summary
    assert summary["updates"] >= 6 and summary["model_errors"] == 0
    assert summary["input_level_db"] > -60, "the metronome signal should reach the capture"
    check_bundles(collector, summary["updates"])
