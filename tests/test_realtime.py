"""Realtime sidecar: ring buffer, smoothing, OSC profiles, engine scheduling, control port, faults.

Everything runs in-process against the test backends of ``test_realtime_support`` (fast and deterministic);
``test_realtime_cli.py`` runs the real ``m2e stream`` command with the embedded model.
"""

from __future__ import annotations

import math
import socket
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.demo import synth_music
from m2e_plugin.labels import MOOD_TAGS
from m2e_plugin.realtime.capture import CaptureError, FileSource, import_sounddevice
from m2e_plugin.realtime.engine import ModelRunner
from m2e_plugin.realtime.mapping import MappingError, load_mapping
from m2e_plugin.realtime.osc import EmotionState, OscOut, build_bundle, parse_destination
from m2e_plugin.realtime.smoothing import EdgeTrigger, QuadrantHysteresis
from m2e_plugin.realtime.control import ControlServer
from m2e_plugin.realtime.ringbuffer import RingBuffer
from m2e_plugin.realtime.sidecar import Sidecar
from m2e_plugin.realtime.smoothing import ExponentialSmoother, MoodHysteresis, OneEuroFilter
from test_realtime_support import OscCollector, SlowBackend, free_udp_port, register_test_backends


@pytest.fixture
def backends(monkeypatch):
    register_test_backends(monkeypatch)


@pytest.fixture
def collector():
    c = OscCollector()
    yield c
    c.close()


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "music.wav"
    sf.write(path, synth_music(6.0, 44100), 44100)
    return path


