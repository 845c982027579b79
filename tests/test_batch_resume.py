"""Resume compares effective settings (a default spelled out is the same run) and redoes tracks whose source file
changed (size or modification time)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin import batch
from m2e_plugin.batch.outputs import effective_settings
from m2e_plugin.cli.main import main
from m2e_plugin.demo import synth_music


class RmsExtractor:
    """A tiny protocol extractor (no model): RMS of the audio, scaled by ``gain``."""

    name, version, sample_rate = "rms-test", "1.0", 8000
    outputs = ("lowlevel.rms",)
    calls = 0

    def __init__(self, *, gain: float = 1.0, device: str = "auto"):
        self.gain = gain

    def compute(self, audio, sr):
        type(self).calls += 1
        return {"lowlevel.rms": float(self.gain * np.sqrt(np.mean(np.square(audio))))}


def _clips(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(folder / f"t{i}.wav", synth_music(0.5, 8000, seed=i), 8000)
    return folder


def _run(src, out, **kw):
    tracks, _ = batch.expand_inputs([src])
    return batch.run_batch(tracks, out, extractor=RmsExtractor, progress="never", log=lambda _: None, **kw)


def test_defaults_spelled_out_and_the_device_are_the_same_run(tmp_path):
    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    assert _run(src, out).done == 3
    again = _run(src, out, options={"gain": 1, "device": "cpu"})  # int 1 == default 1.0; device is neutral
    assert again.done == 0 and again.already_done == 3
    with pytest.raises(batch.BatchError, match="other settings.*gain"):
        _run(src, out, options={"gain": 2.0})


def test_overwrite_on_a_subset_does_not_pass_the_others_off_as_new(tmp_path):
    """`--overwrite` with new settings on one track rewrote the folder's settings; the other tracks, made with the
    old ones, then counted as "already done" under the new settings."""
    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    assert _run(src, out).done == 3
    one = batch.expand_inputs([str(src / "t0.wav")])[0]
    overwritten = batch.run_batch(one, out, extractor=RmsExtractor, progress="never", log=lambda _: None,
                                  options={"gain": 2.0}, overwrite=True)
    assert overwritten.done == 1
    again = _run(src, out, options={"gain": 2.0})
    assert (again.done, again.already_done, again.settings_changed) == (2, 1, 2)
    reference = _run(src, tmp_path / "ref", options={"gain": 2.0})
    assert reference.done == 3
    for name in ("t0.wav.json", "t1.wav.json", "t2.wav.json"):
        assert json.loads((out / name).read_text())["lowlevel"]["rms"] == pytest.approx(
            json.loads((tmp_path / "ref" / name).read_text())["lowlevel"]["rms"])
    assert _run(src, out, options={"gain": 2.0}).done == 0  # settled


def test_the_table_is_this_commands_inputs_even_when_nothing_is_to_do(tmp_path):
    src, out = _clips(tmp_path / "in", n=2), tmp_path / "out"

    def rows(*names):
        tracks = [t for name in names for t in batch.expand_inputs([str(src / name)])[0]]
        result = batch.run_batch(tracks, out, extractor=RmsExtractor, progress="never", log=lambda _: None,
                                 fmt="csv")
        lines = (out / "descriptors.csv").read_text().splitlines()[1:]
        return result.done, sorted(line.split(",")[0] for line in lines)

    assert rows("t0.wav", "t1.wav") == (2, ["t0.wav", "t1.wav"])
    assert rows("t0.wav") == (0, ["t0.wav"])  # nothing to do: still this command's inputs (it kept both)
    assert rows("t0.wav", "t1.wav") == (0, ["t0.wav", "t1.wav"])  # it kept one


def test_a_resumed_run_does_not_mix_nested_and_flat_files(tmp_path):
    """`--flat` was not part of the folder's settings: resuming a nested folder with --flat (or the reverse) wrote
    the new tracks flat beside the old nested ones, and a loader reading the folder met two layouts."""
    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    (src / "t2.wav").rename(tmp_path / "later.wav")
    assert _run(src, out).done == 2
    (tmp_path / "later.wav").rename(src / "t2.wav")
    with pytest.raises(batch.BatchError, match="other settings.*layout"):
        _run(src, out, flat=True)
    assert not (out / "t2.wav.json").exists()
    assert _run(src, out).done == 1  # the same layout resumes
    assert all("lowlevel" in json.loads((out / f"t{i}.wav.json").read_text()) for i in range(3))  # all nested

    flat_out = tmp_path / "flat"
    assert _run(src, flat_out, flat=True).done == 3 and _run(src, flat_out, flat=True).already_done == 3
    with pytest.raises(batch.BatchError, match="other settings.*layout: 'flat' then, None now"):
        _run(src, flat_out)
    assert _run(src, tmp_path / "table", fmt="csv").done == 3  # tables have one layout: --flat changes nothing
    assert _run(src, tmp_path / "table", fmt="csv", flat=True).already_done == 3


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    src = _clips(tmp_path / "in", n=1)
    (tmp_path / "afile").write_text("x")
    for target in ("afile", "afile/sub"):
        with pytest.raises(batch.BatchError, match="is a file, not a folder"):
            _run(src, tmp_path / target)
    assert main(["extract", str(src), "-o", str(tmp_path / "afile")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_changed_source_is_redone_and_an_unchanged_one_is_not(tmp_path):
    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    assert _run(src, out).done == 3
    before = json.loads((out / "t1.wav.json").read_text())["lowlevel"]["rms"]
    sf.write(src / "t1.wav", 0.1 * synth_music(0.7, 8000, seed=9), 8000)  # replaced: other size and mtime
    st = os.stat(src / "t2.wav")
    os.utime(src / "t2.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: same bytes, new mtime
    result = _run(src, out)
    assert (result.source_changed, result.done, result.already_done) == (2, 2, 1)
    assert json.loads((out / "t1.wav.json").read_text())["lowlevel"]["rms"] != before
    assert _run(src, out).done == 0  # stamps updated: nothing more to do


def test_a_changed_source_that_now_fails_loses_its_stale_output(tmp_path):
    src, out = _clips(tmp_path / "in", n=1), tmp_path / "out"
    assert _run(src, out).done == 1
    (src / "t0.wav").write_bytes(b"not audio any more")
    result = _run(src, out)
    assert result.source_changed == 1 and result.failed == 1
    assert not (out / "t0.wav.json").exists()
    assert "t0.wav" in (out / "errors.jsonl").read_text()


def test_a_missing_source_that_appears_is_done_and_one_still_missing_is_not_retried(tmp_path):
    """A listed file that was missing failed, then appeared: the re-run said "failed before (not retried)"
    because no stamp was kept for a source that could not be read; going from absent to present is a change."""
    src, out = _clips(tmp_path / "in", n=1), tmp_path / "out"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{src / 't0.wav'}\n{src / 'late.wav'}\n{src / 'never.wav'}\n")

    def run():
        tracks, _ = batch.expand_inputs([str(listing)])
        return batch.run_batch(tracks, out, extractor=RmsExtractor, progress="never", log=lambda _: None)

    first = run()
    assert (first.done, first.failed) == (1, 2)
    sf.write(src / "late.wav", synth_music(0.5, 8000, seed=5), 8000)
    second = run()
    assert (second.source_changed, second.done, second.previously_failed) == (1, 1, 1)
    assert (out / "late.wav.json").exists()
    assert "late.wav" not in (out / "errors.jsonl").read_text()  # its old error line went
    third = run()
    assert (third.done, third.already_done, third.previously_failed) == (0, 2, 1)


def test_builtin_effective_settings_fill_in_the_model_defaults():
    from m2e_plugin.plugins import get_extractor_class

    cls = get_extractor_class("lite")
    plain = effective_settings(cls, {})
    assert plain == effective_settings(cls, {"threshold": 0.5, "window": plain["window"], "hop": plain["hop"],
                                             "device": "cpu"})
    assert plain != effective_settings(cls, {"threshold": 0.6})
    assert "device" not in plain


def test_cli_threshold_default_spelled_out_resumes(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", synth_music(2.0, 22050), 22050)
    out = tmp_path / "out"
    assert main(["extract", str(src), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["extract", str(src), "-o", str(out), "-q", "--threshold", "0.5", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["already_done"] == 1
    assert main(["extract", str(src), "-o", str(out), "-q", "--threshold", "0.7"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_quiet_keeps_the_status_line_out_but_not_the_failures(tmp_path, capsys):
    src, out = _clips(tmp_path / "in", n=1), tmp_path / "out"
    (src / "broken.wav").write_bytes(b"not audio")
    tracks, _ = batch.expand_inputs([str(src)])
    said: list[str] = []
    first = batch.run_batch(tracks, out, extractor=RmsExtractor, progress="never", log=said.append, quiet=True)
    assert (first.done, first.failed) == (1, 1) and "failed broken.wav" in capsys.readouterr().err
    batch.run_batch(tracks, out, extractor=RmsExtractor, progress="never", log=said.append, quiet=True)
    assert said == []  # "1 already done, 1 failed before ..." is a status line
    batch.run_batch(tracks, out, extractor=RmsExtractor, progress="never", log=said.append)
    assert said and "already done" in said[0]


def test_a_track_that_fails_gets_its_error_not_a_decoder_warning_too(tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    result = _run(src, tmp_path / "out")
    assert result.failed == 1
    err = capfd.readouterr().err
    assert "failed bad.mp3" in err and "decoder reported" not in err, err
    # with progress lines (--progress always) the length probe's decoder lines stayed out of the log too
    (src / "text.mp3").write_text("not audio at all\n" * 5000)
    tracks, _ = batch.expand_inputs([src])
    batch.run_batch(tracks, tmp_path / "out2", extractor=RmsExtractor, progress="always", log=lambda _: None)
    err = capfd.readouterr().err
    assert "failed text.mp3" in err and "libmpg123" not in err and "[src/" not in err, err


def _failing_writes(monkeypatch, after: int):
    """Every ``write_atomic`` of the batch fails with EROFS (``after`` 0) or ENOSPC after ``after`` writes."""
    import errno

    real, count = batch.write_atomic, {"n": 0}

    def write(path, data):
        count["n"] += 1
        if count["n"] > after:
            raise OSError(errno.ENOSPC if after else errno.EROFS, os.strerror(errno.ENOSPC if after else errno.EROFS))
        real(path, data)

    monkeypatch.setattr(batch, "write_atomic", write)
    monkeypatch.setattr(batch.outputs, "write_atomic", write)


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """A read-only output folder gave a traceback from the first write (an audit on a read-only mount)."""
    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    _failing_writes(monkeypatch, after=0)
    RmsExtractor.calls = 0
    with pytest.raises(batch.BatchError, match="cannot write to the output folder .*Read-only file system"):
        _run(src, out)
    assert RmsExtractor.calls == 0


def test_a_disk_that_fails_mid_batch_stops_it_keeping_the_finished_tracks(tmp_path, monkeypatch):
    src, out = _clips(tmp_path / "in", n=4), tmp_path / "out"
    # the probe, the manifest, the run record, then two tracks' pools (each followed by nothing else written
    # through write_atomic), then the disk is full
    _failing_writes(monkeypatch, after=5)
    with pytest.raises(batch.OutputUnwritable, match="No space left on device; the 2 track.* kept"):
        _run(src, out)
    monkeypatch.undo()
    assert len(list(out.glob("*.json"))) == 2 and not list(out.rglob("*.tmp*"))
    again = _run(src, out)
    assert (again.already_done, again.done) == (2, 2)


def test_the_run_record_counts_the_ignored_files(tmp_path, capsys):
    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    (src / "notes.txt").write_text("not audio")
    assert main(["extract", str(src), "-o", str(out), "--extractor", "lite", "-q", "--progress", "never",
                 "--format", "csv"]) == 0
    summary = json.loads(capsys.readouterr().out)
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
    assert summary["ignored_files"] == 1 and run["counts"]["ignored_files"] == 1


class BareExtractor:
    """The README's minimal plugin extractor: no constructor arguments at all."""

    name, version, sample_rate, outputs = "bare", "1", 8000, ("lowlevel.peak",)

    def compute(self, audio, sr):
        return {"lowlevel.peak": float(np.max(np.abs(audio)))}


