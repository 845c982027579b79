"""Contract every loader keeps (mirdata's test_loaders pattern, looping over all datasets), and the CLI."""

import json
import os

import numpy as np
import pytest
from mirdata import core

from loaders_testing import AUDIO, build_home
from m2e_plugin import loaders
from m2e_plugin.cli.main import main
from m2e_plugin.loaders.core import MissingAudioError, OfflineIndex, VAData

VA_DATASETS = ("deam", "emomusic", "pmemo")


def test_list_and_initialize():
    assert loaders.list_datasets() == ["deam", "emomusic", "fourq", "mtg_jamendo_moodtheme", "pmemo"]
    with pytest.raises(ValueError, match="Invalid dataset 'nope'"):
        loaders.initialize("nope")
    assert "Default version: 1.0" in loaders.list_dataset_versions("deam")
    ds = loaders.initialize("deam")  # mirdata's default home
    assert ds.data_home.endswith(os.path.join("mir_datasets", "deam"))


@pytest.mark.parametrize("name", loaders.DATASETS)
def test_module_constants(name):
    module = __import__(f"m2e_plugin.loaders.{name}", fromlist=["Dataset"])
    for const in ("BIBTEX", "LICENSE_INFO", "DOWNLOAD_INFO"):
        assert isinstance(getattr(module, const), str) and len(getattr(module, const)) > 40, const
    assert module.BIBTEX.lstrip().startswith("@")
    assert "http" in module.DOWNLOAD_INFO
    assert issubclass(module.Dataset, core.Dataset) and issubclass(module.Track, core.Track)
    assert module.Dataset.__init__.__code__.co_varnames[1:3] == ("data_home", "version")
    assert isinstance(module.INDEXES[module.INDEXES["default"]], OfflineIndex)


