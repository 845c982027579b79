"""The predictor's streaming helpers: sliding_windows covers every sample, whatever the block sizes."""

from __future__ import annotations

import numpy as np
import pytest

from m2e_plugin.predictor import sliding_windows


def _blocks(x, size):
    return [x[i : i + size] for i in range(0, x.size, size)]


@pytest.mark.parametrize("n,block", [(100, 7), (100, 100), (100, 1000), (95, 10), (21, 3), (10, 4), (3, 2)])
def test_windows_cover_every_sample(n, block):
    sr, window, hop = 10, 1.0, 0.5  # 10-sample windows every 5 samples
    x = np.arange(n, dtype=np.float32)
    out = list(sliding_windows(_blocks(x, block), sr, window, hop))
    covered = np.zeros(n, dtype=bool)
    for start, seg in out:
        i = int(round(start * sr))
        np.testing.assert_array_equal(seg, x[i : i + seg.size])  # the right samples, in order
        covered[i : i + seg.size] = True
        assert seg.size == min(10, n)
    assert covered.all()
    starts = [int(round(s * sr)) for s, _ in out]
    # Regular hops, plus at most one final window aligned to the end of the audio.
    regular = [s for s in starts if s % 5 == 0]
    assert regular == list(range(0, len(regular) * 5, 5))
    assert starts[-1] + min(10, n) == n
    assert starts == sorted(set(starts))


def test_independent_of_block_size():
    x = np.random.default_rng(0).standard_normal(997).astype(np.float32)
    ref = [(s, w.copy()) for s, w in sliding_windows(_blocks(x, 997), 100, 2.0, 0.7)]
    for size in (1, 13, 250, 5000):
        got = list(sliding_windows(_blocks(x, size), 100, 2.0, 0.7))
        assert [s for s, _ in got] == [s for s, _ in ref]
        for (_, a), (_, b) in zip(got, ref):
            np.testing.assert_array_equal(a, b)


def test_short_and_empty_inputs():
    out = list(sliding_windows([np.ones(3, dtype=np.float32)], 10, 1.0, 0.5))
    assert len(out) == 1 and out[0][0] == 0.0 and out[0][1].size == 3
    assert list(sliding_windows([], 10, 1.0, 0.5)) == []
    # Exact multiple: no duplicate tail window.
    out = list(sliding_windows([np.zeros(20, dtype=np.float32)], 10, 1.0, 1.0))
    assert [s for s, _ in out] == [0.0, 1.0]



def test_default_model_result_contract(music_wav):
    import soundfile as sf

    from m2e_plugin import Music2emo

    m = Music2emo()
    assert m.model_name == "lite"
    out = m.predict(str(music_wav), timeline=True)
    assert {"valence", "arousal", "predicted_moods", "mood_probabilities", "quadrant", "model", "duration",
            "timeline"} <= set(out)
    assert out["duration"] == pytest.approx(5.0, abs=1e-3)
    probs = out["mood_probabilities"]
    assert out["predicted_moods"] == [t for t in sorted(probs, key=probs.get, reverse=True) if probs[t] > 0.5]
    assert out["timeline"][-1]["end"] == pytest.approx(5.0, abs=1e-3)
    # The same audio given as an array gives the same answer.
    y, sr = sf.read(music_wav, dtype="float32")
    again = m.predict((y, sr))
    assert again["valence"] == pytest.approx(out["valence"], abs=1e-5)
    assert m.predict((y, sr), threshold=1.0)["predicted_moods"] == []


def test_silence_has_no_top_moods_and_music_has_them(music_wav):
    """Silence gives every mood 0; the timeline used to rank the zeros and name 'action', 'adventure',
    'advertising' (the alphabet) as its top moods, in the JSON, the table and the plot."""
    import soundfile as sf

    from m2e_plugin import Music2emo

    m = Music2emo()
    silent = m.predict((np.zeros(5 * 16000, dtype=np.float32), 16000), timeline=True, window=2, hop=1)
    assert silent["timeline"] and all(e["top_moods"] == [] for e in silent["timeline"])
    y, sr = sf.read(music_wav, dtype="float32")
    music = m.predict((y, sr), timeline=True, window=2, hop=1)
    assert any(e["top_moods"] for e in music["timeline"]) and all(len(e["top_moods"]) <= 3 for e in music["timeline"])


