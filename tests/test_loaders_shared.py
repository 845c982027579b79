"""The loaders against the real annotation files in ../shared/data (skipped when absent)."""

import json

import numpy as np
import pytest

from m2e_plugin import loaders

pytestmark = pytest.mark.shared_data


def _va(ds):
    tracks = ds.load_tracks().values()
    return np.array([t.valence for t in tracks]), np.array([t.arousal for t in tracks])


def test_deam(shared_data):
    ds = loaders.initialize("deam", data_home=str(shared_data / "deam"))
    assert len(ds.track_ids) == 1802
    v, a = _va(ds)
    assert 1 <= v.min() and v.max() <= 9 and 1 <= a.min() and a.max() <= 9
    assert (v.min(), v.max(), a.min(), a.max()) == (1.6, 8.4, 1.6, 8.1)
    splits = ds.get_track_splits()
    assert {k: len(s) for k, s in splits.items()} == {"train": 1261, "validation": 271, "test": 270}
    # the publisher's fixed-width files give the same values as Music2Emo's CSV copy
    import csv

    with open(shared_data / "deam/music2emo-meta/static_annotations.csv") as fh:
        ref = {r["song_id"]: r for r in csv.DictReader(fh)}
    assert set(ref) == set(ds.track_ids)
    for tid in ds.track_ids:
        t = ds.track(tid)
        got = (t.valence, t.valence_std, t.arousal, t.arousal_std)
        want = tuple(float(ref[tid][k]) for k in ("valence_mean", "valence_std", "arousal_mean", "arousal_std"))
        assert got == pytest.approx(want), tid


def test_pmemo_music2emo_copy(shared_data):
    ds = loaders.initialize("pmemo", data_home=str(shared_data / "pmemo"))
    assert len(ds.track_ids) == 767
    v, a = _va(ds)
    assert 1 <= v.min() and v.max() <= 9 and 1 <= a.min() and a.max() <= 9
    # Music2Emo's means are round(1 + 8x, 1) of the 0-1 values published in scatter.json
    scatter = {str(o["id"]): o for o in json.loads((shared_data / "pmemo/scatter.json").read_text())}
    for tid in ds.track_ids:
        assert ds.track(tid).valence == pytest.approx(1 + 8 * scatter[tid]["v"], abs=0.051)
        assert ds.track(tid).arousal == pytest.approx(1 + 8 * scatter[tid]["a"], abs=0.051)
    dyn = ds.track("1").dynamic
    assert dyn.times[0] == 15.5 and np.all(np.diff(dyn.times) == 0.5)
    assert 1 <= dyn.valence.min() and dyn.valence.max() <= 9 and dyn.valence_std is not None


def test_emomusic_music2emo_copy(shared_data):
    ds = loaders.initialize("emomusic", data_home=str(shared_data / "emomusic"))
    assert len(ds.track_ids) == 744
    v, a = _va(ds)
    assert (v.min(), v.max(), a.min(), a.max()) == (1.6, 8.1, 1.6, 8.4)
    assert {k: len(s) for k, s in ds.get_track_splits().items()} == {"train": 495, "validation": 124, "test": 125}
    mediaeval = ds.get_track_splits("mediaeval2013")
    assert {k: len(s) for k, s in mediaeval.items()} == {"development": 619, "evaluation": 125}
    assert ds.track("2").audio_path.endswith("clips_45seconds/2.mp3")


def test_mtg_jamendo(shared_data):
    ds = loaders.initialize("mtg_jamendo_moodtheme", data_home=str(shared_data / "mtg-jamendo"))
    assert len(ds.track_ids) == 18486
    split0 = ds.get_track_splits(0)
    assert [len(split0[k]) for k in ("train", "validation", "test")] == [9949, 3802, 4231]
    assert set(split0["train"]).isdisjoint(split0["test"])
    from m2e_plugin.labels import MOOD_TAGS

    all_tags = {m for tid in ds.track_ids for m in ds.track(tid).moods}
    assert len(all_tags) == 59 and all_tags - set(MOOD_TAGS) == {"ambiental", "horror", "mellow"}
    t = ds.track("track_0000948")
    assert t.moods == ["background"] and t.duration == 212.7 and t.audio_path.endswith("audios/48/948.mp3")


def test_fourq_all_audio_loadable(shared_data):
    ds = loaders.initialize("fourq", data_home=str(shared_data / "4q-dev"))
    assert len(ds.track_ids) == 600
    counts = {}
    for tid in ds.track_ids:
        counts[ds.track(tid).quadrant] = counts.get(ds.track(tid).quadrant, 0) + 1
    assert counts == {"Q1": 150, "Q2": 150, "Q3": 150, "Q4": 150}
    assert all(ds.track(t).moods for t in ds.track_ids)
    missing, invalid = ds.validate(verbose=False)  # header of every file
    assert not missing and not invalid
    # a full decode of every 20th clip (the whole set: `m2e datasets validate fourq --decode`)
    for tid in ds.track_ids[::20]:
        audio, sr = ds.track(tid).audio
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 10 * sr
