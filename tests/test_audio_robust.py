"""Inputs users actually pass: damaged and cut files (decode what can be decoded, say what was lost), standard
input, pipes, bytes and file objects, special files, permissions; a missing path fails alone in every batch."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.audio import AudioError, audio_source, check_audio, info, load_audio, stream_audio
from m2e_plugin.cli.main import main
from m2e_plugin.demo import synth_music

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
SECONDS = 30.0


def _encode_mp3(wav: Path, mp3: Path) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-b:a", "128k", str(mp3)], check=True)
    return mp3


@pytest.fixture(scope="module")
def mp3s(tmp_path_factory):
    """A clean 30 s MP3 of synthetic music, the same with 50 KB of random bytes over its data at one third, the
    same with 20 KB at one third and 20 KB more at two thirds, and the same cut at two thirds."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("mp3s")
    y = synth_music(SECONDS, 44100, seed=3)
    sf.write(root / "clean.wav", np.stack([y, 0.7 * y], axis=1), 44100)
    clean = _encode_mp3(root / "clean.wav", root / "clean.mp3")
    data = clean.read_bytes()
    third = len(data) // 3
    garbage = np.random.default_rng(0).bytes(50_000)
    damaged = root / "damaged.mp3"
    damaged.write_bytes(data[:third] + garbage + data[third + len(garbage):])
    two = bytearray(data)
    for at in (third, 2 * third):
        two[at : at + 20_000] = garbage[:20_000]
    two_regions = root / "two_regions.mp3"
    two_regions.write_bytes(bytes(two))
    cut = root / "cut.mp3"
    cut.write_bytes(data[: 2 * len(data) // 3])
    return {"clean": clean, "damaged": damaged, "two_regions": two_regions, "cut": cut}


# ------------------------------------------------------------------------------------------ damaged and cut files

def test_damaged_mp3_keeps_what_decodes_and_says_what_was_lost(mp3s):
    clean, _ = load_audio(mp3s["clean"], warnings=(clean_warnings := []))
    assert clean.size / 44100 == pytest.approx(SECONDS, abs=0.05) and clean_warnings == []
    warnings: list = []
    x, sr = load_audio(mp3s["damaged"], warnings=warnings)
    assert x.size / sr >= 2 / 3 * SECONDS + 5  # everything but the damaged region (50 KB ~ 3 s at 128 kb/s)
    assert len(warnings) == 1
    w = warnings[0]
    assert w["code"] == "damaged" and w["start"] == pytest.approx(SECONDS / 3, abs=1.0)
    assert 1.0 < w["seconds_lost"] < 5.0 and "undecodable data" in w["message"]
    # The audio after the damage is the file's, not noise or silence: the clean decode, shifted by about the
    # seconds lost (to within a few MP3 frames).
    at = int((w["start"] + 2) * sr)
    after = x[at : at + 5 * sr]
    shift = int(w["seconds_lost"] * sr)
    best = max(np.corrcoef(after, clean[at + k : at + k + after.size])[0, 1]
               for k in range(shift - sr // 10, shift + sr // 10, 16))
    assert best > 0.9  # unrelated audio or silence scores near 0


def test_every_damaged_region_is_located(mp3s):
    """Two damaged stretches: two warnings, each at its place in the file's time, each with its own loss
    (20 KB at 128 kb/s is about 1.25 s); together they account for all that is missing."""
    warnings: list = []
    x, sr = load_audio(mp3s["two_regions"], warnings=warnings)
    assert [w["code"] for w in warnings] == ["damaged", "damaged"]
    assert [w["start"] for w in warnings] == [pytest.approx(SECONDS / 3, abs=0.5),
                                              pytest.approx(2 * SECONDS / 3, abs=0.5)]
    for w in warnings:
        assert w["seconds_lost"] == pytest.approx(1.25, abs=0.3) and "region" in w["message"]
    assert x.size / sr + sum(w["seconds_lost"] for w in warnings) == pytest.approx(SECONDS, abs=0.1)
    clean: list = []
    load_audio(mp3s["clean"], warnings=clean)
    assert clean == []


@pytest.mark.parametrize("suffix, codec", [(".m4a", ["-c:a", "aac", "-b:a", "128k"]), (".ogg", ["-c:a", "libvorbis"]),
                                          (".flac", [])])
def test_damaged_regions_are_located_in_other_formats(mp3s, tmp_path, suffix, codec):
    """M4A (ffmpeg only; back-to-back packets), Ogg Vorbis (soundfile; pages, so timestamps tell) and FLAC
    (soundfile; back-to-back frames): 20 KB of random bytes at one and two thirds give two regions near there."""
    encoded = tmp_path / f"clean{suffix}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(mp3s["clean"].with_suffix(".wav")), *codec,
                    str(encoded)], check=True)
    data = bytearray(encoded.read_bytes())
    garbage = np.random.default_rng(0).bytes(20_000)
    for at in (len(data) // 3, 2 * len(data) // 3):
        data[at : at + len(garbage)] = garbage
    damaged = tmp_path / f"damaged{suffix}"
    damaged.write_bytes(bytes(data))
    warnings: list = []
    x, sr = load_audio(damaged, warnings=warnings)
    assert [w["code"] for w in warnings] == ["damaged", "damaged"], warnings
    assert [w["start"] for w in warnings] == [pytest.approx(SECONDS / 3, abs=1.5),
                                              pytest.approx(2 * SECONDS / 3, abs=1.5)]
    assert x.size / sr + sum(w["seconds_lost"] for w in warnings) == pytest.approx(SECONDS, abs=0.35)


def test_the_region_scan_reads_bytes_or_timestamps_as_the_format_needs():
    """The frame scan on made-up ffprobe lines: an MP3-like stream (back-to-back packets, timestamps that ignore the
    gap), an Ogg-like one (packets sharing a page position, timestamps that wobble by 10 ms and jump at a loss)."""
    from m2e_plugin.audio_losses import _frames, _regions

    def lines(rows):
        return [f"best_effort_timestamp_time={t}|pkt_pos={p}|pkt_size={s}|nb_samples={n}".encode() for t, p, s, n in rows]

    frame = 1152 / 44100
    mp3 = [(i * frame, 400 * i, 400, 1152) for i in range(400)]
    mp3 = mp3[:100] + [(t, p + 40_000, s, n) for t, p, s, n in mp3[100:]]  # 100 frames' bytes missing, time goes on
    regions, at_end = _regions(_frames(lines(mp3), 44100), promised=None, tolerance=0.05)
    assert at_end == 0.0 and len(regions) == 1
    assert regions[0].start == pytest.approx(100 * frame) and regions[0].seconds == pytest.approx(100 * frame)
    regions, at_end = _regions(_frames(lines(mp3), 44100), promised=500 * frame + 5.0, tolerance=0.05)
    assert regions[0].seconds == pytest.approx(100 * frame) and at_end == pytest.approx(5.0)  # the rest: cut off
    # Frames the scan decoded but the delivered audio lacks (ffmpeg drops them at the damage) are lost there too.
    regions, _ = _regions(_frames(lines(mp3), 44100), promised=None, tolerance=0.05, delivered=400 * frame - 1.0)
    assert regions[0].seconds == pytest.approx(100 * frame + 1.0)

    step = 1024 / 44100
    ogg, t = [], 0.0
    for i in range(600):
        wobble = 0.0102 if i % 20 == 0 else 0.0
        jump = 2.0 if i >= 300 else 0.0
        ogg.append((t + wobble + jump, 4000 * (i // 10), 50, 1024))
        t += step
    regions, _ = _regions(_frames(lines(ogg), 44100), promised=None, tolerance=0.05)
    assert [(round(r.start, 2), round(r.seconds, 2)) for r in regions] == [(round(300 * step, 2), 2.0)]
    clean = [row for row in ogg[:300]]
    assert _regions(_frames(lines(clean), 44100), promised=300 * step, tolerance=0.05) == ([], 0.0)


def test_damaged_mp3_streams_in_full_blocks_with_the_same_warning(mp3s):
    warnings: list = []
    blocks = list(stream_audio(mp3s["damaged"], 24000, block_seconds=4.0, warnings=warnings))
    assert all(b.size == 4 * 24000 for b in blocks[:-1]) and 0 < blocks[-1].size <= 4 * 24000
    assert sum(b.size for b in blocks) / 24000 >= 2 / 3 * SECONDS + 5
    assert [w["code"] for w in warnings] == ["damaged"]


def test_stream_replay_of_a_damaged_mp3_reports_the_loss_in_its_summary(mp3s, monkeypatch):
    """`m2e stream --input` says what decoding lost as `m2e predict` does: in the summary, once even when looping."""
    from m2e_plugin.realtime.capture import FileSource
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.sidecar import Sidecar
    from test_realtime_support import register_test_backends

    register_test_backends(monkeypatch)
    _, _ = load_audio(mp3s["damaged"], warnings=(expected := []))
    source = FileSource(mp3s["damaged"], pace=False, loop=True, max_seconds=2.5 * SECONDS)
    summary = Sidecar(source, ModelRunner("rt-feature"), [], window=2.0, hop=1.0, rate=0).run(duration=120)
    assert summary["stop_reason"] == "end of input" and summary["audio_seconds"] == pytest.approx(2.5 * SECONDS)
    assert summary["input_warnings"] == expected and [w["code"] for w in expected] == ["damaged"]
    clean = Sidecar(FileSource(mp3s["clean"], pace=False), ModelRunner("rt-feature"), [], window=2.0, hop=1.0,
                    rate=0).run(duration=120)
    assert "input_warnings" not in clean


def test_cut_file_is_reported_as_truncated(mp3s):
    warnings: list = []
    x, sr = load_audio(mp3s["cut"], warnings=warnings)
    assert x.size / sr == pytest.approx(2 / 3 * SECONDS, abs=0.5)
    assert [w["code"] for w in warnings] == ["truncated"]
    assert warnings[0]["seconds_lost"] == pytest.approx(SECONDS / 3, abs=0.5)
    assert "header promises 30.0" in warnings[0]["message"]


def test_a_cut_wav_is_reported_from_its_header(tmp_path):
    """libsndfile and ffprobe give a cut WAV the length of the bytes that are there; the RIFF header's data size
    says how long it was. A size a streaming writer left open (0xFFFFFFFF) promises nothing."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, synth_music(4.0, 16000), 16000, subtype="PCM_16")
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    warnings: list = []
    x, sr = load_audio(cut, warnings=warnings)
    assert x.size / sr == pytest.approx(2.0, abs=0.01)
    assert [(w["code"], w["start"], w["seconds_lost"]) for w in warnings] == [("truncated", pytest.approx(2.0, abs=0.01),
                                                                               pytest.approx(2.0, abs=0.01))]
    at = data.index(b"data") + 4
    open_size = tmp_path / "streamed.wav"
    open_size.write_bytes(data[:at] + b"\xff\xff\xff\xff" + data[at + 4 :])
    for intact in (whole, open_size):
        load_audio(intact, warnings=(none := []))
        assert none == []


def test_warnings_are_logged_when_nobody_collects_them(mp3s, caplog):
    with caplog.at_level("WARNING", logger="m2e_plugin.audio"):
        load_audio(mp3s["cut"])
    assert "cut.mp3" in caplog.text and "header promises" in caplog.text


def test_one_usable_test_for_every_face(mp3s, tmp_path):
    from m2e_plugin.loaders.core import check_audio_file

    warnings: list = []
    meta = check_audio(mp3s["damaged"], decode=True, warnings=warnings)
    assert meta.duration >= 2 / 3 * SECONDS + 5 and warnings[0]["code"] == "damaged"
    lost: list = []
    assert check_audio_file(str(mp3s["damaged"]), decode=True, warnings=lost) is None  # usable, with a warning
    assert lost == warnings
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(np.random.default_rng(1).bytes(20_000))
    assert "not a readable audio file" in check_audio_file(str(junk), decode=True)
    with pytest.raises(AudioError, match="not a readable audio file"):
        check_audio(junk, decode=True)


def test_every_face_gives_the_same_verdict(mp3s, tmp_path):
    """Damaged, cut, zeros-appended, empty and non-audio files: the decode check (datasets validate --decode), the
    loaders' check, prediction and extraction all call the same files usable, with the same warnings."""
    from m2e_plugin import Music2emo
    from m2e_plugin.loaders.core import check_audio_file
    from m2e_plugin.plugins import get_extractor

    files = {name: mp3s[name] for name in ("damaged", "cut")}
    files["zeros"] = tmp_path / "zeros.mp3"
    files["zeros"].write_bytes(mp3s["clean"].read_bytes() + bytes(100_000))
    files["empty"] = tmp_path / "empty.mp3"
    files["empty"].write_bytes(b"")
    files["junk"] = tmp_path / "junk.mp3"
    files["junk"].write_bytes(np.random.default_rng(1).bytes(20_000))
    model, extractor = Music2emo(), get_extractor("lite")
    verdicts = {}
    for name, path in files.items():
        faces = []
        for face in (lambda w: check_audio(path, decode=True, warnings=w),
                     lambda w: w.extend(model.predict(path)["warnings"]),
                     lambda w: w.extend(extractor.compute_file(path)["metadata.warnings"])):
            warnings: list = []
            try:
                face(warnings)
                faces.append([w["code"] for w in warnings])
            except AudioError as exc:
                faces.append(exc.cause)
        lost: list = []
        cause = check_audio_file(str(path), decode=True, warnings=lost)
        faces.append(cause or [w["code"] for w in lost])
        assert all(f == faces[0] for f in faces), (name, faces)
        verdicts[name] = faces[0]
    assert verdicts == {"damaged": ["damaged"], "cut": ["truncated"], "zeros": [],
                        "empty": "file is empty (0 bytes)",
                        "junk": "not a readable audio file (unrecognised format or corrupt data)"}


def test_predict_and_extract_report_the_loss(mp3s, tmp_path):
    from m2e_plugin import Music2emo
    from m2e_plugin.plugins import get_extractor

    out = Music2emo().predict(mp3s["damaged"])
    assert out["duration"] >= 2 / 3 * SECONDS + 5
    assert [w["code"] for w in out["warnings"]] == ["damaged"]
    assert Music2emo().predict(mp3s["clean"])["warnings"] == []
    pool = get_extractor("lite").compute_file(mp3s["damaged"])
    assert pool["metadata.audio_properties.length"] == pytest.approx(out["duration"], abs=1e-3)
    assert pool["metadata.warnings"] == out["warnings"]
    two = Music2emo().predict(mp3s["two_regions"])["warnings"]
    assert [(w["code"], round(w["start"] / SECONDS, 1)) for w in two] == [("damaged", 0.3), ("damaged", 0.7)]
    assert get_extractor("lite").compute_file(mp3s["two_regions"])["metadata.warnings"] == two


# ------------------------------------------------------------------------------------------ input kinds

def test_stdin_equals_the_file_on_the_command_line(mp3s):
    m2e = [sys.executable, "-m", "m2e_plugin.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    by_path = subprocess.run(m2e + ["predict", str(mp3s["clean"])], capture_output=True, text=True, env=env,
                             timeout=300)
    with open(mp3s["clean"], "rb") as fh:
        by_stdin = subprocess.run(m2e + ["predict", "-"], stdin=fh, capture_output=True, text=True, env=env,
                                  timeout=300)
    assert by_path.returncode == 0 and by_stdin.returncode == 0, by_stdin.stderr
    a, b = json.loads(by_path.stdout), json.loads(by_stdin.stdout)
    assert b.pop("file") == "-" and a.pop("file") == str(mp3s["clean"])
    assert a == b


def test_stdin_in_extract_equals_the_file(mp3s, tmp_path):
    """`cat song.mp3 | m2e extract - -o OUT` writes OUT/stdin.json, the same pool as the path gives (but for what
    names the input); standard input that cannot be audio stops the batch before anything runs."""
    m2e = [sys.executable, "-m", "m2e_plugin.cli.main", "extract", "--progress", "never"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    by_path = subprocess.run(m2e + [str(mp3s["clean"]), "-o", str(tmp_path / "path")], capture_output=True,
                             text=True, env=env, timeout=300)
    with open(mp3s["clean"], "rb") as fh:
        by_stdin = subprocess.run(m2e + ["-", "-o", str(tmp_path / "stdin")], stdin=fh, capture_output=True,
                                  text=True, env=env, timeout=300)
    assert by_path.returncode == 0 and by_stdin.returncode == 0, by_stdin.stderr
    a = json.loads((tmp_path / "path" / "clean.mp3.json").read_text())
    b = json.loads((tmp_path / "stdin" / "stdin.json").read_text())
    assert b["metadata"]["input"] == {"id": "stdin", "path": "-", "size": mp3s["clean"].stat().st_size, "mtime": None}
    for pool in (a, b):
        del pool["metadata"]["input"], pool["metadata"]["run"]
    assert a == b
    empty = subprocess.run(m2e + ["-", "-o", str(tmp_path / "empty")], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, env=env, timeout=300)
    assert empty.returncode == 2 and "<stdin>: input is empty (0 bytes)" in empty.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_batch_copies_pipes_once_in_the_parent(mp3s, tmp_path):
    """Worker processes cannot read the parent's pipes: extract copies them first, and decodes the copy under the
    pipe's name."""
    import contextlib

    from m2e_plugin.batch import expand_inputs, spool_streams

    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(mp3s["clean"].read_bytes()), daemon=True)
    writer.start()
    tracks, _ = expand_inputs([str(fifo), str(mp3s["clean"])])
    with contextlib.ExitStack() as stack:
        spooled = spool_streams(tracks, stack)
        writer.join(timeout=60)
        [pipe] = [t for t in spooled if t.path == str(fifo)]
        assert pipe.copy and os.path.isfile(pipe.copy) and pipe.audio.label == str(fifo)
        assert [t.copy for t in spooled if t is not pipe] == [None]
        x, _ = load_audio(pipe.audio)
    assert not os.path.exists(pipe.copy)
    np.testing.assert_array_equal(x, load_audio(mp3s["clean"])[0])
    from m2e_plugin.batch import BatchError, run_batch

    with pytest.raises(BatchError, match="must be copied before the batch"):
        run_batch(expand_inputs(["-"])[0], tmp_path / "out")


@pytest.mark.skipif(shutil.which("bash") is None or not os.path.isdir("/dev/fd"), reason="needs bash and /dev/fd")
def test_extract_warns_that_a_process_substitution_is_named_by_its_descriptor(mp3s, tmp_path):
    """`m2e extract <(cat a.mp3) -o out` wrote out/63.json; the next `<(...)` silently replaced it."""
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = (f"{sys.executable} -m m2e_plugin extract <(cat {mp3s['clean']}) -o {out} -q --progress never "
           "--extractor lite")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    [pool] = list(out.glob("*.json"))
    assert f"/dev/fd/{pool.stem} is a pipe named by its descriptor" in proc.stderr


@pytest.mark.parametrize("command", [["datasets", "validate", "pmemo"], ["features", "--dataset", "pmemo"],
                                     ["extract", "--dataset", "pmemo", "-o", "unused"]])
def test_a_dataset_folder_cannot_be_standard_input(command, capsys):
    """`-` is one track; the subcommands that read a dataset folder say so instead of looking for labels in ./-."""
    assert main(command + ["--data-home", "-"]) == 2
    err = capsys.readouterr().err
    assert "--data-home '-': a dataset is a folder" in err and "cannot be read from standard input" in err


def test_bytes_file_objects_and_pipes_in_the_api(mp3s):
    from m2e_plugin import Music2emo

    model = Music2emo()
    data = mp3s["clean"].read_bytes()
    reference = model.predict(mp3s["clean"], timeline=True)
    assert model.predict(io.BytesIO(data), timeline=True) == reference  # read once, used twice (timeline)
    assert model.predict(data, timeline=True) == reference
    with open(mp3s["clean"], "rb") as fh:
        assert model.predict(fh) == model.predict(mp3s["clean"])
    with pytest.raises(TypeError, match="binary mode"):
        with open(mp3s["clean"], encoding="latin-1") as text:
            model.predict(text)
    with pytest.raises(AudioError, match="<bytes>: input is empty"):
        model.predict(b"")
    with pytest.raises(TypeError, match="audio must be a path"):
        model.predict(12)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_reads_as_a_stream(mp3s, tmp_path):
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as w:
            w.write(mp3s["clean"].read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    x, sr = load_audio(fifo)
    writer.join(timeout=60)
    y, _ = load_audio(mp3s["clean"])
    np.testing.assert_array_equal(x, y)
    with pytest.raises(AudioError, match="is a pipe"):
        info(fifo)  # a header probe would consume it


def test_stdin_that_is_a_terminal_is_refused_not_waited_on(monkeypatch):
    class Terminal(io.BytesIO):
        buffer = None

        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(AudioError, match="<stdin>: standard input is a terminal"):
        load_audio("-")


def test_special_files_and_permissions_are_named(tmp_path, monkeypatch):
    from m2e_plugin import audio

    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    if os.path.exists("/dev/null"):
        with pytest.raises(AudioError, match="/dev/null: is a device"):
            load_audio("/dev/null")
    locked = tmp_path / "locked.wav"
    sf.write(locked, np.zeros(800), 8000)

    def refuse(path, *args, **kwargs):  # what open() does without read permission (root reads anything)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audio, "open", refuse, raising=False)
    with pytest.raises(AudioError, match="locked.wav: permission denied"):
        load_audio(locked)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without permission")
def test_a_file_without_read_permission_is_named_as_such(tmp_path):
    locked = tmp_path / "locked.wav"
    sf.write(locked, np.zeros(800), 8000)
    locked.chmod(0)
    try:
        with pytest.raises(AudioError, match="locked.wav: permission denied"):
            load_audio(locked)
        assert main(["predict", str(locked)]) == 1
    finally:
        locked.chmod(0o600)


def test_audio_source_cleans_up_its_copy(mp3s):
    with audio_source(io.BytesIO(mp3s["clean"].read_bytes())) as src:
        copy = os.fspath(src)
        assert os.path.isfile(copy) and src.label == "<file object>"
    assert not os.path.exists(copy)


# ------------------------------------------------------------------------------------------ batches go on

def test_missing_path_is_one_error_in_extract(tmp_path, capsys):
    good = tmp_path / "in" / "good.wav"
    good.parent.mkdir()
    sf.write(good, synth_music(3.0, 22050), 22050)
    missing = tmp_path / "in" / "missing.wav"
    out = tmp_path / "out"
    assert main(["extract", str(good), str(missing), "-o", str(out), "--progress", "never"]) == 1
    assert len(list(out.glob("good*.json"))) == 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["missing.wav"] and "file not found" in errors[0]["error"]


def test_datasets_validate_decode_lists_damaged_but_usable_tracks(mp3s, tmp_path, capsys):
    from loaders_testing import AUDIO, build_home

    home = build_home(tmp_path, "pmemo")
    shutil.copy(mp3s["damaged"], home / AUDIO["pmemo"][0])
    (home / AUDIO["pmemo"][1]).write_bytes(b"this is not an mp3 file" * 10)
    assert main(["datasets", "validate", "pmemo", "--data-home", str(home), "--decode"]) == 1  # one corrupt
    report = json.loads(capsys.readouterr().out)
    assert report["corrupt"] == 1 and report["damaged"] == 1 and report["usable"] == report["tracks"] - 1
    [(track_id, lost)] = report["damaged_tracks"].items()
    assert [w["code"] for w in lost] == ["damaged"] and lost[0]["seconds_lost"] > 1.0
    # --progress always: plain progress lines in a log (it printed none), the damaged track named; -q: neither
    argv = ["datasets", "validate", "pmemo", "--data-home", str(home), "--decode"]
    assert main([*argv, "--progress", "always"]) == 1
    err = capsys.readouterr().err
    n = report["tracks"]
    assert f"m2e datasets validate pmemo: {n}/{n} tracks" in err and "1 failed" in err
    assert "usable, but" in err and f"{n} tracks, {n - 1} with usable audio" in err
    assert main([*argv, "-q"]) == 1
    assert capsys.readouterr().err == ""


def test_real_mp3s_whose_header_overstates_the_length_are_not_reported(shared_data):
    """libsndfile estimates these 4Q clips at 30.08 s (no Xing/LAME frame count); they decode to 29.94 s, whole.
    A 0.14 s shortfall is within the tolerance (1 % of the length): no warning, and no second decode by ffmpeg."""
    from m2e_plugin.audio import complete_tolerance, load_audio

    for name in ("Q1/MT0001586807.mp3", "Q3/MT0000941301.mp3", "Q3/MT0000949813.mp3"):
        warnings: list = []
        x, sr = load_audio(shared_data / "4q-dev" / name, warnings=warnings)
        assert warnings == [] and 29.5 < x.size / sr < 30.1
    assert complete_tolerance(30.0) == pytest.approx(0.3) and complete_tolerance(1.0) == 0.05
    assert complete_tolerance(7200.0) == 1.0


def test_a_soundfile_stop_that_ffmpeg_decodes_past_cleanly_is_no_damage(tmp_path, monkeypatch):
    """libsndfile stops part-way through some valid Opus files ("Supported file format but file is malformed");
    ffmpeg decodes the rest with no error and nothing lost. That used to be reported as "damaged" (0.00 s lost)."""
    import soundfile

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / "valid.wav"
    y = synth_music(6.0, 22050)
    sf.write(path, y, 22050)

    class StopsPartWay(soundfile.SoundFile):
        reads = 0

        def read(self, *args, **kwargs):
            type(self).reads += 1
            if type(self).reads > 5:  # 5 chunks of 8192 frames, then libsndfile's error
                raise soundfile.LibsndfileError(1, "Supported file format but file is malformed.")
            return super().read(*args, **kwargs)

    monkeypatch.setattr(soundfile, "SoundFile", StopsPartWay)
    found: list = []
    blocks = list(stream_audio(path, 22050, warnings=found))
    assert StopsPartWay.reads > 5 and found == []
    np.testing.assert_allclose(np.concatenate(blocks), y, atol=1e-4)  # soundfile's part, then ffmpeg's, seamless


def test_a_video_without_sound_is_named_as_such(tmp_path):
    """It used to be 'not a readable audio file (Format not recognised.)', as if the file were corrupt."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    video = tmp_path / "silent-film.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=5",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    with pytest.raises(AudioError, match=r"silent-film.mp4: no audio stream \(the file holds video only\)"):
        load_audio(video)
    with pytest.raises(AudioError, match="not a readable audio file"):  # a corrupt file is still called corrupt
        load_audio(_junk(tmp_path))


def _junk(folder):
    path = folder / "junk.mp3"
    path.write_bytes(os.urandom(4000))
    return path


@needs_ffmpeg
@pytest.mark.parametrize("rate", [22050, 24000])
def test_low_rate_mp3s_decode_cleanly_whatever_the_read_size(tmp_path, rate, monkeypatch, capfd):
    """16-24 kHz MP3 (MPEG-2 layer III): libsndfile 1.2 decodes them differently by read size. Read 8192 frames at a
    time, a valid 32 kb/s file of a 440 Hz tone came out with garbled frames (worst 0.1 s three times the codec's
    error, samples off by 0.09) and libmpg123's 'part2_3_length too large' lines, which the product then reported
    as damage. One whole-file read (or, for a long file, ffmpeg) decodes them cleanly."""
    import m2e_plugin.audio as audio

    t = np.arange(int(20 * rate)) / rate
    tone = (0.125 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav, mp3 = tmp_path / "low.wav", tmp_path / "low.mp3"
    sf.write(wav, tone, rate)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-b:a", "32k", str(mp3)], check=True)

    def worst_window_error(x):  # RMS error against the tone per 0.1 s: the codec's own is about 0.005
        n = min(x.size, tone.size)
        e = x[:n] - tone[:n]
        return max(float(np.sqrt(np.mean(e[i : i + rate // 10] ** 2))) for i in range(0, n - rate // 10, rate // 10))

    for how in ("whole read", "ffmpeg"):
        if how == "ffmpeg":  # as for a file too long to read whole
            monkeypatch.setattr(audio, "_WHOLE_READ_MAX_SAMPLES", 0)
        warnings: list = []
        got = np.concatenate(list(stream_audio(mp3, rate, block_seconds=1.0, warnings=warnings)))
        assert warnings == [] and abs(got.size - tone.size) <= rate // 10
        assert worst_window_error(got) < 0.008, how
    assert "part2_3_length" not in capfd.readouterr().err
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)  # too long to read whole, and no ffmpeg: said
    warnings = []
    assert sum(b.size for b in stream_audio(mp3, rate, warnings=warnings)) == got.size
    assert [w["code"] for w in warnings] == ["unreliable_decoder"]