def test_bad_api_arguments_are_named_before_any_work(tmp_path):
    """Found by a new user's audit: threshold=2 silently predicted no mood and -1 every mood, device='tpu' dumped
    torch's internal device list, compute(path) said 'min() arg is an empty sequence', a URL was 'file not found'
    with its '//' folded, and '' was 'is a directory'."""
    from m2e_plugin import Music2emo
    from m2e_plugin.audio import AudioError, load_audio
    from m2e_plugin.backends.base import resolve_device
    from m2e_plugin.plugins import get_extractor

    for bad in (2, -1, float("nan")):
        with pytest.raises(ValueError, match="threshold is a probability between 0 and 1"):
            Music2emo(threshold=bad)
        with pytest.raises(ValueError, match="threshold is a probability between 0 and 1"):
            get_extractor("lite", threshold=bad)
    m = Music2emo()
    clip = (np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1, 22050)
    with pytest.raises(ValueError, match="threshold is a probability"):
        m.predict(clip, threshold=2)
    for device in ("tpu", "CPU", "meta"):
        with pytest.raises(ValueError, match=f"unknown device '{device}': use auto, cpu, cuda or cuda:N"):
            resolve_device(device)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(TypeError, match=r"compute\(\) takes samples .* use compute_file\(\)"):
        get_extractor("lite").compute(str(tmp_path / "song.mp3"), 22050)
    with pytest.raises(AudioError, match="https://example.com/song.mp3: a URL: m2e reads local files"):
        load_audio("https://example.com/song.mp3")
    with pytest.raises(AudioError, match="an empty path"):
        load_audio("")


def test_sample_rates_of_arrays_are_one_and_whole():
    """A tensor with sr= asked for the sample rate it was given; a tuple's rate silently beat sr=; 22050.5 and
    "22050" were truncated or parsed."""
    import torch

    from m2e_plugin import Music2emo

    m = Music2emo()
    x = np.random.default_rng(1).standard_normal(22050 * 2).astype(np.float32) * 0.1
    ref = m.predict((x, 22050))
    assert m.predict(torch.from_numpy(x), sr=22050)["valence"] == ref["valence"]
    assert m.predict(x, sr=22050.0)["valence"] == ref["valence"]
    with pytest.raises(ValueError, match="two sample rates for one array: 22050 in the tuple and sr=16000"):
        m.predict((x, 22050), sr=16000)
    for bad in (22050.5, "22050"):
        with pytest.raises(TypeError, match="whole number of Hz"):
            m.predict(x, sr=bad)


def test_threshold_is_the_second_argument_as_in_the_original(music_wav):
    """The original quickstart is predict(audio_path, threshold=0.5); ours took sr second, so predict(path, 0.3)
    silently used 0.5 (the path ignored sr=). sr= with a path or bytes is an error; predict(samples, 22050) names sr=."""
    from m2e_plugin import Music2emo

    m = Music2emo()
    loose = m.predict(str(music_wav), 0.05)
    assert loose["predicted_moods"] == m.predict(str(music_wav), threshold=0.05)["predicted_moods"]
    assert len(loose["predicted_moods"]) > len(m.predict(str(music_wav))["predicted_moods"])
    for source in (str(music_wav), music_wav.read_bytes()):
        with pytest.raises(ValueError, match="sr= gives the sample rate of a sample array"):
            m.predict(source, sr=22050)
    with pytest.raises(ValueError, match="a sample rate goes in sr= or in a"):
        m.predict(np.zeros(22050, dtype=np.float32), 22050)


def test_timeline_threshold_and_top_k_take_effect(music_wav):
    """timeline()'s threshold did nothing (entries carried top moods only) and top_k=-1 meant all tags but one."""
    from m2e_plugin import Music2emo

    m = Music2emo()
    loose = m.timeline(str(music_wav), window=2, hop=1, threshold=0.05, top_k=5)
    strict = m.timeline(str(music_wav), window=2, hop=1, threshold=1.0, top_k=0)
    assert [e["start"] for e in loose] == [e["start"] for e in strict]
    assert any(e["predicted_moods"] for e in loose) and all(e["predicted_moods"] == [] for e in strict)
    assert all(e["top_moods"] == [] for e in strict) and any(len(e["top_moods"]) > 3 for e in loose)
    # The same entries as predict(timeline=True) with that threshold (top 3 moods there).
    same = m.predict(str(music_wav), threshold=0.05, timeline=True, window=2, hop=1)["timeline"]
    assert [e["predicted_moods"] for e in same] == [e["predicted_moods"] for e in loose]
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="top_k is a number of moods >= 0"):
            m.timeline(str(music_wav), top_k=bad)
    with pytest.raises(ValueError, match="threshold is a probability"):
        m.timeline(str(music_wav), threshold=-1)


def test_a_hop_longer_than_the_window_warns(music_wav):
    """window=1, hop=3 analyses a third of the audio; it was accepted without a word (a swapped pair, often)."""
    import warnings

    from m2e_plugin import Music2emo
    from m2e_plugin.analysis import SparseWindowsWarning

    m = Music2emo()
    with pytest.warns(SparseWindowsWarning, match="hop 3 s is longer than the window 1 s: 2 s of audio"):
        m.predict(str(music_wav), timeline=True, window=1, hop=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(str(music_wav), timeline=True, window=2, hop=2)  # contiguous windows: no warning


def test_cli_says_sparse_windows_in_one_line(music_wav, capsys):
    from m2e_plugin.cli.main import main

    assert main(["predict", str(music_wav), "--timeline", "--window", "1", "--hop", "3", "-q"]) == 0
    err = capsys.readouterr().err
    assert "m2e: hop 3 s is longer than the window 1 s" in err and "SparseWindowsWarning" not in err
