"""Weights resolution for model="music2emo": a real huggingface_hub cache layout (HF is unreachable here), explicit
paths, environment variables, and the single clear error when offline and not cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from m2e_plugin import hub
from m2e_plugin.hub import WeightsUnavailableError, resolve_music2emo_weights
from music2emo_fixtures import make_lightning_ckpt, make_mert_dir

SMALL = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "conv_dim": [16] * 7,
         "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_cache(cache: Path, repo_id: str, filename: str, src: Path, repo_type: str = "model") -> None:
    """Place a file the way huggingface_hub stores a downloaded snapshot (refs/main -> snapshots/<commit>/...)."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    target = folder / "snapshots" / COMMIT / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in (hub.ENV_MERT, hub.ENV_CHECKPOINT, hub.ENV_CHORD_MODEL, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    mert = make_mert_dir(root / "mert", **SMALL)
    ckpt = make_lightning_ckpt(root / "J_all.ckpt")
    btc = root / "btc_model_large_voca.pt"
    btc.write_bytes(b"placeholder: resolution only checks presence")
    return mert, ckpt, btc


def test_resolves_from_hub_cache_offline(tmp_path, pieces, monkeypatch):
    mert, ckpt, btc = pieces
    cache = tmp_path / "hub"
    put_in_cache(cache, hub.MERT_REPO, "config.json", mert / "config.json")
    put_in_cache(cache, hub.MERT_REPO, "pytorch_model.bin", mert / "pytorch_model.bin")
    put_in_cache(cache, hub.HEAD_REPO, hub.HEAD_FILE, ckpt)
    put_in_cache(cache, hub.BTC_REPO, hub.BTC_FILE, btc, repo_type="space")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    w = resolve_music2emo_weights(cache_dir=cache)
    assert (w.mert / "config.json").is_file() and (w.mert / "pytorch_model.bin").is_file()
    assert w.checkpoint.name == "J_all.ckpt" and w.checkpoint.read_bytes() == ckpt.read_bytes()
    assert w.chord_model is not None and w.chord_model.name == "btc_model_large_voca.pt"
    assert w.sources["mert"] == f"hub {hub.MERT_REPO}"
    assert w.sources["chord_model"].startswith("hub space:")


def test_offline_and_not_cached_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_music2emo_weights(cache_dir=tmp_path / "empty")
    text = str(info.value)
    for needed in ("MERT (m-a-p/MERT-v1-95M)", "head checkpoint", "BTC chord model (optional)", "HF_HUB_OFFLINE",
                   "checkpoint=", "--mert", "M2E_MERT", "model='lite'"):
        assert needed in text, needed
    assert info.value.offline


def test_explicit_paths_and_env_vars(tmp_path, pieces, monkeypatch):
    mert, ckpt, btc = pieces
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    w = resolve_music2emo_weights(mert, ckpt, btc, cache_dir=tmp_path / "empty")
    assert (w.mert, w.checkpoint, w.chord_model) == (mert, ckpt, btc)
    assert set(w.sources.values()) == {"argument"}
    monkeypatch.setenv(hub.ENV_MERT, str(mert))
    monkeypatch.setenv(hub.ENV_CHECKPOINT, str(ckpt))
    w = resolve_music2emo_weights(cache_dir=tmp_path / "empty")
    assert w.mert == mert and w.checkpoint == ckpt
    assert w.chord_model is None and "not in the local Hugging Face cache" in w.notes["chord_model"]
    assert w.sources["mert"] == f"env {hub.ENV_MERT}"


def test_wrong_explicit_paths_are_reported(tmp_path, pieces, monkeypatch):
    mert, ckpt, _ = pieces
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_music2emo_weights(tmp_path / "no-mert", tmp_path / "no.ckpt", tmp_path / "no-btc.pt",
                                  cache_dir=tmp_path / "empty")
    text = str(info.value)
    assert "no-mert is not a MERT directory" in text and "no.ckpt not found" in text and "no-btc.pt not found" in text


def test_every_missing_piece_is_listed_with_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_music2emo_weights(cache_dir=tmp_path / "empty", require_btc=True)
    assert list(info.value.missing) == ["MERT (m-a-p/MERT-v1-95M)", "head checkpoint (J_all.ckpt)", "BTC chord model"]
    lines = str(info.value).splitlines()
    for piece, how in (("MERT", ("--mert DIR", "mert=DIR", "$M2E_MERT", "hub cache of m-a-p/MERT-v1-95M")),
                       ("head checkpoint", ("--checkpoint FILE", "checkpoint=FILE", "$M2E_CHECKPOINT",
                                            "hub cache of amaai-lab/music2emo saved_models/J_all.ckpt")),
                       ("BTC chord model", ("--chord-model FILE", "chord_model=FILE", "$M2E_CHORD_MODEL",
                                            "inference/data/btc_model_large_voca.pt", "--chords offline"))):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  - {piece}"))
        assert lines[at + 1].strip().startswith("provide:"), lines[at + 1]
        for needed in how:  # each piece says how to provide it, on its own line
            assert needed in lines[at + 1], (piece, needed)