def wait_for(predicate, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


# -- ring buffer ----------------------------------------------------------------------------------------------

def test_ring_buffer_wraps_and_reports_lost_spans():
    ring = RingBuffer(10)
    ring.write(np.arange(7, dtype=np.float32))
    assert ring.read(7, 3).tolist() == [4, 5, 6]
    assert ring.read(8, 3) is None  # not written yet
    ring.write(np.arange(7, 15, dtype=np.float32))  # wraps around
    assert ring.written == 15
    assert ring.read(15, 10).tolist() == list(range(5, 15))
    assert ring.read(15, 11) is None  # longer than the ring
    assert ring.read(6, 2) is None  # overwritten
    ring.write(np.arange(100, 125, dtype=np.float32))  # one write larger than the ring keeps the tail
    assert ring.written == 40
    assert ring.read(40, 10).tolist() == list(range(115, 125))
    assert ring.arrival_time(40) is not None and ring.arrival_time(41) is None


def test_ring_buffer_mixes_channels_and_back_pressure():
    ring = RingBuffer(8)
    ring.write_mixed(np.array([[1.0, 3.0], [0.0, 2.0]], dtype=np.float32))
    assert ring.read(2, 2).tolist() == [2.0, 1.0]
    assert ring.free_space() == 8
    ring.reader_floor = 1
    assert ring.free_space() == 7


# -- smoothing ------------------------------------------------------------------------------------------------

def test_exponential_smoother_follows_its_time_constant():
    ema = ExponentialSmoother(tau=1.0)
    ema(0.0, 0.0)
    assert ema(1.0, 1.0) == pytest.approx(1 - math.exp(-1))
    # The same total time in ten small ticks gives the same value (rate independent).
    ema2 = ExponentialSmoother(tau=1.0)
    ema2(0.0, 0.0)
    for k in range(1, 11):
        v = ema2(1.0, k / 10)
    assert v == pytest.approx(1 - math.exp(-1))


def test_one_euro_filter_is_steady_at_rest_and_converges_without_overshoot():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    assert f(5.0, 0.0) == 5.0
    assert f(5.0, 0.1) == 5.0
    values = [f(7.0, 0.1 + k / 30) for k in range(1, 200)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[0] < 7.0 and values[-1] == pytest.approx(7.0, abs=1e-3) and max(values) <= 7.0


def test_mood_hysteresis_ignores_flicker_and_switches_on_a_sustained_lead():
    h = MoodHysteresis(("calm", "happy", "sad"), margin=0.05, dwell=1.0)
    t = 0.0
    for k in range(50):  # two tags trading a 0.02 lead every step
        p = [0.50, 0.52, 0.1] if k % 2 else [0.52, 0.50, 0.1]
        top = h.update(p, t)
        t += 0.05
    assert h.switches == 0 and top == "calm"
    start = t
    while h.update([0.3, 0.6, 0.1], t) == "calm":
        t += 0.05
        assert t - start < 2.0
    assert 1.0 <= t - start < 1.1 and h.switches == 1


# -- OSC ------------------------------------------------------------------------------------------------------

def test_parse_destination():
    d = parse_destination("10.0.0.2:7000@resolume")
    assert (d.host, d.port, d.profile) == ("10.0.0.2", 7000, "resolume")
    assert parse_destination("9001").host == "127.0.0.1"
    assert parse_destination("localhost:6448", "wekinator").profile == "wekinator"
    # a host alone takes its profile's port (the README's preset table gives one; "10.0.0.5@resolume" was refused)
    for text, expected in (("10.0.0.5@resolume", ("10.0.0.5", 7000)), ("localhost", ("localhost", 9000)),
                           ("[::1]@wekinator", ("::1", 6448)), ("@max", ("127.0.0.1", 7400))):
        d = parse_destination(text)
        assert (d.host, d.port) == expected, text
    assert parse_destination("[::1]:9000").label == "[::1]:9000@default"  # as written, not ::1:9000
    for bad in ("host:notaport", "host:70000", "host:9000@unknown"):
        with pytest.raises(ValueError, match="OSC destination"):
            parse_destination(bad)


def _state(**kw):
    probs = np.linspace(0.0, 1.0, len(MOOD_TAGS))
    base = dict(valence=7.0, arousal=3.0, quadrant=4, moods=["uplifting", "travel"], tags=MOOD_TAGS, probs=probs,
                latency_ms=12.5, fresh=True)
    base.update(kw)
    return EmotionState(**base)


def test_profiles_map_the_same_values_onto_each_hosts_conventions():
    msgs = dict(load_mapping("default").build(_state(), 0.0))
    assert msgs["/m2e/valence"] == [pytest.approx(0.75)] and msgs["/m2e/arousal"] == [pytest.approx(0.25)]
    assert msgs["/m2e/valence_raw"] == [7.0] and msgs["/m2e/quadrant"] == [4]
    assert msgs["/m2e/moods"] == ["uplifting", "travel"] and msgs["/m2e/latency_ms"] == [12.5]
    assert len([a for a in msgs if a.startswith("/m2e/mood/")]) == 56
    res = dict(load_mapping("resolume").build(_state(), 0.0))
    assert all(isinstance(v[0], float) and 0 <= v[0] <= 1 for v in res.values())  # Resolume takes 0-1 floats
    assert res["/composition/layers/1/video/opacity"][0] == pytest.approx(0.2 + 0.8 * (3 * 0.25**2 - 2 * 0.25**3))
    td = dict(load_mapping("touchdesigner").build(_state(), 0.0))
    assert all(a.count("/") == 1 for a in td)  # flat names -> one CHOP channel each
    assert td["/m2e_top_index"] == [MOOD_TAGS.index("uplifting")]
    assert load_mapping("wekinator").port == 6448 and load_mapping("resolume").port == 7000
    assert dict(load_mapping("max").build(_state(), 0.0))["/m2e/va"] == [pytest.approx(0.75), pytest.approx(0.25)]


def test_wekinator_input_count_does_not_depend_on_the_model():
    wek = load_mapping("wekinator")
    full = wek.build(_state(), 0.0)
    few_tags = MOOD_TAGS[:10:2]  # a model with 5 tags
    small = wek.build(_state(tags=few_tags, probs=np.full(5, 0.9), moods=[few_tags[0]]), 0.0)
    assert [a for a, _ in full] == [a for a, _ in small] == ["/wek/inputs"]
    assert len(full[0][1]) == len(small[0][1]) == 58
    assert small[0][1][2] == pytest.approx(0.9) and small[0][1][3] == 0.0  # tag 0 present, tag 1 absent


def test_resolume_triggers_are_sent_once_per_quadrant_change_not_at_the_output_rate():
    res = load_mapping("resolume")
    sent = []
    for i in range(90):  # 3 s at 30 Hz, one quadrant change in the middle
        msgs = res.build(_state(quadrant=1 if i >= 45 else 4, quadrant_changed=i == 45), i / 30)
        sent += [a for a, _ in msgs if a.startswith("/composition/columns/")]
    assert sent == ["/composition/columns/1/connect"]


def test_a_mapping_file_sends_any_value_anywhere_with_range_curve_and_type(tmp_path):
    path = tmp_path / "show.yaml"
    path.write_text(
        "values:\n"
        "  - {source: arousal, address: /composition/layers/1/video/opacity, range: [0.5, 1.0]}\n"
        "  - {source: valence, address: /dim, curve: 'exp:2'}\n"
        "  - {source: valence_raw, address: /steps, in: [1, 9], range: [0, 10], type: int}\n"
        "  - {source: arousal, address: /gate, type: bool}\n"
        "events:\n"
        "  - {event: mood_onset, mood: happy, address: /happy/on, dwell: 1.0}\n")
    m = load_mapping(str(path))
    msgs = dict(m.build(_state(), 0.0))
    assert msgs["/composition/layers/1/video/opacity"] == [pytest.approx(0.625)]
    assert msgs["/dim"] == [pytest.approx(0.75 ** 2)]
    assert msgs["/steps"] == [8] and msgs["/gate"] == [False]
    happy = MOOD_TAGS.index("happy")
    fired = []
    for i in range(40):  # probability 0.9 from 0.5 s on: onset after the 1 s dwell, once
        probs = np.zeros(56)
        probs[happy] = 0.9 if i >= 5 else 0.1
        fired += [(i, a) for a, _ in m.build(_state(probs=probs), i * 0.1) if a == "/happy/on"]
    assert fired == [(15, "/happy/on")]
    toml = tmp_path / "show.toml"
    toml.write_text('[[values]]\nsource = "arousal"\naddress = "/a"\n')
    assert dict(load_mapping(str(toml)).build(_state(), 0.0))["/a"] == [pytest.approx(0.25)]


def test_values_sent_as_they_are_keep_their_number_under_a_type(tmp_path):
    """`type: int` on the quadrant or the tempo sent 0 or 1 (scaled to 0-1 first), not 3 or 128."""
    path = tmp_path / "raw.yaml"
    path.write_text("values:\n"
                    "  - {source: quadrant, address: /q, type: int}\n"
                    "  - {source: tempo, address: /bpm, type: int}\n"
                    "  - {source: valence_raw, address: /v}\n"
                    "  - {source: tempo, address: /beat-on, type: bool}\n")
    msgs = dict(load_mapping(str(path)).build(_state(features={"tempo": 127.6}), 0.0))
    assert msgs["/q"] == [_state().quadrant] and msgs["/bpm"] == [128] and msgs["/beat-on"] == [True]
    assert msgs["/v"] == [pytest.approx(_state().valence)]


@pytest.mark.parametrize("text, error", [
    ("values: [{source: nope, address: /x}]", "values\\[0\\]: unknown value 'nope'"),
    ("values: [{source: arousal, address: x}]", "must start with /"),
    ("values: [{source: arousal, address: /x, curve: wobbly}]", "unknown curve"),
    ("events: [{event: mood_onset, address: /x}]", "events\\[0\\]: mood events need"),
    ("values: [{source: arousal", "not valid YAML"),
    # these gave a TypeError traceback, or an error naming neither the file nor the key
    ("values: 5", "values: a list of rules"),
    ("events: 5\nvalues: [{source: arousal, address: /a}]", "events: a list of rules"),
    ("port: abc\nvalues: [{source: arousal, address: /a}]", "port: 'abc' is not a port number"),
    ("port: [1]\nvalues: [{source: arousal, address: /a}]", "port: \\[1\\] is not a port number"),
    ("heartbeat: 'no'\nvalues: [{source: arousal, address: /a}]", "heartbeat: 'no' is not true or false"),
    # a misspelt key was ignored without a word
    ("values: [{source: arousal, address: /a, curv: smooth}]", "values\\[0\\]: unknown keys \\['curv'\\]"),
    ("events: [{event: mood_onset, mood: happy, address: /h, treshold: 0.9}]", "unknown keys \\['treshold'\\]"),
    ("events: [{event: mood_onset, mood: happy, address: /h, threshold: 1.5}]", "in \\[0, 1\\]"),
    ("values: [{source: tempo, address: /t, curve: smooth}]", "tempo is sent as it is: a `curve` needs"),
    # a NaN bound or default sent NaN to the receiver on every step
    ("values: [{source: arousal, address: /a, range: [0, .nan]}]", "values\\[0\\]: a range needs finite numbers"),
    ("values: [{source: arousal, address: /a, in: [-.inf, 1]}]", "a range needs finite numbers"),
    ("values: [{source: mood.happy, address: /a, default: .nan}]", "`default` needs finite numbers"),
])
def test_bad_mapping_files_name_the_file_and_the_rule(tmp_path, text, error):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MappingError, match="bad.yaml.*" + error):
        load_mapping(str(path))
    with pytest.raises(ValueError, match="OSC destination"):
        parse_destination(f"127.0.0.1:9000@{path}")


def test_a_mood_the_model_lacks_is_named_with_the_closest_tag(tmp_path):
    """A misspelt tag in a show file (`hapy`) stayed 0 and its event never fired, without a word."""
    path = tmp_path / "show.yaml"
    path.write_text("values:\n"
                    "  - {source: [mood.hapy, mood.sad, arousal], address: /m}\n"
                    "  - {source: mood.*, address: '/all/{tag}'}\n"
                    "events:\n"
                    "  - {event: mood_onset, mood: melancholy, address: /e}\n"
                    "  - {event: mood_offset, mood: '*', address: '/off/{tag}'}\n"
                    "  - {event: mood_onset, mood: zzzz, address: /z}\n")
    problems = load_mapping(str(path)).unknown_moods(MOOD_TAGS)
    assert len(problems) == 3, problems
    assert "values[0] names mood 'hapy'" in problems[0] and "did you mean 'happy'?" in problems[0]
    assert "events[0] names mood 'melancholy'" in problems[1] and "'melancholic'?" in problems[1]
    assert "events[2] names mood 'zzzz', which the model does not have; it stays 0" in problems[2]
    assert load_mapping("default").unknown_moods(MOOD_TAGS) == []


def test_quadrant_never_flaps_on_a_boundary_nor_shows_a_diagonal_passage():
    q = QuadrantHysteresis(margin=0.03, dwell=2.0)
    t = 0.0
    assert q.hold(0.7, 0.3) == (4, False) and q.current is None  # reported, not settled
    assert q.update(0.7, 0.7, t) == (1, True)  # the first quadrant is an event
    assert q.hold(0.2, 0.2) == (1, False)
    changes = []
    rng = np.random.default_rng(0)
    for _ in range(600):  # 20 s at 30 Hz sitting on the valence boundary, +-0.02 noise
        t += 1 / 30
        if q.update(0.5 + rng.uniform(-0.02, 0.02), 0.7, t)[1]:
            changes.append(t)
    assert changes == []
    for _ in range(30):  # diagonal Q1 -> Q3 that crosses Q2 for 1 s
        t += 1 / 30
        assert q.update(0.3, 0.7, t) == (1, False)
    changes = []
    for _ in range(150):
        t += 1 / 30
        qq, changed = q.update(0.3, 0.3, t)
        if changed:
            changes.append(qq)
    assert changes == [3]  # straight to Q3, Q2 never shown
    # Changes are never closer than the dwell time.
    q2, t, last, gaps = QuadrantHysteresis(dwell=2.0), 0.0, None, []
    for i in range(3000):
        t += 1 / 30
        v = 0.5 + 0.3 * np.sin(i / 20.0) + 0.1 * np.sin(i / 3.0)  # swings of ~4 s with fast wobble
        if q2.update(v, 0.7, t)[1]:
            if last is not None:
                gaps.append(t - last)
            last = t
    assert gaps and min(gaps) >= 2.0


def test_edge_trigger_needs_hysteresis_and_dwell():
    trig = EdgeTrigger(threshold=0.5, hysteresis=0.1, dwell=2.0)
    t, edges = 0.0, []
    for i in range(300):  # hovering around the threshold: nothing
        t += 0.1
        if (e := trig.update(0.5 + 0.06 * (-1) ** i, t)):
            edges.append(e)
    assert edges == []
    for _ in range(25):
        t += 0.1
        if (e := trig.update(0.7, t)):
            edges.append((e, round(t, 1)))
    assert edges == [("onset", round(t - 0.4, 1))]


def test_bundle_carries_one_timetag():
    from pythonosc.osc_bundle import OscBundle

    messages = load_mapping("default").build(_state(), 0.0)
    data = build_bundle(messages, 1_800_000_000.25)
    b = OscBundle(data)
    assert b.timestamp == pytest.approx(1_800_000_000.25, abs=1e-6)
    assert b.num_contents == len(messages) == 12 + 56  # 12 fixed addresses + one per tag


def test_unreachable_destinations_never_stop_the_others(collector):
    dead = parse_destination(f"127.0.0.1:{free_udp_port()}")
    unresolvable = parse_destination("no-such-host.invalid:9000")
    live = parse_destination(f"127.0.0.1:{collector.port}")
    out = OscOut([dead, unresolvable, live])
    try:
        for _ in range(20):
            out.send_state(_state())
            time.sleep(0.005)
        assert wait_for(lambda: len(collector.bundles()) == 20)
        assert unresolvable.errors >= 1 and unresolvable.sent == 0 and live.sent == 20
        # between lookups the cause stays the lookup's ("host not resolved yet" hid it)
        assert wait_for(lambda: unresolvable.errors >= 20)
        assert unresolvable.last_error.startswith("cannot resolve host"), unresolvable.last_error
    finally:
        out.close()


def test_bundles_are_split_below_one_ethernet_frame_with_one_timetag():
    from pythonosc.osc_bundle import OscBundle

    from m2e_plugin.realtime.osc import MAX_DATAGRAM, build_bundles

    messages = load_mapping("default").build(_state(), 0.0)
    assert len(build_bundle(messages, 0.0)) > MAX_DATAGRAM  # 56 tags do not fit in one frame
    packets = build_bundles(messages, 1_800_000_000.5)
    assert len(packets) >= 2 and all(len(p) <= MAX_DATAGRAM for p in packets)
    bundles = [OscBundle(p) for p in packets]
    assert all(b.timestamp == pytest.approx(1_800_000_000.5, abs=1e-6) for b in bundles)
    received = [(m.address, list(m.params)) for b in bundles for m in b]
    assert [a for a, _ in received] == [a for a, _ in messages]  # all of them, in order


def test_a_slow_resolving_destination_does_not_slow_the_others(collector, monkeypatch):
    import socket as socket_module

    real = socket_module.getaddrinfo

    def slow_dns(host, *args, **kwargs):
        if host == "slow.example":
            time.sleep(5.0)  # a resolver that times out
            raise socket_module.gaierror("timed out")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket_module, "getaddrinfo", slow_dns)
    slow = parse_destination("slow.example:9000")
    live = parse_destination(f"127.0.0.1:{collector.port}")
    t0 = time.monotonic()
    out = OscOut([slow, live])
    try:
        assert time.monotonic() - t0 < 0.5, "building the sender must not wait for name resolution"
        start = time.monotonic()
        for i in range(60):  # 2 s at 30 Hz
            out.send_state(_state())
            time.sleep(max(0.0, start + (i + 1) / 30 - time.monotonic()))
        assert time.monotonic() - start < 2.5, "sending must not wait for a slow destination"
        # Every step reached the live destination's thread; on a loaded machine it may drop a few it could not
        # send within its 4-step queue (as live output should), but it never waits on the slow one (5 s per lookup).
        assert wait_for(lambda: live.sent + live.dropped == 60, timeout=2.0), f"{live.sent} sent, {live.dropped} dropped"
        assert live.sent >= 54, f"127.0.0.1 got only {live.sent} of 60 steps"
        assert slow.sent == 0
    finally:
        out.close()


