"""The MTG-Jamendo mood/theme CNN: essentia parity of the front end, network regression fixture, weights-only
conversion, tag order, calibration card, short inputs, level invariance; shared-data checks skip without data."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from m2e_plugin.backbones import moodtheme
from m2e_plugin.backbones.convert_moodtheme import convert, load_checkpoint, read_tags, sha256
from m2e_plugin.backbones.moodtheme import (
    INPUT_FRAMES,
    SR,
    MoodTagger,
    MoodThemeCNN,
    log_mel,
    mel_filterbank,
)
from m2e_plugin.labels import ANTONYM_PAIRS, MOOD_TAGS

RESOURCES = Path(__file__).parent / "resources" / "moodtheme"
ESSENTIA = np.load(RESOURCES / "essentia_mel.npz")
NETWORK_FIXTURE = json.loads((RESOURCES / "network_logits.json").read_text())


@pytest.fixture(scope="module")
def tagger() -> MoodTagger:
    return MoodTagger.load()


def fixture_audio(seconds: float) -> np.ndarray:
    """The essentia fixture's synthetic music, looped to ``seconds``."""
    music = ESSENTIA["audio_music"]
    return np.tile(music, math.ceil(seconds * SR / len(music)))[: int(seconds * SR)]


@pytest.mark.parametrize("name", ["music", "quiet", "with_silence", "short_300", "odd_12289"])
def test_front_end_matches_essentia(name):
    ours, ref = log_mel(ESSENTIA[f"audio_{name}"]), ESSENTIA[f"mel_{name}"]
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_array_equal(ours == -200.0, ref == -200.0)  # the floor, frame by frame
    assert np.abs(ours - ref).max() < 0.03  # dB; essentia's float32 FFT rounding is the rest
    assert np.median(np.abs(ours - ref)) < 1e-3


def test_filterbank_triangles_have_unit_area():
    fb = mel_filterbank()
    assert fb.shape == (96, 257)
    df = SR / 512
    # sampled area in Hz of each triangle ~ 1 where a band spans many bins (the top 30 bands: 9-20 bins)
    areas = fb.sum(axis=1) * df
    np.testing.assert_allclose(areas[66:], 1.0, rtol=0.015)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 12000, 36000])
def test_frame_count_is_essentias(n):
    assert log_mel(np.zeros(n)).shape == (96, math.ceil(n / 256) + 1)


def test_network_matches_fixture(tagger):
    """Logits of the shipped weights on fixed inputs, recorded by make_network_fixture.py: fails if the port or
    the weights drift."""
    for key, expected in NETWORK_FIXTURE["logits"].items():
        seconds = float(key.removesuffix("s"))
        got = moodtheme.raw_logits(tagger.network, [fixture_audio(seconds)])[0]
        np.testing.assert_allclose(got, expected, atol=2e-4, err_msg=key)


