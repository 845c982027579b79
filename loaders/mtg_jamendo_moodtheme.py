"""MTG-Jamendo autotagging mood/theme loader: mirdata's loader, made to work offline.

.. admonition:: Dataset Info
    :class: dropdown

    The mood/theme subset of the MTG-Jamendo dataset (Bogdanov et al., ICML 2019 ML4MD workshop): 18,486 full
    tracks from Jamendo (Creative Commons) tagged with 59 mood/theme tags, and five official train/validation/test
    splits that keep 56 tags (``ambiental``, ``horror`` and ``mellow`` are dropped, and with them tracks left
    without tags: split-0 has 9,949 / 3,802 / 4,231 tracks). MediaEval's "Emotion and Theme Recognition" task and
    Music2Emo use split-0.

    This module subclasses ``mirdata.datasets.mtg_jamendo_autotagging_moodtheme`` (its metadata parsing and tags are
    reused, after a check of the files' layout; ``get_track_splits`` also takes mirdata's ``split_number``). mirdata
    ships no index for it and downloads one into its own package; here the index is built from
    ``data/autotagging_moodtheme.tsv`` instead, so nothing is downloaded and nothing is written into site-packages.

    Layout read (the MTG repository's ``data/`` folder plus the audio from its download script)::

        <data_home>/
            data/autotagging_moodtheme.tsv      TRACK_ID  ARTIST_ID  ALBUM_ID  PATH  DURATION  TAGS...   (CRLF)
            data/splits/split-<k>/autotagging_moodtheme-{train,validation,test}.tsv
            audios/<PATH>                        e.g. audios/48/948.mp3 (mirdata's layout); ``audio/<PATH>`` or
                                                 ``<PATH>`` directly under data_home are found too

    Labels: ``moods`` is the list of the track's mood/theme tags without the ``mood/theme---`` prefix (the same as
    ``tags``). Tags of other categories (``genre---rock``, ``instrument---piano``: a TSV of another MTG-Jamendo
    subset) are not moods: they are left out, with one warning naming the file. Tracks carry no valence/arousal.

    Checks at load: every TSV is UTF-8 with the header above, each line has the six fields, a non-empty TRACK_ID and
    a numeric DURATION; anything else is a DatasetFileError naming file and line. Split ids that are not in
    ``autotagging_moodtheme.tsv`` are left out of ``get_track_splits`` with a warning (as for DEAM and EmoMusic).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import List, Tuple

import numpy as np
from mirdata import core
from mirdata.datasets import mtg_jamendo_autotagging_moodtheme as _mirdata_mtg

from .core import EmotionDataset, MissingAudioError, load_audio, make_indexes
from .io import DatasetFileError

NAME = "mtg_jamendo_moodtheme"
#: Splits ``get_track_splits`` knows, and the one it gives by default.
SPLITS = (0, 1, 2, 3, 4)  # the five official splits; Music2Emo and MediaEval use 0
DEFAULT_SPLIT = 0

BIBTEX = _mirdata_mtg.BIBTEX

INDEXES = make_indexes(NAME)

REMOTES = None

DOWNLOAD_INFO = """
    Metadata: clone https://github.com/MTG/mtg-jamendo-dataset (or download its data/ folder) and use the folder
    holding data/ as data_home. Audio (152 GB for mood/theme) comes from the MTG download script:
        python3 scripts/download/download.py --dataset autotagging_moodtheme --type audio <data_home>/audios --unpack --remove
    so that data_home holds audios/00/ ... audios/99/.
