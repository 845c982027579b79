"""The PyTorch musicnn port against the original TensorFlow code (fixture made by benchmarks/musicnn_reference.py
with the musicnn 0.1.0 wheel's own graph and checkpoint), its front end against librosa, and the converter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from m2e_plugin.backbones import musicnn as M

FIXTURE = Path(__file__).parent / "resources" / "musicnn_parity.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def test_fixture_comes_from_the_shipped_wheel(reference):
    from safetensors import safe_open

    with safe_open(str(M.default_weights()), framework="pt") as fh:
        meta = fh.metadata()
    assert str(reference["wheel_sha256"]) == meta["wheel_sha256"]
    assert "tensorflow" in str(reference["made_with"])


def test_shipped_mtt_weights_come_from_the_same_wheel():
    """lite's second network: the wheel's MTT_musicnn checkpoint, converted by the same converter."""
    from safetensors import safe_open

    metas = {}
    for checkpoint in ("MSD_musicnn", "MTT_musicnn"):
        with safe_open(str(M.default_weights(checkpoint)), framework="pt") as fh:
            metas[checkpoint] = fh.metadata()
    mtt = metas["MTT_musicnn"]
    assert mtt["wheel_sha256"] == metas["MSD_musicnn"]["wheel_sha256"]
    assert mtt["source"].endswith("checkpoint musicnn/MTT_musicnn") and "--checkpoint MTT_musicnn" in mtt["converter"]
    assert mtt["licence"].startswith("ISC")
    net = M.load_musicnn(checkpoint="MTT_musicnn")
    assert net.out.out_features == 50  # MagnaTagATune's 50 tags
    assert not torch.equal(net.dense.weight, M.load_musicnn().dense.weight)
    with pytest.raises(ValueError, match="MSD_vgg"):
        M.default_weights("MSD_vgg")


def test_front_end_matches_librosa(reference):
    for audio, mel in zip(reference["audio"], reference["mel"]):
        ours = M.log_mel(audio.astype(np.float32) / 32768.0).numpy()
        assert ours.shape == mel.shape == (M.PATCH_FRAMES, M.N_MELS)
        np.testing.assert_allclose(ours, mel, atol=1e-4)


@pytest.mark.parametrize("exact", [False, True])
def test_network_matches_tensorflow(reference, exact):
    model = M.load_musicnn(exact=exact)
    taggram, penultimate, _ = M.embed_patches(model, torch.from_numpy(reference["mel"]))
    # The README quotes 4.2e-7 and 4.4e-6 (measured); the bounds leave about 2x for other BLAS builds.
    np.testing.assert_allclose(taggram, reference["taggram"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(penultimate, reference["penultimate"], rtol=0, atol=1e-5)
    # The check has teeth: the taggram differs between the two patches by far more than the tolerance.
    assert np.abs(reference["taggram"][0] - reference["taggram"][1]).max() > 1e-2


def test_max_before_batchnorm_is_the_literal_graph():
    """The default network takes the max over frequency before ReLU + BatchNorm (per channel: the max, or the min
    where the BatchNorm scale is negative); the literal graph (exact=True) must give the same outputs."""
    x = M.patches(M.log_mel(np.random.default_rng(2).standard_normal(7 * M.SAMPLE_RATE).astype(np.float32) * 0.1))
    fast, literal = M.load_musicnn(), M.load_musicnn(exact=True)
    assert any((bn.weight < 0).any() for bn in fast.front_bn)  # both branches of the shortcut are exercised
    with torch.inference_mode():
        for a, b in zip(fast.pooled_and_penultimate(x), literal.pooled_and_penultimate(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_loud_input_stays_finite():
    """The original's float16 cast overflows on loud frames; the float32 front end must not."""
    rng = np.random.default_rng(0)
    loud = np.clip(rng.standard_normal(3 * M.SAMPLE_RATE) * 4.0, -1, 1).astype(np.float32) * 30.0
    mel = M.log_mel(loud)
    assert torch.isfinite(mel).all()
    _, pen, _ = M.embed_patches(M.load_musicnn(), M.patches(mel))
    assert np.isfinite(pen).all()


def test_pooled_vector_is_what_the_penultimate_layer_reads():
    net = M.load_musicnn()
    x = M.patches(M.log_mel(np.random.default_rng(1).standard_normal(4 * M.SAMPLE_RATE).astype(np.float32) * 0.1))
    with torch.no_grad():
        pooled, pen = net.pooled_and_penultimate(x)
        logits, pen_forward = net(x)
        assert pooled.shape == (x.shape[0], 1506)
        torch.testing.assert_close(pen, pen_forward, rtol=0, atol=0)
        torch.testing.assert_close(net.dense_bn(torch.relu(net.dense(net.pool_bn(pooled)))), pen)
        torch.testing.assert_close(net.out(pen), logits)


def test_patches_cut_and_pad():
    mel = torch.arange(400 * 96, dtype=torch.float32).reshape(400, 96)
    p = M.patches(mel)
    assert p.shape == (2, M.PATCH_FRAMES, 96) and torch.equal(p[1], mel[187:374])
    short = M.patches(mel[:50])
    assert short.shape == (1, M.PATCH_FRAMES, 96) and torch.equal(short[0, 50:100], mel[:50])


def test_checkpoint_reader_round_trip(tmp_path):
    """A tensor bundle written here byte by byte (LevelDB table + BundleEntryProto) reads back exactly."""
    import struct

    from m2e_plugin.backbones.tf_checkpoint import read_checkpoint

    def varint(n):
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    def field(num, wire, payload):
        return varint(num << 3 | wire) + payload

    def length_delimited(num, payload):
        return field(num, 2, varint(len(payload)) + payload)

    tensors = {"a/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "b/bias": np.array([1.5, -2.0], np.float32)}
    data, entries = b"", []
    for name, value in sorted(tensors.items()):
        shape = b"".join(length_delimited(2, field(1, 0, varint(d))) for d in value.shape)
        proto = field(1, 0, varint(1)) + length_delimited(2, shape) + field(4, 0, varint(len(data))) + \
            field(5, 0, varint(value.nbytes))
        entries.append((name.encode(), proto))
        data += value.tobytes()

    def block(items):
        body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in items)
        return body + struct.pack("<I", 0) + struct.pack("<I", 1) + b"\x00" + b"\x00" * 4

    data_block = block([(b"", b"")] + entries)
    handle = varint(0) + varint(len(data_block) - 5)
    index_block = block([(entries[-1][0], handle)])
    meta_handle = varint(len(data_block)) + varint(0)
    index_handle = varint(len(data_block)) + varint(len(index_block) - 5)
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    (tmp_path / "ck.index").write_bytes(data_block + index_block + footer)
    (tmp_path / "ck.data-00000-of-00001").write_bytes(data)
    out = read_checkpoint(tmp_path / "ck")
    assert set(out) == set(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(out[name], value)
    with pytest.raises(KeyError, match="nope"):
        read_checkpoint(tmp_path / "ck", ["nope"])
    (tmp_path / "bad.index").write_bytes(b"x" * 60)
    with pytest.raises(ValueError, match="not a TensorFlow checkpoint"):
        read_checkpoint(tmp_path / "bad")