# -- engine + sidecar -----------------------------------------------------------------------------------------

def test_file_without_pace_analyses_every_window_and_sends_bundles(backends, wav, collector):
    sc = Sidecar(FileSource(wav, pace=False), ModelRunner("rt-feature"),
                 [parse_destination(f"127.0.0.1:{collector.port}")], window=2.0, hop=0.5, rate=0)
    summary = sc.run(duration=60)
    assert summary["stop_reason"] == "end of input"
    assert summary["windows"] == summary["updates"] == 9  # (6 s - 2 s) / 0.5 s + 1
    assert summary["skipped_windows"] == 0 and summary["overruns"] == 0 and summary["model_errors"] == 0
    assert wait_for(lambda: len(collector.bundles()) == 9)
    tags = [tt for tt, _ in collector.bundles()]
    assert all(b > a for a, b in zip(tags, tags[1:]))

    def status():
        return [m[1] for _, _, msgs in collector.packets for m in msgs if m[0] == "/m2e/status"]

    assert wait_for(lambda: status() and status()[-1][0] == "stopped")  # the final heartbeat
    assert status()[-1][2] == 9 and status()[-1][6] == "rt-feature"


def test_fast_features_follow_a_file_read_without_pace(backends, wav, collector, monkeypatch):
    """Without pace the file is decoded into a new ring at the model's rate; the fast features kept reading the
    ring it replaced, so every bundle said -120 dB, tempo 0, and no beat was ever sent."""
    monkeypatch.setattr(SlowBackend, "DELAY", 0.05)  # the model takes some time, as a real one does
    sc = Sidecar(FileSource(wav, pace=False), ModelRunner("rt-slow"),
                 [parse_destination(f"127.0.0.1:{collector.port}")], window=2.0, hop=0.5, rate=0)
    assert sc.run(duration=60)["updates"] == 9
    assert wait_for(lambda: len(collector.bundles()) == 9)
    levels = [m["/m2e/level/rms_db"][0] for _, m in collector.bundles()]
    assert max(levels) > -60.0, levels