def test_full_length_is_the_original_network(tagger):
    """1280..1599 frames run the original pooling; a 29.1 s crop is reduced to exactly one time step."""
    mel = torch.from_numpy(log_mel(fixture_audio(30.0))[None, :, :INPUT_FRAMES])
    x = tagger.network.bn_init(mel.unsqueeze(1))
    for i, pool in enumerate(((2, 4), (2, 4), (2, 4), (3, 5), (4, 4)), start=1):
        net = tagger.network
        x = torch.nn.functional.max_pool2d(
            torch.nn.functional.elu(getattr(net, f"bn_{i}")(getattr(net, f"conv_{i}")(x))), pool)
    assert x.shape[2:] == (1, 1)
    with torch.inference_mode():
        np.testing.assert_allclose(tagger.network(mel).numpy(), net.dense(x.flatten(1)).detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("seconds", [1.0, 3.0, 10.0, 30.0, 70.0])
def test_pooling_before_elu_is_the_literal_network(tagger, seconds):
    """The network applies ELU after each max pool (faster); the original order, max_pool(elu(bn(conv))), must give
    the same embedding bit for bit, for short (ceil-mode pooling), full and long inputs."""
    net = tagger.network
    mel = torch.from_numpy(moodtheme._network_inputs(log_mel(fixture_audio(seconds))))
    with torch.inference_mode():
        x = net.bn_init(mel.unsqueeze(1))
        short = x.shape[-1] < moodtheme.MIN_FRAMES
        for i, (pool_f, pool_t) in enumerate(moodtheme._POOLS, start=1):
            x = torch.nn.functional.elu(getattr(net, f"bn_{i}")(getattr(net, f"conv_{i}")(x)))
            x = torch.nn.functional.max_pool2d(x, (pool_f, min(pool_t, x.shape[-1])), ceil_mode=short)
        assert torch.equal(net.embedding(mel), x.amax(dim=(2, 3)))


def test_tag_order_and_card(tagger):
    card = tagger.card
    assert tuple(card["tags"]) == MOOD_TAGS
    assert card["weights_sha256"] == sha256(moodtheme.WEIGHTS_DIR / moodtheme.WEIGHTS_NAME)
    assert "Apache-2.0" in card["source"]["licence"] and "CC BY-NC-SA 4.0" in card["source"]["licence"]
    cal = card["calibration"]
    assert len(cal["logit_thresholds"]) == 56
    assert len(cal["short_input_logit_offsets"]) == len(cal["short_input_seconds"])
    assert np.all((tagger.thresholds > 0) & (tagger.thresholds < 1))


def test_rate_scale_thresholds_predict_that_multiple_of_the_prior_rate():
    from m2e_plugin.backbones.moodtheme_calibration import ALTERNATIVE_RATE_SCALES, RATE_SCALE, fit, prior_thresholds

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3))
    priors = (0.01, 0.05, 0.3)
    for scale in (1.0, 2.0):
        rates = (logits > prior_thresholds(logits, priors, rate_scale=scale)).mean(axis=0)
        np.testing.assert_allclose(rates, np.minimum(0.5, scale * np.array(priors)), atol=1e-3)
    full = rng.normal(size=(200, len(MOOD_TAGS)))
    cal = fit({"full": full, "windows_3": full - 1.0, "owners_3": np.arange(200)}, seconds=(3.0,))
    assert cal["rate_scale"] == RATE_SCALE
    # a uniform shift of window logits is undone by the offsets; the alternatives' figures are kept
    np.testing.assert_allclose(cal["short_input_logit_offsets"][0], 1.0, atol=1e-9)
    assert set(cal["figures"]["rate_scale_alternatives"]) == {f"{s:g}" for s in ALTERNATIVE_RATE_SCALES}


def test_antonym_pairs_are_tags():
    assert len(ANTONYM_PAIRS) == len(set(ANTONYM_PAIRS)) == 51
    assert all(a in MOOD_TAGS and b in MOOD_TAGS and a != b for a, b in ANTONYM_PAIRS)


def _tiny_checkpoint(path: Path) -> dict:
    torch.manual_seed(0)
    state = MoodThemeCNN().state_dict()
    torch.save(state, path)
    return state


def _tag_list(path: Path, tags=MOOD_TAGS) -> Path:
    np.save(path, np.array(["genre---x"] * 87 + ["instrument---y"] * 40 + [f"mood/theme---{t}" for t in tags]))
    return path


def test_conversion_round_trip(tmp_path):
    state = _tiny_checkpoint(tmp_path / "best_model.pth")
    card = convert(tmp_path / "best_model.pth", _tag_list(tmp_path / "tags.npy"), tmp_path / "out")
    assert card["source"]["sha256"] == sha256(tmp_path / "best_model.pth")
    assert card["calibration"] is None
    from safetensors.torch import load_file

    loaded = load_file(str(tmp_path / "out" / moodtheme.WEIGHTS_NAME))
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert (tmp_path / "out" / moodtheme.WEIGHTS_NAME).stat().st_mode & 0o777 == 0o644
    with pytest.raises(ValueError, match="no calibration"):
        MoodTagger.load(tmp_path / "out")


