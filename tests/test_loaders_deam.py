import numpy as np
import pytest

from loaders_testing import build_home, run_track_tests
from m2e_plugin.loaders import deam
from m2e_plugin.loaders.core import MissingAudioError, VAData


@pytest.fixture
def dataset(tmp_path):
    return deam.Dataset(str(build_home(tmp_path, "deam")))


def test_track(dataset):
    track = dataset.track("2")
    expected_attributes = {
        "track_id": "2",
        "audio_path": f"{dataset.data_home}/MEMD_audio/2.mp3",
        "valence": 3.1,
        "arousal": 3.0,
        "valence_std": 0.94,
        "arousal_std": 0.63,
        "quadrant": "Q3",
        "artist": "The New Mystikal Troubadours",
        "title": "Tonight  A Lonely Century",  # TAB padding stripped, inner spaces kept
        "genre": "Blues",
    }
    expected_property_types = {"dynamic": VAData, "audio": tuple}
    run_track_tests(track, expected_attributes, expected_property_types)

    audio, sr = track.audio
    assert sr == 22050 and audio.dtype == np.float32 and audio.ndim == 1
    assert 0.9 * sr < audio.shape[0] < 1.2 * sr


def test_dynamic_is_rescaled_from_bipolar(dataset):
    dyn = dataset.track("2").dynamic
    np.testing.assert_allclose(dyn.times, [15.0, 15.5, 16.0, 16.5])
    np.testing.assert_allclose(dyn.valence, 5 + 4 * np.array([-0.275, -0.25, -0.2, -0.1]))
    np.testing.assert_allclose(dyn.arousal, 5 + 4 * np.array([-0.5, -0.45, -0.4, -0.35]))
    assert dyn.valence_std is None and dyn.va_unit == "nine_point" and dyn.time_unit == "s"
    # trailing empty cells (shorter song) are dropped
    assert len(dataset.track("3").dynamic) == 2
    # the ends of [-1, 1] land on the ends of 1-9
    full = dataset.track("2001").dynamic
    assert full.valence[-1] == 9.0 and full.arousal[-1] == 1.0
    assert dataset.track("5").dynamic is None  # not in the dynamic files


def test_second_song_level_file(dataset):
    track = dataset.track("2001")  # the 2000_2058 file, with its extra max/min columns
    assert (track.valence, track.arousal, track.valence_std, track.arousal_std) == (3.2, 6.6, 0.98, 0.8)
    assert track.quadrant == "Q2"
    assert dataset.track("5").artist is None


def test_track_ids_and_splits(dataset):
    assert dataset.track_ids == ["2", "3", "5", "2001"]
    with pytest.warns(UserWarning, match="not in this copy"):
        splits = dataset.get_track_splits()
    # ids keep the order of Music2Emo's list files
    assert {k: sorted(v, key=int) for k, v in splits.items()} == {"train": ["2", "3", "5"], "validation": ["2001"], "test": []}
    with pytest.raises(ValueError, match="unknown split"):
        dataset.get_track_splits("official")


def test_music2emo_copy_is_used_when_publisher_files_are_absent(tmp_path):
    home = tmp_path / "deam_m2e" / "music2emo-meta"
    home.mkdir(parents=True)
    (home / "static_annotations.csv").write_text(
        "song_id,valence_mean,valence_std,arousal_mean,arousal_std\n2,3.1,0.94,3,0.63\n7,6.5,1.0,5.5,1.1\n"
    )
    ds = deam.Dataset(str(tmp_path / "deam_m2e"))
    assert ds.track_ids == ["2", "7"]
    assert ds.track("7").valence == 6.5 and ds.track("7").dynamic is None


def test_missing_labels_and_audio(tmp_path):
    ds = deam.Dataset(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="static_annotations_averaged_songs_1_2000.csv"):
        ds.track_ids
    home = build_home(tmp_path, "deam", skip=("MEMD_audio/3.mp3",))
    with pytest.raises(MissingAudioError, match=r"(?s)MEMD_audio/3\.mp3.*cvml\.unige\.ch") as err:
        deam.Dataset(str(home)).track("3").audio
    assert err.value.track_id == "3"


def test_out_of_scale_value_is_an_error(tmp_path):
    home = build_home(tmp_path, "deam")
    f = home / "annotations/annotations averaged per song/song_level/static_annotations_averaged_songs_1_2000.csv"
    f.write_text("song_id, valence_mean, valence_std, arousal_mean, arousal_std\n 2, 0.5, 0.1, 3, 0.6\n")
    with pytest.raises(ValueError, match=r"static_annotations_averaged_songs_1_2000\.csv: row '2'.*outside the 1-9"):
        deam.Dataset(str(home)).track_ids


def test_bad_cell_names_file_row_and_column(tmp_path):
    home = build_home(tmp_path, "deam")
    f = home / "annotations/annotations averaged per song/song_level/static_annotations_averaged_songs_1_2000.csv"
    f.write_text("song_id, valence_mean, valence_std, arousal_mean, arousal_std\n 2, abc, 0.1, 3, 0.6\n")
    with pytest.raises(ValueError, match=r"row '2', column 'valence_mean': 'abc' is not a number"):
        deam.Dataset(str(home)).track_ids


DYNAMIC = "annotations/annotations averaged per song/dynamic (per second annotations)"


def test_out_of_scale_dynamic_value_is_an_error(tmp_path):
    """A dynamic value of 1.5 on DEAM's [-1, 1] scale was clipped to 9.0 silently; static labels were checked."""
    home = build_home(tmp_path, "deam")
    (home / DYNAMIC / "valence.csv").write_text("song_id,sample_15000ms,sample_15500ms\n2,0.1,0.2\n3,-0.5,1.5\n")
    ds = deam.Dataset(str(home))
    with pytest.raises(ValueError, match=r"valence\.csv: line 3 \(song '3'\), column 'sample_15500ms': 1\.5 is "
                                         r"outside the -1 to 1 scale of this file"):
        ds.track("2").dynamic


def test_dynamic_round_off_is_clipped(tmp_path):
    home = build_home(tmp_path, "deam")
    (home / DYNAMIC / "valence.csv").write_text("song_id,sample_15000ms,sample_15500ms\n2,1.0000000001,-1.0000000001\n")
    (home / DYNAMIC / "arousal.csv").write_text("song_id,sample_15000ms,sample_15500ms\n2,0.5,0.5\n")
    dyn = deam.Dataset(str(home)).track("2").dynamic
    assert list(dyn.valence) == [9.0, 1.0]


@pytest.mark.parametrize("row", [",5,1,3,1\n", "  ,5,1,3,1\n"])
def test_blank_song_id_named(tmp_path, row):
    """A blank song_id made a track with id ''."""
    home = tmp_path / "deam_m2e"
    (home / "music2emo-meta").mkdir(parents=True)
    (home / "music2emo-meta/static_annotations.csv").write_text(
        "song_id,valence_mean,valence_std,arousal_mean,arousal_std\n2,3.1,0.94,3,0.63\n" + row)
    with pytest.raises(ValueError, match=r"static_annotations\.csv: line 3: the 'song_id' cell is empty"):
        deam.Dataset(str(home)).track_ids