def test_short_input_gives_one_window(backends, tmp_path, collector):
    path = tmp_path / "short.wav"
    sf.write(path, synth_music(0.5, 16000), 16000)
    sc = Sidecar(FileSource(path, pace=False), ModelRunner("rt-feature"),
                 [parse_destination(f"127.0.0.1:{collector.port}")], window=2.0, hop=0.5, rate=0)
    assert sc.run(duration=30)["updates"] == 1


def test_slow_model_and_dead_destination_do_not_stop_the_stream(backends, wav, collector, monkeypatch):
    """The fault test: inference slower than the hop and a destination with nothing listening."""
    monkeypatch.setattr(SlowBackend, "DELAY", 0.6)
    dead = free_udp_port()
    sc = Sidecar(FileSource(wav, pace=True, loop=True), ModelRunner("rt-slow"),
                 [parse_destination(f"127.0.0.1:{dead}"), parse_destination(f"127.0.0.1:{collector.port}")],
                 window=1.0, hop=0.1, rate=20)
    summary = sc.run(duration=4.0)
    assert summary["stop_reason"] == "duration reached"
    # Windows every 0.1 s but 0.6 s per inference: most are skipped, none queue up, updates keep coming.
    assert summary["updates"] >= 3 and summary["skipped_windows"] >= 15
    assert summary["windows"] - summary["skipped_windows"] - summary["updates"] <= 2
    bundles = collector.bundles()
    times = sorted(tt for tt, _ in bundles)
    # Steady output between slow updates: ~20 Hz after the first result, not one bundle per inference (a single
    # scheduling hiccup of a loaded machine is tolerated by the percentile).
    assert len(bundles) >= 40 and np.percentile(np.diff(times), 95) < 0.15
    assert all(0 <= m["/m2e/valence"][0] <= 1 and 0 <= m["/m2e/arousal"][0] <= 1 for _, m in bundles)
    dests = {d["destination"]: d for d in summary["destinations"]}
    assert dests[f"127.0.0.1:{dead}@default"]["sent"] == dests[f"127.0.0.1:{collector.port}@default"]["sent"]
    assert all(d["dropped"] == 0 for d in dests.values())  # counted, and reported


