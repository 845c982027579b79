"""The embedded `lite` model: front end, head, backend (the product's default), training helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from m2e_plugin.backbones.lite import N_FEATURES, SAMPLE_RATE, clip_features, feature_names
from m2e_plugin.demo import synth_music
from m2e_plugin.labels import MOOD_TAGS, quadrant


@pytest.fixture(scope="module")
def backend():
    from m2e_plugin.backends.lite import LiteBackend

    return LiteBackend(device="cpu")


def test_front_end_is_finite_deterministic_and_named():
    y = synth_music(6.0, SAMPLE_RATE)
    a, b = clip_features(y), clip_features(y.copy())
    assert a.shape == (N_FEATURES,) == (len(feature_names()),)
    assert np.array_equal(a, b)
    for x in (np.zeros(SAMPLE_RATE, np.float32), np.zeros(10, np.float32),
              np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)):
        assert np.isfinite(clip_features(x)).all()
    with pytest.raises(ValueError, match="22050"):
        clip_features(y, 44100)


def test_front_end_tracks_simple_properties():
    sr = SAMPLE_RATE
    t = np.arange(5 * sr) / sr
    names = feature_names()
    low = clip_features((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    high = clip_features((0.3 * np.sin(2 * np.pi * 3520 * t)).astype(np.float32))
    assert high[names.index("centroid_mean")] > 5 * low[names.index("centroid_mean")]
    # 2 Hz clicks -> 120 BPM
    clicks = np.zeros(10 * sr, np.float32)
    clicks[:: sr // 2] = 1.0
    clicks = np.convolve(clicks, np.hanning(64), mode="same").astype(np.float32)
    tempo = clip_features(clicks)[names.index("tempo")] * 100
    assert abs(tempo - 120) < 6 or abs(tempo - 60) < 3


def test_backend_outputs_follow_the_schema(backend):
    assert backend.name == "lite" and backend.sample_rate == SAMPLE_RATE
    assert backend.mood_tags and set(backend.mood_tags) <= set(MOOD_TAGS)
    card = backend.card
    assert card["classes"]["mood_tags"] == list(backend.mood_tags)
    for key in ("sample_rate", "outputs", "training_data", "metrics", "licence", "training"):
        assert key in card
    p = backend.predict_track([synth_music(12.0, SAMPLE_RATE)])
    assert 1.0 <= p.valence <= 9.0 and 1.0 <= p.arousal <= 9.0
    assert p.mood_probabilities.shape == (len(backend.mood_tags),)
    assert ((p.mood_probabilities >= 0) & (p.mood_probabilities <= 1)).all()
    q = p.extras["quadrant_probabilities"]
    assert sum(q.values()) == pytest.approx(1.0, abs=1e-5)
    # valence/arousal are the quadrant marginals: the quadrant can never disagree with them
    assert p.valence == pytest.approx(1 + 8 * (q["Q1"] + q["Q4"]), abs=1e-5)
    assert p.arousal == pytest.approx(1 + 8 * (q["Q1"] + q["Q2"]), abs=1e-5)


def test_backend_track_is_the_duration_weighted_block_average(backend):
    a = synth_music(30.0, SAMPLE_RATE, seed=1)
    b = synth_music(15.0, SAMPLE_RATE, seed=2, tempo=170.0)
    pa, pb = backend.predict_window(a), backend.predict_window(b)
    both = backend.predict_track([a, b])
    assert both.valence == pytest.approx((2 * pa.valence + pb.valence) / 3, abs=1e-4)
    assert both.arousal == pytest.approx((2 * pa.arousal + pb.arousal) / 3, abs=1e-4)
    # a tiny tail block after a full one is ignored
    tail = backend.predict_track([a, b[:1000]])
    assert tail.valence == pytest.approx(pa.valence, abs=1e-6)
    assert backend.predict_window(a[:2205]).valence >= 1.0  # 0.1 s window works
    batch = backend.predict_windows([a, b])
    assert batch[1].arousal == pytest.approx(pb.arousal, abs=1e-5)


def test_music2emo_api_uses_lite_by_default(music_wav):
    from m2e_plugin.predictor import Music2emo

    m = Music2emo()
    out = m.predict(str(music_wav), timeline=True, window=2.0, hop=1.0)
    assert out["model"] == "lite"
    assert set(out["mood_probabilities"]) == set(m.backend.mood_tags)
    assert out["quadrant"] == quadrant(out["valence"], out["arousal"])
    assert len(out["timeline"]) >= 4


def test_weights_round_trip_and_bad_files(tmp_path):
    from m2e_plugin.backends.lite import LiteBackend
    from m2e_plugin.models.lite import LiteModel, load_lite, save_lite

    model = LiteModel(N_FEATURES, 3, hidden=8)
    save_lite(model, tmp_path / "m.safetensors", {"classes": {"mood_tags": ["happy", "sad", "calm"]}})
    loaded, card = load_lite(tmp_path / "m.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert LiteBackend(weights=tmp_path / "m.safetensors").mood_tags == ("happy", "sad", "calm")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_lite(tmp_path / "nope.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({"classes": {"mood_tags": ["happy"]}}))
    with pytest.raises(ValueError, match="mood tags"):
        LiteBackend(weights=tmp_path / "m.safetensors")


def test_fit_lite_learns_a_known_rule():
    """Quadrant = signs of two descriptors: the lite recipe must find it from 240 clips."""
    from m2e_plugin.training.lite import fit_lite, load_config, predict_probs, quadrant_metrics

    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 20)).astype(np.float32)
    v, a = x[:, 3] > 0, x[:, 7] > 0
    y = np.where(a, np.where(v, 0, 1), np.where(v, 3, 2))
    moods = np.stack([v & a, ~v & ~a], 1).astype(np.float32)
    windows = [x[i : i + 1] + 0.1 * rng.normal(size=(2, 20)).astype(np.float32) for i in range(n)]
    cfg = {**load_config(), "max_epochs": 100, "hidden": 0}
    model, hist = fit_lite(cfg, x, windows, y, moods, np.arange(200), np.arange(200, 240))
    q, m = predict_probs(model, x[240:])
    metrics = quadrant_metrics(y[240:], q)
    assert metrics["quadrant_accuracy"] > 0.8, metrics  # chance: 0.25
    assert metrics["valence_roc_auc"] > 0.95 and metrics["arousal_roc_auc"] > 0.95


def test_stratified_group_folds_keep_artists_together():
    from m2e_plugin.training.lite import stratified_group_folds

    rng = np.random.default_rng(3)
    groups = rng.integers(0, 150, 400)
    y = rng.integers(0, 4, 400)
    folds = stratified_group_folds(y, groups, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(400))
    for i, f in enumerate(folds):
        others = np.concatenate([g for j, g in enumerate(folds) if j != i])
        assert not set(groups[f]) & set(groups[others])
        assert abs(len(f) - 80) < 20
    assert [f.tolist() for f in folds] == [f.tolist() for f in stratified_group_folds(y, groups, 5, seed=0)]


@pytest.mark.shared_data
def test_fourq_reader_and_mood_targets(shared_data):
    from m2e_plugin.training.fourq import LITE_MOOD_TAGS, artist_groups, mood_targets, read_fourq

    home = shared_data / "4q-dev"
    if not home.is_dir():
        pytest.skip("4q-dev not in shared data")
    clips = read_fourq(home)
    assert len(clips) == 600 and np.bincount([c.quadrant for c in clips]).tolist() == [150] * 4
    y = mood_targets(clips)
    assert y.shape == (600, len(LITE_MOOD_TAGS)) and (y.sum(0) >= 25).all()
    assert set(LITE_MOOD_TAGS) <= set(MOOD_TAGS)
    assert len(set(artist_groups(clips))) < 600  # artists repeat: CV must group them
    # "sad" clips sit in Q3 overwhelmingly, "happy" in Q1
    sad = y[:, LITE_MOOD_TAGS.index("sad")] == 1
    assert np.mean([c.quadrant == 2 for c, s in zip(clips, sad) if s]) > 0.8


def test_silence_has_the_documented_neutral_result():
    from m2e_plugin import Music2emo
    from m2e_plugin.demo import synth_music

    m = Music2emo()
    sr = 22050
    for silent in (np.zeros(sr * 5, np.float32), np.full(sr, 1e-5, np.float32), np.zeros(int(0.1 * sr), np.float32)):
        out = m.predict((silent, sr))
        assert (out["valence"], out["arousal"]) == (5.0, 1.0)
        assert out["predicted_moods"] == [] and max(out["mood_probabilities"].values()) == 0.0
    # A silent intro does not vote: the track equals the music alone.
    music = synth_music(30.0, sr)
    with_intro = np.concatenate([np.zeros(sr * 30, np.float32), music])
    a, b = m.predict((music, sr)), m.predict((with_intro, sr))
    assert abs(a["valence"] - b["valence"]) < 1e-6 and abs(a["arousal"] - b["arousal"]) < 1e-6
    # Timeline windows over silence are neutral, those over music are not.
    timeline = m.predict((with_intro, sr), timeline=True, window=10, hop=10)["timeline"]
    assert (timeline[0]["valence"], timeline[0]["arousal"]) == (5.0, 1.0)
    assert (timeline[-1]["valence"], timeline[-1]["arousal"]) != (5.0, 1.0)
