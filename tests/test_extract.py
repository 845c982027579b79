"""The built-in extractors and batch extraction with the embedded `lite` model: descriptor layout, input expansion,
a folder with bad files (errors.jsonl, exit status, resume), formats, --jobs, datasets and Ray."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin import EmotionBackend, batch, plugins
from m2e_plugin.cli.main import main
from m2e_plugin.demo import synth_music
from m2e_plugin.labels import MOOD_TAGS

NS = "highlevel.music2emo"
FRAMES = "frames.highlevel.music2emo"  # the frames pool's keys as the extractor returns them (routed to its file)


@pytest.fixture(scope="module")
def lite():
    """The real embedded `lite` extractor (weights shipped in the package)."""
    plugins.reset()
    return plugins.get_extractor("lite", device="cpu", frames=True)


def _write_clips(folder: Path) -> list[str]:
    """Three good clips of different lengths, rates and channel counts; returns their ids."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    sf.write(folder / "a.wav", synth_music(3.0, 22050, seed=1), 22050)
    y = synth_music(5.5, 44100, seed=2, tempo=90.0, progression=((57, 60, 64), (53, 57, 60)))
    sf.write(folder / "sub" / "b.flac", np.stack([y, 0.5 * y], axis=1), 44100)
    sf.write(folder / "sub" / "c.ogg", synth_music(2.0, 16000, seed=3, tempo=150.0), 16000)
    return ["a.wav", "sub/b.flac", "sub/c.ogg"]


def _write_bad_files(folder: Path) -> dict[str, str]:
    """A corrupt, an empty and a non-audio file (all with audio extensions), plus a text file that is ignored."""
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\xff" * 64)  # broken fmt chunk
    (folder / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)  # FLAC magic, then no stream info
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "notes.mp3").write_text("these are liner notes, not audio\n" * 20)
    (folder / "readme.txt").write_text("no audio extension: not picked up from a folder")
    return {"corrupt.wav": "not a readable audio file", "corrupt.flac": "not a readable audio file",
            "empty.mp3": "file is empty",
            "notes.mp3": "not a readable audio file"}


