import numpy as np
import pytest

from loaders_testing import build_home, run_track_tests
from m2e_plugin.loaders import emomusic
from m2e_plugin.loaders.core import VAData


@pytest.fixture
def dataset(tmp_path):
    return emomusic.Dataset(str(build_home(tmp_path, "emomusic")))


def test_track(dataset):
    track = dataset.track("2")
    expected_attributes = {
        "track_id": "2",
        "audio_path": f"{dataset.data_home}/clips_45seconds/2.mp3",  # file_name from songs_info, TABs stripped
        "valence": 3.0,
        "arousal": 3.1,
        "valence_std": 0.66667,
        "arousal_std": 0.99443,
        "quadrant": "Q3",
        "artist": "The New Mystikal Troubadours",
        "title": "Tonight  A Lonely Century",
        "genre": "Blues",
        "segment_start": 48.0,
        "segment_end": 93.0,
        "mediaeval2013_set": "development",
    }
    run_track_tests(track, expected_attributes, {"dynamic": VAData, "audio": tuple})
    audio, sr = track.audio
    assert audio.ndim == 1 and sr == 22050


def test_dynamic(dataset):
    dyn = dataset.track("4").dynamic
    np.testing.assert_allclose(dyn.times, [15.0, 15.5, 16.0, 16.5])
    np.testing.assert_allclose(dyn.valence, 5 + 4 * np.array([0.3, 0.3, 0.35, 0.4]))
    np.testing.assert_allclose(dyn.arousal, 5 + 4 * np.array([0.5, 0.45, 0.4, 0.35]))
    np.testing.assert_allclose(dyn.valence_std, 4 * np.full(4, 0.25))
    np.testing.assert_allclose(dyn.arousal_std, 4 * np.full(4, 0.05))
    assert dyn.to_array().shape == (4, 3)


def test_splits(dataset):
    assert dataset.get_track_splits("mediaeval2013") == {"development": ["2", "4"], "evaluation": ["3"]}
    with pytest.warns(UserWarning):
        splits = dataset.get_track_splits()
    assert {k: sorted(v) for k, v in splits.items()} == {"train": ["2", "4"], "validation": [], "test": ["3"]}
    with pytest.raises(ValueError, match="unknown split"):
        dataset.get_track_splits("nope")


def test_without_songs_info_audio_falls_back_to_id(tmp_path):
    home = build_home(tmp_path, "emomusic")
    (home / "songs_info.csv").unlink()
    ds = emomusic.Dataset(str(home))
    assert ds.track("3").audio_path.endswith("clips_45seconds/3.mp3")
    assert ds.track("3").artist is None
    with pytest.raises(NotImplementedError, match="songs_info"):
        ds.get_track_splits("mediaeval2013")


def test_blank_song_id_named(tmp_path):
    home = build_home(tmp_path, "emomusic")
    f = home / "annotations/static_annotations.csv"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text(lines[0] + "\n" + "," + lines[1].split(",", 1)[1])  # a blank line, then a row without its id
    with pytest.raises(ValueError, match=r"static_annotations\.csv: line 3: the 'song_id' cell is empty"):
        emomusic.Dataset(str(home)).track_ids
