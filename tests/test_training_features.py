"""Feature cache: stored once per track, resumable, failures recorded without stopping the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.demo import synth_music
from m2e_plugin.training.features import build_cache, lite_extractor, load_cache


def test_lite_cache_is_resumable_and_records_failures(tmp_path, capsys):
    paths = []
    for i in range(2):
        p = tmp_path / f"t{i}.wav"
        sf.write(p, synth_music(12.0, 44100, seed=i), 44100)
        paths.append((f"t{i}", str(p)))
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    tracks = paths + [("bad", str(tmp_path / "bad.wav"))]
    extract, desc = lite_extractor()
    calls = []

    def counting(path):
        calls.append(path)
        return extract(path)

    out = tmp_path / "cache"
    manifest = build_cache(tracks, out, counting, desc, progress=False)
    assert manifest["done"] == ["t0", "t1"] and "bad" in manifest["failed"]
    assert manifest["failed"]["bad"].count("bad.wav") == 1  # the path once ("x: x: not a readable ..." before)
    patches, coded = load_cache(out, ["t0"], "penultimate")[0], load_cache(out, ["t0"], "codec_penultimate")[0]
    assert patches.shape == (4, 200) and coded.shape == (2, 200)  # 12 s -> four 3 s patches; the codec view: odd ones
    assert load_cache(out, ["t0"], "mtt_pooled")[0].shape == (4, 1506)  # the MTT member's input, same patches
    assert load_cache(out, ["t0"], "codec_mtt_pooled")[0].shape == (2, 1506)
    # second run: only the failed track is tried again, and the progress counts only that work (not the cache)
    calls.clear()
    build_cache(tracks, out, counting, desc, progress="always")
    assert calls == [str(tmp_path / "bad.wav")]
    err = capsys.readouterr().err
    assert "2 of 3 tracks already cached" in err and "1/1 tracks" in err and "/3 track" not in err, err
    assert json.loads((out / "manifest.json").read_text())["description"]["version"] == desc["version"]
    with pytest.raises(ValueError, match="features"):
        build_cache(tracks, out, counting, {"version": "other"}, progress=False)
    with pytest.raises(FileNotFoundError, match="m2e features"):
        load_cache(out, ["t0", "missing"], "penultimate")
    np.testing.assert_allclose(load_cache(out, ["t1"], "penultimate")[0],
                               extract(paths[1][1])["penultimate"], rtol=1e-6)


def test_what_a_decoder_writes_to_fd_2_becomes_one_line_naming_the_track(tmp_path, capfd):
    """libmpg123 (inside libsndfile) writes straight to file descriptor 2 on a damaged MP3, naming no file."""
    import os

    def noisy(path):
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length too large\n" * 3)
        return {"x": np.zeros(2)}

    manifest = build_cache([("t0", str(tmp_path / "t0.mp3"))], tmp_path / "cache", noisy, {"version": "v"},
                           progress=False)
    assert manifest["done"] == ["t0"]
    err = capfd.readouterr().err
    assert "libmpg123" in err and err.count("\n") == 1  # the three raw lines became one
    assert "t0.mp3" in err and "reported 3 problem(s)" in err


def test_a_cache_refuses_another_dataset_or_another_mert(tmp_path):
    """Entries are keyed by track id: `m2e features --dataset emomusic -o <a DEAM cache>` took EmoMusic tracks "2"
    and "3" as already cached (DEAM's features under EmoMusic's labels), and a run with another --mert added its
    embeddings to the first MERT's, silently."""
    calls = []

    def extract(path):
        calls.append(path)
        return {"x": np.zeros(2)}

    (tmp_path / "mert").mkdir()
    deam = {"version": "v", "mert": str(tmp_path / "mert"), "dataset": "deam"}
    out = tmp_path / "cache"
    build_cache([("2", "a.mp3")], out, extract, deam, progress=False)
    with pytest.raises(ValueError, match="dataset 'deam', not 'emomusic'.*another --out"):
        build_cache([("2", "b.mp3"), ("3", "c.mp3")], out, extract, {**deam, "dataset": "emomusic"}, progress=False)
    with pytest.raises(ValueError, match="mert .*, not 'm-a-p/MERT-v1-95M'"):
        build_cache([("2", "a.mp3"), ("3", "c.mp3")], out, extract, {**deam, "mert": "m-a-p/MERT-v1-95M"},
                    progress=False)
    assert calls == ["a.mp3"]
    # the same MERT folder named another way (relative) resumes; a manifest without the key (older) resumes too
    import os

    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        build_cache([("2", "a.mp3"), ("3", "c.mp3")], out, extract, {**deam, "mert": "mert"}, progress=False)
    finally:
        os.chdir(cwd)
    assert calls == ["a.mp3", "c.mp3"]
    build_cache([("4", "d.mp3")], tmp_path / "old", extract, {"version": "v"}, progress=False)
    build_cache([("4", "d.mp3")], tmp_path / "old", extract, deam, progress=False)



def test_a_btc_cache_refuses_other_btc_weights(tmp_path):
    """The cache compared the chord method ("btc"), not the BTC weights: another BTC file's chord tokens were mixed
    into a cache silently. The same file by another path, or a byte-identical copy, resumes."""
    calls = []

    def extract(path):
        calls.append(path)
        return {"x": np.zeros(2)}

    for name, content in (("btc.pt", b"weights A"), ("copy.pt", b"weights A"), ("other.pt", b"weights B")):
        (tmp_path / name).write_bytes(content)
    desc = {"version": "music2emo-features-2-btc", "dataset": "deam", "chord_model": str(tmp_path / "btc.pt")}
    out = tmp_path / "cache"
    build_cache([("2", "a.mp3")], out, extract, desc, progress=False)
    with pytest.raises(ValueError, match="chord_model .*btc.pt', not .*other.pt'.*another --out"):
        build_cache([("3", "b.mp3")], out, extract, {**desc, "chord_model": str(tmp_path / "other.pt")},
                    progress=False)
    build_cache([("3", "b.mp3")], out, extract, {**desc, "chord_model": str(tmp_path / "copy.pt")}, progress=False)
    build_cache([("4", "c.mp3")], out, extract, {**desc, "chord_model": str(tmp_path / ".." / tmp_path.name /
                                                                              "btc.pt")}, progress=False)
    assert calls == ["a.mp3", "b.mp3", "c.mp3"]
