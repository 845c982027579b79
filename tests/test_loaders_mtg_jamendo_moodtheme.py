import numpy as np
import pytest
from mirdata.datasets import mtg_jamendo_autotagging_moodtheme as mirdata_mtg

from loaders_testing import build_home, run_track_tests
from m2e_plugin.loaders import mtg_jamendo_moodtheme as mtg


@pytest.fixture
def dataset(tmp_path):
    return mtg.Dataset(str(build_home(tmp_path, "mtg_jamendo_moodtheme")))


def test_wraps_mirdata(dataset):
    assert isinstance(dataset, mirdata_mtg.Dataset)
    assert isinstance(dataset.track("track_0000948"), mirdata_mtg.Track)


def test_track(dataset):
    track = dataset.track("track_0001105")
    expected_attributes = {
        "track_id": "track_0001105",
        "audio_path": f"{dataset.data_home}/audios/05/1105.mp3",
        "artist_id": "artist_000104",
        "album_id": "album_000182",
        "duration": 312.3,
        "tags": ["happy", "energetic", "positive"],  # tags spread over extra TSV columns, CRLF stripped
        "moods": ["happy", "energetic", "positive"],
    }
    run_track_tests(track, expected_attributes, {"audio": tuple})
    audio, sr = track.audio
    assert audio.ndim == 1 and audio.dtype == np.float32 and sr == 22050


def test_index_built_offline(dataset):
    assert dataset.track_ids == ["track_0000948", "track_0000950", "track_0001105", "track_0001120", "track_0001200"]
    assert "site-packages" not in dataset.index_path


def test_official_splits_drop_the_three_tags(dataset):
    split = dataset.get_track_splits(0)
    assert split == {
        "train": ["track_0000948", "track_0000950"],
        "validation": ["track_0001105"],  # track_0001120 had only "mellow": not in any split
        "test": ["track_0001200"],
    }
    assert len(dataset.get_track_splits(3)["train"]) == 1
    with pytest.raises(ValueError):
        dataset.get_track_splits(5)


def test_other_audio_roots(tmp_path):
    home = build_home(tmp_path, "mtg_jamendo_moodtheme")
    (home / "audios").rename(home / "audio")
    assert mtg.Dataset(str(home)).track("track_0000948").audio_path.endswith("/audio/48/948.mp3")


def test_missing_metadata_named(tmp_path):
    home = build_home(tmp_path, "mtg_jamendo_moodtheme")
    (home / "data/splits/split-2/autotagging_moodtheme-test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"split-2/autotagging_moodtheme-test\.tsv"):
        mtg.Dataset(str(home)).track_ids


def test_mirdata_split_number_and_text_split(dataset):
    """mirdata code calls get_track_splits(split_number=k); a command line gives "3" for split 3."""
    assert dataset.get_track_splits(split_number=3) == dataset.get_track_splits(3) == dataset.get_track_splits("3")
    assert dataset.get_track_splits() == dataset.get_track_splits(0)
    with pytest.raises(TypeError, match="disagree"):
        dataset.get_track_splits(1, split_number=2)


@pytest.mark.parametrize("text, cause", [
    ("", r"autotagging_moodtheme\.tsv: the file is empty"),
    ("ID\tFOO\r\ntrack_1\tx\r\n", r"header \['ID', 'FOO'\] is not MTG-Jamendo's"),
    ("TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\r\ntrack_0000948\tartist_1\r\n",
     r"line 2 has 2 tab-separated fields"),
])
def test_malformed_metadata_named(tmp_path, text, cause):
    """mirdata's parser indexes the columns unchecked (IndexError, StopIteration); the loader names file and line."""
    from m2e_plugin.loaders.io import DatasetFileError

    home = build_home(tmp_path, "mtg_jamendo_moodtheme")
    (home / "data/autotagging_moodtheme.tsv").write_text(text, newline="")
    with pytest.raises(DatasetFileError, match=cause):
        mtg.Dataset(str(home)).track_ids


_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\r\n"


@pytest.mark.parametrize("line, cause", [
    # mirdata's parser failed with "'utf-8' codec can't decode byte 0xe9 in position ...", naming no file or line
    ("track_0000948\tartist_1\talbum_1\t48/948.mp3\t212.7\tmood/theme---caf\xe9\r\n".encode("latin-1"),
     r"autotagging_moodtheme\.tsv: line 3 is not UTF-8 text \(byte 0xe9"),
    # passed the layout check, then track.duration raised a bare ValueError from mirdata
    (b"track_0000948\tartist_1\talbum_1\t48/948.mp3\tabc\tmood/theme---calm\r\n",
     r"autotagging_moodtheme\.tsv: line 3: DURATION 'abc' is not a number of seconds"),
    (b"\tartist_1\talbum_1\t48/948.mp3\t212.7\tmood/theme---calm\r\n",
     r"autotagging_moodtheme\.tsv: line 3: TRACK_ID is empty"),
])
def test_undecodable_line_and_bad_duration_named_at_load(tmp_path, line, cause):
    from m2e_plugin.loaders.io import DatasetFileError

    home = build_home(tmp_path, "mtg_jamendo_moodtheme")
    good = "track_0000950\tartist_000087\talbum_000149\t50/950.mp3\t248.0\tmood/theme---calm\r\n"
    (home / "data/autotagging_moodtheme.tsv").write_bytes((_HEADER + good).encode() + line)
    with pytest.raises(DatasetFileError, match=cause):
        mtg.Dataset(str(home)).track_ids


def test_split_ids_not_in_the_index_are_dropped_with_a_warning(tmp_path):
    """DEAM and EmoMusic drop unknown split ids with a warning; MTG-Jamendo returned them, ids that are not tracks."""
    home = build_home(tmp_path, "mtg_jamendo_moodtheme")
    train = home / "data/splits/split-0/autotagging_moodtheme-train.tsv"
    train.write_bytes(train.read_bytes()
                      + b"track_9999999\tartist_1\talbum_1\t99/9999999.mp3\t10.0\tmood/theme---calm\r\n")
    ds = mtg.Dataset(str(home))
    with pytest.warns(UserWarning, match=r"1 track ids of the official split-0 split are not in this copy"):
        split = ds.get_track_splits(0)
    assert split["train"] == ["track_0000948", "track_0000950"]
    assert all(t in ds.track_ids for ids in split.values() for t in ids)


def test_tags_of_other_categories_are_not_moods(tmp_path):
    """``genre---rock`` (a TSV of another MTG-Jamendo subset) became the mood ``rock``."""
    home = build_home(tmp_path, "mtg_jamendo_moodtheme")
    tsv = home / "data/autotagging_moodtheme.tsv"
    tsv.write_bytes(tsv.read_bytes().replace(b"mood/theme---background\r\n",
                                             b"mood/theme---background\tgenre---rock\tinstrument---piano\r\n", 1))
    ds = mtg.Dataset(str(home))
    with pytest.warns(UserWarning, match=r"autotagging_moodtheme\.tsv: 2 tag\(s\) are not mood/theme--- tags "
                                         r"\(first: 'genre---rock' on line 2\); they are ignored") as record:
        ds.track_ids
    assert len([w for w in record if "not mood/theme" in str(w.message)]) == 1
    assert ds.track("track_0000948").moods == ds.track("track_0000948").tags == ["background"]