def _read_pool(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------ the extractor

def test_lite_descriptors(lite):
    y = synth_music(12.0, 22050, seed=4)
    pool = lite.compute(np.stack([y, y], axis=1), 22050)
    assert set(pool) == set(lite.outputs)  # everything declared is there, nothing undeclared
    for dim in ("valence", "arousal"):
        s = {k: pool[f"{NS}.{dim}.{k}"] for k in ("mean", "stdev", "var", "median", "min", "max", "value",
                                                   "dmean", "dvar", "dmean2", "dvar2")}
        assert all(1.0 <= s[k] <= 9.0 for k in ("mean", "median", "min", "max", "value"))
        assert s["min"] <= s["median"] <= s["max"] and s["min"] <= s["mean"] <= s["max"] and s["stdev"] >= 0
        assert s["var"] == pytest.approx(s["stdev"] ** 2)
        series = np.array(pool[f"{FRAMES}.{dim}"])
        # 12 s: windows at 0 s and 2 s (the last ends at the end); the second adds 2 s of a 5 s hop: weight 0.4
        weights = np.array([1.0, 0.4])
        assert pool[f"{FRAMES}.frame_start"] == pytest.approx([0.0, 2.0], abs=1e-3)
        assert s["mean"] == pytest.approx(np.average(series, weights=weights))
        assert s["max"] == pytest.approx(series.max())
        assert s["dmean"] == pytest.approx(np.abs(np.diff(series)).mean())  # one difference
        assert pool[f"{NS}.{dim}_norm.value"] == pytest.approx((s["value"] - 1) / 8)
        assert pool[f"{NS}.{dim}_norm.max"] == pytest.approx((s["max"] - 1) / 8)
        inside = s["min"] <= s["value"] <= s["max"]
        assert pool[f"{NS}.{dim}.value_rule"] == ("whole_track" if inside else "whole_track_outside_windows")
    starts, ends = pool[f"{FRAMES}.frame_start"], pool[f"{FRAMES}.frame_end"]
    assert starts[0] == 0 and ends[-1] == pytest.approx(12.0, abs=1e-3) and len(starts) >= 2
    tags = lite._model.backend.mood_tags  # lite predicts the subset of the 56 tags its card lists
    assert set(tags) <= set(MOOD_TAGS) and len(tags) >= 8
    probs = {t: pool[f"highlevel.moodtheme.all.{t}"] for t in tags}
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    above = sorted([t for t, p in probs.items() if p > 0.5], key=lambda t: -probs[t])
    assert pool["highlevel.moodtheme.above_threshold"] == above
    assert pool["highlevel.moodtheme.value"] == max(probs, key=probs.get)  # one label, as Essentia's classifiers
    assert pool["highlevel.moodtheme.probability"] == max(probs.values())
    assert pool["metadata.model.name"] == "lite" and pool["metadata.model.version"]
    assert pool["provenance.model_card"]["name"] == "lite" and pool["provenance.settings"]["window"] == lite.window
    assert pool["metadata.audio_properties.length"] == pytest.approx(12.0, abs=1e-3)
    assert pool["metadata.audio_properties.sample_rate"] == 22050
    assert pool["metadata.audio_properties.number_channels"] == 2
    q = {k: pool[f"{NS}.quadrant.all.{k}"] for k in ("Q1", "Q2", "Q3", "Q4")}
    assert pool[f"{NS}.quadrant.source"] == "model" and sum(q.values()) == pytest.approx(1.0, abs=1e-5)
    assert pool[f"{NS}.quadrant.probability"] == q[pool[f"{NS}.quadrant.value"]]

    # The track-level values are exactly what the Python API predicts for the same audio.
    from m2e_plugin.predictor import Music2emo

    api = Music2emo("lite", device="cpu").predict((y, 22050))
    assert pool[f"{NS}.valence.value"] == pytest.approx(api["valence"])
    assert pool[f"{NS}.arousal.value"] == pytest.approx(api["arousal"])
    assert pool[f"{NS}.quadrant.value"] == api["quadrant"]
    assert pool[f"{NS}.confidence"] == pytest.approx(api["confidence"]) and api["confidence"] == 1.0  # 12 s, loud


def test_lite_pool_of_silence_and_of_a_short_clip(lite):
    """A researcher filtering a catalogue needs the shrinkage `predict` reports (confidence), and silence must not
    name a mood: its most probable tag among zeros was 'action'."""
    silent = lite.compute(np.zeros(5 * 22050, dtype=np.float32), 22050)
    assert silent[f"{NS}.confidence"] == 0.0 and silent["highlevel.moodtheme.value"] is None
    assert silent["highlevel.moodtheme.probability"] == 0.0 and silent["highlevel.moodtheme.above_threshold"] == []
    short = lite.compute(synth_music(0.5, 22050, seed=2), 22050)
    assert 0.0 < short[f"{NS}.confidence"] < 1.0


def test_lite_extractor_rejects_empty_audio(lite):
    from m2e_plugin.audio import AudioError

    with pytest.raises(AudioError, match="empty"):
        lite.compute(np.zeros(0, dtype=np.float32), 22050)


def test_compute_checks_the_rate_and_shape_as_predict_does(lite):
    """compute() took int(sr): a rate of 16000.5 ran silently at 16000 (predict refuses it), and a 0-d array failed
    with 'min() arg is an empty sequence'."""
    with pytest.raises(TypeError, match="whole number of Hz"):
        lite.compute(np.zeros(16000, dtype=np.float32), 16000.5)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        lite.compute(np.float32(0.3), 16000)
    pool = lite.compute(np.zeros(16000, dtype=np.float32), 16000.0)  # a whole number as a float is a rate
    assert pool["metadata.audio_properties.sample_rate"] == 16000


def test_music2emo_extractor_with_local_weights(tmp_path):
    """The paper model's extractor on tiny local weights in the published formats (HF is not reachable in tests):
    same layout, plus the key it feeds the head, and weight provenance."""
    from music2emo_fixtures import make_music2emo_weights

    mert, ckpt = make_music2emo_weights(tmp_path)
    ex = plugins.get_extractor("music2emo", device="cpu", mert=str(mert), checkpoint=str(ckpt), chords="offline",
                               local_files_only=True, cache_dir=str(tmp_path / "cache"))
    assert ex.sample_rate == 24000
    pool = ex.compute(synth_music(6.0, 22050, seed=5), 22050)
    assert set(pool) == set(ex.outputs)
    assert pool["tonal.key_music2emo.scale"] in ("major", "minor") and 0 <= pool["tonal.key_music2emo.strength"] <= 1
    assert pool["provenance.model_card"]["weights"]["checkpoint"] == str(ckpt)
    assert 1 <= pool[f"{NS}.valence.mean"] <= 9 and pool[f"{NS}.valence.stdev"] == 0.0  # one 10 s window
    assert pool[f"{NS}.quadrant.source"] == "window_share"  # a regression model: no quadrant probabilities
    assert pool[f"{NS}.quadrant.probability"] == 1.0


# --------------------------------------------------------------------------------------------- helpers, inputs

def test_nest_and_serialise():
    assert batch.nest({"a.b.c": 1, "a.b.d": 2, "a.e": 3}) == {"a": {"b": {"c": 1, "d": 2}, "e": 3}}
    with pytest.raises(ValueError, match="clashes"):
        batch.nest({"a.b": 1, "a.b.c": 2})
    with pytest.raises(ValueError, match="prefix"):
        batch.nest({"a.b.c": 1, "a.b": 2})
    assert batch.to_builtin({"x": np.float32(0.5), "y": np.arange(2), "z": float("nan")}) == \
        {"x": 0.5, "y": [0, 1], "z": None}
    with pytest.raises(TypeError):
        batch.to_builtin(object())


def test_write_atomic_is_all_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "x.json"
    batch.write_atomic(target, "{}")
    assert target.read_text() == "{}"

    def interrupted_rename(src, dst):  # Ctrl-C arriving between writing and renaming
        raise KeyboardInterrupt

    monkeypatch.setattr(batch.os, "replace", interrupted_rename)
    with pytest.raises(KeyboardInterrupt):
        batch.write_atomic(target, '{"new": 1}')
    assert target.read_text() == "{}"  # the old complete file, and no temporary left beside it
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["x.json"]


def test_expand_inputs(tmp_path):
    root = tmp_path / "music"
    ids = _write_clips(root)
    (root / ".hidden").mkdir()
    sf.write(root / ".hidden" / "h.wav", np.zeros(100), 8000)
    (root / "cover.jpg").write_bytes(b"\xff\xd8")
    tracks, ignored = batch.expand_inputs([root])
    assert [t.id for t in tracks] == ids and ignored == 1
    assert all(Path(t.path).is_absolute() for t in tracks)

    # A list of paths (relative to the list's folder, comments and blank lines skipped) and loose files.
    lst = tmp_path / "paths.txt"
    lst.write_text("# my picks\nmusic/a.wav\n\n" + str(root / "sub" / "b.flac") + "\n")
    tracks, _ = batch.expand_inputs([lst])
    assert [t.id for t in tracks] == ["a.wav", "sub/b.flac"]  # ids relative to the common parent
    # A playlist saved with a byte-order mark (Windows .m3u8): the mark made '#EXTM3U' a track that failed.
    m3u = tmp_path / "list.m3u8"
    m3u.write_bytes("\ufeff#EXTM3U\n#EXTINF:12,A\r\nmusic/a.wav\r\n".encode("utf-8"))
    tracks, _ = batch.expand_inputs([m3u])
    assert [(t.id, t.path) for t in tracks] == [("a.wav", str(root / "a.wav"))]
    tracks, _ = batch.expand_inputs([root / "sub" / "c.ogg", root / "sub" / "c.ogg"])
    assert [t.id for t in tracks] == ["c.ogg"]  # the same file twice is one track

    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "a.wav", np.zeros(100), 8000)
    with pytest.raises(batch.BatchError, match="same output 'a.wav'"):
        batch.expand_inputs([root, other])
    tracks, _ = batch.expand_inputs([tmp_path / "nope.wav"])  # a missing input is a track that will fail, alone
    assert [(t.id, t.path) for t in tracks] == [("nope.wav", str(tmp_path / "nope.wav"))]


