"""Essentia-style pool blocks (m2e_plugin.pools): statistics, classifier blocks, value rule, audio properties."""

from __future__ import annotations

import hashlib
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin import pools


def test_window_stats_full_set_by_hand():
    s = pools.window_stats([1.0, 2.0, 4.0, 4.0])
    assert set(s) == set(pools.STATS)
    assert s["mean"] == 2.75 and s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["var"] == pytest.approx(1.6875) and s["stdev"] == pytest.approx(math.sqrt(1.6875))
    # |diff| = 1, 2, 0 -> mean 1, var 2/3; |diff2| = |1-(-1)|... second difference of x: 1, -2 -> abs 1, 2
    assert s["dmean"] == pytest.approx(1.0) and s["dvar"] == pytest.approx(2 / 3)
    assert s["dmean2"] == pytest.approx(1.5) and s["dvar2"] == pytest.approx(0.25)
    one = pools.window_stats([5.0])
    assert one["stdev"] == 0.0 and one["dmean"] == 0.0 and one["dvar2"] == 0.0
    assert all(math.isnan(v) for v in pools.window_stats([]).values())


def test_the_end_aligned_last_window_weighs_what_it_adds():
    """A 30.06 s clip's windows (10 s every 5 s) start at 0, 5, 10, 15, 20 and 20.06: the last, there so that every
    sample is analysed, nearly copies the one at 20 s. Counted as a full window it weighted the last 10 s twice
    (mean, stdev, quadrant shares) and put a ~0 step into dmean."""
    starts = [0.0, 5.0, 10.0, 15.0, 20.0, 20.06]
    w = pools.window_weights(starts, 5.0)
    assert w[:5].tolist() == [1.0] * 5 and w[5] == pytest.approx(0.012)
    series = [3.0, 4.0, 5.0, 6.0, 8.0, 8.0]
    s = pools.window_stats(series, w)
    unique = pools.window_stats(series[:5])  # the clip as if its windows had ended at 30 s
    plain = pools.window_stats(series)  # unweighted: the end counted twice
    for k in pools.STATS:  # the last window adds 0.06 s of 5: within a few per cent (its 2nd difference is large)
        assert s[k] == pytest.approx(unique[k], rel=0.06, abs=1e-3), k
    for k in ("mean", "median", "dmean", "dmean2"):
        assert abs(plain[k] - unique[k]) > 10 * abs(s[k] - unique[k]), k
    assert plain["mean"] == pytest.approx(34 / 6)
    assert pools.window_weights([0.0, 5.0, 7.5], 5.0).tolist() == [1.0, 1.0, 0.5]
    assert pools.window_weights([0.0, 5.000000001, 10.0], 5.0).tolist() == [1.0, 1.0, 1.0]  # rounding of starts
    b = pools.quadrant_block("Q1", None, ["Q1", "Q1", "Q2"], [1.0, 1.0, 0.5])
    assert b["highlevel.music2emo.quadrant.all.Q2"] == pytest.approx(0.2)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 11])
def test_equal_weights_give_the_plain_statistics(n):
    x = np.random.default_rng(n).normal(5, 1, n)
    weighted, plain = pools.window_stats(x, np.ones(n)), pools.window_stats(x)
    assert weighted == pytest.approx(plain) and plain["median"] == pytest.approx(float(np.median(x)))
    with pytest.raises(ValueError, match="weights for"):
        pools.window_stats(x, np.ones(n + 1))


@pytest.mark.parametrize("value, rule", [(5.0, "whole_track"), (7.9, "whole_track"),
                                          (8.01, "whole_track_outside_windows"), (3.0, "whole_track_outside_windows")])
def test_value_rule_says_when_the_track_value_leaves_the_windows(value, rule):
    block = pools.dimension_block("valence", value, [7.4, 7.9, 5.0])
    assert block["highlevel.music2emo.valence.value"] == value
    assert block["highlevel.music2emo.valence.value_rule"] == rule
    assert rule in pools.VALUE_RULES