@pytest.mark.parametrize("name", loaders.DATASETS)
def test_contract(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("M2E_CACHE", str(tmp_path / "cache"))
    rels = AUDIO[name]
    home = build_home(tmp_path, name, skip=(rels[0],), corrupt=(rels[1],))
    ds = loaders.initialize(name, data_home=str(home))

    # index: built from disk, never pointing into an installed package
    assert ds.track_ids and len(set(ds.track_ids)) == len(ds.track_ids)
    assert ds.index_path.startswith(str(tmp_path / "cache"))
    saved = ds.save_index()
    with open(saved) as fh:
        index = json.load(fh)
    assert set(index["tracks"]) == set(ds.track_ids) and index["version"] == "1.0"
    assert all(entry["audio"][0] and not os.path.isabs(entry["audio"][0]) for entry in index["tracks"].values())

    tracks = ds.load_tracks()
    for track in tracks.values():
        assert track.audio_path.startswith(str(home))
        repr(track)
        if name in VA_DATASETS:
            assert 1.0 <= track.valence <= 9.0 and 1.0 <= track.arousal <= 9.0
            for std in (track.valence_std, track.arousal_std):
                assert std is None or 0.0 <= std <= 8.0
            assert track.quadrant in ("Q1", "Q2", "Q3", "Q4")
            if track.dynamic is not None:
                assert isinstance(track.dynamic, VAData)
                assert track.dynamic.valence.min() >= 1.0 and track.dynamic.valence.max() <= 9.0
        if name in ("fourq", "mtg_jamendo_moodtheme"):
            assert isinstance(track.moods, list) and all(isinstance(m, str) and m for m in track.moods)

    # validate: reports the missing and the corrupt file, never raises
    missing, invalid = ds.validate(verbose=True)
    assert [os.path.relpath(p, home) for ps in missing.values() for p in ps] == [rels[0]]
    assert len(invalid) == 1 and rels[1] in next(iter(invalid.values()))[0]
    assert "1 missing, 1 corrupt" in capsys.readouterr().err

    by_path = {os.path.relpath(t.audio_path, home): t for t in tracks.values()}
    with pytest.raises(MissingAudioError, match="Where to get it"):
        by_path[rels[0]].audio
    with pytest.raises(ValueError, match=rels[1].split("/")[-1]):  # AudioError names the file
        by_path[rels[1]].audio
    audio, sr = by_path[rels[2]].audio
    assert audio.dtype == np.float32 and audio.ndim == 1 and sr > 0 and np.abs(audio).max() > 0.05

    # seeded random splits cover every track once
    parts = ds.get_random_track_splits([0.6, 0.2, 0.2], seed=7, split_names=["train", "validation", "test"])
    assert sorted(i for v in parts.values() for i in v) == sorted(ds.track_ids)

    ds.cite()
    ds.license()
    assert "BibTeX" in capsys.readouterr().out


@pytest.mark.parametrize("name", loaders.DATASETS)
def test_full_decode_validation(name, tmp_path):
    home = build_home(tmp_path, name)
    # truncate one file to its first bytes: the header may parse, a full decode must fail or be empty-handed
    target = home / AUDIO[name][0]
    target.write_bytes(target.read_bytes()[:64])
    missing, invalid = loaders.initialize(name, data_home=str(home)).validate(verbose=False, decode=True)
    assert not missing and len(invalid) == 1


def test_package_split_lists():
    from m2e_plugin.loaders.core import read_package_split

    deam = read_package_split("deam")
    emo = read_package_split("emomusic")
    assert [len(deam[k]) for k in ("train", "validation", "test")] == [1261, 271, 270]
    assert [len(emo[k]) for k in ("train", "validation", "test")] == [495, 124, 125]
    for lists in (deam, emo):
        ids = [i for v in lists.values() for i in v]
        assert len(ids) == len(set(ids))
    assert read_package_split("pmemo") is None


def test_vadata_validation():
    t = np.array([0.0, 0.5])
    v = np.array([5.0, 6.0])
    data = VAData(t, "s", v, v.copy(), "nine_point")
    assert len(data) == 2
    with pytest.raises(ValueError, match="within 1-9"):
        VAData(t, "s", np.array([0.5, 6.0]), v, "nine_point")
    with pytest.raises(ValueError, match="strictly increasing"):
        VAData(np.array([1.0, 0.5]), "s", v, v, "nine_point")
    with pytest.raises(ValueError):
        VAData(t, "s", v, np.array([5.0]), "nine_point")
    with pytest.raises(ValueError):
        VAData(t, "s", v, v, "percent")


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_list_info_validate(tmp_path, capsys):
    home = build_home(tmp_path, "fourq", skip=(AUDIO["fourq"][3],))
    rc, out, _ = _cli(capsys, "datasets", "--data-home", f"fourq={home}")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["fourq"]["tracks"] == 4
    assert set(rows) == set(loaders.DATASETS)

    rc, out, _ = _cli(capsys, "datasets", "info", "fourq", "--data-home", str(home))
    info = json.loads(out)
    assert rc == 0 and info["tracks"] == 4 and info["audio_present"] == 3
    assert info["quadrants"] == {"Q1": 1, "Q2": 1, "Q3": 1, "Q4": 1}

    rc, out, err = _cli(capsys, "datasets", "validate", "fourq", "--data-home", str(home))
    report = json.loads(out)
    assert rc == 1 and report["missing"] == 1 and report["usable"] == 3
    assert list(report["missing_tracks"]) == ["MT0000054705"]
    assert "1 missing" in err


@pytest.mark.filterwarnings("ignore:.*split are not in this copy")
def test_cli_info_va_dataset_and_errors(tmp_path, capsys):
    home = build_home(tmp_path, "emomusic")
    rc, out, _ = _cli(capsys, "datasets", "info", "emomusic", "--data-home", str(home))
    info = json.loads(out)
    assert rc == 0 and info["valence_range"] == [3.0, 5.5] and info["arousal_range"] == [3.1, 5.7]
    assert info["splits"]["mediaeval2013"] == {"development": 2, "evaluation": 1}

    rc, _, err = _cli(capsys, "datasets", "info", "deam", "--data-home", str(tmp_path / "missing"))
    assert rc == 2 and "static_annotations_averaged_songs_1_2000.csv" in err
    rc, _, err = _cli(capsys, "datasets", "--data-home", "nope=/x")
    assert rc == 2 and "unknown dataset" in err


def test_cli_list_names_a_typed_data_home_that_is_not_a_folder(tmp_path, capsys):
    """`m2e datasets --data-home fourq=/typo --data-home deam=FILE` exited 0 with "tracks": null and no error."""
    home = build_home(tmp_path, "fourq")
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, out, err = _cli(capsys, "datasets", "--data-home", f"fourq={home}", "--data-home", f"deam={afile}",
                        "--data-home", f"pmemo={tmp_path / 'typo'}")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 2 and rows["fourq"]["tracks"] == 4 and "error" not in rows["fourq"]
    assert rows["deam"]["tracks"] is None and rows["deam"]["error"] == f"{afile} is a file, not a folder"
    assert rows["pmemo"]["error"] == f"{tmp_path / 'typo'} does not exist"
    assert f"--data-home deam={afile}: {afile} is a file, not a folder" in err and "Traceback" not in err

    rc, _, err = _cli(capsys, "datasets", "info", "fourq", "--data-home", str(afile))
    assert rc == 2 and err == f"m2e datasets: fourq: data_home {afile} is a file, not a folder\n"
    rc, _, err = _cli(capsys, "datasets", "info", "mtg_jamendo_moodtheme", "--data-home", str(afile))
    assert rc == 2 and f"{afile} is a file, not a folder" in err


def test_cli_data_home_tilde_is_expanded(tmp_path, capsys, monkeypatch):
    """`--data-home=~/x` (and NAME=~/x): the shell leaves the ~ alone, so m2e must expand it."""
    from m2e_plugin.cli.options import data_homes

    monkeypatch.setenv("HOME", str(tmp_path))
    build_home(tmp_path, "fourq")
    rc, out, _ = _cli(capsys, "datasets", "info", "fourq", "--data-home=~/fourq")
    assert rc == 0 and json.loads(out)["tracks"] == 4
    rc, out, _ = _cli(capsys, "datasets", "--data-home=fourq=~/fourq")
    assert rc == 0 and {r["name"]: r for r in json.loads(out)}["fourq"]["tracks"] == 4
    assert data_homes(["~/a"], ["deam"]) == data_homes(["deam=~/a", "deam=" + str(tmp_path / "a")]) == \
        {"deam": str(tmp_path / "a")}
    assert data_homes(["fourq=~/c"], option="--cache") == {"fourq": str(tmp_path / "c")}


def test_unknown_dataset_version_lists_the_versions():
    """mirdata's message printed "Must be one of dict_keys(['default', 'test', '1.0'])"."""
    for name in loaders.DATASETS:
        with pytest.raises(ValueError) as err:
            loaders.initialize(name, version="2.0")
        assert str(err.value) == f"{name}: unknown dataset version '2.0'; available: default, 1.0"


def test_csv_reader_quirks(tmp_path):
    from m2e_plugin.loaders.core import read_csv_dicts, read_wide_dynamic

    f = tmp_path / "quirks.csv"
    # UTF-8 BOM, CRLF, padded fixed-width cells, a quoted field with a comma and a line break
    f.write_bytes(b'\xef\xbb\xbfsong_id, valence_mean , title\r\n   2,  3.1 ,"a, b\r\nc"\r\n\r\n 3, 4 ,"\tx\t"\r\n')
    assert read_csv_dicts(str(f)) == [
        {"song_id": "2", "valence_mean": "3.1", "title": "a, b\r\nc"},
        {"song_id": "3", "valence_mean": "4", "title": "x"},
    ]
    # latin-1 bytes, including 0x85 (which str.splitlines would treat as a line break)
    f.write_bytes("Song,Artist\nMT1,Bj\xf6rk \x85 live\n".encode("latin-1"))
    assert read_csv_dicts(str(f)) == [{"Song": "MT1", "Artist": "Bj\xf6rk \x85 live"}]
    f.write_text("")
    with pytest.raises(ValueError, match="quirks.csv: file is empty"):
        read_csv_dicts(str(f))
    # a label file with a header and no rows, or binary junk, must not load as an empty dataset
    from m2e_plugin.loaders.core import read_static_va

    for junk in (b"song_id,valence_mean,arousal_mean\n", b"\xff\xfe\x00garbage"):
        f.write_bytes(junk)
        with pytest.raises(ValueError, match="quirks.csv: no rows under the header"):
            read_static_va(str(f))
    f.write_text("song_id,sample_15000ms,bogus\n2,0.1,0.2\n")
    with pytest.raises(ValueError, match="column 'bogus' is not of the form"):
        read_wide_dynamic(str(f))


def _music2emo_copy(home, rows: str, *marks: str):
    """A Music2Emo label copy (``music2emo-meta/static_annotations.csv``) with other files of its folder."""
    folder = home / "music2emo-meta"
    folder.mkdir(parents=True)
    (folder / "static_annotations.csv").write_text("song_id,valence_mean,valence_std,arousal_mean,arousal_std\n"
                                                   + rows)
    for mark in marks:
        if mark == "split":
            (folder / "split").mkdir()
            (folder / "split" / "train.txt").write_text("2\n")
        else:
            (folder / mark).write_text("song_id\n2\n")
    return home


@pytest.mark.parametrize("name, marks, owner", [
    ("pmemo", ("split",), "deam's or emomusic's"),           # DEAM's copy read as PMEmo
    ("pmemo", ("songs_info.csv", "split"), "emomusic's"),
    ("deam", ("metadata.csv", "dynamic_annotations.csv"), "pmemo's"),
    ("deam", ("songs_info.csv",), "emomusic's"),
    ("emomusic", ("metadata.csv",), "pmemo's"),
    ("deam", ("metadata.csv", "split"), "pmemo's"),          # Music2Emo's PMEmo copy has a split too
])
def test_another_datasets_music2emo_copy_is_named(tmp_path, name, marks, owner):
    """DEAM, EmoMusic and PMEmo's Music2Emo copies share one layout: a data_home pointed at the wrong dataset used
    to load it silently (PMEmo read DEAM's 1802 songs, its stds times 8, and DEAM's split as its own)."""
    home = _music2emo_copy(tmp_path / name, "2,3.1,0.94,3,0.63\n3,3.5,1.75,3.3,1.62\n", *marks)
    with pytest.raises(ValueError, match=f"marks the Music2Emo copy of {owner} labels, not {name}'s"):
        loaders.initialize(name, data_home=str(home)).track_ids


def test_own_music2emo_copy_loads(tmp_path):
    rows = "2,3.1,0.94,3,0.63\n3,3.5,1.75,3.3,1.62\n"
    assert len(loaders.initialize("deam", data_home=str(_music2emo_copy(tmp_path / "d", rows, "split"))).track_ids) == 2
    home = _music2emo_copy(tmp_path / "e", rows, "songs_info.csv", "split")
    assert loaders.initialize("emomusic", data_home=str(home)).track_ids == ["2", "3"]
    # PMEmo's copy keeps the stds on [0, 1] (x 8 = 1-9 units)
    home = _music2emo_copy(tmp_path / "p", "1,5.6,0.16,4.2,0.15\n", "metadata.csv")
    assert loaders.initialize("pmemo", data_home=str(home)).track("1").valence_std == pytest.approx(1.28)


def test_deams_ids_are_not_emomusic(tmp_path):
    """DEAM's copy carries a split like EmoMusic's; its ids (2 to 2058) give it away."""
    home = _music2emo_copy(tmp_path / "emomusic", "2,3.1,0.94,3,0.63\n2001,3.5,1.75,3.3,1.62\n", "split")
    with pytest.raises(ValueError, match="'2001' is not an EmoMusic id"):
        loaders.initialize("emomusic", data_home=str(home)).track_ids


def test_impossible_standard_deviation_is_an_error(tmp_path):
    """Ratings on 1-9 spread at most 4; DEAM's stds (already 1-9 units) read as PMEmo's [0, 1] ones reach 23."""
    home = _music2emo_copy(tmp_path / "pmemo", "1,5.6,2.9,4.2,0.15\n")
    with pytest.raises(ValueError, match=r"'valence_std': a standard deviation of 2\.9 is 23\.2 in 1-9 units"):
        loaders.initialize("pmemo", data_home=str(home)).track_ids


def test_what_a_decoder_writes_to_fd_2_is_reported_per_track(tmp_path, capfd, monkeypatch):
    """`datasets validate --decode` printed libmpg123's raw lines, which name no file, between the progress."""
    import m2e_plugin.loaders.core as core

    home = build_home(tmp_path, "fourq")
    noisy_path = str(home / AUDIO["fourq"][0])
    real = core.check_audio_file

    def check(path, **kw):
        if os.fspath(path) == noisy_path:
            os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length too large\n" * 2)
        return real(path, **kw)

    monkeypatch.setattr(core, "check_audio_file", check)
    damaged: dict = {}
    missing, invalid = loaders.initialize("fourq", data_home=str(home)).validate(verbose=False, decode=True,
                                                                                damaged=damaged)
    assert not missing and not invalid
    assert "libmpg123" not in capfd.readouterr().err
    (track_id, warnings), = damaged.items()
    assert warnings[0]["code"] == "decoder_messages" and "reported 2 problem(s)" in warnings[0]["message"]