def test_failing_model_is_counted_and_the_stream_goes_on(backends, wav, collector):
    sc = Sidecar(FileSource(wav, pace=False), ModelRunner("rt-flaky"),
                 [parse_destination(f"127.0.0.1:{collector.port}")], window=2.0, hop=0.5, rate=0)
    summary = sc.run(duration=60)
    assert summary["model_errors"] == 5 and summary["updates"] == 4


def test_window_and_hop_changes_are_refused_for_a_file_read_without_pace(backends, wav):
    """The log said "control: window = 5 s" and the summary 5.0, while the one-pass analysis kept its windows."""
    control = ControlServer(None, 0)
    sc = Sidecar(FileSource(wav, pace=False), ModelRunner("rt-feature"), [], window=2.0, hop=0.5, control=control)
    try:
        for address in ("/m2e/ctl/window", "/m2e/ctl/hop"):
            with pytest.raises(ValueError, match="cannot change with --no-pace"):
                control.apply(address, [1.0])
        assert (sc.engine.window, sc.engine.hop) == (2.0, 0.5)
        control.apply("/m2e/ctl/threshold", [0.3])  # the rest still applies
    finally:
        sc.stop()


def test_control_port_steers_the_stream_and_ignores_malformed_messages(backends, wav, collector):
    from pythonosc.udp_client import SimpleUDPClient

    sc = Sidecar(FileSource(wav, pace=True, loop=True), ModelRunner("rt-feature"),
                 [parse_destination(f"127.0.0.1:{collector.port}")], window=1.0, hop=0.25, rate=10,
                 control=ControlServer(None, 0))
    sc.start()
    try:
        assert sc.control.host == "127.0.0.1"
        ctl = SimpleUDPClient("127.0.0.1", sc.control.port)
        assert wait_for(lambda: sc.engine.updates >= 2)
        ctl.send_message("/m2e/ctl/pause", [])
        assert wait_for(lambda: sc.engine.paused)
        time.sleep(0.4)  # let a window in flight finish
        frozen = sc.engine.updates
        time.sleep(0.8)
        assert sc.engine.updates == frozen  # no inference while paused
        assert sc.status()["state"] == "paused"
        ctl.send_message("/m2e/ctl/resume", [])
        assert wait_for(lambda: sc.engine.updates > frozen)
        ctl.send_message("/m2e/ctl/window", 1.5)
        ctl.send_message("/m2e/ctl/hop", 0.5)
        ctl.send_message("/m2e/ctl/threshold", 0.2)
        assert wait_for(lambda: sc.engine.window == 1.5 and sc.engine.hop == 0.5 and abs(sc.output.threshold - 0.2) < 1e-6)
        # Malformed: wrong types, counts, ranges, unknown addresses and models, and a non-OSC datagram.
        before = sc.control.rejected
        for address, args in (("/m2e/ctl/window", "long"), ("/m2e/ctl/window", -3.0), ("/m2e/ctl/hop", []),
                              ("/m2e/ctl/hop", 1e-9),  # 0 samples: it killed the scheduler, and the run "ended"
                              ("/m2e/ctl/threshold", 7.0), ("/m2e/ctl/model", "no-such-model"),
                              ("/m2e/ctl/model", 3), ("/m2e/ctl/explode", []), ("/other", 1)):
            ctl.send_message(address, args)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.sendto(b"definitely not osc", ("127.0.0.1", sc.control.port))
        raw.close()
        assert wait_for(lambda: sc.control.rejected == before + 10)
        assert sc.engine.window == 1.5 and sc.engine.hop == 0.5 and abs(sc.output.threshold - 0.2) < 1e-6
        ctl.send_message("/m2e/ctl/model", "rt-flaky")
        assert wait_for(lambda: sc.runner.name == "rt-flaky")
        assert wait_for(lambda: sc.engine.errors >= 1)  # the new model really runs (it fails every other window)
        assert not sc.engine.paused
    finally:
        sc.stop()


def test_missing_sounddevice_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(CaptureError, match="--input FILE"):
        import_sounddevice()


def test_bad_input_file_names_the_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    with pytest.raises(CaptureError, match="notes.txt"):
        FileSource(bad)


