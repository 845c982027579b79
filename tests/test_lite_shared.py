"""`lite` on real 4Q clips (../shared/data): level, codec and short-input invariances of the product path."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.shared_data

# One clip per quadrant (the first of each folder), so the test is the same on every machine.
N_PER_QUADRANT = 1


@pytest.fixture(scope="module")
def clips(shared_data):
    home = shared_data / "4q-dev"
    if not home.is_dir():
        pytest.skip("4q-dev not in shared data")
    return [sorted((home / f"Q{q}").glob("*.mp3"))[:N_PER_QUADRANT] for q in range(1, 5)]


@pytest.fixture(scope="module")
def model():
    from m2e_plugin.predictor import Music2emo

    return Music2emo("lite", device="cpu")


@pytest.fixture(scope="module")
def decoded(clips, model):
    from m2e_plugin.audio import load_audio

    sr = model.backend.sample_rate
    return [(path, load_audio(path, target_sr=sr)[0]) for group in clips for path in group]


def test_gain_keeps_quadrant_and_values(decoded, model):
    sr = model.backend.sample_rate
    for path, audio in decoded:
        ref = model.predict((audio, sr))
        for db in (-6, -20):
            quiet = np.round(audio * 10 ** (db / 20) * 32767).astype(np.float32) / 32767  # a 16-bit quiet file
            out = model.predict((quiet, sr))
            assert out["quadrant"] == ref["quadrant"], (path.name, db)
            assert abs(out["valence"] - ref["valence"]) < 0.3 and abs(out["arousal"] - ref["arousal"]) < 0.3


def test_a_dc_offset_or_sub_audio_rumble_does_not_move_the_answer(decoded, model):
    sr = model.backend.sample_rate
    for path, audio in decoded:
        ref = model.predict((audio, sr))
        out = model.predict((audio - np.float32(0.13), sr))  # the offset of a real soundtrack that Opus removed
        assert abs(out["valence"] - ref["valence"]) < 1e-3 and abs(out["arousal"] - ref["arousal"]) < 1e-3, path.name
        assert out["predicted_moods"] == ref["predicted_moods"], path.name
        t = np.arange(len(audio)) / sr
        rumbling = model.predict((audio + (0.1 * np.sin(2 * np.pi * 5.0 * t)).astype(np.float32), sr))  # inaudible
        assert abs(rumbling["valence"] - ref["valence"]) < 0.03 and abs(rumbling["arousal"] - ref["arousal"]) < 0.03


def test_aac_round_trip_moves_little(decoded, model):
    from m2e_plugin.training.lite_features import codec_round_trip

    sr = model.backend.sample_rate
    kept, dv, da = [], [], []
    for path, audio in decoded:
        ref = model.predict((audio, sr))
        out = model.predict((codec_round_trip(str(path), "aac", sr), sr))
        kept.append(out["quadrant"] == ref["quadrant"])
        dv.append(abs(out["valence"] - ref["valence"]))
        da.append(abs(out["arousal"] - ref["arousal"]))
    assert np.mean(kept) >= 0.75 and np.median(dv) < 0.3 and np.median(da) < 0.3, (kept, dv, da)


def test_one_second_excerpts_are_no_more_extreme_than_whole_clips(decoded, model):
    sr = model.backend.sample_rate
    whole, short, whole_moods, short_moods = [], [], [], []
    for _, audio in decoded:
        out = model.predict((audio, sr))
        whole.append([abs(out["valence"] - 5), abs(out["arousal"] - 5)])
        whole_moods.append(len(out["predicted_moods"]))
        for start in (5, 14, 23):
            o = model.predict((audio[start * sr: (start + 1) * sr], sr))
            short.append([abs(o["valence"] - 5), abs(o["arousal"] - 5)])
            short_moods.append(len(o["predicted_moods"]))
            assert o["confidence"] < out["confidence"] == 1.0
            # moods shrink with the confidence too: no probability above it
            assert max(o["mood_probabilities"].values()) <= o["confidence"] + 1e-9
    # mean distance from the neutral 5, valence and arousal each; and no more moods than whole clips
    assert (np.mean(short, axis=0) <= np.mean(whole, axis=0)).all(), (np.mean(short, 0), np.mean(whole, 0))
    assert np.mean(short_moods) <= np.mean(whole_moods), (short_moods, whole_moods)


def test_predicted_moods_take_the_side_of_the_answer(decoded, model):
    """No predicted mood sits on the side of an axis that the answer's valence/arousal rejects firmly."""
    from m2e_plugin.labels import MOOD_SIDES

    sr = model.backend.sample_rate
    for path, audio in decoded:
        out = model.predict((audio, sr))
        p_side = {"valence+": (out["valence"] - 2.5) / 5, "arousal+": (out["arousal"] - 2.5) / 5}  # 5 + 2.5 (2P - 1)
        p_side.update({"valence-": 1 - p_side["valence+"], "arousal-": 1 - p_side["arousal+"]})
        for side, moods in MOOD_SIDES.items():
            for mood in set(out["predicted_moods"]) & set(moods):
                # kept above 0.5 only if its side's weight 2 P(side) leaves room: P(side) > 0.25
                assert p_side[side] > 0.25, (path.name, mood, side, p_side[side])
