"""The faithful path says what it used: BTC or the offline chord recogniser, in every result; a fallback is a
warning on stderr and in the result; ``--chords btc`` without BTC weights is an error (exit 2); training features
run the same stages as inference, BTC included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from m2e_plugin.cli.main import main
from m2e_plugin.demo import synth_music
from music2emo_fixtures import make_music2emo_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny MERT + head + a tiny BTC checkpoint in the published layout."""
    from m2e_plugin.harmony.btc import build_btc

    root = tmp_path_factory.mktemp("faithful")
    mert, ckpt = make_music2emo_weights(root)
    torch.manual_seed(0)
    btc_path = root / "btc_model_large_voca.pt"
    torch.save({"model": build_btc(layers=1).state_dict(), "mean": np.float64(-4.0), "std": np.float64(2.0)},
               btc_path)
    return mert, ckpt, btc_path


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """No network and an empty hub cache: BTC can only come from an explicit path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("M2E_CHORD_MODEL", raising=False)


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, synth_music(6.0, 22050, seed=1), 22050)
    return path


def _predict(capsys, args):
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


def test_fallback_is_a_warning_on_stderr_and_in_every_result(weights, offline_hub, clip, capsys):
    mert, ckpt, _ = weights
    code, out, err = _predict(capsys, ["--model", "music2emo", "--device", "cpu", "--mert", str(mert),
                                       "--checkpoint", str(ckpt), str(clip), str(clip)])
    assert code == 0 and "BTC chord weights unavailable" in err and "offline recogniser" in err
    for result in out:
        assert result["key"]["chords_method"] == "offline"
        assert [w["code"] for w in result["warnings"]] == ["chords_fallback"]
        assert "--chord-model" in result["warnings"][0]["message"]


def test_chosen_recogniser_is_not_a_warning(weights, offline_hub, clip, capsys):
    mert, ckpt, btc = weights
    base = ["--model", "music2emo", "--device", "cpu", "--mert", str(mert), "--checkpoint", str(ckpt)]
    code, out, err = _predict(capsys, base + ["--chords", "offline", str(clip)])
    assert code == 0 and out[0]["key"]["chords_method"] == "offline" and out[0]["warnings"] == []
    assert "BTC" not in err
    code, out, err = _predict(capsys, base + ["--chords", "btc", "--chord-model", str(btc), str(clip)])
    assert code == 0 and out[0]["key"]["chords_method"] == "btc" and out[0]["warnings"] == []


def test_chords_btc_without_weights_exits_2_naming_what_is_missing(weights, offline_hub, clip, capsys):
    mert, ckpt, _ = weights
    code, out, err = _predict(capsys, ["--model", "music2emo", "--device", "cpu", "--mert", str(mert),
                                       "--checkpoint", str(ckpt), "--chords", "btc", str(clip)])
    assert code == 2 and out == []
    assert "BTC chord model" in err and "btc_model_large_voca.pt" in err and "--chord-model" in err
    assert "M2E_CHORD_MODEL" in err


def test_extract_pool_carries_the_fallback(weights, offline_hub, clip, tmp_path):
    mert, ckpt, _ = weights
    out = tmp_path / "out"
    assert main(["extract", str(clip), "-o", str(out), "--extractor", "music2emo", "--device", "cpu",
                 "--progress", "never", "-O", f"mert={mert}", "-O", f"checkpoint={ckpt}"]) == 0
    pool = json.loads((out / "clip.wav.json").read_text())
    assert [w["code"] for w in pool["metadata"]["warnings"]] == ["chords_fallback"]
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])  # the model card goes once per run
    assert run["model"]["model_card"]["chord_recognizer"] == "offline"
    assert main(["extract", str(clip), "-o", str(tmp_path / "btc"), "--extractor", "music2emo", "--device", "cpu",
                 "--progress", "never", "--chords", "btc", "-O", f"mert={mert}", "-O", f"checkpoint={ckpt}"]) == 2


def test_training_features_use_the_inference_stages_with_btc(weights, offline_hub, clip):
    """`m2e features --model music2emo` with BTC weights stores exactly the inputs the backend feeds its head."""
    from m2e_plugin import Music2emo
    from m2e_plugin.audio import stream_audio
    from m2e_plugin.backbones.mert import segment_embedding
    from m2e_plugin.backends.music2emo import join_chords
    from m2e_plugin.training.features import music2emo_extractor

    mert, ckpt, btc = weights
    extract, desc = music2emo_extractor(mert=str(mert), chords="btc", chord_model=str(btc), device="cpu")
    assert desc["chords_method"] == "btc" and desc["version"].endswith("-btc")
    arrays = extract(str(clip))
    backend = Music2emo(model="music2emo", device="cpu", mert=str(mert), checkpoint=str(ckpt), chord_model=str(btc),
                        chords="btc").backend
    assert len(backend.mert.encoder.layers) == 7  # layers 8.. are never built (tiny MERT has 8)
    blocks = list(stream_audio(clip, 24000, block_seconds=30.0))
    np.testing.assert_array_equal(arrays["mert"], np.stack([segment_embedding(backend.mert, b) for b in blocks]))
    chords: list = []
    join_chords(chords, backend.harmony.chords(blocks[0], 24000), 0.0)
    roots, attrs, mode, _ = backend.harmony.encode(chords, "estimated")
    np.testing.assert_array_equal(arrays["root"], roots)
    np.testing.assert_array_equal(arrays["attr"], attrs)
    assert int(arrays["mode"]) == mode
    with pytest.raises(RuntimeError, match="BTC chord model"):
        music2emo_extractor(mert=str(mert), chords="btc", device="cpu")


def test_features_cli_chords_option(weights, offline_hub, tmp_path, capsys, monkeypatch):
    """One option name: `--chords btc` without weights exits 2 before any track; `--chord-method` is gone."""
    mert, _, btc = weights
    monkeypatch.setattr("m2e_plugin.cli.features.dataset_tracks", lambda name, home: [("t0", str(tmp_path / "x.wav"))])
    sf.write(tmp_path / "x.wav", synth_music(3.0, 22050), 22050)
    base = ["features", "--model", "music2emo", "--dataset", "fourq", "--data-home", str(tmp_path), "--mert",
            str(mert), "--device", "cpu", "--quiet"]
    assert main(base + ["--chords", "btc", "-o", str(tmp_path / "c1")]) == 2
    assert "BTC chord model" in capsys.readouterr().err
    assert main(base + ["--chords", "btc", "--chord-model", str(btc), "-o", str(tmp_path / "c2")]) == 0
    manifest = json.loads((tmp_path / "c2" / "manifest.json").read_text())
    assert manifest["done"] == ["t0"] and manifest["description"]["chords_method"] == "btc"
    with pytest.raises(SystemExit):
        main(base + ["--chord-method", "offline"])


@pytest.mark.parametrize("command", ["api", "predict", "extract", "evaluate", "stream", "features"])
def test_one_error_lists_every_missing_piece_and_how_to_provide_it(command, offline_hub, clip, tmp_path, capsys,
                                                                     monkeypatch):
    """Nothing provided and --chords btc: MERT, the head (not for features) and BTC in one error, each with its
    option / environment variable / hub location; `features` named BTC alone, and MERT only once BTC was there."""
    from m2e_plugin import Music2emo
    from m2e_plugin.hub import WeightsUnavailableError

    for var in ("M2E_MERT", "M2E_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    if command == "api":
        with pytest.raises(WeightsUnavailableError) as info:
            Music2emo(model="music2emo", device="cpu", chords="btc")
        err = str(info.value)
    else:
        args = {"predict": ["predict", "--model", "music2emo", str(clip)],
                "extract": ["extract", "--extractor", "music2emo", str(clip), "-o", str(tmp_path / "out"),
                            "--progress", "never"],
                "evaluate": ["evaluate", "--model", "music2emo", "--dataset", "deam", "--data-home",
                             str(tmp_path / "deam"), "--split", "all", "--progress", "never"],
                "stream": ["stream", "--model", "music2emo", "--input", str(clip), "--no-pace", "-q"],
                "features": ["features", "--model", "music2emo", "--dataset", "fourq", "--data-home", str(tmp_path),
                             "-o", str(tmp_path / "cache"), "--progress", "never"]}[command]
        if command == "evaluate":
            meta = tmp_path / "deam" / "music2emo-meta"
            meta.mkdir(parents=True)
            (meta / "static_annotations.csv").write_text("song_id, valence_mean, valence_std, arousal_mean, "
                                                         "arousal_std\n2,3.1,0.9,3.0,0.8\n")
        monkeypatch.setattr("m2e_plugin.cli.features.dataset_tracks", lambda name, home: [("t0", str(clip))])
        code = main([*args, "--device", "cpu", "--chords", "btc"])
        captured = capsys.readouterr()
        err = captured.err
        assert code == 2 and "Traceback" not in err, err
    pieces = ["MERT (m-a-p/MERT-v1-95M)", "BTC chord model"] + (["head checkpoint"] if command != "features" else [])
    for piece in pieces:
        assert f"  - {piece}" in err, (piece, err)
    for how in ("--mert DIR", "$M2E_MERT", "--chord-model FILE", "$M2E_CHORD_MODEL", "hub cache of m-a-p/MERT-v1-95M",
                *(("--checkpoint FILE", "$M2E_CHECKPOINT") if command != "features" else ())):
        assert how in err, (how, err)
    assert err.count("provide:") == len(pieces)


def test_features_honour_m2e_mert_and_refuse_a_contradiction(weights, offline_hub, clip, monkeypatch):
    """README: M2E_MERT gives MERT's folder; features looked only at --mert and the hub. And --chord-model with
    --chords offline is refused as in predict (features ignored the BTC weights it was given)."""
    from m2e_plugin.training.features import music2emo_extractor

    mert, _, btc = weights
    monkeypatch.setenv("M2E_MERT", str(mert))
    extract, desc = music2emo_extractor(chords="offline", device="cpu")
    assert desc["mert"] == str(mert) and desc["chords_method"] == "offline"
    assert extract(str(clip))["mert"].shape == (1, 1536)
    with pytest.raises(ValueError, match="contradict"):
        music2emo_extractor(chords="offline", chord_model=str(btc), device="cpu")


def test_no_fallback_notice_before_a_checkpoint_that_fails_to_load(weights, offline_hub, clip, tmp_path, capsys):
    mert, ckpt, _ = weights
    broken = tmp_path / "J_all.ckpt"
    broken.write_bytes(ckpt.read_bytes()[:100000])
    code, out, err = _predict(capsys, ["--model", "music2emo", "--device", "cpu", "--mert", str(mert),
                                       "--checkpoint", str(broken), str(clip)])
    assert code == 2 and out == [] and "not a PyTorch checkpoint" in err
    assert "BTC chord weights unavailable" not in err  # chords of a model that never ran: noise before the error


def test_an_empty_checkpoint_option_is_refused_not_replaced(weights, offline_hub, clip, capsys, monkeypatch):
    """`--checkpoint "$UNSET"` was dropped, so $M2E_CHECKPOINT (or the hub's J_all.ckpt) ran instead, silently."""
    mert, ckpt, _ = weights
    monkeypatch.setenv("M2E_CHECKPOINT", str(ckpt))
    code, out, err = _predict(capsys, ["--model", "music2emo", "--device", "cpu", "--mert", str(mert),
                                       "--checkpoint", "", "--chords", "offline", str(clip)])
    assert code == 2 and out == [] and "head checkpoint (J_all.ckpt): an empty path (given by argument)" in err


def test_an_empty_checkpoint_option_is_refused_for_lite_too(clip, capsys):
    """`--checkpoint ""` reaches lite as weights="" now that it is no longer dropped: the embedded weights ran."""
    code, out, err = _predict(capsys, ["--checkpoint", "", str(clip)])
    assert code == 2 and out == [] and "an empty path" in err
