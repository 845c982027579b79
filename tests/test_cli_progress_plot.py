"""Progress on stderr (terminal bar, plain lines in logs, nothing by default when redirected), decoder noise as one
warning per file, and `m2e predict --plot` (coverage of the audio, one image per file, dependency checked first)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.cli.main import main
from m2e_plugin.demo import synth_music
from m2e_plugin.progress import Progress, decoder_warning, native_stderr_captured


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_modes_and_no_carriage_return_in_logs(monkeypatch):
    monkeypatch.setattr("m2e_plugin.progress._LINE_INTERVAL_S", 0.0)
    log = io.StringIO()
    with Progress(3, "job", unit="file", mode="always", stream=log) as bar:
        bar.position("long.flac", 65.0, 7200.0)
        bar.update(1)
        bar.update(1, failed=True)
        bar.write("a message")
        bar.update(1)
    text = log.getvalue()
    assert "\r" not in text
    assert "job: 0/3 files, long.flac 1:05/2:00:00 (1%)" in text
    assert "job: 3/3 files" in text and "1 failed" in text and "a message" in text

    quiet = io.StringIO()
    with Progress(2, "job", mode="auto", stream=quiet) as bar:  # redirected: nothing but messages
        bar.update(2)
        bar.write("only this")
    assert quiet.getvalue() == "only this\n"

    term = _Terminal()
    with Progress(2, "job", mode="auto", stream=term) as bar:  # a terminal: a tqdm bar
        bar.update(2)
    assert "job: 100%" in term.getvalue()
    never = _Terminal()
    with Progress(2, "job", mode="never", stream=never) as bar:
        bar.update(2)
    assert never.getvalue() == ""


def test_native_stderr_is_captured_and_python_stderr_still_passes(capfd):
    import os

    with native_stderr_captured() as noise:
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1844] error: dequantization failed!\n")
        os.write(2, b"Note: Trying to resync...\n")
    out, err = capfd.readouterr()
    assert "dequantization" not in err
    assert noise.lines == ["[src/libmpg123/layer3.c:INT123_do_layer3():1844] error: dequantization failed!",
                           "Note: Trying to resync..."]
    warning = decoder_warning("x.mp3", noise)
    assert warning.startswith("warning: x.mp3: the decoder reported 2 problem(s)") and "dequantization" in warning
    with native_stderr_captured() as nothing:
        pass
    assert decoder_warning("y.mp3", nothing) is None


@pytest.fixture
def corrupt_mp3(tmp_path):
    """An MP3 with zeroed stretches: libmpg123 resyncs and writes its notes to fd 2."""
    clean = tmp_path / "clean.mp3"
    sf.write(clean, synth_music(12.0, 22050), 22050, format="MP3")
    data = bytearray(clean.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, len(data) - 64, size=30):
        data[pos : pos + 64] = bytes(64)
    bad = tmp_path / "damaged.mp3"
    bad.write_bytes(data)
    return bad


def test_a_file_that_fails_gets_its_error_not_a_decoder_warning_too(tmp_path, capfd):
    """Random bytes named .mp3 gave the error and also "the decoder reported 6 problem(s) (damaged frames are
    skipped)", as if part of the file had been usable."""
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert main(["predict", "--device", "cpu", str(bad)]) == 1
    out, err = capfd.readouterr()
    assert "not a readable audio file" in out and "decoder reported" not in err, err


def test_predict_turns_decoder_noise_into_one_warning(corrupt_mp3, capfd):
    assert main(["predict", "--device", "cpu", str(corrupt_mp3)]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["file"] == str(corrupt_mp3)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"m2e predict: warning: {corrupt_mp3}: the decoder reported")
    assert "\r" not in err


def test_predict_progress_always_in_a_log(tmp_path, capfd, monkeypatch):
    clip = tmp_path / "a.wav"
    sf.write(clip, synth_music(3.0, 22050), 22050)
    assert main(["predict", "--progress", "always", str(clip), str(clip)]) == 0
    err = capfd.readouterr().err
    assert "m2e predict: 2/2 files" in err and "\r" not in err
    assert main(["predict", "-q", "--progress", "always", str(clip)]) == 0  # --quiet wins
    assert capfd.readouterr().err == ""


