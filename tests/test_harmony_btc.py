"""BTC chord recogniser: checkpoint layout and safe loading, network structure, the reference's framing."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from m2e_plugin.harmony import BTC_LABELS, load_btc, recognize_chords  # noqa: E402
from m2e_plugin.harmony.btc import BTCRecognizer, build_btc, timing_signal  # noqa: E402
from m2e_plugin.harmony.features import BTC_FRAME_SECONDS, btc_cqt  # noqa: E402

SR = 22050
TINY = dict(feature_size=144, hidden=16, layers=2, key_depth=16, value_depth=16, filter_size=24)


def save_checkpoint(model, path, mean=np.float64(-2.5), std=np.float64(1.75), legacy=False, numpy1_names=False):
    """Write ``{"model", "mean", "std"}`` the way the published btc_model_large_voca.pt stores it."""
    torch.save({"model": model.state_dict(), "mean": mean, "std": std}, path,
               _use_new_zipfile_serialization=not legacy)
    if numpy1_names:  # files pickled under numpy 1 name numpy.core.multiarray.scalar (protocol 2: plain text)
        raw = path.read_bytes()
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(raw)) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info.filename)
                if info.filename.endswith("data.pkl"):
                    assert b"numpy._core.multiarray" in data
                    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                zout.writestr(info, data)
        path.write_bytes(out.getvalue())
    return path


def test_published_layout_names_and_size():
    model = build_btc()
    state = model.state_dict()
    assert sum(v.numel() for v in state.values()) == 3_036_842  # reference: ~3.04 M (12.2 MB file)
    layer = "self_attn_layers.self_attn_layers.7."
    for name in [
        "self_attn_layers.embedding_proj.weight",
        layer + "attn_block.multi_head_attention.query_linear.weight",
        layer + "backward_attn_block.multi_head_attention.output_linear.weight",
        layer + "attn_block.positionwise_convolution.layers.1.conv.bias",
        layer + "backward_attn_block.layer_norm_ffn.gamma",
        layer + "attn_block.layer_norm_mha.beta",
        layer + "linear.weight",
        "self_attn_layers.layer_norm.gamma",
        "output_layer.output_projection.bias",
        "output_layer.lstm.weight_hh_l0_reverse",
    ]:
        assert name in state, name
    assert "self_attn_layers.self_attn_layers.8.linear.weight" not in state
    assert state["output_layer.output_projection.weight"].shape == (170, 128)
    assert not any("mask" in k or "timing" in k for k in state)  # fixed tensors are not checkpoint entries


@pytest.mark.parametrize("legacy, numpy1_names", [(False, False), (True, False), (False, True)])
def test_load_btc_weights_only_formats(tmp_path, legacy, numpy1_names):
    torch.manual_seed(0)
    model = build_btc(**TINY)
    path = save_checkpoint(model, tmp_path / "btc.pt", legacy=legacy, numpy1_names=numpy1_names)
    rec = load_btc(path)
    assert isinstance(rec, BTCRecognizer)
    assert rec.mean == -2.5 and rec.std == 1.75 and rec.labels == BTC_LABELS
    for key, value in model.state_dict().items():
        assert torch.equal(rec.model.state_dict()[key], value), key
    assert not rec.model.training


def test_load_btc_refuses_arbitrary_pickles(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "mean": Exploit(), "std": 1.0}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        load_btc(path)
    assert not marker.exists()


def test_load_btc_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_btc(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_btc(junk)
    torch.save({"model": build_btc(**TINY).state_dict()}, tmp_path / "nostats.pt")
    with pytest.raises(ValueError, match="'mean'"):
        load_btc(tmp_path / "nostats.pt")
    torch.save({"state_dict": {"model.w": torch.zeros(2)}, "epoch": 1}, tmp_path / "J_all.ckpt")  # the head's file
    with pytest.raises(ValueError, match=r"J_all.ckpt: not a BTC checkpoint \(btc_model_large_voca.pt\)"):
        load_btc(tmp_path / "J_all.ckpt")
    state = build_btc(**TINY).state_dict()
    del state["self_attn_layers.layer_norm.gamma"]
    torch.save({"model": state, "mean": 0.0, "std": 1.0}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt.*BTC layout"):
        load_btc(tmp_path / "partial.pt")
    torch.save({"model": build_btc(**TINY).state_dict(), "mean": 0.0, "std": 0.0}, tmp_path / "zero.pt")
    with pytest.raises(ValueError, match="std"):
        load_btc(tmp_path / "zero.pt")


def test_attention_blocks_are_causal_and_anticausal():
    torch.manual_seed(1)
    layer = build_btc(**TINY).eval().self_attn_layers.self_attn_layers[0]
    x = torch.randn(1, 108, 16)
    x2 = x.clone()
    x2[:, 60:] += torch.randn(1, 48, 16)  # change only frames 60..107
    with torch.no_grad():
        fwd, fwd2 = layer.attn_block(x), layer.attn_block(x2)
        bwd, bwd2 = layer.backward_attn_block(x), layer.backward_attn_block(x2)
    # The forward block sees frames j <= i; the FFN's kernel-3 convolutions then reach one frame ahead twice.
    assert torch.allclose(fwd[:, :58], fwd2[:, :58], atol=1e-6)
    assert not torch.allclose(fwd[:, 62:], fwd2[:, 62:])
    assert not torch.allclose(bwd[:, :50], bwd2[:, :50])  # the backward block looks ahead


def test_timing_signal_is_tensor2tensor():
    s = timing_signal(108, 128).numpy()
    assert s.shape == (108, 128)
    assert np.allclose(s[0, :64], 0) and np.allclose(s[0, 64:], 1)
    inv = np.exp(-np.arange(64) * np.log(1e4) / 63)
    assert np.allclose(s[5, :64], np.sin(5 * inv), atol=1e-6) and np.allclose(s[5, 64:], np.cos(5 * inv), atol=1e-6)


def test_btc_cqt_framing():
    assert btc_cqt(np.zeros(SR * 10, dtype=np.float32)).shape == (108, 144)
    # 12.5 s = one full 10 s chunk (108 frames) + a 2.5 s remainder (1 + 55125 // 2048 = 27 frames)
    feats = btc_cqt(0.01 * np.random.default_rng(0).standard_normal(int(SR * 12.5)).astype(np.float32))
    assert feats.shape == (135, 144) and np.isfinite(feats).all()
    assert btc_cqt(np.zeros(SR // 10, dtype=np.float32)).shape[0] == 2  # 0.1 s still gives frames
    assert btc_cqt(np.zeros(SR * 10 + 1000, dtype=np.float32)).shape[0] == 109  # a short tail: one frame
    assert btc_cqt(np.zeros(SR * 10 + 1, dtype=np.float32)).shape[0] == 109  # 1-sample tail (reference crashes)
    assert feats.min() >= np.log(1e-6) - 1e-4


def _planted(index: int) -> BTCRecognizer:
    """A tiny BTC whose output is always class ``index`` (zero output weights, one large bias)."""
    model = build_btc(**TINY)
    with torch.no_grad():
        model.output_layer.output_projection.weight.zero_()
        model.output_layer.output_projection.bias.zero_()
        model.output_layer.output_projection.bias[index] = 10.0
    return BTCRecognizer(model, 0.0, 1.0)


def test_recognize_segments_span_the_real_frames():
    rec = _planted(14 * 7 + 1)  # G:maj
    y = 0.1 * np.random.default_rng(0).standard_normal(int(SR * 12.5)).astype(np.float32)
    segments = recognize_chords(y, SR, "btc", model=rec)
    assert segments == [(0.0, pytest.approx(135 * BTC_FRAME_SECONDS), "G:maj")]
    stereo_44k = np.stack([y, y], axis=1).repeat(2, axis=0)  # same audio at 44.1 kHz, two channels
    assert rec.recognize(stereo_44k, 2 * SR)[0][2] == "G:maj"
    assert _planted(169).recognize(y[:SR], SR) == [(0.0, pytest.approx(11 * BTC_FRAME_SECONDS), "N")]


def test_frame_classes_do_not_depend_on_batching_and_merge_runs():
    torch.manual_seed(2)
    model = build_btc(**TINY)
    feats = np.random.default_rng(1).standard_normal((300, 144)).astype(np.float32)
    a = BTCRecognizer(model, 0.3, 2.0, batch_windows=1).frame_classes(feats)
    b = BTCRecognizer(model, 0.3, 2.0, batch_windows=8).frame_classes(feats)
    assert a.shape == (300,) and np.array_equal(a, b)
    # Reference framing: each 108-frame window is classified on its own, the last one zero-padded.
    with torch.no_grad():
        x = torch.from_numpy((feats - 0.3) / 2.0)
        first = model.eval()(x[None, :108]).argmax(-1)[0].numpy()
        last = model(torch.cat([x[216:], torch.zeros(24, 144)])[None]).argmax(-1)[0].numpy()[:84]
    assert np.array_equal(a[:108], first) and np.array_equal(a[216:], last)


def test_recognize_rejects_bad_audio():
    from m2e_plugin.audio import AudioError

    with pytest.raises(AudioError, match="NaN"):
        _planted(1).recognize(np.array([0.0, np.nan]), SR)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_btc_on_cuda_matches_cpu(tmp_path):
    torch.manual_seed(3)
    path = save_checkpoint(build_btc(**TINY), tmp_path / "btc.pt")
    feats = np.random.default_rng(2).standard_normal((250, 144)).astype(np.float32)
    cpu = load_btc(path).frame_classes(feats)
    gpu = load_btc(path, device="cuda").frame_classes(feats)
    assert np.mean(cpu == gpu) > 0.99