def test_a_mert_folder_without_its_files_is_listed_with_the_other_missing_pieces(tmp_path, pieces, monkeypatch):
    """A folder given for MERT that lacks config.json/weights was accepted here and failed only when MERT loaded,
    after a missing BTC had been reported alone."""
    _, ckpt, _ = pieces
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "mert").mkdir()
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_music2emo_weights(tmp_path / "mert", ckpt, cache_dir=tmp_path / "empty", require_btc=True)
    assert set(info.value.missing) == {"MERT", "BTC chord model"}
    assert "has no config.json and no model.safetensors or pytorch_model.bin" in info.value.missing["MERT"]


def test_wrong_kinds_of_paths_are_named_for_what_they_are(tmp_path, pieces, monkeypatch):
    mert, ckpt, _ = pieces
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(WeightsUnavailableError) as info:  # a folder where a file is expected was "not found"
        resolve_music2emo_weights(mert, folder, folder, cache_dir=tmp_path / "empty")
    why = f"{folder} is a folder, not a file (given by argument)"
    assert info.value.missing == {"head checkpoint (J_all.ckpt)": why, "BTC chord model": why}
    with pytest.raises(WeightsUnavailableError) as info:  # a file where MERT's folder is expected
        resolve_music2emo_weights(ckpt, ckpt, cache_dir=tmp_path / "empty", use_btc=False)
    assert info.value.missing["MERT"].startswith(f"{ckpt} is a file; MERT is a folder")
    # An empty path is the working directory to pathlib: it was taken as the MERT folder.
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_music2emo_weights("", ckpt, "", cache_dir=tmp_path / "empty")
    assert info.value.missing == {"MERT": "an empty path (given by argument)",
                                  "BTC chord model": "an empty path (given by argument)"}
    # a mistyped local folder ("models/mert") also reads as a hub id: the error says both were tried
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_music2emo_weights("models/mert", ckpt, cache_dir=tmp_path / "empty", use_btc=False)
    assert info.value.missing == {"MERT (models/mert)": "not in the local Hugging Face cache; no local folder "
                                                        "models/mert either (given by argument)"}
    monkeypatch.setenv(hub.ENV_CHECKPOINT, str(folder))
    with pytest.raises(WeightsUnavailableError,
                       match=f"is a folder, not a file \\(given by env {hub.ENV_CHECKPOINT}\\)"):
        resolve_music2emo_weights(mert, cache_dir=tmp_path / "empty", use_btc=False)


def test_predictor_reports_missing_weights(tmp_path, monkeypatch):
    from m2e_plugin import Music2emo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="model='lite'"):
        Music2emo(model="music2emo", device="cpu", cache_dir=tmp_path / "empty")


def test_unreachable_hub_is_tried_once(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def unreachable(repo_id, filename, *, repo_type=None, local_files_only, cache_dir=None):
        calls.append(local_files_only)
        raise LocalEntryNotFoundError("connection error and not in cache")

    monkeypatch.setattr(hub, "_download", unreachable)
    with pytest.raises(WeightsUnavailableError, match="hub could not be reached") as info:
        resolve_music2emo_weights(cache_dir=tmp_path)
    assert not info.value.offline
    assert calls == [False, True, True]  # MERT config online; head and BTC then from the cache only


@pytest.fixture
def endpoint(monkeypatch):
    """Point huggingface_hub at a local address; no proxy; a fresh reachability answer."""
    import socket

    from huggingface_hub import constants

    for var in hub._PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    answers = hub._endpoint_answers  # kept: a test may replace the module attribute
    answers.cache_clear()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def point(listening: bool):
        if listening:
            listener.listen(1)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")

    yield point
    listener.close()
    answers.cache_clear()


def test_an_unreachable_hub_is_not_retried(endpoint, monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    endpoint(listening=False)  # bound, not listening: connection refused
    seen = []

    def download(repo_id, filename, *, local_files_only, **kwargs):
        seen.append(local_files_only)
        raise LocalEntryNotFoundError("not in cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert not hub.hub_reachable()
    with pytest.raises(WeightsUnavailableError, match="hub could not be reached"):
        resolve_music2emo_weights(cache_dir=tmp_path)
    assert seen and all(seen)  # every lookup went to the cache only: no network retries


def test_a_listening_hub_or_a_proxy_is_tried(endpoint, monkeypatch):
    endpoint(listening=True)
    assert hub.hub_reachable()

    def no_probe(*args):
        raise AssertionError("probed the endpoint directly although a proxy is configured")

    monkeypatch.setattr(hub, "_endpoint_answers", no_probe)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # the proxy decides, not a direct connection
    assert hub.hub_reachable()