def test_a_live_input_that_stops_delivering_is_reported(backends, collector, monkeypatch):
    from m2e_plugin.realtime.capture import Source

    class DeadInput(Source):  # a "device" whose callbacks never come (unplugged interface)
        def start(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(Sidecar, "NO_INPUT_S", 0.3)
    sc = Sidecar(DeadInput(48000, 5.0), ModelRunner("rt-feature"),
                 [parse_destination(f"127.0.0.1:{collector.port}")], window=1.0, hop=0.5, rate=10)
    sc.start()
    try:
        assert wait_for(lambda: sc.status()["state"] == "no input", timeout=5)
        # The heartbeat keeps going and says so.
        assert wait_for(lambda: any(m[0] == "/m2e/status" and m[1][0] == "no input"
                                    for _, _, msgs in collector.packets for m in msgs), timeout=5)
    finally:
        sc.stop()
    assert sc.summary()["updates"] == 0


def test_output_survives_a_model_switch_to_another_tag_set(collector):
    from m2e_plugin.realtime.engine import WindowResult
    from m2e_plugin.realtime.output import Output

    def result(tags, v):
        probs = np.linspace(0.1, 0.9, len(tags))
        return WindowResult(result={"valence": v, "arousal": 5.0}, tags=tuple(tags), probs=probs, stream_time=1.0,
                            window_end_time=time.monotonic(), window_seconds=1.0, inference_ms=1.0, model="x")

    osc = OscOut([parse_destination(f"127.0.0.1:{collector.port}")])
    out = Output(osc, rate=50, smoothing="ema", amount=0.2)
    out.start()
    try:
        out.push(result(MOOD_TAGS, 7.0))
        assert wait_for(lambda: out.sent_fresh == 1)
        out.push(result(("calm", "dark", "happy", "sad"), 3.0))  # e.g. music2emo -> lite
        assert wait_for(lambda: out.sent_fresh == 2 and out.sent > 10)
        assert out.state.tags == ("calm", "dark", "happy", "sad") and out.state.moods[0] == "sad"
        assert wait_for(lambda: out.state.valence < 3.5)  # glides to the new value
    finally:
        out.stop()
        osc.close()
    last = dict(collector.bundles()[-1][1])
    assert "/m2e/mood/sad" in last and "/m2e/mood/uplifting" not in last


def test_moods_go_empty_in_silence_and_the_next_song_shows_its_own(collector):
    """Silence (every mood 0, lite's documented answer) used to keep the last song's top mood in /m2e/moods for ever
    (or name the first tag, "action", from the start): a VJ's mood visuals fired on nothing."""
    from m2e_plugin.realtime.engine import WindowResult
    from m2e_plugin.realtime.output import Output

    tags = ("calm", "epic", "happy")

    def result(probs):
        return WindowResult(result={"valence": 5.0, "arousal": 5.0}, tags=tags, probs=np.asarray(probs, float),
                            stream_time=1.0, window_end_time=time.monotonic(), window_seconds=1.0, inference_ms=1.0,
                            model="x")

    osc = OscOut([parse_destination(f"127.0.0.1:{collector.port}")])
    out = Output(osc, rate=50, mood_tau=0.05, dwell=1.0)
    out.start()
    try:
        out.push(result([0.0, 0.0, 0.0]))  # silence from the start
        assert wait_for(lambda: out.sent > 5) and out.state.moods == []
        out.push(result([0.1, 0.9, 0.2]))
        assert wait_for(lambda: out.state.moods[:1] == ["epic"])
        out.push(result([0.0, 0.0, 0.0]))  # the song ends
        assert wait_for(lambda: out.state.moods == [], timeout=5)
        out.push(result([0.1, 0.2, 0.9]))  # the next song: its mood at once, no dwell behind the old one
        assert wait_for(lambda: out.state.moods[:1] == ["happy"], timeout=0.5)
    finally:
        out.stop()
        osc.close()
    assert any(m.get("/m2e/moods") == [] for _, m in collector.bundles())  # an empty message goes out


def test_the_first_quadrant_is_an_event_and_silence_between_songs_fires_none(collector):
    """No quadrant event came for the first quadrant (a preset's first column never connected until the music
    crossed an axis), and silence's answer (valence 5, arousal 1) fired a Q4 event in the gap between songs."""
    from m2e_plugin.realtime.engine import WindowResult
    from m2e_plugin.realtime.output import Output

    tags = ("calm", "epic", "happy")

    def result(valence, arousal, confidence):
        return WindowResult(result={"valence": valence, "arousal": arousal, "confidence": confidence}, tags=tags,
                            probs=np.zeros(3), stream_time=1.0, window_end_time=time.monotonic(),
                            window_seconds=1.0, inference_ms=1.0, model="x")

    osc = OscOut([parse_destination(f"127.0.0.1:{collector.port}")])
    out = Output(osc, rate=50, smoothing="none", quadrant_dwell=0.3)
    out.start()
    try:
        out.push(result(5.0, 1.0, 0.0))  # the show starts in silence: nothing to connect yet
        assert wait_for(lambda: out.sent > 10)
        out.push(result(3.0, 7.0, 1.0))  # a Q2 song
        assert wait_for(lambda: out.state.quadrant == 2)
        out.push(result(5.0, 1.0, 0.0))  # the song ends: silence, held well past the dwell
        time.sleep(1.0)
        assert out.state.quadrant == 2
        out.push(result(7.0, 2.0, 1.0))  # a Q4 song
        assert wait_for(lambda: out.state.quadrant == 4)
        time.sleep(0.2)
    finally:
        out.stop()
        osc.close()
    events = [m["/m2e/event/quadrant"][0] for _, m in collector.bundles() if "/m2e/event/quadrant" in m]
    assert events == [2, 4], events


def test_destination_sends_to_ipv6_and_prefers_ipv4_for_names():
    """[::1]:PORT was parsed, then every send failed (the socket was IPv4 only)."""
    from m2e_plugin.realtime.osc import build_message

    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        rx.bind(("::1", 0))
    except OSError:
        rx.close()
        pytest.skip("no IPv6 loopback on this machine")
    rx.settimeout(5)
    d = parse_destination(f"[::1]:{rx.getsockname()[1]}")
    d.start()
    try:
        d.put([build_message("/x", [1.0])])
        data, _ = rx.recvfrom(2048)
        assert data.startswith(b"/x") and d.errors == 0
    finally:
        d.close()
        rx.close()
    named = parse_destination("localhost:9")
    assert named._resolve() and named.address[0] == "127.0.0.1"  # where receivers bound to 0.0.0.0 listen


def test_a_hop_or_window_below_10_ms_is_refused():
    """A hop of 1e-9 s (a control message) rounded to 0 samples and killed the scheduler; the run then reported
    "end of input" and exited 0 with the track still playing."""
    from m2e_plugin.analysis import check_window_hop

    with pytest.raises(ValueError, match="at least 0.01 seconds"):
        check_window_hop(1.0, 1e-9)
    with pytest.raises(ValueError, match="at least 0.01 seconds"):
        check_window_hop(1e-6, 0.5)
    assert check_window_hop(0.01, 0.01) == (0.01, 0.01)


# -- fast features --------------------------------------------------------------------------------------------

def _click_track(bpm: float, seconds: float, sr: int = 48000):
    n = int(seconds * sr)
    y = 0.005 * np.random.default_rng(1).standard_normal(n).astype(np.float32)
    k = np.arange(int(0.03 * sr))
    click = (np.exp(-k / (0.005 * sr)) * np.sin(2 * np.pi * 1500 * k / sr)).astype(np.float32)
    clicks = np.arange(0.25, seconds, 60.0 / bpm)
    for c in clicks:
        i = int(c * sr)
        y[i:i + click.size] += 0.5 * click[: n - i]
    return y, clicks


@pytest.mark.parametrize("bpm", [90, 128])
def test_beat_tracker_finds_tempo_and_beats_causally(bpm):
    from m2e_plugin.realtime.features import BeatTracker

    y, clicks = _click_track(bpm, 16.0)
    bt = BeatTracker(48000)
    fired = []
    for start in range(0, y.size, 480):  # 10 ms blocks, as a live input delivers them
        bt.process(y[start:start + 480])
        if bt.take_beat():
            fired.append((start + 480) / 48000)  # when the beat was known, not re-dated afterwards
    assert bt.tempo == pytest.approx(bpm, rel=0.02)
    late = [t for t in fired if t > 8.0]  # after convergence
    assert len(late) >= int(7.5 * bpm / 60)
    errors = [np.min(np.abs(clicks - t)) for t in late]
    assert max(errors) < 0.05  # within 50 ms of the click


def test_fast_features_follow_the_ring_level(backends):
    from m2e_plugin.realtime.capture import Source
    from m2e_plugin.realtime.features import FastFeatures

    src = Source(48000, 5.0)
    ff = FastFeatures(src)
    ff.start()
    try:
        t = np.arange(4800) / 48000
        for _ in range(30):  # 3 s of a -6 dBFS sine, in 100 ms blocks
            src.ring.write((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
            time.sleep(0.01)
        assert wait_for(lambda: ff.snapshot()[0]["peak_db"] > -7.0)
        values, _ = ff.snapshot()
        assert values["peak_db"] == pytest.approx(-6.02, abs=0.3)
        assert values["level_db"] == pytest.approx(-9.03, abs=0.3)  # sine RMS = peak / sqrt(2)
        assert values["level"] == pytest.approx((60 - 9.03) / 60, abs=0.01)
    finally:
        ff.stop()


# -- responsiveness and batching ------------------------------------------------------------------------------

def _calm_then_energetic(path, sr=16000, seconds=12.0):
    rng = np.random.default_rng(3)
    calm = 0.01 * rng.standard_normal(int(seconds * sr))
    energetic = 0.15 * rng.standard_normal(int(seconds * sr))  # below the feature backend's saturation
    sf.write(path, np.concatenate([calm, energetic]).astype(np.float32), sr)
    return seconds


def _reaction(path, switch, window, hop):
    """Audio seconds from the switch to the first result past the midpoint of the two arousal plateaus."""
    from m2e_plugin.realtime.engine import Engine

    results = []
    engine = Engine(FileSource(path, pace=False), ModelRunner("rt-feature"), window=window, hop=hop,
                    on_result=results.append)
    engine.start()  # first, as the sidecar does: a file without pace is decoded at the model's rate
    engine.source.start()
    assert engine.done.wait(60)
    engine.stop()
    times = np.array([r.stream_time for r in results])
    arousal = np.array([r.result["arousal"] for r in results])
    calm = np.median(arousal[times <= switch])
    hot = np.median(arousal[times >= switch + window])
    crossed = times[(times > switch) & (arousal >= (calm + hot) / 2)]
    return float(crossed[0] - switch)


def test_low_latency_mode_reacts_to_a_change_within_2_s(backends, tmp_path):
    from m2e_plugin.cli.stream import LOW_LATENCY

    switch = _calm_then_energetic(tmp_path / "change.wav")
    window, hop = LOW_LATENCY
    assert window <= 3.0 and hop <= 0.5
    assert _reaction(tmp_path / "change.wav", switch, window, hop) <= 2.0
    # 10 s windows (the old default) do not: the change must fill most of the window first.
    assert _reaction(tmp_path / "change.wav", switch, 10.0, 0.5) > 2.0


def test_pending_windows_are_batched_when_the_model_is_busy(backends, wav, monkeypatch):
    """The GPU path: windows that arrive while the model is busy are analysed in one predict_windows call."""
    from m2e_plugin.realtime.engine import Engine

    calls = []

    def predict_windows(self, windows):
        calls.append(len(windows))
        time.sleep(0.3)  # slower than the 0.1 s hop: windows pile up (up to the batch size)
        return [self.predict_track([w]) for w in windows]

    monkeypatch.setattr(SlowBackend, "predict_windows", predict_windows)
    monkeypatch.setattr(SlowBackend, "DELAY", 0.3)
    results = []
    engine = Engine(FileSource(wav, pace=True, loop=True), ModelRunner("rt-slow"), window=1.0, hop=0.1,
                    on_result=results.append, batch=4)
    engine.source.start()
    engine.start()
    try:
        assert wait_for(lambda: len(calls) >= 4, timeout=30)
    finally:
        engine.stop()
        engine.source.stop()
    assert max(calls) > 1 and max(calls) <= 4  # batched, never more than the batch size
    assert engine.updates == len(results) >= sum(calls[:-1])
    ends = [r.stream_time for r in results]
    assert ends == sorted(ends)  # oldest first, each window reported with its own end time


def test_a_file_input_names_what_the_user_gave_in_its_warnings(wav, monkeypatch, caplog):
    """Standard input is read from a temporary copy; its warnings named the copy's temporary file, not `-`."""
    import m2e_plugin.realtime.capture as capture

    def damaged(path, sr, *, block_seconds, warnings):
        warnings.append({"code": "damaged", "start": 1.0, "seconds_lost": 0.5, "message": "undecodable data at 1.00 s"})
        yield np.zeros(int(sr * block_seconds), dtype=np.float32)

    monkeypatch.setattr(capture, "stream_audio", damaged)
    source = FileSource(wav, pace=False, name="-")
    with caplog.at_level("WARNING", logger="m2e.realtime"):
        source.start()
        assert wait_for(lambda: source.warnings)
        source.stop()
    assert "input -: undecodable data at 1.00 s" in caplog.text and str(wav) not in caplog.text


def test_printed_messages_keep_their_timetag():
    """python-osc's OscPacket replaces a timetag already past with the time of decoding; the dry run's lines must
    show the bundle's own (a step's messages share one timetag, across split bundles too)."""
    from m2e_plugin.realtime.osc import build_bundles, decode_datagram, format_message

    messages = [(f"/m2e/mood/tag{i:02d}", [i]) for i in range(60)] + [("/m2e/moods", ["happy", "calm"]),
                                                                           ("/m2e/flag", [True])]
    datagrams = build_bundles(messages, 1_000_000_000.25)
    assert len(datagrams) > 1
    decoded = [item for data in datagrams for item in decode_datagram(data)]
    assert [(a, args) for _, a, args in decoded] == [(a, args) for a, args in messages]
    assert [t for t, _, _ in decoded] == [pytest.approx(1_000_000_000.25, abs=1e-6)] * len(messages)
    assert format_message("/m2e/moods", ["happy", "calm"], 1_000_000_000.25) == '1000000000.250 /m2e/moods "happy" "calm"'
    assert format_message("/x", [0.123456789, 3, False]) == "0.000 /x 0.123457 3 false"


def test_control_takes_buttons_and_toggles():
    """A control surface's momentary button sends /m2e/ctl/pause 1.0 on press and 0.0 on release; both were refused
    ('pause takes 0 arguments'), so a TouchOSC button could not pause the show. A toggle has /m2e/ctl/paused."""
    from types import SimpleNamespace

    class Engine:
        paused = False

        def pause(self):
            self.paused = True

        def resume(self):
            self.paused = False

    control = ControlServer(None, 0)
    try:
        control.sidecar = SimpleNamespace(engine=Engine())
        engine = control.sidecar.engine
        control.apply("/m2e/ctl/pause", [1.0])
        assert engine.paused
        control.apply("/m2e/ctl/pause", [0.0])  # the release
        assert engine.paused
        control.apply("/m2e/ctl/resume", [True])
        assert not engine.paused
        control.apply("/m2e/ctl/resume", [0])
        control.apply("/m2e/ctl/pause", [])
        assert engine.paused
        for state, paused in ((0, False), (1.0, True), (False, False), (True, True)):
            control.apply("/m2e/ctl/paused", [state])
            assert engine.paused is paused
        for address, args in (("/m2e/ctl/pause", ["on"]), ("/m2e/ctl/pause", [1, 1]), ("/m2e/ctl/paused", []),
                              ("/m2e/ctl/paused", [float("nan")])):
            with pytest.raises(TypeError):
                control.apply(address, args)
        assert engine.paused  # nothing changed by the malformed ones
    finally:
        control.stop()


def test_a_live_hop_longer_than_the_window_is_said(caplog):
    from types import SimpleNamespace

    class Engine:
        file_mode, window, hop = False, 3.0, 0.5

        def set_window(self, seconds):
            self.window = seconds

        def set_hop(self, seconds):
            self.hop = seconds

    control = ControlServer(None, 0)
    try:
        control.sidecar = SimpleNamespace(engine=Engine())
        with caplog.at_level("WARNING", logger="m2e.realtime.control"):
            control.apply("/m2e/ctl/hop", [2.0])
            assert not caplog.records
            control.apply("/m2e/ctl/window", [1.0])
        assert "hop 2 s is longer than the window 1 s: 1 s of audio" in caplog.text
    finally:
        control.stop()


def test_a_model_switch_is_logged_before_it_loads_and_an_ignored_one_is_not(backends, caplog):
    """A fast load logged "switched to model X" before "control: loading model X", and a request ignored because
    another load was running was still logged as loading."""
    import logging

    runner = ModelRunner("rt-feature")
    with caplog.at_level(logging.INFO, logger="m2e"):
        assert runner.request("rt-feature", reason="control")
        runner._loader.join(timeout=30)
        runner.loading = "rt-slow"  # a load in progress
        assert not runner.request("rt-feature", reason="control")
    lines = [r.getMessage() for r in caplog.records]
    assert lines.index("control: loading model rt-feature") < lines.index("switched to model rt-feature")
    assert lines.count("control: loading model rt-feature") == 1
    assert any("still loading; ignored" in line for line in lines)
