"""MERT as a stock HubertModel: loading MERT-format directories, and Music2Emo's 1536-d embedding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from m2e_plugin.backbones import MertLoadError, load_mert, music2emo_embedding, segment_embeddings
from m2e_plugin.backbones.mert import MIN_SAMPLES, split_segments
from music2emo_fixtures import make_mert_dir

SMALL = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "conv_dim": [16] * 7,
         "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2}


@pytest.fixture(scope="module")
def small_mert(tmp_path_factory):
    return load_mert(make_mert_dir(tmp_path_factory.mktemp("mert") / "small", **SMALL))


@pytest.mark.parametrize("safetensors", [False, True])
def test_load_mert_directory_formats(tmp_path, safetensors):
    d = make_mert_dir(tmp_path / "m", safetensors=safetensors, **SMALL)
    model = load_mert(d)
    from transformers import HubertModel

    assert type(model) is HubertModel and not model.training
    assert model.config.num_hidden_layers == 8 and model.config.hidden_size == 16
    # Every stored tensor arrives, including the weight-norm pair stored under MERT's old weight_g/weight_v names.
    if safetensors:
        from safetensors.torch import load_file

        stored = load_file(str(d / "model.safetensors"))
    else:
        stored = torch.load(d / "pytorch_model.bin", weights_only=True)
    loaded = model.state_dict()
    g = stored["encoder.pos_conv_embed.conv.weight_g"]
    torch.testing.assert_close(loaded["encoder.pos_conv_embed.conv.parametrizations.weight.original0"], g)
    for k, v in stored.items():
        if "weight_g" not in k and "weight_v" not in k:
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_load_mert_errors(tmp_path):
    with pytest.raises(MertLoadError, match="directory not found"):
        load_mert(tmp_path / "nope" / "deeper")
    d = make_mert_dir(tmp_path / "m", **SMALL)
    (d / "pytorch_model.bin").unlink()
    with pytest.raises(MertLoadError, match="no model.safetensors or pytorch_model.bin"):
        load_mert(d)
    d2 = make_mert_dir(tmp_path / "m2", **SMALL)
    cfg = json.loads((d2 / "config.json").read_text())
    (d2 / "config.json").write_text(json.dumps({**cfg, "model_type": "wav2vec2"}))
    with pytest.raises(MertLoadError, match="model_type 'wav2vec2'"):
        load_mert(d2)
    (d2 / "config.json").write_text(json.dumps({**cfg, "deepnorm": True}))
    with pytest.raises(MertLoadError, match="deepnorm"):
        load_mert(d2)
    (d2 / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 9}))
    with pytest.raises(MertLoadError, match="lack"):
        load_mert(d2)
    # a truncated model.safetensors: safetensors' message named no file
    d3 = make_mert_dir(tmp_path / "m3", safetensors=True, **SMALL)
    (d3 / "model.safetensors").write_bytes((d3 / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(MertLoadError, match=r"m3/model.safetensors: not a readable safetensors file"):
        load_mert(d3)
    # NaN weights loaded, then every file failed alone with an error that named no weights
    d4 = make_mert_dir(tmp_path / "m4", safetensors=True, **SMALL)
    from safetensors.torch import load_file, save_file

    state = load_file(str(d4 / "model.safetensors"))
    state["encoder.layers.1.attention.k_proj.weight"][0, 0] = float("nan")
    save_file(state, str(d4 / "model.safetensors"))
    with pytest.raises(MertLoadError, match=r"m4: 1 MERT tensor\(s\) hold NaN .*encoder.layers.1.attention.k_proj"):
        load_mert(d4)


def test_embedding_is_layers_6_and_7_averaged_over_30s_segments(small_mert):
    sr = 24000
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(61 * sr)).astype(np.float32)  # segments of 30 s, 30 s and a 1 s tail
    emb = music2emo_embedding(small_mert, audio, sr)
    assert emb.shape == (32,) and emb.dtype == np.float32
    expected = []
    for seg in (audio[: 30 * sr], audio[30 * sr : 60 * sr], audio[60 * sr :]):
        with torch.no_grad():
            hs = small_mert(torch.from_numpy(seg)[None], output_hidden_states=True).hidden_states
        assert len(hs) == 9  # conv/projection output + 8 layers
        expected.append(torch.cat([hs[6][0].mean(0), hs[7][0].mean(0)]).numpy())
    np.testing.assert_allclose(emb, np.mean(expected, axis=0), rtol=1e-4, atol=1e-5)
    # Streaming 30 s blocks gives the same per-segment embeddings.
    streamed = list(segment_embeddings(small_mert, split_segments(audio, sr)))
    np.testing.assert_allclose(np.mean(streamed, axis=0), emb, rtol=1e-5, atol=1e-6)


def test_embedding_resamples_and_handles_tiny_and_silent_input(small_mert):
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(44100 * 2)).astype(np.float32)
    emb = music2emo_embedding(small_mert, x, 44100)
    assert emb.shape == (32,) and np.isfinite(emb).all()
    # Fewer samples than the conv receptive field: zero-padded, not a crash.
    short = music2emo_embedding(small_mert, x[:100], 24000)
    assert np.isfinite(short).all()
    assert MIN_SAMPLES == 400
    silent = music2emo_embedding(small_mert, np.zeros(2400, dtype=np.float32), 24000)
    assert np.isfinite(silent).all()


def test_hub_id_goes_through_cache(tmp_path, monkeypatch):
    from m2e_plugin import hub

    src = make_mert_dir(tmp_path / "snapshot", **SMALL)
    calls = []

    def fake_download(repo_id, filename, *, repo_type=None, local_files_only, cache_dir=None):
        calls.append((repo_id, filename, local_files_only))
        if not (src / filename).is_file():
            raise FileNotFoundError(filename)
        return src / filename

    monkeypatch.setattr(hub, "_download", fake_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_mert("m-a-p/MERT-v1-95M")
    assert model.config.hidden_size == 16
    assert ("m-a-p/MERT-v1-95M", "config.json", True) in calls


def test_stopping_after_the_last_used_layer_changes_nothing(tmp_path):
    """Music2Emo reads hidden states 6 and 7: a model built up to layer 7 gives identical hidden states 0..7 (and so
    identical embeddings) to the full 12-layer one, and the skipped layers are neither built nor run."""
    from m2e_plugin.backbones.mert import MUSIC2EMO_LAYERS, mert_hidden_means, segment_embedding

    d = make_mert_dir(tmp_path / "twelve", seed=4, **{**SMALL, "num_hidden_layers": 12})
    full = load_mert(d)
    last = max(MUSIC2EMO_LAYERS)
    cut = load_mert(d, last_layer=last)
    assert len(full.encoder.layers) == 12 and len(cut.encoder.layers) == last
    x = np.random.default_rng(5).standard_normal(3 * 24000).astype(np.float32) * 0.1
    full_means, cut_means = mert_hidden_means(full, [x])[0], mert_hidden_means(cut, [x])[0]
    assert full_means.shape[0] == 13 and cut_means.shape[0] == last + 1
    np.testing.assert_array_equal(cut_means, full_means[: last + 1])
    np.testing.assert_array_equal(segment_embedding(cut, x), segment_embedding(full, x))
    with torch.inference_mode():  # raw hidden states too, not only their time means
        a = full(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states
        b = cut(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states
    for i in range(last + 1):
        assert torch.equal(a[i], b[i])
    with pytest.raises(MertLoadError, match="last_layer must be 1..12"):
        load_mert(d, last_layer=13)
