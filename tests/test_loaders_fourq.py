import pytest

from loaders_testing import build_home, run_track_tests
from m2e_plugin.loaders import fourq


@pytest.fixture
def dataset(tmp_path):
    return fourq.Dataset(str(build_home(tmp_path, "fourq")))


def test_track(dataset):
    track = dataset.track("MT0000133200")
    expected_attributes = {
        "track_id": "MT0000133200",
        "audio_path": f"{dataset.data_home}/Q2/MT0000133200.mp3",
        "quadrant": "Q2",
        "valence_positive": False,
        "arousal_positive": True,
        "moods": ["Angry", "Tense", "Anxious"],  # MoodsStrSplit: Tense/Anxious split
        "artist": "Deftones",
        "title": "Rats!Rats!Rats!",
        "genres": ["Pop/Rock"],
    }
    run_track_tests(track, expected_attributes, {"audio": tuple})
    audio, sr = track.audio
    assert audio.ndim == 1 and sr == 22050


def test_quadrant_booleans_and_latin1_metadata(dataset):
    got = {t: (dataset.track(t).quadrant, dataset.track(t).valence_positive, dataset.track(t).arousal_positive)
           for t in dataset.track_ids}
    assert got == {
        "MT0000040632": ("Q1", True, True),
        "MT0000133200": ("Q2", False, True),
        "MT0000202045": ("Q3", False, False),
        "MT0000054705": ("Q4", True, False),
    }
    assert dataset.track("MT0000202045").artist == "Björk"  # metadata file is latin-1 in the fixture


def test_no_official_split_but_seeded_random(dataset):
    with pytest.raises(NotImplementedError):
        dataset.get_track_splits()
    a = dataset.get_random_track_splits([0.5, 0.25, 0.25], seed=3, split_names=["train", "validation", "test"])
    b = dataset.get_random_track_splits([0.5, 0.25, 0.25], seed=3, split_names=["train", "validation", "test"])
    assert {k: list(v) for k, v in a.items()} == {k: list(v) for k, v in b.items()}
    assert sorted(sum((list(v) for v in a.values()), [])) == sorted(dataset.track_ids)


def test_without_metadata_file(tmp_path):
    home = build_home(tmp_path, "fourq")
    (home / "panda_dataset_taffc_metadata.csv").unlink()
    t = fourq.Dataset(str(home)).track("MT0000040632")
    assert t.quadrant == "Q1" and t.moods == [] and t.artist is None and t.genres == []


@pytest.mark.parametrize("rows, message", [
    ("MT1,Q5\n", r"row 'MT1': quadrant 'Q5'"),
    ("MT1,Q1\n,Q2\n", r"line 3: the 'Song' cell is empty"),  # it became a track with id ''
])
def test_bad_annotation_row_named(tmp_path, rows, message):
    home = build_home(tmp_path, "fourq")
    (home / "panda_dataset_taffc_annotations.csv").write_text("Song,Quadrant\n" + rows)
    with pytest.raises(ValueError, match=r"panda_dataset_taffc_annotations\.csv: " + message):
        fourq.Dataset(str(home)).track_ids


def test_stratified_random_split(tmp_path):
    home = build_home(tmp_path, "fourq")
    ann = home / "panda_dataset_taffc_annotations.csv"
    ann.write_text("Song,Quadrant\n" + "".join(f"MT{q}{i:03d},Q{q}\n" for q in range(1, 5) for i in range(10)))
    ds = fourq.Dataset(str(home))
    parts = ds.get_random_track_splits([0.8, 0.1, 0.1], seed=1, split_names=["train", "validation", "test"],
                                       stratify="quadrant")
    for name, n in (("train", 8), ("validation", 1), ("test", 1)):
        quads = [ds.track(t).quadrant for t in parts[name]]
        assert {q: quads.count(q) for q in set(quads)} == {"Q1": n, "Q2": n, "Q3": n, "Q4": n}
    again = ds.get_random_track_splits([0.8, 0.1, 0.1], seed=1, split_names=["train", "validation", "test"],
                                       stratify="quadrant")
    assert all(list(parts[k]) == list(again[k]) for k in parts)


def test_header_only_annotations_are_an_error(tmp_path, capsys):
    """A header alone gave a 0-track dataset that `validate` passed (exit 0); the VA loaders refuse the same file."""
    from m2e_plugin.cli.main import main

    home = build_home(tmp_path, "fourq")
    (home / "panda_dataset_taffc_annotations.csv").write_text("Song,Quadrant\n")
    with pytest.raises(ValueError, match=r"panda_dataset_taffc_annotations\.csv: no rows under the header"):
        fourq.Dataset(str(home)).track_ids
    assert main(["datasets", "validate", "fourq", "--data-home", str(home)]) == 2
    assert "no rows under the header" in capsys.readouterr().err


def test_audio_path_that_is_a_directory(tmp_path):
    """A folder where the clip should be was reported as missing ("not on disk")."""
    from m2e_plugin.audio import AudioError

    home = build_home(tmp_path, "fourq", skip=("Q1/MT0000040632.mp3",))
    (home / "Q1/MT0000040632.mp3").mkdir(parents=True)
    ds = fourq.Dataset(str(home))
    missing, invalid = ds.validate(verbose=False)
    assert not missing
    assert invalid == {"MT0000040632": [f"{home}/Q1/MT0000040632.mp3: is a directory, not an audio file"]}
    with pytest.raises(AudioError, match="is a directory"):
        ds.track("MT0000040632").audio
