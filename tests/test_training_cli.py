"""`m2e features` / `m2e train` / `m2e evaluate`: wiring, table format, clear errors."""

from __future__ import annotations

import pytest

from m2e_plugin.cli.main import main
from m2e_plugin.training.evaluate import format_table


def test_paper_table_formats():
    base = {"model": "lite", "split": "test", "n_tracks": 10, "failed": {}}
    t = format_table({**base, "dataset": "mtg_jamendo_moodtheme", "pr_auc": 0.15432, "roc_auc": 0.781, "n_tags": 56})
    assert "| PR-AUC | ROC-AUC |" in t and "| 0.1543 | 0.7810 | 56 |" in t
    t = format_table({**base, "dataset": "deam", "r2_valence": 0.5184, "r2_arousal": 0.6228, "rmse_valence": 0.9,
                      "rmse_arousal": 0.8})
    assert "R² V | R² A" in t and "0.5184 | 0.6228" in t
    t = format_table({**base, "dataset": "fourq", "quadrant_accuracy": 0.65, "quadrant_macro_f1": 0.64,
                      "valence_roc_auc": 0.8, "arousal_roc_auc": 0.95})
    assert t.splitlines()[1].count("---") == 8


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--model", "music2emo", "--data-home", str(tmp_path), "-o", str(tmp_path / "x")]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["train", "--model", "lite", "--data-home", str(tmp_path), "-o", str(tmp_path / "x"),
                 "--cache", str(tmp_path)]) == 2
    assert "panda_dataset_taffc_annotations.csv" in capsys.readouterr().err
    assert main(["features", "--dataset", "nope", "--data-home", str(tmp_path), "-o", str(tmp_path / "c")]) == 2
    assert "nope" in capsys.readouterr().err


def test_evaluate_on_a_4q_copy_reports_ratings_and_moods(tmp_path, capsys):
    """`m2e evaluate --dataset fourq` end to end on a fixture copy: the paper's figures plus the rating spread and
    the mood figures a user needs to judge lite on clips it never saw (sizes, antonym pairs, contradictions)."""
    import json

    from loaders_testing import build_home

    from m2e_plugin.cli.main import main

    home = build_home(tmp_path, "fourq")
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(home), "--progress", "never"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_tracks"] == 4 and result["split"] == "all"
    for name in ("valence", "arousal"):
        r = result["ratings"][name]
        assert 2.5 <= r["p5"] <= r["p95"] <= 7.5 and r["outside_1.5_8.5"] == 0.0  # lite's documented span
    m = result["moods"]
    assert m["tags"] == 56 and {"median_moods", "antonym_pair_rate", "share_contradicting_quadrant"} <= m.keys()
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(home), "--progress", "never",
                 "--format", "table"]) == 0
    table = capsys.readouterr().out
    assert "| Quadrant acc |" in table and "antonym pairs | a mood contradicting the quadrant |" in table


def test_evaluate_errors_name_the_cause(tmp_path, capsys):
    """A split that does not exist, a dataset without split lists, every track failing: one line with the cause."""
    from loaders_testing import AUDIO, build_home

    fourq = build_home(tmp_path, "fourq")
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(fourq), "--split", "test",
                 "--progress", "never"]) == 2
    assert "no official split" in (err := capsys.readouterr().err) and "--split all" in err
    pmemo = build_home(tmp_path, "pmemo")  # PMEmo as published: no split lists
    assert main(["evaluate", "--dataset", "pmemo", "--data-home", str(pmemo), "--progress", "never"]) == 2
    assert "--split all" in capsys.readouterr().err
    deam = build_home(tmp_path, "deam", skip=AUDIO["deam"])
    assert main(["evaluate", "--dataset", "deam", "--data-home", str(deam), "--split", "all",
                 "--progress", "never"]) == 2
    err = capsys.readouterr().err
    assert "0 tracks could be predicted" in err and "first: " in err and "MEMD_audio" in err
    # the faithful model's inputs reach the model (evaluate had no --mert/--chords/--chord-model: the paper's table
    # could get BTC chords only through environment variables)
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(fourq), "--mert", "some/mert",
                 "--progress", "never"]) == 2
    assert "model 'lite' takes no mert option" in capsys.readouterr().err
    # a model that cannot be built (an unknown device, missing weights) is exit 2 with its message, no traceback
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(fourq), "--device", "tpu",
                 "--progress", "never"]) == 2
    assert "tpu" in (err := capsys.readouterr().err) and "Traceback" not in err
    # scored without the clips that failed, and said so by the exit status (it was 0)
    broken = build_home(tmp_path / "broken", "fourq", corrupt=AUDIO["fourq"][:1])
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(broken), "--progress", "never"]) == 1
    assert "1 tracks failed (scored without them" in capsys.readouterr().err


