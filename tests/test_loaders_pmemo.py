import numpy as np
import pytest

from loaders_testing import build_home, run_track_tests
from m2e_plugin.loaders import pmemo
from m2e_plugin.loaders.core import VAData


@pytest.fixture
def dataset(tmp_path):
    return pmemo.Dataset(str(build_home(tmp_path, "pmemo")))


def test_track_publisher_layout_is_rescaled(dataset):
    track = dataset.track("1")
    expected_attributes = {
        "track_id": "1",
        "audio_path": f"{dataset.data_home}/chorus/1.mp3",
        "valence": 1 + 8 * 0.575,
        "arousal": 1 + 8 * 0.4,
        "valence_std": 8 * 0.16008,
        "arousal_std": 8 * 0.15612,
        "quadrant": "Q4",
        "title": "Good Drank",
        "artist": "2 Chainz",
        "album": "Def Jam Presents: Direct Deposit, Vol. 2",  # quoted comma kept
        "duration": 32.1,
    }
    run_track_tests(track, expected_attributes, {"dynamic": VAData, "audio": tuple})
    audio, sr = track.audio
    assert audio.ndim == 1 and audio.dtype == np.float32 and sr == 22050


def test_dynamic_with_std(dataset):
    dyn = dataset.track("1").dynamic
    np.testing.assert_allclose(dyn.times, [15.5, 16.0, 16.5])
    np.testing.assert_allclose(dyn.valence, 1 + 8 * np.array([0.56, 0.5606, 0.57]))  # Valence column, not Arousal
    np.testing.assert_allclose(dyn.arousal, 1 + 8 * np.array([0.4375, 0.4378, 0.45]))
    np.testing.assert_allclose(dyn.valence_std, 8 * np.array([0.2757, 0.2774, 0.28]))
    np.testing.assert_allclose(dyn.arousal_std, 8 * np.array([0.2879, 0.2883, 0.29]))
    assert dataset.track("5").dynamic is None


def test_tracks_are_the_annotated_songs(dataset):
    assert dataset.track_ids == ["1", "4", "5"]  # song 7 is in metadata.csv only
    assert dataset.track("5").title == "夜空中最亮的星"
    with pytest.raises(ValueError, match="not a valid track_id"):
        dataset.track("7")


def test_music2emo_copy(tmp_path):
    home = build_home(tmp_path, "pmemo", fixture="pmemo_music2emo")
    ds = pmemo.Dataset(str(home))
    t = ds.track("1")
    # means already 1-9 in Music2Emo's copy; its std is still on 0-1 and gets the 8x factor
    assert t.valence == 5.6 and t.arousal == 4.2
    assert t.valence_std == pytest.approx(8 * 0.160078105936)
    assert t.dynamic.valence[0] == pytest.approx(1 + 8 * 0.56) and t.dynamic.valence_std is None
    assert t.audio_path.endswith("chorus/1.mp3")
    with pytest.raises(NotImplementedError, match="split id lists"):
        ds.get_track_splits()
    split_dir = home / "music2emo-meta" / "split"
    split_dir.mkdir()
    for name, ids in (("train", "1\n"), ("validation", "4\n"), ("test", "")):
        (split_dir / f"{name}.txt").write_text(ids)
    assert ds.get_track_splits() == {"train": ["1"], "validation": ["4"], "test": []}


def test_values_already_on_nine_point_in_publisher_file_are_rejected(tmp_path):
    home = build_home(tmp_path, "pmemo")
    (home / "annotations/static_annotations.csv").write_text("musicId,Arousal(mean),Valence(mean)\n1,4.2,5.6\n")
    # the error quotes the file's value and scale, not the value rescaled (1 + 8 x 5.6 = 45.8)
    with pytest.raises(ValueError, match=r"'Valence\(mean\)': 5\.6 is outside the 0-1 scale"):
        pmemo.Dataset(str(home)).track_ids


def test_music2emo_meta_layout_with_its_split(tmp_path):
    """Music2Emo's own ``dataset/pmemo/meta/`` holds ``split/`` beside metadata.csv: it was refused as DEAM's or
    EmoMusic's copy, though metadata.csv marks it as PMEmo's and get_track_splits() reads meta/split/."""
    import shutil

    home = build_home(tmp_path, "pmemo", fixture="pmemo_music2emo")
    meta = home / "meta"
    shutil.move(str(home / "music2emo-meta"), str(meta))
    (meta / "split").mkdir()
    for name, ids in (("train", "1\n"), ("validation", "4\n"), ("test", "")):
        (meta / "split" / f"{name}.txt").write_text(ids)
    ds = pmemo.Dataset(str(home))
    assert ds.track_ids == ["1", "4"]
    assert ds.get_track_splits() == {"train": ["1"], "validation": ["4"], "test": []}
    # split/ beside a static file alone still marks DEAM's or EmoMusic's copy
    (meta / "metadata.csv").unlink()
    (meta / "dynamic_annotations.csv").unlink()
    with pytest.raises(ValueError, match="marks the Music2Emo copy of deam's or emomusic's labels, not pmemo's"):
        pmemo.Dataset(str(home)).track_ids


def test_dynamic_file_already_on_nine_point_is_an_error(tmp_path):
    """Every value of a dynamic file already on 1-9 was clipped to 9.0 without a word."""
    home = build_home(tmp_path, "pmemo", fixture="pmemo_music2emo")
    (home / "music2emo-meta/dynamic_annotations.csv").write_text(
        "musicId,frameTime,Arousal(mean),Valence(mean)\n1,15.5,4.501,0.5\n1,16.0,0.5,5.485\n")
    with pytest.raises(ValueError, match=r"dynamic_annotations\.csv: line 2 \(song '1', 15\.5 s\), column "
                                         r"'Arousal\(mean\)': 4\.501 is outside the 0 to 1 scale of this file "
                                         r"\(already on the 1-9 scale\?\)"):
        pmemo.Dataset(str(home)).track("1").dynamic


def test_impossible_dynamic_standard_deviation_is_an_error(dataset):
    path = f"{dataset.data_home}/annotations/dynamic_annotations_std.csv"
    with open(path, "w") as fh:
        fh.write("musicId,frameTime,Arousal(std),Valence(std)\n1,15.5,0.2,0.9\n")
    with pytest.raises(ValueError, match=r"'Valence\(std\)': a standard deviation of 0\.9 is 7\.2 in 1-9 units"):
        dataset.track("1").dynamic
