"""`m2e stream` / `m2e devices` end to end, as subprocesses: a real audio file in, python-osc receives bundles.

The stream uses the embedded default model ``lite`` when it is installed; before it exists, the test-only
``rt-feature`` backend stands in (the command line and code path are the same).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_realtime_support import OscCollector, free_udp_port

TESTS = Path(__file__).resolve().parent
MODEL = "lite" if importlib.util.find_spec("m2e_plugin.backends.lite") else "rt-feature"
# Runs the real CLI entry point after registering the test backends (a subprocess does not see monkeypatches).
LAUNCH = ("import sys, test_realtime_support as s; from m2e_plugin import plugins; "
          "plugins.register_plugin(s.ModelsPlugin(), name='m2e-test-models'); "
          "from m2e_plugin.cli.main import main; sys.exit(main(sys.argv[1:]))")


def m2e(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-c", LAUNCH, *args], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture
def collector():
    c = OscCollector()
    yield c
    c.close()


def check_bundles(collector: OscCollector, minimum: int) -> None:
    bundles = collector.bundles()
    assert len(bundles) >= minimum, f"only {len(bundles)} bundles arrived"
    timetags = [tt for tt, _ in bundles]
    assert all(b > a for a, b in zip(timetags, timetags[1:])), "timetags must increase"
    for _, m in bundles:
        assert 0.0 <= m["/m2e/valence"][0] <= 1.0 and 0.0 <= m["/m2e/arousal"][0] <= 1.0
        assert 1.0 <= m["/m2e/valence_raw"][0] <= 9.0 and 1.0 <= m["/m2e/arousal_raw"][0] <= 9.0
        assert m["/m2e/quadrant"][0] in (1, 2, 3, 4)
        assert m["/m2e/moods"] and all(isinstance(t, str) for t in m["/m2e/moods"])
        moods = {a: v[0] for a, v in m.items() if a.startswith("/m2e/mood/")}
        assert len(moods) >= 1 and all(0.0 <= p <= 1.0 for p in moods.values())
        assert m["/m2e/latency_ms"][0] >= 0.0


def run_stream(audio: Path, collector: OscCollector, *extra: str, timeout: float = 120) -> dict:
    dead = free_udp_port()  # a second destination with nothing listening must not matter
    proc = m2e("stream", "--input", str(audio), "--osc", f"127.0.0.1:{collector.port}", "--osc",
               f"127.0.0.1:{dead}", "--model", MODEL, "--device", "cpu", *extra)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_stream_a_file_in_real_time_to_osc(music_wav, collector):
    summary = run_stream(music_wav, collector, "--window", "2", "--hop", "0.5", "--rate", "20")
    assert summary["stop_reason"] == "end of input" and summary["model"] == MODEL
    # The file plays from launch while the model loads (like a live input): windows come once the model is ready,
    # one per 0.5 s hop of what is left of the file (on a loaded machine the model can be ready late).
    left = summary["input_open_seconds"] - summary["model_ready_seconds"]
    assert summary["updates"] >= max(1, min(3, int(left / 0.5) - 1)) and summary["model_errors"] == 0
    assert 4.5 <= summary["input_open_seconds"] <= 30  # paced: a 5 s file takes about 5 s
    assert summary["latency_ms_median"] is not None and summary["latency_ms_median"] < 1000
    check_bundles(collector, summary["updates"])
    assert any(d["errors"] == 0 and d["sent"] > 0 for d in summary["destinations"])


def test_stream_a_real_recording(shared_data, collector):
    clip = shared_data / "pmemo" / "samples" / "108.mp3"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    summary = run_stream(clip, collector, "--no-pace", "--window", "5", "--hop", "2", "--rate", "0")
    assert summary["stop_reason"] == "end of input" and summary["skipped_windows"] == 0
    assert summary["audio_seconds"] == pytest.approx(49.0, abs=0.5)
    full = int((summary["audio_seconds"] - 5) // 2) + 1  # every window analysed, none skipped ...
    expected = full + ((full - 1) * 2 + 5 < summary["audio_seconds"])  # ... and the tail, as `predict --timeline`
    assert summary["updates"] == summary["windows"] == expected
    check_bundles(collector, summary["updates"])
    values = {round(m["/m2e/arousal_raw"][0], 4) for _, m in collector.bundles()}
    assert len(values) > 1, "the output should follow the music, not stay constant"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stream_shuts_down_cleanly_on_signals(music_wav, collector, sig):
    ctl = free_udp_port()
    proc = m2e("stream", "--input", str(music_wav), "--loop", "--osc", f"127.0.0.1:{collector.port}",
               "--model", MODEL, "--device", "cpu", "--window", "1", "--hop", "0.25", "--control", str(ctl))
    try:
        deadline = time.monotonic() + 60
        while len(collector.bundles()) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(collector.bundles()) >= 3
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, err  # 130 / 143, as every m2e command; the summary still goes out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == f"signal {sig.name}"
    time.sleep(0.2)
    status = [m[1] for _, _, msgs in collector.packets for m in msgs if m[0] == "/m2e/status"]
    assert status[-1][0] == "stopped" and status[-1][9] == "stopped"  # state, and the input's (was "live")
    # Sockets were closed: the control port is free again.
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", ctl))
    s.close()


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("answers", [0, 3], ids=["hung-in-warm-up", "hung-mid-stream"])
def test_a_hung_model_never_blocks_shutdown(music_wav, collector, answers):
    monitor = _free_tcp_port()
    proc = m2e("stream", "--input", str(music_wav), "--loop", "--osc", f"127.0.0.1:{collector.port}",
               "--model", "rt-hang", "--device", "cpu", "--window", "1", "--hop", "0.25", "--monitor", str(monitor),
               env={"M2E_TEST_HANG_AFTER": str(answers)})
    try:
        if answers:  # the model answered the warm-up and a window or two, then wedged
            deadline = time.monotonic() + 60
            while not collector.bundles() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert collector.bundles(), "no values before the model hung"
        else:
            time.sleep(3)  # stuck in the warm-up call
            # While the model loads, the heartbeat and the monitor page say so (both were silent until it was ready).
            status = [m[1] for _, _, msgs in collector.packets for m in msgs if m[0] == "/m2e/status"]
            assert len(status) >= 2 and status[-1][0] == "warming up" and status[-1][6] == "rt-hang", status
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/status", timeout=5) as page:
                assert json.loads(page.read())["state"] == "warming up"
        time.sleep(1.0)
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert took < 2.5, f"SIGTERM took {took:.1f} s with a hung model"  # 2 s target plus process teardown
    assert proc.returncode == 143, err
    summary = json.loads(out.strip().splitlines()[-1])  # also when stopped before the model was ready (was none)
    assert summary["stop_reason"] == ("signal SIGTERM" if answers else "stopped while starting"), err


def test_duration_and_profiles(music_wav, collector):
    proc = m2e("stream", "--input", str(music_wav), "--loop", "--duration", "2.5", "--model", MODEL,
               "--device", "cpu", "--window", "1", "--hop", "0.5", "--osc", f"127.0.0.1:{collector.port}@wekinator")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "duration reached" and 2.4 <= summary["seconds"] <= 10
    wek = [m for _, _, msgs in collector.packets for m in msgs if m[0] == "/wek/inputs"]
    assert wek and all(len(args) >= 3 and all(0 <= v <= 1 for v in args) for _, args in wek)
    assert not any(m[0] == "/m2e/status" for _, _, msgs in collector.packets for m in msgs)


def test_bad_arguments_give_clear_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    proc = m2e("stream", "--input", str(missing), "--model", MODEL, "--device", "cpu")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "missing.wav" in err and "not found" in err
    proc = m2e("stream", "--input", str(missing), "--osc", "localhost:nope")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "localhost:nope" in err
    for bad in ("-1", "0", "nan"):  # used to start and stop at once with exit 0
        proc = m2e("stream", "--input", str(missing), "--duration", bad)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "--duration must be a positive number" in err, err
    proc = m2e("stream", "--input-device", "no-such-device-xyz", "--model", MODEL, "--device", "cpu")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and ("no-such-device-xyz" in err or "no audio input devices" in err), err


@pytest.mark.parametrize("option, value, message", [
    ("--hop", "1e-6", "at least 0.01 seconds"),  # rounded to 0 samples: the scheduler died, the run "ended"
    ("--window", "nan", "must be positive"),
    ("--hop", "0", "m2e stream: hop must be positive, got 0"),  # was "window and hop ... window=0" (none given)
    ("--window", "1e9", "at most 60 seconds"),  # was "cannot load model: Unable to allocate 58.2 TiB"
    ("--threshold", "5", "--threshold and --margin must be in [0, 1]"),
    ("--rate", "nan", "--rate must be a number >= 0"),
    ("--top", "0", "--top must be >= 1"),
    ("--dwell", "nan", "--dwell must be a number of seconds"),
    ("--mood-tau", "-1", "--mood-tau must be a number of seconds"),
    ("--monitor", "70000", "port 70000 is out of range 1-65535"),  # was an OverflowError traceback
    ("--control", "-1", "port -1 is out of range 1-65535"),
    # a live input's options with a file were ignored without a word (the file was read at its own rate)
    ("--samplerate", "8000", "--samplerate only apply to a live input"),
    ("--blocksize", "512", "--blocksize only apply to a live input"),
])
def test_option_values_are_checked_before_anything_starts(tmp_path, capsys, option, value, message):
    from m2e_plugin.cli.main import main

    try:
        code = main(["stream", "--input", str(tmp_path / "never-opened.wav"), option, value])
    except SystemExit as exc:  # argparse's own check (ports)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_loop_without_a_file_is_refused(capsys):
    from m2e_plugin.cli.main import main

    assert main(["stream", "--input-device", "system", "--loop", "--duration", "1"]) == 2
    assert "--loop only applies to --input FILE" in capsys.readouterr().err


def test_a_model_failing_on_every_window_is_said_and_fails_the_run(music_wav, collector):
    """It used to exit 0 with a heartbeat stuck on "warming up" and no value ever sent."""
    summary_line, err, code = None, "", None
    proc = m2e("stream", "--input", str(music_wav), "--model", "rt-broken", "--device", "cpu", "--window", "1",
               "--hop", "0.5", "--osc", f"127.0.0.1:{collector.port}")
    try:
        out, err = proc.communicate(timeout=120)
        summary_line, code = out.strip().splitlines()[-1], proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    summary = json.loads(summary_line)
    assert code == 1 and summary["updates"] == 0 and summary["model_errors"] >= 3, err
    assert "failed on every window" in err and "arousal nan" in err
    states = [m[1][0] for _, _, msgs in collector.packets for m in msgs if m[0] == "/m2e/status"]
    assert "model error" in states and "running" not in states, states


def test_devices_lists_inputs_or_says_there_are_none():
    proc = m2e("devices", "--format", "json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 2), err
    for line in out.splitlines():
        d = json.loads(line)
        assert {"index", "name", "hostapi", "channels", "samplerate", "default"} <= d.keys() and d["channels"] > 0
    if proc.returncode == 0 and not out.strip():  # no device: said on stderr, not an empty silence
        assert "no audio input devices found" in err


def test_busy_monitor_control_and_oscquery_ports_fail_at_start(music_wav):
    import socket

    tcp = socket.socket()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        for flag, port, what in (("--monitor", tcp.getsockname()[1], "monitor"),
                                 ("--control", udp.getsockname()[1], "control"),
                                 ("--oscquery", tcp.getsockname()[1], "cannot bind the OSCQuery port 127.0.0.1")):
            # The model never finishes loading (hangs in its warm-up): the port must be checked before.
            proc = m2e("stream", "--input", str(music_wav), "--model", "rt-hang", "--device", "cpu",
                       "--osc", f"127.0.0.1:{free_udp_port()}", flag, str(port), "--duration", "5",
                       env={"M2E_TEST_HANG_AFTER": "0"})
            try:
                _, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            assert proc.returncode == 2, err
            assert what in err and str(port) in err and "in use" in err and "Traceback" not in err, err
    finally:
        tcp.close()
        udp.close()


def test_stream_reads_standard_input(music_wav, collector):
    """`cat song.wav | m2e stream --input - --no-pace`: the same windows as the file itself."""
    def run(*source: str, stdin=None) -> dict:
        proc = m2e("stream", *source, "--no-pace", "--model", "rt-feature", "--device", "cpu", "--window", "2",
                   "--hop", "1", "--osc", f"127.0.0.1:{collector.port}", "-q", stdin=stdin)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    from_file = run("--input", str(music_wav))
    with open(music_wav, "rb") as fh:
        from_stdin = run("--input", "-", stdin=fh)
    assert from_stdin["stop_reason"] == "end of input"
    assert from_stdin["source"].startswith("file - (")  # not the temporary copy's name
    assert from_stdin["updates"] == from_file["updates"] >= 3
    assert from_stdin["audio_seconds"] == from_file["audio_seconds"]


def test_stream_names_a_mapped_mood_the_model_lacks(music_wav, collector, tmp_path):
    show = tmp_path / "show.yaml"
    show.write_text("events:\n  - {event: mood_onset, mood: hapy, address: /happy/on}\n"
                    "values:\n  - {source: arousal, address: /a}\n")
    proc = m2e("stream", "--input", str(music_wav), "--no-pace", "--model", "rt-feature", "--device", "cpu",
               "--window", "2", "--hop", "1", "--osc", f"127.0.0.1:{collector.port}@{show}", "-q")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"{show}: events[0] names mood 'hapy', which the model does not have (did you mean 'happy'?)" in err
    assert json.loads(out.strip().splitlines()[-1])["updates"] >= 3


def test_osc_dash_prints_what_a_receiver_gets(music_wav, collector):
    """A dry run (`--osc -`): the messages as text lines on standard output, decoded from the same datagrams a
    receiver gets (the field's ask: check a mapping without a receiver); the JSON summary stays the last line."""
    proc = m2e("stream", "--input", str(music_wav), "--no-pace", "--model", "rt-feature", "--device", "cpu",
               "--window", "2", "--hop", "1", "--rate", "0", "--osc", "-", "--osc", f"127.0.0.1:{collector.port}",
               "-q")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    *lines, last = out.strip().splitlines()
    summary = json.loads(last)
    printed = [line.split(" ", 2) for line in lines]
    assert all(float(t) > 1e9 for t, _, _ in printed)  # Unix time of the bundle's timetag
    valences = [float(rest) for _, address, rest in printed if address == "/m2e/valence_raw"]
    received = [m["/m2e/valence_raw"][0] for _, m in collector.bundles()]
    assert len(valences) == summary["updates"] >= 3
    assert valences == pytest.approx(received, abs=1e-5)  # same steps, same values (6 significant digits)
    assert any(address == "/m2e/moods" and rest.startswith('"') for _, address, rest in printed)
    assert {d["destination"] for d in summary["destinations"]} == {"-@default", f"127.0.0.1:{collector.port}@default"}


def test_a_dry_run_stops_when_its_reader_goes_away(music_wav):
    """`m2e stream --osc - --loop | head`: once head exits, the stream stops (exit 141, as a broken pipe stops every
    m2e command) instead of analysing a looping input for no one."""
    proc = m2e("stream", "--input", str(music_wav), "--loop", "--model", "rt-feature", "--device", "cpu",
               "--window", "2", "--hop", "0.5", "--osc", "-", "-q")
    try:
        first = proc.stdout.readline()
        assert first.split(" ", 2)[1] == "/m2e/status"
        proc.stdout.close()  # the reader leaves
        assert proc.wait(timeout=60) == 141
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_heartbeat_uptime_never_restarts_when_the_model_is_ready(music_wav, collector):
    """The heartbeat goes out from launch while the model loads; its uptime restarted from 0 when the sidecar took
    over (2.03 s, then 0.002 s), which a receiver graphing it reads as a restart."""
    summary = run_stream(music_wav, collector, "--window", "2", "--hop", "0.5", "--rate", "10")
    assert summary["stop_reason"] == "end of input"
    uptimes = [args[1] for _, _, messages in collector.packets for address, args in messages
               if address == "/m2e/status"]
    assert len(uptimes) >= 3 and uptimes == sorted(uptimes), uptimes
