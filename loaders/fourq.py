"""4Q Audio Emotion Dataset loader.

.. admonition:: Dataset Info
    :class: dropdown

    The 4Q audio emotion dataset (Panda, Malheiro & Paiva, IEEE TAFFC 2018) holds 900 30-second AllMusic clips,
    225 in each quadrant of Russell's circumplex (Q1 +valence +arousal, Q2 -valence +arousal, Q3 -valence -arousal,
    Q4 +valence -arousal). Quadrants were derived from the clips' AllMusic mood tags and checked by listeners.

    Layout read (as distributed)::

        <data_home>/
            Q1/<Song>.mp3  Q2/...  Q3/...  Q4/...
            panda_dataset_taffc_annotations.csv   Song,Quadrant
            panda_dataset_taffc_metadata.csv      Song,Artist,Title,Quadrant,PQuad,...,MoodsStrSplit,...,GenresStr,...

    Track ids are the ``Song`` ids (``MT0000040632``); the audio is ``Q<n>/<Song>.mp3`` with ``<n>`` from the
    annotations file. Any subset of the release works (the shared copy holds 600 clips, 150 per quadrant): the track
    list is the annotations file's rows.

    4Q has **no numeric valence/arousal**: tracks expose ``quadrant``, the booleans ``valence_positive`` /
    ``arousal_positive`` implied by it, and the AllMusic ``moods`` (``MoodsStrSplit``, ``"; "``-separated, compound
    moods such as ``Tense/Anxious`` already split). It has no official split; use ``get_random_track_splits``.
"""

from __future__ import annotations

import os
from typing import List, Optional

from mirdata import core

from m2e_plugin.labels import QUADRANTS

from .core import (
    DatasetFileError,
    EmotionDataset,
    EmotionTrack,
    find_column,
    join_metadata,
    load_audio,
    make_indexes,
    metadata_property,
    read_csv_lines,
)

NAME = "fourq"
#: Splits ``get_track_splits`` knows, and the one it gives by default.
SPLITS = ()  # no official split: get_random_track_splits
DEFAULT_SPLIT = None

BIBTEX = """@article{panda2018novel,
    author = {Panda, Renato and Malheiro, Ricardo and Paiva, Rui Pedro},
    title = {Novel Audio Features for Music Emotion Recognition},
    journal = {IEEE Transactions on Affective Computing},
    volume = {11},
    number = {4},
    pages = {614--626},
    year = {2020},
    doi = {10.1109/TAFFC.2018.2820691}
}"""

INDEXES = make_indexes(NAME)

REMOTES = None

DOWNLOAD_INFO = """
    The 4Q Audio Emotion Dataset is distributed by the MIR group of the University of Coimbra:
    http://mir.dei.uc.pt/downloads.html ("4QAED", research use). Unzip it so that data_home holds the folders
    Q1/ Q2/ Q3/ Q4/ with <Song>.mp3 clips and the files panda_dataset_taffc_annotations.csv and
    panda_dataset_taffc_metadata.csv.
"""

LICENSE_INFO = (
    "4Q Audio Emotion Dataset: free for research and non-commercial use (see the dataset's page at "
    "http://mir.dei.uc.pt/downloads.html); the clips are AllMusic previews whose rights stay with their owners."
)

ANNOTATIONS_FILE = "panda_dataset_taffc_annotations.csv"
METADATA_FILE = "panda_dataset_taffc_metadata.csv"


def _split_list(value: Optional[str], *_context) -> List[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(";") if v.strip()]


class Track(EmotionTrack):
    """4Q track

    Args:
        track_id (str): the ``Song`` id, e.g. ``"MT0000040632"``

    Attributes:
        audio_path (str): path of ``Q<n>/<Song>.mp3``
        track_id (str): track id

    Cached Properties:
        quadrant (str): ``"Q1"``..``"Q4"`` (Russell: Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A)
        valence_positive (bool): True for Q1 and Q4
        arousal_positive (bool): True for Q1 and Q2
        moods (list): AllMusic mood tags (``MoodsStrSplit``); empty when the metadata file is absent
        artist (str or None): artist name
        title (str or None): song title
        genres (list): AllMusic genres (``GenresStr``)

    """

    _download_info = DOWNLOAD_INFO

    @core.cached_property
    def quadrant(self) -> str:
        """str: quadrant label Q1..Q4"""
        return self._track_metadata["quadrant"]

    @core.cached_property
    def valence_positive(self) -> bool:
        """bool: whether the quadrant has positive valence (Q1, Q4)"""
        return self.quadrant in ("Q1", "Q4")

    @core.cached_property
    def arousal_positive(self) -> bool:
        """bool: whether the quadrant has positive arousal (Q1, Q2)"""
        return self.quadrant in ("Q1", "Q2")

    @core.cached_property
    def moods(self) -> List[str]:
        """list: AllMusic mood tags"""
        return list(self._track_metadata.get("moods", []))

    artist = metadata_property("artist", "str or None: artist")

    title = metadata_property("title", "str or None: title")

    @core.cached_property
    def genres(self) -> List[str]:
        """list: AllMusic genres"""
        return list(self._track_metadata.get("genres", []))


@core.docstring_inherit(core.Dataset)
class Dataset(EmotionDataset):
    """The 4Q audio emotion dataset"""

    split_names = SPLITS
    default_split = DEFAULT_SPLIT

    def __init__(self, data_home=None, version="default"):
        super().__init__(
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

    def _metadata_files(self):
        files = {"annotations": ANNOTATIONS_FILE}
        if os.path.isfile(os.path.join(self.data_home, METADATA_FILE)):
            files["metadata"] = METADATA_FILE
        return files

    def _audio_relpath(self, track_id, meta):
        return os.path.join(meta["quadrant"], f"{track_id}.mp3")

    @core.cached_property
    def _metadata(self):
        ann_path = os.path.join(self.data_home, ANNOTATIONS_FILE)
        if not os.path.isfile(ann_path):
            raise self._missing_labels([ANNOTATIONS_FILE])
        rows = read_csv_lines(ann_path)
        if not rows:
            # A header alone (or binary junk read as one "header" line) gave a 0-track dataset that validated clean.
            raise DatasetFileError(ann_path, "no rows under the header (truncated, or not a CSV label file)")
        song_col = find_column(rows[0][1].keys(), ["Song", "song_id", "id"], ann_path, "song id")
        quad_col = find_column(rows[0][1].keys(), ["Quadrant"], ann_path, "quadrant")
        meta = {}
        for line, row in rows:
            song = row[song_col]
            if not song:  # would become a track with id ''
                raise DatasetFileError(ann_path, f"line {line}: the {song_col!r} cell is empty")
            quad = row[quad_col].upper()
            if quad not in QUADRANTS:
                raise DatasetFileError(ann_path, f"row {song!r}: quadrant {row[quad_col]!r} is not one of Q1..Q4")
            if song in meta:
                raise DatasetFileError(ann_path, f"song {song!r} appears twice")
            meta[song] = {"quadrant": quad}

        meta_path = os.path.join(self.data_home, METADATA_FILE)
        if os.path.isfile(meta_path):  # rows for clips not in the annotations file are ignored
            join_metadata(meta, meta_path, id_columns=["Song"],
                          fields={"artist": ["Artist"], "title": ["Title"], "moods": ["MoodsStrSplit", "MoodsStr"],
                                  "genres": ["GenresStr"]},
                          convert={"moods": _split_list, "genres": _split_list})
        return meta


__all__ = ["Dataset", "Track", "load_audio", "BIBTEX", "DOWNLOAD_INFO", "LICENSE_INFO", "INDEXES", "REMOTES"]