def test_evaluate_undefined_metric_is_null(tmp_path, capsys):
    """Two 4Q clips of Q1 and Q2 are all aroused: arousal's AUC is undefined, null in the JSON (NaN is not JSON)."""
    import json

    from loaders_testing import build_home

    home = build_home(tmp_path, "fourq")
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(home), "--limit", "2",
                 "--progress", "never"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert result["arousal_roc_auc"] is None and result["valence_roc_auc"] is not None
    assert main(["evaluate", "--dataset", "fourq", "--data-home", str(home), "--limit", "2",
                 "--progress", "never", "--format", "table"]) == 0
    assert "| n/a |" in capsys.readouterr().out


def test_training_commands_check_their_options_first(tmp_path, capsys):
    """--limit 0 ran the whole dataset; --bpm 0 and --jobs 0 ran (or crashed with a traceback); a cache path that
    is a file gave a FileExistsError traceback; lite with --dataset deam complained about missing 4Q files."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["features", "--dataset", "fourq", "--data-home", str(tmp_path), "--limit", "0"], "--limit must be at least 1"),
        (["features", "--dataset", "fourq", "--data-home", str(tmp_path), "-o", str(a_file)], "is a file"),
        (["evaluate-harmony", "--bpm", "0"], "--bpm must be a positive tempo"),
        (["evaluate-harmony", "--jobs", "0"], "--jobs must be at least 1"),
        (["evaluate-harmony", "--cache", str(a_file)], "is a file, not a folder"),
        (["train", "--model", "lite", "--dataset", "deam", "--data-home", str(tmp_path), "-o",
          str(tmp_path / "x.safetensors")], "--model lite trains on the 4Q clips only"),
        (["evaluate", "--dataset", "fourq", "--data-home", str(tmp_path), "--limit", "0"],
         "--limit must be at least 1"),  # it scored every clip
    ]
    m2e = ["train", "--model", "music2emo", "--dataset", "deam", "--data-home", str(tmp_path), "-o",
           str(tmp_path / "s.safetensors")]
    cases += [  # each one trained first and then crashed, or trained nonsense (found by a new user's audit)
        (["train", "--model", "music2emo", "--dataset", "fourq", "--data-home", str(tmp_path), "-o", "s"],
         "--model music2emo trains on mtg_jamendo_moodtheme, deam, emomusic, pmemo; got fourq"),
        ([*m2e, "--batch-size", "0"], "--batch-size must be at least 1"),
        ([*m2e, "--max-epochs", "0"], "--max-epochs must be at least 1"),
        ([*m2e, "--patience", "-1"], "--patience must be at least 0"),
        ([*m2e, "--kd-weight", "5"], "--kd-weight is a share between 0 and 1"),
        ([*m2e, "--kd-temperature", "0"], "--kd-temperature must be a positive number"),
        ([*m2e[:-1], str(tmp_path)], "is a folder; give the weights file"),
        # trained, then `predict/evaluate --checkpoint` refused the safetensors file by its name
        ([*m2e[:-1], str(tmp_path / "s.ckpt")], "name the file *.safetensors"),
        ([*m2e[:-1], str(tmp_path / "student")], "name the file *.safetensors"),
    ]
    lite = ["train", "--model", "lite", "--data-home", str(tmp_path), "-o", str(tmp_path / "l.safetensors")]
    cases += [  # options of the other model, or unused folders, were ignored without a word
        ([*lite, "--lr", "0.1", "--max-epochs", "3"], "--lr, --max-epochs: options of --model music2emo only"),
        ([*lite, "--no-kd"], "--no-kd: options of --model music2emo only"),
        ([*lite, "--device", "cpu"], "--device: options of --model music2emo only"),
        ([*m2e, "--config", "c.json"], "--config: options of --model lite only"),
        ([*m2e, "--no-cv"], "--no-cv: options of --model lite only"),
        ([*m2e, "--no-kd", "--kd-weight", "0.5"], "--kd-weight: options of the distillation, which --no-kd turns off"),
        ([*m2e, "--no-kd", "--kd-temperature", "2"], "--kd-temperature: options of the distillation"),
        ([*m2e[:6], f"deam={tmp_path}", "--data-home", f"pmemo={tmp_path}", *m2e[7:]],
         "--data-home names pmemo, which this training does not use (datasets: deam)"),
        ([*m2e, "--cache", f"emomusic={tmp_path}"], "--cache names emomusic, which this training does not use"),
        ([*lite[:4], f"fourq={tmp_path}", "--data-home", f"deam={tmp_path}", *lite[5:]],
         "--data-home names deam, which this training does not use (datasets: fourq)"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_lite_training_takes_a_seed(tmp_path, monkeypatch, capsys):
    """`--seed N` is the config's seed (folds and initialisation; the README's seeds 1 and 2 needed a config copy);
    without it the committed config's seed stands."""
    from m2e_plugin.training import lite

    seen = []
    monkeypatch.setattr(lite, "train_lite", lambda home, cache, *, config, **kw: (seen.append(config), (None, {
        "metrics": {}}))[1])
    argv = ["train", "--model", "lite", "--data-home", str(tmp_path), "-o", str(tmp_path / "l.safetensors")]
    assert main([*argv, "--seed", "2"]) == 0 and main(argv) == 0
    assert [c["seed"] for c in seen] == [2, lite.load_config()["seed"]]