# ---------------------------------------------------------------------------------------------------- batches

def test_folder_with_bad_files_errors_resume_and_retry(lite, tmp_path, capsys):
    src = tmp_path / "in"
    ids = _write_clips(src)
    bad = _write_bad_files(src)
    out = tmp_path / "out"

    rc = main(["extract", str(src), "-o", str(out), "--progress", "never"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 1 and not summary["ok"]
    for tid in ids:
        pool = _read_pool(out / f"{tid}.json")
        assert pool["metadata"]["input"]["id"] == tid
        assert 1 <= pool["highlevel"]["music2emo"]["valence"]["mean"] <= 9
        assert set(pool["highlevel"]["moodtheme"]["all"]) == set(lite._model.backend.mood_tags)
    errors = {}
    for line in (out / "errors.jsonl").read_text().splitlines():
        rec = json.loads(line)
        errors[rec["id"]] = rec
    assert sorted(errors) == sorted(bad)  # every bad file, and only those
    for tid, cause in bad.items():
        assert cause in errors[tid]["error"] and tid in errors[tid]["error"]  # names the file and the cause
        assert errors[tid]["error_type"] == "AudioError" and not (out / f"{tid}.json").exists()
    assert summary["done"] + summary["failed"] == len(ids) + len(bad) == summary["total"]
    assert summary["failed"] == len(bad) and summary["ignored_files"] == 1

    # Second run: nothing new to do, and it still says that the collection is incomplete.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    rc = main(["extract", str(src), "-o", str(out), "--progress", "never"])
    again = json.loads(capsys.readouterr().out)
    assert rc == 1 and again["done"] == 0 and again["failed"] == 0
    assert again["already_done"] == summary["done"] and again["previously_failed"] == summary["failed"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == mtimes

    # Fix the files and retry the failures: the collection completes and errors.jsonl empties.
    for tid in errors:
        fmt = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3"}[tid.rsplit(".", 1)[1]]
        sf.write(src / tid, synth_music(1.5, 16000), 16000, format=fmt)
    rc = main(["extract", str(src), "-o", str(out), "--progress", "never", "--retry-failed"])
    fixed = json.loads(capsys.readouterr().out)
    assert rc == 0 and fixed["ok"], fixed
    assert (out / "errors.jsonl").read_text() == ""


def test_jobs_2_and_table_formats_match_one_job(lite, tmp_path, capsys):
    src = tmp_path / "in"
    ids = _write_clips(src)
    assert main(["extract", str(src), "-o", str(tmp_path / "one"), "--progress", "never", "--format", "csv"]) == 0
    assert main(["extract", str(src), "-o", str(tmp_path / "two"), "--progress", "never", "--jobs", "2",
                 "--format", "parquet"]) == 0
    capsys.readouterr()
    rows = {r["metadata.input.id"]: r for r in csv.DictReader(open(tmp_path / "one" / "descriptors.csv"))}
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "two" / "descriptors.parquet").to_pylist()
    assert sorted(rows) == sorted(r["metadata.input.id"] for r in table) == sorted(ids)
    for r in table:
        one = rows[r["metadata.input.id"]]
        for key in (f"{NS}.valence.mean", f"{NS}.arousal.median", "highlevel.moodtheme.all.happy"):
            assert r[key] == pytest.approx(float(one[key]), abs=1e-5)
        assert one["highlevel.moodtheme.value"] == r["highlevel.moodtheme.value"]
        assert json.loads(one["highlevel.moodtheme.above_threshold"]) == list(r["highlevel.moodtheme.above_threshold"])
        assert not any(k.startswith(("provenance.", "frames.")) for k in r)  # run manifest / frames pool only

    # Another extractor setting in the same folder is refused rather than mixed in.
    rc = main(["extract", str(src), "-o", str(tmp_path / "one"), "--format", "csv", "--threshold", "0.3"])
    assert rc == 2 and "other settings" in capsys.readouterr().err


def test_yaml_flat_and_frames(lite, tmp_path, capsys):
    import yaml

    src = tmp_path / "in"
    _write_clips(src)
    assert main(["extract", str(src / "a.wav"), "-o", str(tmp_path / "y"), "--format", "yaml", "--flat",
                 "--frames", "--progress", "never"]) == 0
    capsys.readouterr()
    pool = yaml.safe_load((tmp_path / "y" / "a.wav.yaml").read_text())
    assert set(pool) >= {k for k in lite.outputs if not k.startswith(("frames.", "provenance."))}
    assert not any(k.startswith(("frames.", "provenance.")) for k in pool)
    assert pool["metadata.audio_properties.codec"] == "pcm_s16le" and pool["metadata.audio_properties.lossless"]
    assert pool["metadata.audio_properties.sample_rate"] == 22050 and pool["metadata.audio_properties.bit_rate"] == 352800
    if shutil.which("ffmpeg"):
        assert len(pool["metadata.audio_properties.md5_encoded"]) == 32
    assert pool["metadata.input.size"] == (src / "a.wav").stat().st_size
    frames = yaml.safe_load((tmp_path / "y" / "a.wav.frames.yaml").read_text())  # the frames pool, its own file
    assert len(frames[f"{NS}.valence"]) == len(frames[f"{NS}.frame_start"]) >= 1
    assert frames["metadata.run"] == pool["metadata.run"]
    runs = [json.loads(line) for line in (tmp_path / "y" / "runs.jsonl").read_text().splitlines()]
    assert [r["run"] for r in runs] == [pool["metadata.run"]] and runs[0]["status"] == "finished"
    assert runs[0]["model"]["model_card"]["name"] == "lite" and runs[0]["settings"]["frames"] is True


def test_dataset_input(lite, shared_data, tmp_path, capsys):
    """`--dataset fourq --data-home DIR` on a two-clip copy of the 4Q layout (links to the shared clips) with one
    annotated clip whose audio is missing."""
    real = shared_data / "4q-dev"
    rows = [line.split(",") for line in (real / "panda_dataset_taffc_annotations.csv").read_text().splitlines()[1:3]]
    home = tmp_path / "4q"
    for song, quad in rows:
        (home / quad).mkdir(parents=True, exist_ok=True)
        (home / quad / f"{song}.mp3").symlink_to(real / quad / f"{song}.mp3")
    lines = ["Song,Quadrant"] + [f"{s},{q}" for s, q in rows] + ["MT9999999999,Q2"]
    (home / "panda_dataset_taffc_annotations.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    rc = main(["extract", "--dataset", "fourq", "--data-home", str(home), "-o", str(out), "--progress", "never"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 1 and summary["done"] == 2 and summary["failed"] == 1
    for song, _ in rows:
        pool = _read_pool(out / f"{song}.json")
        assert pool["metadata"]["audio_properties"]["length"] > 20  # 30 s clips
    err = json.loads((out / "errors.jsonl").read_text())
    assert err["id"] == "MT9999999999" and "not found" in err["error"]


def test_ray_backend_matches_local(lite, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'm2e[ray]'")
    src = tmp_path / "in"
    _write_clips(src)
    tracks, _ = batch.expand_inputs([src])
    local = batch.run_batch(tracks, tmp_path / "local", extractor="lite", options={"device": "cpu"}, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")  # a local cluster for this test
    try:
        remote = batch.run_batch(tracks, tmp_path / "ray", extractor="lite", options={"device": "cpu"}, jobs=2,
                                 backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert local.ok and remote.ok and remote.done == len(tracks)
    for t in tracks:
        a = _read_pool(tmp_path / "local" / f"{t.id}.json")["highlevel"]["music2emo"]
        b = _read_pool(tmp_path / "ray" / f"{t.id}.json")["highlevel"]["music2emo"]
        assert b["valence"]["mean"] == pytest.approx(a["valence"]["mean"], abs=1e-5)
        assert b["arousal"]["value"] == pytest.approx(a["arousal"]["value"], abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (["-j", "0"], "--jobs must be at least 1"),  # -j 0 / --threads 0 / --threshold 7 used to run silently
    (["--threads", "0"], "--threads must be at least 1"),
    (["--window", "0"], "--window must be a number of seconds >= 0.01"),  # used to fall back to the model's window
    (["--hop", "nan"], "--hop must be a number of seconds >= 0.01"),
    (["--threshold", "7"], "--threshold is a probability"),
])
def test_bad_numbers_exit_2_before_any_work(tmp_path, args, message, capsys):
    clip = tmp_path / "a.wav"
    sf.write(clip, synth_music(1.0, 22050), 22050)
    out = tmp_path / "out"
    assert main(["extract", str(clip), "-o", str(out), "--progress", "never", *args]) == 2
    assert message in capsys.readouterr().err
    assert not any(out.glob("*.json"))


def test_extractor_rejects_zero_window_instead_of_using_the_default(monkeypatch):
    from test_realtime_support import FeatureBackend, register_test_models

    # A signal-statistics model: this is about option handling, not the model.
    register_test_models(monkeypatch, FeatureBackend)
    with pytest.raises(ValueError, match="window must be positive"):
        plugins.get_extractor("rt-feature", device="cpu", window=0)
    assert plugins.get_extractor("rt-feature", device="cpu").window > 0


class _EnergyBackend(EmotionBackend):
    """A streaming-friendly stand-in model (per-block energy): keeps nothing but running sums, like the real ones."""

    name, version, sample_rate, block_seconds, window_seconds, hop_seconds = "energy", "test", 8000, 30.0, 10.0, 5.0
    mood_tags, device = MOOD_TAGS, "cpu"

    def __init__(self, device="cpu", **_):
        pass

    @property
    def card(self):
        return {"name": self.name, "version": self.version}

    def predict_track(self, blocks):
        from m2e_plugin.backends.base import Prediction

        energy, n = 0.0, 0
        for block in blocks:
            energy += float(np.sum(np.square(block, dtype=np.float64)))
            n += block.size
        level = min(1.0, 4.0 * np.sqrt(energy / max(n, 1)))
        return Prediction(1.0 + 8.0 * level, 9.0 - 8.0 * level, np.full(len(MOOD_TAGS), level))

    def predict_windows(self, windows):
        return [self.predict_track([w]) for w in windows]


def test_long_file_is_streamed_not_loaded_whole(tmp_path, monkeypatch):
    """Regression: extract_track used to decode the whole file (a 2-hour FLAC took 4.5 GB of RAM)."""
    import tracemalloc

    from test_realtime_support import register_test_models

    register_test_models(monkeypatch, _EnergyBackend)
    rate, minutes = 8000, 15
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write((0.1 * rng.standard_normal((60 * rate, 2))).astype(np.float32))
    extractor = plugins.get_extractor("energy", device="cpu", frames=True)
    tracemalloc.start()
    try:
        pool = batch.extract_track(extractor, batch.Track("long", str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Decoded whole, 15 min of stereo float32 at 8 kHz is 57.6 MB (+ the mono mix); one 30 s block is ~2 MB.
    assert peak < 12_000_000, peak
    assert pool["metadata.audio_properties.length"] == pytest.approx(minutes * 60)
    assert len(pool["frames.highlevel.music2emo.frame_start"]) == (minutes * 60 - 10) // 5 + 1
    # Streaming gives the same descriptors as the in-memory compute() on the same samples.
    samples, sr = sf.read(path, dtype="float32")
    whole = extractor.compute(samples.mean(axis=1), sr)
    for key in ("highlevel.music2emo.valence.value", "highlevel.music2emo.arousal.mean",
                "frames.highlevel.music2emo.valence", "metadata.audio_properties.length"):
        assert pool[key] == pytest.approx(whole[key], rel=1e-5), key


def test_extract_takes_the_weight_options_of_predict(tmp_path, monkeypatch, capsys):
    """`extract --model music2emo` had no --mert/--checkpoint/--chord-model, though its own error named them."""
    from music2emo_fixtures import make_music2emo_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mert, ckpt = make_music2emo_weights(tmp_path / "w")
    clip = tmp_path / "clip.wav"
    sf.write(clip, synth_music(4.0, 22050, seed=3), 22050)
    out = tmp_path / "out"
    assert main(["extract", str(clip), "-o", str(out), "--model", "music2emo", "--mert", str(mert),
                 "--checkpoint", str(ckpt), "--chords", "offline", "--device", "cpu", "--progress", "never"]) == 0
    pool = json.loads((out / "clip.wav.json").read_text())
    assert pool["metadata"]["model"]["name"] == "music2emo" and 1 <= pool["highlevel"]["music2emo"]["valence"]["value"]
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
    assert run["settings"]["checkpoint"] == str(ckpt)  # other weights are another run: resume compares them
    assert run["model"]["model_card"]["chord_recognizer"] == "offline"  # where the README says it is recorded


def test_an_option_the_model_does_not_take_is_named():
    """`--model lite --mert X` gave "LiteBackend.__init__() got an unexpected keyword argument 'mert'"."""
    from m2e_plugin import Music2emo
    from m2e_plugin.backends.base import accepted_options

    with pytest.raises(ValueError, match=r"model 'lite' takes no chord_model, mert options .*--chord-model, --mert"):
        Music2emo(model="lite", mert="m-a-p/MERT-v1-330M", chord_model="btc.pt")
    # a model switched to live keeps only what it takes (music2emo's --mert does not stop a switch to lite)
    assert accepted_options("lite", {"mert": "x", "weights": "w.safetensors"}) == {"weights": "w.safetensors"}
    assert accepted_options("music2emo", {"mert": "x", "chords": "offline"}) == {"mert": "x", "chords": "offline"}


def test_limit_takes_the_first_tracks_of_the_inputs(tmp_path, capsys):
    """A quick look at a dataset or a large folder: --limit N (evaluate had it; extract needed a list file)."""
    src = tmp_path / "in"
    names = _write_clips(src)
    out = tmp_path / "out"
    assert main(["extract", str(src), "-o", str(out), "--limit", "2", "--progress", "never"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 2
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.json") if ".m2e" not in p.parts)
    assert written == [f"{n}.json" for n in names[:2]], written  # the inputs' order: a.wav, then sub/
    for bad in ("0", "-1"):
        assert main(["extract", str(src), "-o", str(out), "--limit", bad]) == 2
        assert "--limit must be at least 1" in capsys.readouterr().err
