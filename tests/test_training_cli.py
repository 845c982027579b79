"""`m2e features` / `m2e train` / `m2e evaluate`: wiring, table format, clear errors."""

from __future__ import annotations

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