"""

LICENSE_INFO = (
    "MTG-Jamendo metadata: Creative Commons Attribution NonCommercial Share Alike 4.0 International; "
    "the audio is under the Creative Commons licence each Jamendo artist chose."
)

METADATA_FILE = os.path.join("data", "autotagging_moodtheme.tsv")
SPLIT_FILE = os.path.join("data", "splits", "split-{k}", "autotagging_moodtheme-{name}.tsv")
TSV_HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
AUDIO_ROOTS = ("audios", "audio", "")
#: The category prefix of this subset's tags; the other MTG-Jamendo subsets use genre---, instrument---.
MOOD_PREFIX = "mood/theme---"


class Track(_mirdata_mtg.Track):
    """MTG-Jamendo mood/theme track (mirdata's Track, with mono audio and ``moods``)

    Args:
        track_id (str): track id, e.g. ``"track_0000948"``

    Attributes:
        audio_path (str): path of the track's mp3
        track_id (str): track id

    Cached Properties:
        artist_id (str): Jamendo artist id
        album_id (str): Jamendo album id
        duration (float): duration in seconds
        tags (list): mood/theme tags (mirdata's property)
        moods (list): the same tags, m2e's common name

    """

    _download_info = DOWNLOAD_INFO

    @property
    def audio(self) -> Tuple[np.ndarray, int]:
        """tuple: (mono float32 np.ndarray, native sample rate int), decoded on each access"""
        if not os.path.exists(self.audio_path):  # a directory there is not "missing": load_audio says what it is
            raise MissingAudioError(self.audio_path, self.track_id, self._dataset_name, self._download_info)
        return load_audio(self.audio_path)

    @core.cached_property
    def tags(self) -> List[str]:
        """list: mood/theme tags without prefix (mirdata's property kept any ``<category>---<tag>``)"""
        values = self._track_metadata.get("TAGS", [])
        return [v[len(MOOD_PREFIX):].strip() for v in values if isinstance(v, str) and v.startswith(MOOD_PREFIX)]

    @core.cached_property
    def moods(self) -> List[str]:
        """list: mood/theme tags without prefix"""
        return list(self.tags)


def _check_tsv(path: str) -> List[Tuple[int, str]]:
    """The MTG layout (UTF-8; header, then TRACK_ID ... PATH DURATION TAG...) or a DatasetFileError naming the line.

    Returns the ``(line, tag)`` of every tag that is not a mood/theme tag.
    """
    columns = ", ".join(TSV_HEADER)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # mirdata's parser would fail naming neither file nor line
        number = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise DatasetFileError(path, f"line {number} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position "
                                     f"{column} of the line); MTG-Jamendo's TSVs are UTF-8") from None
    other_tags = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        fields = line.split("\t")
        if number == 1:
            if not line.strip():
                raise DatasetFileError(path, f"the file is empty; expected a tab-separated header {columns}")
            if fields[: len(TSV_HEADER)] != list(TSV_HEADER):
                raise DatasetFileError(path, f"header {fields} is not MTG-Jamendo's tab-separated {columns}; is "
                                             "data_home the folder that holds the repository's data/?")
            continue
        if not line.strip():
            continue
        if len(fields) < len(TSV_HEADER):
            raise DatasetFileError(path, f"line {number} has {len(fields)} tab-separated fields, expected "
                                         f"{len(TSV_HEADER)} or more ({columns}...)")
        if not fields[0].strip():
            raise DatasetFileError(path, f"line {number}: TRACK_ID is empty")
        try:
            duration = float(fields[4])
        except ValueError:
            duration = math.nan
        if not (math.isfinite(duration) and duration >= 0):  # mirdata's track.duration would raise a bare ValueError
            raise DatasetFileError(path, f"line {number}: DURATION {fields[4]!r} is not a number of seconds")
        other_tags += [(number, tag) for tag in fields[5:] if tag.strip() and not tag.startswith(MOOD_PREFIX)]
    return other_tags


@core.docstring_inherit(core.Dataset)
class Dataset(EmotionDataset, _mirdata_mtg.Dataset):
    """The MTG-Jamendo autotagging mood/theme dataset"""

    split_names = SPLITS
    default_split = DEFAULT_SPLIT

    def __init__(self, data_home=None, version="default"):
        EmotionDataset.__init__(
            self,
            data_home,
            version,
            name=NAME,
            track_class=Track,
            bibtex=BIBTEX,
            indexes=INDEXES,
            remotes=REMOTES,
            download_info=DOWNLOAD_INFO,
            license_info=LICENSE_INFO,
        )

    @core.cached_property
    def _metadata(self):
        expected = [METADATA_FILE] + [
            SPLIT_FILE.format(k=k, name=n) for k in range(5) for n in ("train", "validation", "test")
        ]
        missing = [p for p in expected if not os.path.isfile(os.path.join(self.data_home, p))]
        if missing and os.path.isfile(self.data_home):
            raise FileNotFoundError(f"{NAME}: data_home {self.data_home} is a file, not a folder")
        if missing:
            raise FileNotFoundError(
                f"{NAME}: {len(missing)} metadata file(s) missing under {self.data_home}, first: "
                f"{os.path.join(self.data_home, missing[0])}\n{DOWNLOAD_INFO.strip()}"
            )
        for rel in expected:
            other_tags = _check_tsv(os.path.join(self.data_home, rel))
            if rel == METADATA_FILE and other_tags:  # the tags the tracks read; Track.tags leaves these out
                line, tag = other_tags[0]
                warnings.warn(f"{os.path.join(self.data_home, rel)}: {len(other_tags)} tag(s) are not {MOOD_PREFIX} "
                              f"tags (first: {tag!r} on line {line}); they are ignored")
        # mirdata's parser (full TSV + the 15 split files); it indexes the columns without checking them.
        return _mirdata_mtg.Dataset._metadata.func(self)

    def get_track_splits(self, split=None, split_number=None):
        """Official split ``split`` (0 to 4; None: split-0, Music2Emo's). ``split_number`` is mirdata's name for
        the same argument, so mirdata code runs unchanged."""
        if split_number is not None:
            if split is not None and str(split) != str(split_number):
                raise TypeError(f"split={split!r} and split_number={split_number!r} disagree; give one")
            split = split_number
        return super().get_track_splits(split)

    @core.cached_property
    def _audio_root(self):
        for root in AUDIO_ROOTS:
            if os.path.isdir(os.path.join(self.data_home, root, "00")):
                return root
        return AUDIO_ROOTS[0]

    def _metadata_files(self):
        return {"metadata": METADATA_FILE}

    @core.cached_property
    def _index(self):
        meta = self._metadata
        tracks = {
            tid: {"audio": [os.path.join(self._audio_root, m["PATH"]), None]}
            for tid, m in meta.items()
            if tid != "splits"  # mirdata keeps the split lists in the same dict
        }
        return {"version": INDEXES["default"], "tracks": tracks, "metadata": {"metadata": [METADATA_FILE, None]}}

    def _track_splits(self, split):
        """Official split ``split`` (0 to 4), as mirdata reads it, less ids that are not tracks of this copy."""
        lists = _mirdata_mtg.Dataset.get_track_splits(self, split_number=split)
        return self._split_from_lists(lists, f"official split-{split}")


__all__ = ["Dataset", "Track", "load_audio", "BIBTEX", "DOWNLOAD_INFO", "LICENSE_INFO", "INDEXES", "REMOTES"]