def _music2emo_cache(home, cache, dataset):
    """Cached inputs as `m2e features --model music2emo` writes them, for every track of a fixture copy."""
    import numpy as np

    from m2e_plugin import loaders

    rng = np.random.default_rng(0)
    cache.mkdir(parents=True)
    for tid in loaders.initialize(dataset, data_home=str(home)).track_ids:
        np.savez(cache / f"{tid}.npz", mert=rng.normal(size=(2, 1536)).astype(np.float32),
                 root=rng.integers(0, 13, 100), attr=rng.integers(0, 13, 100), mode=np.asarray(0))


def test_music2emo_training_keeps_its_weights_when_a_test_metric_is_undefined(tmp_path, capsys):
    """The fixture MTG-Jamendo copy has one test track: the test metrics raised ValueError *after* training, exit 2,
    no weights written; and PMEmo without split lists gave a NotImplementedError traceback."""
    import json

    from loaders_testing import build_home

    mtg, deam = build_home(tmp_path, "mtg_jamendo_moodtheme"), build_home(tmp_path, "deam")
    _music2emo_cache(mtg, tmp_path / "c_mtg", "mtg_jamendo_moodtheme")
    _music2emo_cache(deam, tmp_path / "c_deam", "deam")
    out = tmp_path / "student.safetensors"
    assert main(["train", "--model", "music2emo", "--dataset", "mtg_jamendo_moodtheme", "--dataset", "deam",
                 "--data-home", f"mtg_jamendo_moodtheme={mtg}", "--data-home", f"deam={deam}",
                 "--cache", f"mtg_jamendo_moodtheme={tmp_path / 'c_mtg'}", "--cache", f"deam={tmp_path / 'c_deam'}",
                 "-o", str(out), "--max-epochs", "2", "--progress", "never"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert printed["test_metrics"] == {"mtg_jamendo_moodtheme": {"pr_auc": None, "roc_auc": None}}
    assert "mtg_jamendo_moodtheme: test metrics undefined" in captured.err
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["test_metrics"] == printed["test_metrics"]
    from m2e_plugin.models.music2emo import load_music2emo_head

    load_music2emo_head(out)  # the checkpoint predict/evaluate --checkpoint take

    pmemo = build_home(tmp_path, "pmemo")  # as published: no split lists
    assert main(["train", "--model", "music2emo", "--dataset", "pmemo", "--data-home", str(pmemo), "--cache",
                 str(tmp_path / "c_deam"), "-o", str(tmp_path / "p.safetensors"), "--progress", "never"]) == 2
    err = capsys.readouterr().err
    assert "split id lists" in err and "Traceback" not in err and not (tmp_path / "p.safetensors").exists()


def test_music2emo_training_without_train_tracks_is_exit_2(tmp_path, capsys):
    """A DEAM copy holding only a validation track: KeyError 'train' traceback from the trainer (found in an audit)."""
    from loaders_testing import build_home

    deam = build_home(tmp_path, "deam")
    csv = deam / "annotations" / "annotations averaged per song" / "song_level" / \
        "static_annotations_averaged_songs_1_2000.csv"
    # tracks 2, 3, 5 (the train split) replaced by track 1, in no split; 2001 (validation) left
    csv.write_text(csv.read_text().splitlines()[0] + "\n      1,         3.1 ,        0.94,         3   ,        0.63\n")
    _music2emo_cache(deam, tmp_path / "c", "deam")
    assert main(["train", "--model", "music2emo", "--dataset", "deam", "--data-home", str(deam), "--cache",
                 str(tmp_path / "c"), "-o", str(tmp_path / "s.safetensors"), "--progress", "never"]) == 2
    err = capsys.readouterr().err
    assert "deam: no track of its train split" in err and "Traceback" not in err


def test_music2emo_training_names_a_dataset_without_validation_first(tmp_path, capsys):
    """The EmoMusic fixture has no validation track: nothing stops its teacher (or a lone student) early. That was
    said only after training ("no validation tracks"); now before any epoch, once per dataset."""
    from loaders_testing import build_home

    emo = build_home(tmp_path, "emomusic")
    _music2emo_cache(emo, tmp_path / "c", "emomusic")
    assert main(["train", "--model", "music2emo", "--dataset", "emomusic", "--data-home", str(emo), "--cache",
                 str(tmp_path / "c"), "-o", str(tmp_path / "s.safetensors"), "--max-epochs", "2",
                 "--progress", "never"]) == 0
    err = capsys.readouterr().err
    first = err.index("emomusic: no validation tracks: its teacher trains for --max-epochs (2), the last epoch is")
    student = err.index("student: no validation tracks in any dataset: it trains for --max-epochs (2)")
    assert first < student < err.index("teacher emomusic:")
