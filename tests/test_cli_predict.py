"""`m2e predict`: JSON Lines, a bad file among good ones, --format table, --plot, --timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.cli.main import main
from m2e_plugin.demo import synth_music
from music2emo_fixtures import make_music2emo_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_music2emo_weights(tmp_path_factory.mktemp("cli-weights"))


@pytest.fixture
def music2emo_args(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network; BTC absent -> offline chord recogniser
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    mert, ckpt = weights
    return ["--model", "music2emo", "--device", "cpu", "--mert", str(mert), "--checkpoint", str(ckpt)]


@pytest.fixture
def files(tmp_path):
    good1 = tmp_path / "a.wav"
    sf.write(good1, synth_music(4.0, 22050), 22050)
    good2 = tmp_path / "b.flac"
    sf.write(good2, synth_music(3.0, 44100, seed=2), 44100)
    bad = tmp_path / "broken.mp3"
    bad.write_text("not audio")
    return good1, bad, good2


def _lines(text):
    return [json.loads(line) for line in text.strip().splitlines()]


def test_bad_file_among_good_ones(music2emo_args, files, capsys):
    good1, bad, good2 = files
    code = main(["predict", *music2emo_args, str(good1), str(bad), str(good2), str(good1.parent / "missing.wav")])
    out = _lines(capsys.readouterr().out)
    assert code == 1
    assert [o["file"] for o in out] == [str(good1), str(bad), str(good2), str(good1.parent / "missing.wav")]
    assert out[1]["error_type"] == "AudioError" and "broken.mp3: not a readable audio file" in out[1]["error"]
    assert "file not found" in out[3]["error"]
    for o in (out[0], out[2]):
        assert "error" not in o and o["model"] == "music2emo" and len(o["mood_probabilities"]) == 56
        assert np.isfinite(o["valence"]) and np.isfinite(o["arousal"])
    assert out[0]["duration"] == pytest.approx(4.0, abs=1e-3)


def test_all_good_exit_zero_and_threshold(music2emo_args, files, capsys):
    good1, _, _ = files
    assert main(["predict", *music2emo_args, "--threshold", "1.0", "--chords", "offline", "--key-input", "major",
                 str(good1)]) == 0
    (o,) = _lines(capsys.readouterr().out)
    assert o["predicted_moods"] == []


def test_table_format(music2emo_args, files, capsys):
    good1, bad, _ = files
    assert main(["predict", *music2emo_args, "--format", "table", str(good1), str(bad)]) == 1
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].split()[:4] == ["file", "valence", "arousal", "quadrant"]
    assert str(good1) in lines[1] and any(q in lines[1] for q in ("Q1", "Q2", "Q3", "Q4"))
    # the model's warnings (here: the chord recogniser's fallback) follow the file's row, as in the JSON
    assert lines[2].split()[0] == "WARNING" and "(chords_fallback)" in lines[2]
    (error,) = [line for line in lines if "ERROR: " in line]
    assert str(bad) in error and "not a readable audio file" in error
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[1])


def test_table_says_what_decoding_lost_and_aligns_wide_names(tmp_path, capsys):
    """The table used to drop the `truncated` warning the JSON carries (half a file lost, a normal-looking row),
    and a CJK file name pushed its row's numbers out of their columns."""
    y = synth_music(4.0, 22050)
    whole = tmp_path / "日本の歌.wav"
    sf.write(whole, y, 22050)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the header still promises 4 s
    assert main(["predict", "--format", "table", str(whole), str(cut)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[:2] == ["WARNING", "(truncated):"] and "missing" in lines[3]
    # the valence column starts at the same terminal column on every row (the wide name counts 2 per character)
    from m2e_plugin.cli.predict import _display_width

    starts = [_display_width(line[: line.index(value)]) for line, value in
              ((lines[0], "valence"), (lines[1], lines[1].split()[1]), (lines[2], lines[2].split()[1]))]
    assert len(set(starts)) == 1, lines


def test_plot_and_timeline(music2emo_args, tmp_path, capsys):
    clip = tmp_path / "long.wav"
    sf.write(clip, synth_music(8.0, 22050), 22050)
    png = tmp_path / "va.png"
    assert main(["predict", *music2emo_args, "--plot", str(png), "--window", "4", "--hop", "2", str(clip)]) == 0
    captured = capsys.readouterr()
    (o,) = _lines(captured.out)
    assert [e["start"] for e in o["timeline"]] == [0.0, 2.0, 4.0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "wrote" in captured.err


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    for var in ("M2E_MERT", "M2E_CHECKPOINT", "M2E_CHORD_MODEL"):
        monkeypatch.delenv(var, raising=False)
    clip = tmp_path / "a.wav"
    sf.write(clip, synth_music(1.0, 22050), 22050)
    assert main(["predict", "--model", "music2emo", str(clip)]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded" in err and "model='lite'" in err


# ---- the default, embedded `lite` model -----------------------------------------------------------------------
def test_lite_default_bad_file_table_and_plot(files, tmp_path, capsys):
    good1, bad, good2 = files
    assert main(["predict", str(good1), str(bad), str(good2)]) == 1
    out = _lines(capsys.readouterr().out)
    assert [o.get("model") for o in out] == ["lite", None, "lite"]
    assert "not a readable audio file" in out[1]["error"]
    assert main(["predict", "--format", "table", str(good1)]) == 0
    assert str(good1) in capsys.readouterr().out.splitlines()[1]
    # --timeline in a table: the file's row, then one indented row per window
    assert main(["predict", "--format", "table", "--timeline", "--window", "1", "--hop", "1", str(good1)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(good1) in lines[1] and lines[2].split()[0] == "0:00.0-0:01.0"
    assert len(lines) > 3 and all(line.startswith("  ") and "top: " in line for line in lines[2:])
    png = tmp_path / "lite.png"
    assert main(["predict", "--plot", str(png), str(good1), str(good2)]) == 0
    for name in ("lite-a.png", "lite-b.png"):  # one image per file
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert not png.exists()


def test_console_entry_point_demo():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "m2e_plugin", "predict", "--demo"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (o,) = _lines(proc.stdout)
    assert o["file"] == "<demo>" and o["model"] == "lite" and o["duration"] == pytest.approx(20.0)


def test_a_reader_that_goes_away_ends_the_command_quietly(files):
    """`m2e predict a b c | head -1` printed a BrokenPipeError traceback and exited 1 (\"some inputs failed\")."""
    import subprocess
    import sys

    paths = [str(files[0])] * 4
    proc = subprocess.Popen([sys.executable, "-m", "m2e_plugin", "predict", *paths], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does after its line
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert json.loads(first)["model"] == "lite" and "Traceback" not in err and "BrokenPipe" not in err


# ---- bad options: rejected up front (exit 2, no traceback, no model load) --------------------------------------
@pytest.mark.parametrize("option, value, message", [
    ("--window", "0", "--window must be a number of seconds >= 0.01"),  # used to fall back silently to the model's 10 s window
    ("--hop", "-1", "--hop must be a number of seconds >= 0.01"),  # used to fail each file with exit 1
    ("--window", "nan", "--window must be a number of seconds >= 0.01"),
    ("--hop", "1e-6", "--hop must be a number of seconds >= 0.01"),  # rounds to 0 samples
    ("--threshold", "5", "--threshold is a probability"),
])
def test_bad_options_exit_2_before_loading_a_model(files, option, value, message, capsys, monkeypatch):
    import m2e_plugin.predictor as predictor

    monkeypatch.setattr(predictor, "Music2emo", None)  # a model load would fail loudly
    good1, _, _ = files
    assert main(["predict", option, value, "--timeline", str(good1)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_plot_into_a_missing_folder_is_a_clear_error(files, tmp_path, capsys, monkeypatch):
    import m2e_plugin.predictor as predictor

    monkeypatch.setattr(predictor, "Music2emo", None)
    good1, _, _ = files
    target = tmp_path / "no" / "such" / "va.png"
    assert main(["predict", "--plot", str(target), str(good1)]) == 2  # used to crash with a traceback at the end
    assert f"cannot write {target}" in capsys.readouterr().err


@pytest.fixture
def light_model(monkeypatch):
    """A signal-statistics backend (tests/test_realtime_support.py): these tests are about the CLI, not a model."""
    from test_realtime_support import FeatureBackend, register_test_models

    register_test_models(monkeypatch, type("QALight", (FeatureBackend,), {"name": "qa-light"}))
    return ["--model", "qa-light"]


def test_timeline_rejects_zero_window_in_the_api(music_wav, light_model):
    from m2e_plugin.predictor import Music2emo

    model = Music2emo(model=light_model[1], device="cpu")
    with pytest.raises(ValueError, match="window must be positive"):
        model.timeline(music_wav, window=0)


def test_plot_when_every_file_failed_says_so(tmp_path, capsys, light_model):
    png = tmp_path / "va.png"
    assert main(["predict", *light_model, "--plot", str(png), str(tmp_path / "missing.wav")]) == 1
    assert "not written" in capsys.readouterr().err and not png.exists()


def test_a_folder_given_to_predict_points_to_extract(tmp_path, capsys):
    (tmp_path / "album").mkdir()
    assert main(["predict", str(tmp_path / "album")]) == 1
    (out,) = _lines(capsys.readouterr().out)
    assert "is a directory" in out["error"] and f"m2e extract {tmp_path / 'album'} -o OUT" in out["error"]
