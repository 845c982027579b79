"""End to end through the public API: a tiny MERT-format directory + a Lightning checkpoint with the published key
names and shapes (+ a tiny BTC in the published layout), predicting on generated and real audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m2e_plugin import Music2emo
from m2e_plugin.backends.music2emo import join_chords
from m2e_plugin.demo import synth_music
from m2e_plugin.labels import MOOD_TAGS
from music2emo_fixtures import make_music2emo_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("m2e-weights")
    mert, ckpt = make_music2emo_weights(root)
    from m2e_plugin.harmony.btc import build_btc

    torch.manual_seed(0)
    btc = build_btc(layers=1)
    btc_path = root / "btc_model_large_voca.pt"
    torch.save({"model": btc.state_dict(), "mean": np.float64(-4.0), "std": np.float64(2.0)}, btc_path)
    return mert, ckpt, btc_path, root / "empty-hub-cache"


@pytest.fixture(scope="module")
def model(weights):
    mert, ckpt, _, cache = weights
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # BTC is not cached: the offline recogniser is used, without network
        return Music2emo(model="music2emo", device="cpu", mert=str(mert), checkpoint=str(ckpt), cache_dir=cache)


def _check_result(out, threshold=0.5):
    assert out["model"] == "music2emo"
    assert 0.0 < out["valence"] < 10.0 and 0.0 < out["arousal"] < 10.0
    probs = out["mood_probabilities"]
    assert list(probs) == list(MOOD_TAGS)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert out["predicted_moods"] == sorted([t for t, p in probs.items() if p > threshold], key=lambda t: -probs[t])
    v, a = out["valence"], out["arousal"]
    assert out["quadrant"] == {(True, True): "Q1", (False, True): "Q2", (False, False): "Q3",
                               (True, False): "Q4"}[(v >= 5, a >= 5)]
    assert set(out["key"]) >= {"tonic", "mode", "confidence"}


def test_generated_audio_matches_manual_pipeline(model):
    from m2e_plugin import harmony
    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones import music2emo_embedding

    sr = 22050
    y = synth_music(12.0, sr)
    out = model.predict((y, sr))
    _check_result(out)
    assert out["duration"] == pytest.approx(12.0, abs=1e-3)
    assert model.card["chord_recognizer"] == "offline"
    # The same computation spelled out with the public pieces.
    backend = model.backend
    x24, _ = load_audio((y, sr), target_sr=24000)
    emb = music2emo_embedding(backend.mert, x24, 24000)
    chords = harmony.recognize_chords(x24, 24000, method="offline")
    tonic, mode, _ = harmony.key_from_chords(chords)
    roots, attrs = harmony.encode_music2emo(chords, tonic, mode)
    with torch.no_grad():
        logits, va = backend.head(torch.from_numpy(emb)[None], torch.from_numpy(roots)[None],
                                  torch.from_numpy(attrs)[None], torch.tensor([[harmony.mode_id(mode)]]))
    assert out["valence"] == pytest.approx(float(va[0, 0]), abs=1e-4)
    assert out["arousal"] == pytest.approx(float(va[0, 1]), abs=1e-4)
    np.testing.assert_allclose(list(out["mood_probabilities"].values()), torch.sigmoid(logits)[0].numpy(), atol=1e-5)
    assert out["key"]["tonic"] == tonic and out["key"]["mode"] == mode


def test_threshold_and_stereo_file(model, music_wav):
    low = model.predict(str(music_wav), threshold=0.0)
    high = model.predict(str(music_wav), threshold=1.0)
    assert len(low["predicted_moods"]) == 56 and high["predicted_moods"] == []
    assert low["valence"] == high["valence"]
    assert low["duration"] == pytest.approx(5.0, abs=1e-3)


def test_long_input_is_streamed_in_30s_segments(model):
    sr = 16000
    y = synth_music(31.0, sr, seed=1)
    from m2e_plugin.analysis import decode_blocks

    p = model.backend.predict_track(decode_blocks(model.backend, (y, sr)))
    assert p.extras["mert_segments"] == 2  # 30 s + 1 s tail, the tail kept
    assert set(model.backend.last_timings) == {"decode", "mert", "harmony", "head"}


def test_short_silent_and_tiny_inputs(model):
    out = model.predict((np.zeros(24000, dtype=np.float32), 24000))
    _check_result(out)
    assert out["key"]["tonic"] is None  # no chords in silence
    # The faithful head still answers on silence (its biases, many moods): kept, but said, not passed off as music.
    assert [w["code"] for w in out["warnings"]] == ["chords_fallback", "silent_input"]  # (no BTC in this fixture)
    tiny = model.predict((0.1 * np.random.default_rng(0).standard_normal(800).astype(np.float32), 8000))  # 0.1 s
    assert np.isfinite(tiny["valence"]) and "silent_input" not in [w["code"] for w in tiny["warnings"]]
    few = model.predict((np.ones(5, dtype=np.float32) * 0.1, 24000))  # fewer samples than the receptive field
    assert np.isfinite(few["arousal"])


def test_timeline_windows_cover_the_track(model):
    out = model.predict((synth_music(11.0, 22050), 22050), timeline=True, window=5, hop=2.5)
    starts = [e["start"] for e in out["timeline"]]
    assert starts == [0.0, 2.5, 5.0, 6.0]  # regular hops, then one window aligned to the end
    assert out["timeline"][-1]["end"] == pytest.approx(11.0, abs=1e-3)
    for e in out["timeline"]:
        assert e["quadrant"] in ("Q1", "Q2", "Q3", "Q4") and len(e["top_moods"]) == 3


def test_batched_windows_equal_single_windows(model):
    x = synth_music(3.0, 24000, seed=3)
    windows = [x[i : i + 24000] for i in (0, 12000, 24000)] + [x[60000:]]  # three 1 s windows and a 0.5 s one
    backend = model.backend
    single = [backend.predict_window(w) for w in windows]
    old = backend.window_batch
    backend.window_batch = 4
    try:
        batched = backend.predict_windows(windows)
    finally:
        backend.window_batch = old
    for a, b in zip(single, batched):
        assert a.valence == pytest.approx(b.valence, abs=1e-4) and a.arousal == pytest.approx(b.arousal, abs=1e-4)
        np.testing.assert_allclose(a.mood_probabilities, b.mood_probabilities, atol=1e-5)


def test_btc_chords_and_key_input_option(weights):
    mert, ckpt, btc, cache = weights
    m = Music2emo(model="music2emo", device="cpu", mert=mert, checkpoint=ckpt, chord_model=btc, cache_dir=cache,
                  key_input="major", local_files_only=True)
    assert m.card["chord_recognizer"] == "btc" and m.card["key_input"] == "major"
    out = m.predict((synth_music(6.0, 22050), 22050))
    _check_result(out)
    a_minor = [(0.0, 2.0, "A:min"), (2.0, 4.0, "D:min"), (4.0, 6.0, "E:maj"), (6.0, 8.0, "A:min"),
               (8.0, 10.0, "F:maj"), (10.0, 12.0, "E:7"), (12.0, 14.0, "A:min")]
    assert m.backend.harmony.encode(a_minor, "major")[2] == 0  # the reference script's constant
    roots, attrs, mode, key = m.backend.harmony.encode(a_minor, "estimated")
    assert key["mode"] == "minor" and mode == 1
    assert roots[0] == 10 and attrs[0] == 5  # A:min in A minor -> root A (id 10), quality min (id 5)
    with pytest.raises(ValueError, match="key_input"):
        Music2emo(model="music2emo", device="cpu", mert=mert, checkpoint=ckpt, key_input="minor")


def test_join_chords_merges_across_blocks():
    chords = []
    join_chords(chords, [(0.0, 10.0, "C:maj"), (10.0, 30.0, "G:maj")], 0.0)
    join_chords(chords, [(0.0, 5.0, "G:maj"), (5.0, 30.0, "N")], 30.0)
    assert chords == [(0.0, 10.0, "C:maj"), (10.0, 35.0, "G:maj"), (35.0, 60.0, "N")]


def test_real_clip(model, shared_data):
    path = shared_data / "pmemo" / "samples" / "108.mp3"
    from m2e_plugin.analysis import analyse, decode_blocks

    result = analyse(model.backend, decode_blocks(model.backend, str(path)))
    p = result.track
    out = model.format(p)
    _check_result(out)
    assert result.duration == pytest.approx(49.0, abs=0.3)
    assert p.extras["mert_segments"] == 2 and p.extras["chord_segments"] >= 1


def test_an_explicit_chord_model_with_offline_chords_is_a_contradiction():
    """--chords offline --chord-model btc.pt ran offline and ignored the chord model without a word."""
    from m2e_plugin.backends.music2emo import Music2EmoBackend

    with pytest.raises(ValueError, match="contradict each other"):
        Music2EmoBackend(chord_model="btc_model_large_voca.pt", chords="offline")


def test_a_checkpoint_with_tensors_the_head_does_not_use_is_warned_about(weights, tmp_path):
    """A variant's extra layer was dropped without a word: its answers are not the variant's."""
    from music2emo_fixtures import make_lightning_ckpt, random_head_state

    mert, _, _, cache = weights
    variant = make_lightning_ckpt(tmp_path / "variant.ckpt", random_head_state(0) | {"extra.weight": torch.ones(3)})
    m = Music2emo(model="music2emo", device="cpu", mert=str(mert), checkpoint=str(variant), cache_dir=cache,
                  chords="offline")
    out = m.predict((synth_music(3.0, 22050), 22050))
    assert any(w["code"] == "checkpoint_extra_tensors" and "extra.weight" in w["message"] for w in out["warnings"])