def test_plot_needs_matplotlib_before_any_work(tmp_path, capsys, monkeypatch):
    clip = tmp_path / "a.wav"
    sf.write(clip, synth_music(2.0, 22050), 22050)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    monkeypatch.setattr("m2e_plugin.predictor.Music2emo.__init__",
                        lambda *a, **k: pytest.fail("the model must not load when --plot cannot work"))
    assert main(["predict", "--plot", str(tmp_path / "va.png"), str(clip)]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def _timeline(starts, window):
    return [{"start": s, "end": s + window, "valence": 5.0, "arousal": 5.0, "top_moods": []} for s in starts]


def test_plot_coverage_spans_the_whole_audio_without_a_near_duplicate_tail():
    from m2e_plugin.cli.plot import coverage

    # 31 s, 10 s windows every 5 s: 0, 5, 10, 15, 20 and an end-aligned 21-31 (centre 26, 1 s after 25).
    left, right, kept = coverage(_timeline([0, 5, 10, 15, 20, 21], 10.0), 31.0)
    assert kept == [0, 1, 2, 3, 4]
    assert left[0] == 0.0 and right[-1] == 31.0
    assert all(r == l2 for r, l2 in zip(right, left[1:]))  # contiguous: no gap, no overlap
    # 33 s: the tail window 23-33 (centre 28) is 3 s after the previous: kept.
    left, right, kept = coverage(_timeline([0, 5, 10, 15, 20, 23], 10.0), 33.0)
    assert kept == [0, 1, 2, 3, 4, 5] and right[-1] == 33.0
    # shorter than one window: one window covers everything
    left, right, kept = coverage(_timeline([0], 4.0), 4.0)
    assert (left, right, kept) == ([0.0], [4.0], [0])


def test_plot_paths_one_image_per_file():
    from m2e_plugin.cli.plot import plot_paths

    assert plot_paths([{"file": "a/x.mp3"}], "out/va.png") == ["out/va.png"]
    assert plot_paths([{"file": "a/x.mp3"}, {"file": "b/x.mp3"}, {"file": "<demo>"}], "va.png") == [
        "va-x.png", "va-x-2.png", "va-demo.png"]
    # matplotlib adds .png to a name without one: the path reported must be the file written ("wrote va" was va.png)
    assert plot_paths([{"file": "x.mp3"}], "va") == ["va.png"]
    assert plot_paths([{"file": "-"}, {"file": "x.mp3"}], "y.png") == ["y-stdin.png", "y-x.png"]  # was y--.png


def test_plot_into_an_existing_folder_writes_one_image_per_file_inside_it(tmp_path):
    from m2e_plugin.cli.plot import plot_paths

    folder = tmp_path / "plots"
    folder.mkdir()
    assert plot_paths([{"file": "a/x.mp3"}], str(folder)) == [str(folder / "x.png")]  # was plots.png beside it
    assert plot_paths([{"file": "x.mp3"}, {"file": "b/x.flac"}], str(folder)) == [str(folder / "x.png"),
                                                                                   str(folder / "x-2.png")]
    assert plot_paths([{"file": "x.mp3"}], str(tmp_path / "new") + "/") == [str(tmp_path / "new" / "x.png")]


def test_extract_decoder_noise_and_position_in_a_log(corrupt_mp3, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr("m2e_plugin.progress._LINE_INTERVAL_S", 0.0)
    out = tmp_path / "out"
    assert main(["extract", str(corrupt_mp3), "-o", str(out), "--progress", "always", "--device", "cpu"]) == 0
    err = capfd.readouterr().err
    assert err.count("the decoder reported") == 1
    assert not [line for line in err.splitlines() if line.startswith(("Note:", "[src/libmpg123"))]
    assert "damaged.mp3 0:" in err and "/0:12" in err  # position inside the file, of its 12 s
    assert "m2e extract (lite): 1/1 tracks" in err and "\r" not in err


def test_lite_predict_imports_neither_transformers_nor_matplotlib():
    """The default path stays light: MERT's transformers and the plot's matplotlib load only when asked for."""
    import subprocess

    code = ("import sys; from m2e_plugin.cli.main import main; assert main(['predict', '--demo', '-q']) == 0; "
            "print(sorted(m for m in ('transformers', 'matplotlib', 'huggingface_hub') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_console_entry_exits_quickly_with_the_status_and_flushed_output(tmp_path):
    """`m2e` ends with os._exit after the command (torch teardown skipped): status and output must survive."""
    import subprocess

    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    proc = subprocess.run([sys.executable, "-m", "m2e_plugin", "predict", "--demo", str(bad)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["file"] for o in lines] == [str(bad), "<demo>"] and "error" in lines[0]