def test_conversion_is_weights_only(tmp_path):
    """A checkpoint that needs arbitrary unpickling is refused, never executed."""
    bad = tmp_path / "evil.pth"
    torch.save({"conv_1.weight": torch.zeros(1), "extra": Path("/")}, bad)  # a non-tensor object inside
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(bad)


def test_conversion_checks_architecture_and_tags(tmp_path):
    state = _tiny_checkpoint(tmp_path / "ok.pth")
    state.pop("dense.bias")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="dense.bias"):
        load_checkpoint(tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="MOOD_TAGS"):
        read_tags(_tag_list(tmp_path / "tags.npy", MOOD_TAGS[::-1]))


@pytest.mark.parametrize("seconds", [0.05, 1.0, 3.0, 10.0, 45.0])
def test_any_length_gives_56_probabilities(tagger, seconds):
    p = tagger.predict_moods(fixture_audio(seconds), SR)
    assert p.shape == (56,) and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_windows_match_single_calls(tagger):
    windows = [fixture_audio(3.0), 0.5 * fixture_audio(3.0)[::-1].copy(), np.zeros(3 * SR)]
    batch = tagger.predict_windows(windows, SR)
    assert batch.shape == (3, 56)
    np.testing.assert_allclose(batch[0], tagger.predict_moods(windows[0], SR), atol=1e-6)
    np.testing.assert_array_equal(batch[2], 0.0)  # silence: no moods


def test_silence_gives_no_moods(tagger):
    np.testing.assert_array_equal(tagger.predict_moods(np.zeros(5 * SR), SR), 0.0)


@pytest.mark.parametrize("gain_db", [-6.0, -20.0])
def test_level_invariance(tagger, gain_db):
    y = fixture_audio(10.0)
    ref = tagger.predict_moods(y, SR)
    np.testing.assert_allclose(tagger.predict_moods(y * 10 ** (gain_db / 20), SR), ref, atol=1e-4)


def test_other_sample_rates(tagger):
    import torchaudio.functional as AF

    y = fixture_audio(10.0)
    y44 = AF.resample(torch.from_numpy(y), SR, 44100).numpy()
    np.testing.assert_allclose(tagger.predict_moods(y44, 44100), tagger.predict_moods(y, SR), atol=0.05)


def test_shipped_weights_are_the_original(shared_data, tagger):
    pth = shared_data / "mtg-jamendo" / "scripts" / "baseline" / "models" / "best_model.pth"
    tags = shared_data / "mtg-jamendo" / "scripts" / "baseline" / "tag_list.npy"
    if not pth.is_file():
        pytest.skip(f"{pth} not available")
    assert tagger.card["source"]["sha256"] == sha256(pth)
    original = load_checkpoint(pth)
    shipped = tagger.network.state_dict()
    assert all(torch.equal(original[k], shipped[k]) for k in original)
    assert tuple(read_tags(tags)) == MOOD_TAGS


def test_real_clips_get_few_coherent_moods(shared_data, tagger):
    """On 24 real 4Q clips: few predicted moods, rarely an antonym pair, windows agree with their clip."""
    from m2e_plugin.audio import load_audio

    files = sorted((shared_data / "4q-dev").glob("Q*/*.mp3"))[::25]
    if len(files) < 20:
        pytest.skip("4Q clips not available")
    counts, antonyms, agree = [], 0, []
    for f in files:
        y, _ = load_audio(f, target_sr=SR)
        p = tagger.predict_moods(y, SR)
        moods = {MOOD_TAGS[k] for k in np.flatnonzero(p > 0.5)}
        counts.append(len(moods))
        antonyms += any(a in moods and b in moods for a, b in ANTONYM_PAIRS)
        win = tagger.predict_windows([y[i : i + 10 * SR] for i in range(0, len(y) - 10 * SR + 1, 10 * SR)], SR)
        agree += [np.corrcoef(w, p)[0, 1] for w in win]
    assert 1 <= np.median(counts) <= 3  # a few moods per clip (RATE_SCALE), not none
    assert antonyms <= 2
    assert np.median(agree) > 0.6