def test_quadrant_block_from_model_probabilities_or_window_share():
    b = pools.quadrant_block("Q1", {"Q1": 0.7, "Q2": 0.1, "Q3": 0.05, "Q4": 0.15}, ["Q2", "Q2"])
    ns = "highlevel.music2emo.quadrant"
    assert b[f"{ns}.value"] == "Q1" and b[f"{ns}.probability"] == 0.7 and b[f"{ns}.source"] == "model"
    assert [b[f"{ns}.all.{q}"] for q in pools.QUADRANTS] == [0.7, 0.1, 0.05, 0.15]
    b = pools.quadrant_block("Q4", None, ["Q4", "Q4", "Q1", "Q3"])
    assert b[f"{ns}.source"] == "window_share" and b[f"{ns}.probability"] == 0.5
    assert sum(b[f"{ns}.all.{q}"] for q in pools.QUADRANTS) == pytest.approx(1.0)


def test_mood_block_single_value_and_a_separate_list():
    b = pools.mood_block({"sad": 0.2, "happy": 0.9, "calm": 0.6}, 0.5)
    assert b["highlevel.moodtheme.value"] == "happy" and b["highlevel.moodtheme.probability"] == 0.9
    assert b["highlevel.moodtheme.above_threshold"] == ["happy", "calm"]
    assert b["highlevel.moodtheme.all.sad"] == 0.2 and b["highlevel.moodtheme.threshold"] == 0.5
    assert set(b) <= set(pools.block_names(["sad", "happy", "calm"]))


def test_audio_properties_of_pcm_and_mp3(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros((4410, 2)), 44100, subtype="PCM_24")
    p = pools.audio_properties(wav)
    assert p == {"sample_rate": 44100, "number_channels": 2, "codec": "pcm_s24le", "bit_rate": 44100 * 2 * 24,
                 "lossless": True}
    mp3 = tmp_path / "a.mp3"
    sf.write(mp3, np.random.default_rng(0).uniform(-0.3, 0.3, 22050 * 3), 22050, format="MP3")
    p = pools.audio_properties(mp3)
    assert p["codec"] == "mp3" and p["lossless"] is False and p["number_channels"] == 1
    assert 8_000 < p["bit_rate"] < 400_000


@pytest.mark.parametrize("subtype, bits", [("PCM_16", 16), ("PCM_24", 24)])
def test_audio_properties_of_flac_name_the_codec_and_the_files_bit_rate(tmp_path, subtype, bits):
    """libsndfile reports a FLAC file's subtype as PCM_16/PCM_24: the pool said codec pcm_s24le and the PCM rate."""
    flac = tmp_path / "a.flac"
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * 2) / 44100)
    sf.write(flac, np.stack([tone, tone], axis=1), 44100, subtype=subtype)
    p = pools.audio_properties(flac)
    assert p["codec"] == "flac" and p["lossless"] is True
    assert p["bit_rate"] == round(flac.stat().st_size * 8 / 2.0) < 44100 * 2 * bits  # the file's average


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_md5_encoded_ignores_tags(tmp_path):
    """The MD5 of the audio packets: the same for two files that differ only in their tags."""
    import subprocess

    mp3 = tmp_path / "a.mp3"
    sf.write(mp3, np.random.default_rng(1).uniform(-0.3, 0.3, 22050 * 2), 22050, format="MP3")
    tagged = tmp_path / "b.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp3), "-c", "copy", "-metadata", "title=x",
                    str(tagged)], check=True)
    with pools.EncodedMD5(mp3) as a, pools.EncodedMD5(tagged) as b:
        ma, mb = a.result(), b.result()
    assert ma == mb and len(ma) == 32
    assert hashlib.md5(mp3.read_bytes()).hexdigest() != hashlib.md5(tagged.read_bytes()).hexdigest()
    with pools.EncodedMD5(tmp_path / "missing.mp3") as c:
        assert c.result() is None
