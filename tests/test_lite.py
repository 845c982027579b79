"""The embedded `lite` model (v2): head, valence/arousal mapping, backend (the product's default), training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from m2e_plugin.demo import synth_music
from m2e_plugin.labels import MOOD_TAGS, quadrant

SR = 16000


@pytest.fixture(scope="module")
def backend():
    from m2e_plugin.backends.lite import LiteBackend

    return LiteBackend(device="cpu")


def test_pooling_and_valence_arousal_mapping():
    from m2e_plugin.models.lite import pool_embeddings, shrink_quadrants, valence_arousal

    p = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert pool_embeddings(p, "mean").tolist() == [4, 5, 6, 7]
    assert pool_embeddings(p, "mean_std").shape == (8,)
    with pytest.raises(ValueError, match="pooling"):
        pool_embeddings(p, "max")
    with pytest.raises(ValueError, match="at least one patch"):
        pool_embeddings(p[:0], "mean")
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.full(4, 0.3), size=500)
    v, a = valence_arousal(q, 2.5)
    assert v.min() >= 2.5 and v.max() <= 7.5 and a.min() >= 2.5 and a.max() <= 7.5
    # The quadrant read off valence/arousal is always the most probable valence half x arousal half.
    pv, pa = q[:, 0] + q[:, 3], q[:, 0] + q[:, 1]
    expect = np.where(pa > 0.5, np.where(pv > 0.5, "Q1", "Q2"), np.where(pv > 0.5, "Q4", "Q3"))
    assert [quadrant(x, y) for x, y in zip(v, a)] == expect.tolist()
    # Shrinkage: confidence 0 is the neutral 5/5, and it never changes which half wins.
    v0, a0 = valence_arousal(shrink_quadrants(q, 0.0), 2.5)
    assert np.allclose(v0, 5) and np.allclose(a0, 5)
    vh, _ = valence_arousal(shrink_quadrants(q, 0.4), 2.5)
    assert np.allclose(vh - 5, 0.4 * (v - 5))


def test_cohere_moods_fades_moods_on_the_less_probable_side():
    from m2e_plugin.labels import MOOD_SIDES
    from m2e_plugin.models.lite import cohere_moods

    idx = {t: i for i, t in enumerate(MOOD_TAGS)}
    moods = np.full(len(MOOD_TAGS), 0.8)
    # a neutral quadrant (P = 0.5 on both axes) leaves every mood as it is
    np.testing.assert_allclose(cohere_moods(moods, np.full(4, 0.25)), moods)
    # Q3 fairly sure (P(valence+) = 0.2, P(arousal+) = 0.3): positive moods x0.4, active x0.6, party both
    out = cohere_moods(moods, np.array([0.1, 0.2, 0.6, 0.1]))
    assert out[idx["happy"]] == pytest.approx(0.8 * 0.4) and out[idx["energetic"]] == pytest.approx(0.8 * 0.6)
    assert out[idx["party"]] == pytest.approx(0.8 * 0.4 * 0.6)
    for tag in MOOD_SIDES["valence-"] + MOOD_SIDES["arousal-"] + ("film", "epic", "christmas"):
        assert out[idx[tag]] == pytest.approx(0.8), tag  # the probable side and side-less tags keep theirs
    # batched, and any tag order
    batch = cohere_moods(np.stack([moods, moods]), np.array([[0.1, 0.2, 0.6, 0.1], [0.25] * 4]))
    np.testing.assert_allclose(batch, [out, moods])
    tags = ["sad", "happy"]
    np.testing.assert_allclose(cohere_moods([0.9, 0.9], [0.1, 0.2, 0.6, 0.1], tags), [0.9, 0.36])


def test_weights_round_trip_and_bad_files(tmp_path):
    from safetensors.torch import save_file

    from m2e_plugin.models.lite import LiteEnsemble, LiteModel, load_lite, save_lite

    model = LiteEnsemble.of({"msd_penultimate": LiteModel(200, hidden=8), "mtt_pooled": LiteModel(1506)})
    save_lite(model, tmp_path / "m.safetensors", {"version": "x"})
    loaded, card = load_lite(tmp_path / "m.safetensors")
    assert card == {"version": "x"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # a lite 2.0 file (one head, no members) loads as the one-member ensemble with that head's probabilities
    single = LiteModel(200)
    torch.nn.init.normal_(single.quadrant_head.weight)
    save_file(dict(single.state_dict()), str(tmp_path / "v20.safetensors"),
              metadata={"config": json.dumps(single.config)})
    old_head, _ = load_lite(tmp_path / "v20.safetensors")
    x = torch.randn(5, 200)
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(old_head({"msd_penultimate": x})["quadrant"], -1),
                                   torch.softmax(single.eval()(x)["quadrant"], -1))
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_lite(tmp_path / "nope.safetensors")
    old = {"config": json.dumps({"n_features": 293, "n_moods": 16, "hidden": 128, "dropout": 0.5})}
    save_file({"x": torch.zeros(1)}, str(tmp_path / "v1.safetensors"), metadata=old)
    with pytest.raises(ValueError, match="version 1"):
        load_lite(tmp_path / "v1.safetensors")


def _synthetic_clips(n=240, seed=0):
    """Embeddings (rank-4 signal + noise) whose quadrant is the signs of two latent factors, 10 patches per clip;
    the MSD kind is 200-d, the MTT kind a 1506-d noisier view of the same factors."""
    from m2e_plugin.training.lite import FourQFeatures

    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))
    v, a = latent[:, 0] > 0, latent[:, 1] > 0
    y = np.where(a, np.where(v, 0, 1), np.where(v, 3, 2))
    patches, codec = {}, {}
    for kind, dims, noise in (("msd_penultimate", 200, 0.3), ("mtt_pooled", 1506, 0.6)):
        centre = (latent @ rng.normal(size=(4, dims)) + 0.2 * rng.normal(size=(n, dims))).astype(np.float32)
        patches[kind] = [c + noise * rng.normal(size=(10, dims)).astype(np.float32) for c in centre]
        codec[kind] = [p[1::2] + 0.05 * rng.normal(size=(5, dims)).astype(np.float32) for p in patches[kind]]
    return FourQFeatures([f"t{i}" for i in range(n)], y, [f"artist{i // 2}" for i in range(n)], patches, codec)


def test_fit_lite_learns_a_known_rule_and_is_deterministic():
    from m2e_plugin.training.lite import fit_lite, load_config, predict_logits, quadrant_metrics
    from m2e_plugin.models.lite import quadrant_softmax

    data = _synthetic_clips()
    cfg = {**load_config(), "max_epochs": 40, "views": ["even", "odd"]}
    cfg.pop("members")
    model, hist = fit_lite(cfg, data, np.arange(180), np.arange(180, 210))
    test = np.arange(210, 240)
    x, y = data.rows(test, ["even"], cfg["pooling"])
    metrics = quadrant_metrics(y, quadrant_softmax(predict_logits(model, x)))
    assert metrics["quadrant_accuracy"] > 0.8, metrics  # chance: 0.25
    again, _ = fit_lite(cfg, data, np.arange(180), np.arange(180, 210))
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_views_pool_the_documented_patches():
    data = _synthetic_clips(n=4)
    p = data.penultimate[0]
    assert np.array_equal(data.view(0, "even")[0], p[0::2])
    assert np.array_equal(data.view(0, "odd")[0], p[1::2])
    assert len(data.view(0, "patches")) == 10
    x, y = data.rows([0, 1], ["even", "patches"], "mean")
    assert x.shape == (22, 200) and (y[:2] == data.y[:2]).all()


def test_fit_head_trains_every_member_and_fixed_epochs_skip_early_stopping():
    from m2e_plugin.models.lite import LiteEnsemble, quadrant_softmax
    from m2e_plugin.training.lite import fit_head, load_config, predict_logits, quadrant_metrics

    data = _synthetic_clips()
    cfg = {**load_config(), "max_epochs": 30, "views": ["even", "odd"],
           "members": {"msd_penultimate": {}, "mtt_pooled": {"fixed_epochs": 7, "weight_decay": 0.1}}}
    model, best = fit_head(cfg, data, np.arange(180), np.arange(180, 210))
    assert isinstance(model, LiteEnsemble) and set(model.members) == {"msd_penultimate", "mtt_pooled"}
    assert best["mtt_pooled"] == 7 and 1 <= best["msd_penultimate"] <= 30
    x, y = data.head_rows(np.arange(210, 240), ["even"], "mean", list(model.members))
    assert x["mtt_pooled"].shape == (30, 1506)
    out = predict_logits(model, x)
    # the members' log-probabilities averaged: softmax gives their normalised geometric mean
    members = [quadrant_softmax(predict_logits(m, x[k])) for k, m in model.members.items()]
    geometric = np.sqrt(members[0] * members[1])
    np.testing.assert_allclose(quadrant_softmax(out), geometric / geometric.sum(1, keepdims=True), atol=1e-6)
    assert quadrant_metrics(y, quadrant_softmax(out))["quadrant_accuracy"] > 0.8
    again, _ = fit_head(cfg, data, np.arange(180), np.arange(180, 210))
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_cross_validation_reports_the_product_metrics():
    from m2e_plugin.training.lite import cross_validate, load_config

    m = cross_validate({**load_config(), "folds": 3, "max_epochs": 20, "views": ["even"],
                        "members": {"msd_penultimate": {}, "mtt_pooled": {"fixed_epochs": 5}}}, _synthetic_clips(),
                       progress=False)
    assert m["quadrant_accuracy"] > 0.7 and len(m["best_epochs"]["msd_penultimate"]) == 3
    assert m["best_epochs"]["mtt_pooled"] == [5, 5, 5]
    for key in ("codec_view", "single_3s_patch", "ratings", "calibration", "uncalibrated"):
        assert key in m
    assert m["ratings"]["valence"]["outside_1.5_8.5"] == 0.0


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


def test_shipped_card_describes_version_2(backend):
    from m2e_plugin.backbones.convert_musicnn import sha256_of
    from m2e_plugin.backbones.musicnn import default_weights

    card = backend.card
    assert card["version"].startswith("2") and backend.version == card["version"]
    assert card["classes"]["mood_tags"] == list(MOOD_TAGS) == list(backend.mood_tags)
    assert card["sources"]["musicnn"]["weights_sha256"] == sha256_of(default_weights())
    assert card["sources"]["musicnn_mtt"]["weights_sha256"] == sha256_of(default_weights("MTT_musicnn"))
    assert card["sources"]["musicnn"]["licence"] == card["sources"]["musicnn_mtt"]["licence"] == "ISC"
    assert set(card["features"]["members"]) == set(backend._head.members) == {"msd_penultimate", "mtt_pooled"}
    assert "CC BY-NC-SA" in card["sources"]["moodtheme"]["licence_summary"]
    cv = card["metrics"]["cross_validation"]
    assert cv["folds"] == 10 and "artist" in card["metrics"]["protocol"]
    # `m2e train` writes this card: the writer given the shipped run's inputs reproduces it (a text edited in one
    # place only would drift)
    from types import SimpleNamespace

    from m2e_plugin.training.lite_card import model_card

    data = SimpleNamespace(y=np.repeat(np.arange(4), card["sources"]["training_data"]["per_quadrant"]))
    rebuilt = model_card(card["training"]["config"], data, card["metrics"]["cross_validation"],
                         card["training"]["final_epochs"], card["training"]["command"])
    assert json.loads(json.dumps(rebuilt)) == card


def test_backend_feeds_each_member_its_network(backend):
    """The head's MTT member reads the MTT network's pooled vectors of the same level-normalised patches that the
    MSD member's embeddings come from (the features the trainer's cache holds)."""
    from m2e_plugin.backbones import musicnn as M

    y = synth_music(7.0, SR, seed=5)
    emb = backend._embed(y, 1)
    features = backend._features(emb)
    assert set(features) == set(backend._head.members)
    cut, _ = M.level_normalised_patches(y)
    with torch.inference_mode():
        np.testing.assert_allclose(features["mtt_pooled"], backend._mtt.pooled(cut).numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(features["msd_penultimate"], backend._musicnn(cut)[1].numpy(), rtol=0, atol=1e-6)
    assert features["mtt_pooled"].shape == (2, 1506)


def test_backend_outputs_follow_the_schema(backend):
    assert backend.name == "lite" and backend.sample_rate == SR
    p = backend.predict_track([synth_music(12.0, SR)])
    scale = backend.card["valence_arousal"]["scale"]
    assert 5 - scale <= p.valence <= 5 + scale and 5 - scale <= p.arousal <= 5 + scale
    assert p.mood_probabilities.shape == (56,)
    assert ((p.mood_probabilities >= 0) & (p.mood_probabilities <= 1)).all()
    q = p.extras["quadrant_probabilities"]
    assert sum(q.values()) == pytest.approx(1.0, abs=1e-6)
    assert p.valence == pytest.approx(5 + scale * (2 * (q["Q1"] + q["Q4"]) - 1), abs=1e-6)
    assert p.arousal == pytest.approx(5 + scale * (2 * (q["Q1"] + q["Q2"]) - 1), abs=1e-6)
    assert p.extras["confidence"] == 1.0
    # the moods are the tagger's, made coherent with the returned quadrant probabilities
    from m2e_plugin.backbones.moodtheme import predict_moods
    from m2e_plugin.models.lite import cohere_moods

    raw = predict_moods(synth_music(12.0, SR), SR)
    np.testing.assert_allclose(p.mood_probabilities, cohere_moods(raw, list(q.values())), atol=1e-6)


def test_level_does_not_move_the_answer(backend):
    y = synth_music(9.0, SR, seed=3)
    ref = backend.predict_window(y)
    for db in (-6.0, -20.0, 6.0):
        p = backend.predict_window(y * np.float32(10 ** (db / 20)))
        assert abs(p.valence - ref.valence) < 0.02 and abs(p.arousal - ref.arousal) < 0.02, db
        assert np.abs(p.mood_probabilities - ref.mood_probabilities).max() < 0.02


def test_short_and_quiet_input_shrinks_toward_neutral(backend):
    y = synth_music(6.0, SR, seed=4)
    full = backend.predict_window(y[: 3 * SR])
    for seconds in (1.0, 0.1):
        p = backend.predict_window(y[: int(seconds * SR)])
        assert p.extras["confidence"] == pytest.approx((seconds / 3.0) ** 0.5, abs=1e-3)
        assert abs(p.valence - 5) <= 2.5 * p.extras["confidence"] + 1e-9
        assert abs(p.arousal - 5) <= 2.5 * p.extras["confidence"] + 1e-9  # short is not calm: toward 5
        # moods shrink with the same confidence: a mood needs a tagger probability above 0.5 / confidence
        assert p.mood_probabilities.max() <= p.extras["confidence"] + 1e-9
    assert backend.predict_window(y[: int(0.1 * SR)]).mood_probabilities.max() < 0.5  # 0.1 s: no mood passes
    assert full.extras["confidence"] == 1.0
    from m2e_plugin.backbones.level import measure_level

    clip = y[: 3 * SR]
    gain = 10 ** ((-65.0 - measure_level(clip, SR).dbfs) / 20)  # halfway between the silence floor and -60 dBFS
    quiet = backend.predict_window((clip * gain).astype(np.float32))
    assert quiet.extras["confidence"] == pytest.approx(0.5, abs=1e-3)
    assert abs(quiet.valence - 5) == pytest.approx(0.5 * abs(full.valence - 5), abs=1e-3)
    assert quiet.arousal == pytest.approx(1 + 0.5 * (full.arousal - 1), abs=1e-3)  # halfway to silence's 1
    # the mood tagger is level-normalised, so the quiet copy's moods are the full ones at half confidence (those
    # that take no side of the quadrant; sided ones are also weighed by their side, see test_cohere_moods)
    from m2e_plugin.labels import MOOD_SIDES

    sided = {m for moods in MOOD_SIDES.values() for m in moods}
    free = [i for i, t in enumerate(backend.mood_tags) if t not in sided]
    np.testing.assert_allclose(quiet.mood_probabilities[free], 0.5 * full.mood_probabilities[free], atol=2e-3)
    assert quiet.mood_probabilities.max() <= 0.5 + 1e-9


def test_a_fade_out_meets_silence_without_a_jump(backend):
    """Quiet input glides to silence's answer (valence 5, arousal 1): arousal used to rise toward 5 as the level
    fell to the floor and then drop to 1 at it, a 4-point jump a visual would show at every fade-out."""
    from m2e_plugin.backbones.level import measure_level

    clip = synth_music(3.0, SR, seed=4)
    level = measure_level(clip, SR).dbfs
    track = [backend.predict_window((clip * 10 ** ((db - level) / 20)).astype(np.float32))
             for db in np.arange(-56.0, -74.5, -1.0)]
    arousal = np.array([p.arousal for p in track])
    assert track[-1].extras.get("silent") and track[-1].arousal == 1.0 and track[-1].valence == 5.0
    assert np.abs(np.diff(arousal)).max() < 0.7, arousal.round(2)
    assert np.all(np.diff(arousal) <= 1e-6), arousal.round(2)  # quieter never more energetic (float noise aside)


def test_backend_track_pools_blocks(backend):
    a = synth_music(30.0, SR, seed=1)
    b = synth_music(15.0, SR, seed=2, tempo=170.0)
    both = backend.predict_track([a, b])
    assert both.extras["confidence"] == 1.0
    # a tiny tail block after a full one is ignored
    tail = backend.predict_track([a, b[:1000]])
    alone = backend.predict_track([a])
    assert tail.valence == alone.valence and tail.arousal == alone.arousal
    batch = backend.predict_windows([a, b, np.zeros(SR, np.float32)])
    single = backend.predict_window(b)
    assert batch[1].arousal == pytest.approx(single.arousal, abs=1e-5)
    assert batch[2].extras.get("silent") is True


def test_music2emo_api_uses_lite_by_default(music_wav):
    from m2e_plugin.predictor import Music2emo

    m = Music2emo()
    out = m.predict(str(music_wav), timeline=True, window=2.0, hop=1.0)
    assert out["model"] == "lite"
    assert set(out["mood_probabilities"]) == set(MOOD_TAGS)
    assert out["quadrant"] == quadrant(out["valence"], out["arousal"])
    assert len(out["timeline"]) >= 4


def test_silence_has_the_documented_neutral_result():
    from m2e_plugin import Music2emo

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


def test_a_dc_offset_or_sub_audio_rumble_does_not_move_the_answer():
    """An offset or sub-20 Hz drift is inaudible (and lossy codecs such as Opus drop both): the answer must not
    depend on it, and an offset alone (an interface's idle input) is silence, not music."""
    from m2e_plugin import Music2emo

    m = Music2emo()
    sr = 22050
    music = synth_music(20.0, sr, seed=5)
    ref = m.predict((music, sr), timeline=True, window=3, hop=3)
    t = np.arange(len(music)) / sr
    rumble = (0.15 * np.sin(2 * np.pi * 4.0 * t)).astype(np.float32)
    for offset in (np.float32(0.2), np.float32(-0.1), rumble):
        out = m.predict((music + offset, sr), timeline=True, window=3, hop=3)
        # an offset larger than the music itself still leaves a trace at block edges (resampling), < 0.05;
        # before the filter, 0.2 moved valence by 0.16
        assert abs(out["valence"] - ref["valence"]) < 0.05 and abs(out["arousal"] - ref["arousal"]) < 0.05
        assert out["predicted_moods"] == ref["predicted_moods"]
        assert [w["arousal"] for w in out["timeline"]] == pytest.approx([w["arousal"] for w in ref["timeline"]],
                                                                         abs=0.05)
    idle = m.predict((np.full(sr * 5, 0.1, np.float32), sr))
    assert (idle["valence"], idle["arousal"], idle["predicted_moods"]) == (5.0, 1.0, [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_lite_on_cuda_matches_cpu(backend):
    from m2e_plugin.backends.lite import LiteBackend

    y = synth_music(12.0, SR, seed=3)
    cpu = backend.predict_track([y])
    gpu = LiteBackend(device="cuda").predict_track([y])
    # cuDNN runs convolutions in TF32 by default: agreement to 0.01 on the 1-9 scale, not bit for bit
    assert abs(cpu.valence - gpu.valence) < 0.01 and abs(cpu.arousal - gpu.arousal) < 0.01
    np.testing.assert_allclose(cpu.mood_probabilities, gpu.mood_probabilities, atol=1e-3)


def test_quiet_inputs_quadrant_probabilities_follow_its_arousal(backend):
    """The quiet glide moved arousal but not the quadrant probabilities: a faded 0.1 s clip's pool said Q4 at 0.245
    while Q1 had 0.257. They now carry the glided arousal (and the same valence); silence is Q3/Q4 0.5 each."""
    from m2e_plugin.backbones.level import measure_level
    from m2e_plugin.models.lite import axis_probabilities, with_marginals

    clip = synth_music(3.0, SR, seed=4)
    level = measure_level(clip, SR).dbfs
    for db in (-50.0, -62.0, -66.0, -69.0):
        p = backend.predict_window((clip * 10 ** ((db - level) / 20)).astype(np.float32))
        q = np.array([p.extras["quadrant_probabilities"][f"Q{i}"] for i in range(1, 5)])
        pv, pa = axis_probabilities(q)
        assert q.sum() == pytest.approx(1.0)
        assert 5 + 2.5 * (2 * pv - 1) == pytest.approx(p.valence, abs=1e-6)
        assert pa == pytest.approx(np.clip(0.5 + (p.arousal - 5) / 5, 0, 1), abs=1e-6)
        if db < -65:  # arousal's side is settled by the level: the quadrant reported is the likeliest
            assert q[int(quadrant(p.valence, p.arousal)[1]) - 1] == q.max()
    silent = backend.predict_window(np.zeros(SR, np.float32)).extras["quadrant_probabilities"]
    assert silent == {"Q1": 0.0, "Q2": 0.0, "Q3": 0.5, "Q4": 0.5}
    # the fit keeps the odds inside each half
    q = with_marginals([0.4, 0.1, 0.3, 0.2], 0.6, 0.2)
    np.testing.assert_allclose(axis_probabilities(q), (0.6, 0.2), atol=1e-9)