def test_an_extractor_gets_only_the_options_it_takes(tmp_path):
    """`m2e extract ... --extractor mine --device cpu` failed: 'MyExtractor() takes no arguments'."""
    src = _clips(tmp_path / "in")
    tracks, _ = batch.expand_inputs([src])
    done = batch.run_batch(tracks, tmp_path / "out", extractor=BareExtractor, options={"device": "cpu"},
                           progress="never", log=lambda _: None)
    assert done.done == 3 and done.failed == 0  # the device is a compute hint: dropped, not an error
    with pytest.raises(batch.BatchError, match=r"extractor 'bare' does not take the option\(s\) threshold, window "
                                               r"\(it takes: none\)"):
        batch.run_batch(tracks, tmp_path / "other", extractor=BareExtractor, options={"threshold": 0.3, "window": 5},
                        progress="never", log=lambda _: None)
    with pytest.raises(batch.BatchError, match=r"does not take the option\(s\) frames \(it takes: device, gain\)"):
        batch.run_batch(tracks, tmp_path / "rms", extractor=RmsExtractor, options={"frames": True},
                        progress="never", log=lambda _: None)
    assert not (tmp_path / "other").exists() or not list((tmp_path / "other").glob("*.json"))


def test_a_dataset_without_any_audio_is_one_error_not_a_failure_per_track(tmp_path, capsys):
    """Labels without audio (DEAM's annotations alone) gave 1,802 'file not found' lines and exit 1."""
    from loaders_testing import AUDIO, build_home

    home = build_home(tmp_path, "deam", skip=AUDIO["deam"])
    rc = main(["extract", "--dataset", "deam", "--data-home", str(home), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") > 1 and "failed" not in err
    assert "none of its" in err and "has its audio on disk" in err and "Where to get it" in err
    assert not (tmp_path / "out").exists()
    # one clip present: the others are the usual per-track failures
    home = build_home(tmp_path / "one", "deam", skip=AUDIO["deam"][1:])
    assert main(["extract", "--dataset", "deam", "--data-home", str(home), "-o", str(tmp_path / "o2"), "-q",
                 "--extractor", "lite"]) == 1


def test_a_symlink_loop_in_a_folder_fails_alone(tmp_path):
    """A link to itself inside an input folder stopped the folder scan with a RuntimeError traceback."""
    src = _clips(tmp_path / "in")
    (src / "self.wav").symlink_to("self.wav")
    result = _run(src, tmp_path / "out")
    assert (result.done, result.failed) == (3, 1)
    assert "symbolic links" in result.failures[0]["error"] and result.failures[0]["id"] == "self.wav"


def test_a_symlinked_sub_folder_is_scanned_once_and_a_link_to_an_ancestor_does_not_loop(tmp_path):
    """os.walk does not follow folder links: a catalogue of links to album folders lost their tracks silently (not
    even counted as ignored files)."""
    album = _clips(tmp_path / "store" / "album")
    src = _clips(tmp_path / "in", n=1)
    (src / "linked album").symlink_to(album, target_is_directory=True)
    (src / "up").symlink_to(src, target_is_directory=True)  # a link to its own folder: read once
    tracks, ignored = batch.expand_inputs([src])
    assert sorted(t.id for t in tracks) == ["linked album/t0.wav", "linked album/t1.wav", "linked album/t2.wav",
                                            "t0.wav"]
    by_id = {t.id: t.path for t in tracks}
    assert ignored == 0 and by_id["linked album/t0.wav"] == str((album / "t0.wav").resolve())


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    """Two `extract` runs into one folder at once each redid every track (and could sweep the other's temporary
    files); the second is refused, naming the first, and the folder is free again once the first ends."""
    import subprocess
    import sys
    import textwrap

    src, out = _clips(tmp_path / "in"), tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from m2e_plugin.batch import exclusive_use
        with exclusive_use(Path({str(out)!r})):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(batch.BatchError, match=rf"in use by another m2e extract run \(pid {holder.pid}, started"):
            _run(src, out)
        assert not list(out.glob("*.json"))
    finally:
        holder.communicate("\n", timeout=30)
    assert _run(src, out).done == 3  # released when the first run ends


class MixedTypeExtractor(RmsExtractor):
    """A plugin whose descriptor is a label for quiet tracks and a number for the others."""

    name = "mixed-test"

    def compute(self, audio, sr):
        rms = float(np.sqrt(np.mean(np.square(audio))))
        return {"lowlevel.rms": "quiet" if rms < 0.01 else rms}


def test_a_parquet_table_of_mixed_types_is_a_clear_error_keeping_the_tracks(tmp_path):
    """A descriptor that changed type between tracks crashed the end of the run with an Arrow traceback, leaving
    the run "running" in runs.jsonl and no word of which descriptor or which tracks."""
    pytest.importorskip("pyarrow")
    src, out = _clips(tmp_path / "in", n=2), tmp_path / "out"
    sf.write(src / "quiet.wav", np.zeros(4000), 8000)
    tracks, _ = batch.expand_inputs([src])
    with pytest.raises(batch.OutputUnwritable, match=r"'lowlevel.rms' has values of different types .*str in "
                                                     r"'quiet.wav', float in 't0.wav'.*3 finished track"):
        batch.run_batch(tracks, out, extractor=MixedTypeExtractor, fmt="parquet", progress="never",
                        log=lambda _: None)
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
    assert run["status"] == "failed" and "lowlevel.rms" in run["error"]
    assert len(list((out / batch.STATE_DIR / "parts").glob("*.json"))) == 3  # the finished work is kept


def test_a_file_name_too_long_for_its_output_name_fails_alone(tmp_path):
    """A name that fits the file system but not with `.json` (and a temporary suffix) added: its write failed like a
    full disk and stopped the batch -- at the same track on every re-run. Names that fit with `.json` now work."""
    src, out = _clips(tmp_path / "in", n=2), tmp_path / "out"
    if os.pathconf(src, "PC_NAME_MAX") != 255:
        pytest.skip("needs a file system with 255-byte names")
    fits, too_long = "a" * 246 + ".wav", "b" * 248 + ".wav"  # 250 + .json = 255 bytes; 252 + .json = 257
    for name in (fits, too_long):
        sf.write(src / name, synth_music(0.5, 8000, seed=5), 8000)
    result = _run(src, out)
    assert result.done == 3 and result.failed == 1 and not result.interrupted
    assert (out / f"{fits}.json").exists() and (out / "t1.wav.json").exists()
    error = batch.read_errors(out)[too_long]
    assert "output file name is too long" in error["error"]
    assert _run(src, out).previously_failed == 1  # a re-run goes on as for any failed track
