"""The Music2Emo head: exact published state-dict layout, Lightning checkpoint loading, and a forward pass checked
against an independent NumPy implementation of the reference architecture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from m2e_plugin.models import AttnCK, CheckpointError, MTAttnCK, load_attnck, load_music2emo_head
from m2e_plugin.models.music2emo import save_head
from music2emo_fixtures import head_shapes, make_lightning_ckpt, random_head_state


def test_state_dict_matches_published_layout():
    state = MTAttnCK().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == head_shapes()
    # Parameter count of the published FeedforwardModelMTAttnCK (reference notes, section 3.3).
    assert sum(v.numel() for v in state.values()) == 1_072_058
    teacher = AttnCK(output_size=2).state_dict()
    trunk = {k for k in head_shapes() if not k.startswith(("classification_branch", "regression_branch"))}
    assert set(teacher) == trunk | {"output_proj.0.weight", "output_proj.0.bias", "output_proj.2.weight",
                                    "output_proj.2.bias"}
    assert tuple(teacher["output_proj.2.weight"].shape) == (2, 256)


def test_lightning_checkpoint_loads_with_weights_only(tmp_path):
    state = random_head_state(seed=3)
    ckpt = make_lightning_ckpt(tmp_path / "J_all.ckpt", state)
    head = load_music2emo_head(ckpt)
    assert not head.training
    loaded = head.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)
    # The loss buffers of the Lightning module are not part of the head, and dropping them is no loss.
    assert not any(k.startswith("loss_fn") for k in loaded)
    assert head.ignored_tensors == []
    # a variant with a layer the head has no place for: named, so the backend can say its answers are not the variant's
    extra = state | {"mood_refiner.0.weight": torch.zeros(56, 56)}
    assert load_music2emo_head(make_lightning_ckpt(tmp_path / "variant.ckpt", extra)).ignored_tensors == [
        "mood_refiner.0.weight"]


# ---- independent reference computation (NumPy, float64) -------------------------------------------------------
def _layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _encoder_layer(x, s, p):
    d = x.shape[-1]
    heads = 8
    hd = d // heads
    w_in, b_in = s[p + "self_attn.in_proj_weight"], s[p + "self_attn.in_proj_bias"]
    q = x @ w_in[:d].T + b_in[:d]
    k = x @ w_in[d:2 * d].T + b_in[d:2 * d]
    v = x @ w_in[2 * d:].T + b_in[2 * d:]
    out = np.zeros_like(x)
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        attn = scores / scores.sum(axis=1, keepdims=True)
        out[:, sl] = attn @ v[:, sl]
    attn_out = out @ s[p + "self_attn.out_proj.weight"].T + s[p + "self_attn.out_proj.bias"]
    x = _layer_norm(x + attn_out, s[p + "norm1.weight"], s[p + "norm1.bias"])
    ff = np.maximum(x @ s[p + "linear1.weight"].T + s[p + "linear1.bias"], 0)
    ff = ff @ s[p + "linear2.weight"].T + s[p + "linear2.bias"]
    return _layer_norm(x + ff, s[p + "norm2.weight"], s[p + "norm2.bias"])


def reference_forward(state, x_mert, roots, attrs, key):
    s = {k: v.double().numpy() for k, v in state.items()}
    moods, vas = [], []
    for b in range(x_mert.shape[0]):
        seq = np.concatenate([s["chord_root_embedding.weight"][roots[b]], s["chord_attr_embedding.weight"][attrs[b]]],
                             axis=1)
        pos = np.arange(seq.shape[0])[:, None]
        i = np.arange(0, 8, 2)[None, :]
        pe = np.zeros_like(seq)
        pe[:, 0::2] = np.sin(pos / 10000 ** (i / 8))
        pe[:, 1::2] = np.cos(pos / 10000 ** (i / 8))
        x = np.concatenate([np.zeros((1, 8)), seq + pe])  # CLS = zero vector, no position encoding
        for layer in (0, 1):
            x = _encoder_layer(x, s, f"chord_transformer.layers.{layer}.")
        z = np.concatenate([x_mert[b].astype(np.float64), x[0], [float(key[b])]])
        h = np.maximum(s["input_proj.0.weight"] @ z + s["input_proj.0.bias"], 0)

        def branch(name):
            hid = np.maximum(s[f"{name}.0.weight"] @ h + s[f"{name}.0.bias"], 0)
            return s[f"{name}.2.weight"] @ hid + s[f"{name}.2.bias"]

        moods.append(branch("classification_branch"))
        vas.append(branch("regression_branch"))
    return np.stack(moods), np.stack(vas)


def _inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batch, 1536)).astype(np.float32)
    roots = rng.integers(0, 13, (batch, 100))
    attrs = rng.integers(0, 14, (batch, 100))
    roots[0, 40:] = 0  # padded like a short song
    attrs[0, 40:] = 0
    key = np.array([0, 1, 1][:batch])
    return x, roots, attrs, key


def test_forward_equals_independent_reference(tmp_path):
    state = random_head_state(seed=1)
    # Larger chord-side weights so the chord transformer visibly moves the outputs.
    for k in state:
        if k.startswith(("chord_", "input_proj")):
            state[k] = state[k] * 4
    head = load_music2emo_head(make_lightning_ckpt(tmp_path / "h.ckpt", state))
    x, roots, attrs, key = _inputs()
    with torch.no_grad():
        logits, va = head(torch.from_numpy(x), torch.from_numpy(roots), torch.from_numpy(attrs),
                          torch.from_numpy(key).reshape(-1, 1))
    assert logits.shape == (3, 56) and va.shape == (3, 2)
    ref_logits, ref_va = reference_forward(state, x, roots, attrs, key)
    np.testing.assert_allclose(logits.numpy(), ref_logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(va.numpy(), ref_va, atol=1e-5, rtol=1e-5)
    # The chord and key inputs do reach the outputs (the comparison above is not vacuous).
    with torch.no_grad():
        _, va_other = head(torch.from_numpy(x), torch.from_numpy(np.roll(roots, 1, axis=1)),
                           torch.from_numpy(attrs), torch.from_numpy(1 - key).reshape(-1, 1))
    assert np.abs(va_other.numpy() - va.numpy()).max() > 1e-3


def test_teacher_loads_and_matches_trunk(tmp_path):
    student = random_head_state(seed=2)
    trunk = {k: v for k, v in student.items() if not k.startswith(("classification", "regression"))}
    g = torch.Generator().manual_seed(5)
    teacher_state = {**trunk, "output_proj.0.weight": torch.randn(256, 512, generator=g) * 0.05,
                     "output_proj.0.bias": torch.zeros(256), "output_proj.2.weight": torch.randn(2, 256, generator=g),
                     "output_proj.2.bias": torch.tensor([5.0, 5.0])}
    teacher = load_attnck(make_lightning_ckpt(tmp_path / "deam_best.ckpt", teacher_state))
    assert teacher.output_proj[2].out_features == 2
    x, roots, attrs, key = _inputs(2)
    with torch.no_grad():
        out = teacher(torch.from_numpy(x), torch.from_numpy(roots), torch.from_numpy(attrs),
                      torch.from_numpy(key).reshape(-1, 1))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    with pytest.raises(CheckpointError, match="not a Music2Emo multitask"):
        load_music2emo_head(tmp_path / "deam_best.ckpt")


def test_safetensors_round_trip(tmp_path):
    head = load_music2emo_head(make_lightning_ckpt(tmp_path / "a.ckpt", random_head_state(seed=4)))
    save_head(head, tmp_path / "head.safetensors")
    again = load_music2emo_head(tmp_path / "head.safetensors")
    x, roots, attrs, key = _inputs()
    args = (torch.from_numpy(x), torch.from_numpy(roots), torch.from_numpy(attrs), torch.from_numpy(key)[:, None])
    with torch.no_grad():
        for a, b in zip(head(*args), again(*args)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Payload:  # an arbitrary pickled object: weights_only loading must refuse it
    pass


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_music2emo_head(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        load_music2emo_head(junk)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "obj": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_music2emo_head(evil)
    state = random_head_state()
    state["input_proj.0.weight"] = torch.zeros(512, 1000)
    with pytest.raises(CheckpointError, match="shapes differ|lacks"):
        load_music2emo_head(make_lightning_ckpt(tmp_path / "wrong.ckpt", state | {"classification_branch.2.weight":
                                                                                    torch.zeros(56, 128)}))
    partial = random_head_state()
    del partial["chord_transformer.layers.1.linear1.weight"]
    with pytest.raises(CheckpointError, match="lacks 1 head tensors"):
        load_music2emo_head(make_lightning_ckpt(tmp_path / "partial.ckpt", partial))
    # other output sizes loaded, then failed on every file (10 moods) or predicted nonsense (3 regressions)
    for key, rows, what in (("classification_branch.2", 10, "predicts 10 moods"),
                            ("regression_branch.2", 3, "and 3 valence/arousal outputs")):
        resized = random_head_state()
        resized[f"{key}.weight"] = torch.zeros(rows, 256)
        resized[f"{key}.bias"] = torch.zeros(rows)
        with pytest.raises(CheckpointError, match=what):
            load_music2emo_head(make_lightning_ckpt(tmp_path / f"{rows}.ckpt", resized))
    # NaN weights loaded, then every file failed with "valence nan" (exit 1) instead of one error before any work
    damaged = random_head_state()
    damaged["regression_branch.2.bias"] = torch.tensor([float("nan"), 5.0])
    with pytest.raises(CheckpointError,
                       match=r"nan.ckpt: 1 tensor\(s\) hold NaN or infinite values.*regression_branch"):
        load_music2emo_head(make_lightning_ckpt(tmp_path / "nan.ckpt", damaged))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_head_on_gpu_matches_cpu(tmp_path):
    ckpt = make_lightning_ckpt(tmp_path / "g.ckpt", random_head_state(seed=6))
    cpu, gpu = load_music2emo_head(ckpt), load_music2emo_head(ckpt, device="cuda")
    x, roots, attrs, key = _inputs()
    args = (torch.from_numpy(x), torch.from_numpy(roots), torch.from_numpy(attrs), torch.from_numpy(key)[:, None])
    with torch.no_grad():
        ref = cpu(*args)
        out = gpu(*(a.cuda() for a in args))
    for a, b in zip(ref, out):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
