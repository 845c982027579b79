"""Live input through a real audio server: a private JACK server with the dummy driver (jackd2), a JACK
metronome client routed into the capture port, and `m2e stream --device` capturing it through PortAudio.

Skipped when jackd is not installed or does not start. Every process has a timeout and is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
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


class JackServer:
    """A private JACK server (its own name, so other JACK users on the machine are untouched) with a metronome
    client (240 bpm clicks) as the signal source; it can be killed and started again.

    The name is fixed, not per process: JACK reclaims the registry slot of a dead server of the same name, while a
    new name per run leaked one slot per killed server until jackd refused to start ("Too many servers already
    active") and these tests skipped."""

    def __init__(self):
        self.name = "m2e-test"
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        server = subprocess.Popen(["jackd", "--no-realtime", "-n", self.name, "-d", "dummy", "-r", "48000",
                                   "-p", "1024"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        self.procs.append(server)
        ready = subprocess.run(["jack_wait", "-w", "-t", "10"], env=self.env, capture_output=True, text=True,
                               timeout=20)
        if ready.returncode != 0 or server.poll() is not None:
            pytest.skip(f"jackd -d dummy did not start: {ready.stdout.strip()} {ready.stderr.strip()}")
        self.procs.append(subprocess.Popen(["jack_metro", "-n", "metro", "-b", "240"], env=self.env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True))

    def kill(self) -> None:
        """Kill the server hard (as a crash would) and its clients."""
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        self.procs.clear()

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_process_group(p)
        self.procs.clear()


@pytest.fixture
def jack_server():
    server = JackServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _ports(env) -> list[str]:
    out = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10).stdout
    return out.split()


def _jack_device(env) -> dict:
    listing = m2e("devices", "--format", "json", env=env)
    out, err = listing.communicate(timeout=60)
    jack_inputs = [json.loads(line) for line in out.splitlines() if "JACK" in json.loads(line)["hostapi"]]
    if not jack_inputs:
        pytest.skip(f"PortAudio does not see the JACK host API (built without JACK support?): {err.strip()}")
    return jack_inputs[0]


def _route_metronome(env, proc, timeout: float = 60) -> None:
    """Connect the metronome to the sidecar's capture port as soon as PortAudio has registered it."""
    deadline = time.monotonic() + timeout
    inputs = []
    while time.monotonic() < deadline and proc.poll() is None:
        inputs = [p for p in _ports(env) if p.startswith("PortAudio") and ":in" in p]
        if inputs:
            break
        time.sleep(0.1)
    assert inputs, "the stream never registered a JACK input port"
    link = subprocess.run(["jack_connect", "metro:240_bpm", inputs[0]], env=env, capture_output=True, text=True,
                          timeout=10)
    assert link.returncode == 0, link.stderr


def test_live_capture_through_jack(jack_server):
    env = jack_server.env
    device = _jack_device(env)
    assert device["samplerate"] == 48000

    collector = OscCollector()
    duration = 6.0
    proc = m2e("stream", "--input-device", str(device["index"]), "--duration", str(duration), "--model", MODEL,
               "--device", "cpu", "--window", "1", "--hop", "0.5", "--rate", "20",
               "--osc", f"127.0.0.1:{collector.port}", env=env, start_new_session=True)
    try:
        _route_metronome(env, proc)
        out, err = proc.communicate(timeout=duration + 60)
    finally:
        stop_process_group(proc)
        collector.close()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "duration reached"
    assert "JACK" in summary["source"]
    # Real-time pace: the JACK clock delivered about one second of audio per second the input was open (it opens
    # while the model loads, so before `duration` starts counting).
    opened = summary["input_open_seconds"]
    assert opened >= duration and 0.8 * opened <= summary["audio_seconds"] <= 1.05 * opened + 0.5, summary
    assert summary["updates"] >= 6 and summary["model_errors"] == 0
    assert summary["input_level_db"] > -60, "the metronome signal should reach the capture"
    check_bundles(collector, summary["updates"])


def _values_after(collector, t: float) -> int:
    """State bundles (carrying values) received after monotonic-ish wall time ``t``."""
    return sum(1 for received, tt, msgs in collector.packets if received > t and tt is not None
               and any(a == "/m2e/valence" for a, _ in msgs))


def _statuses_after(collector, t: float) -> list[str]:
    return [args[0] for received, _, msgs in collector.packets if received > t
            for a, args in msgs if a == "/m2e/status"]


def test_jack_server_loss_is_survived_and_reported(jack_server):
    """Kill jackd mid-stream: no stale values, status says "no input"; restart it: values resume without
    restarting m2e; kill it again: SIGTERM still ends the process within 5 s."""
    env = jack_server.env
    device = _jack_device(env)
    collector = OscCollector()
    proc = m2e("stream", "--input-device", device["name"], "--model", MODEL, "--device", "cpu", "--window", "1",
               "--hop", "0.5", "--rate", "20", "--osc", f"127.0.0.1:{collector.port}", env=env,
               start_new_session=True)
    try:
        _route_metronome(env, proc)
        assert wait_until(lambda: _values_after(collector, 0) >= 10, 60), "no values before the loss"

        jack_server.kill()
        lost_at = time.time()
        assert wait_until(lambda: "no input" in _statuses_after(collector, lost_at), 10), \
            "the heartbeat never reported the lost input"
        quiet_from = time.time()
        time.sleep(1.5)
        assert _values_after(collector, quiet_from) == 0, "stale values kept going out after the input was lost"
        assert proc.poll() is None, "the stream must survive the loss of the audio server"

        jack_server.start()
        back_at = time.time()
        _route_metronome(env, proc)
        assert wait_until(lambda: _values_after(collector, back_at) >= 5, 60), "values did not resume"
        assert wait_until(lambda: "running" in _statuses_after(collector, back_at), 10)

        jack_server.kill()
        time.sleep(0.5)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 5.0, f"SIGTERM took {time.monotonic() - t0:.1f} s with jackd dead"
    finally:
        stop_process_group(proc)
        collector.close()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["input_losses"] >= 2 and summary["input_reopens"] >= 1, summary
    assert "input lost" in err and "input reopened" in err, err


def wait_until(predicate, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()
