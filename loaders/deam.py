"""DEAM (MediaEval Database for Emotional Analysis in Music) loader.

.. admonition:: Dataset Info
    :class: dropdown

    DEAM (Aljanaki, Yang & Soleymani, PLOS ONE 2017) gathers the MediaEval 2013-2015 "Emotion in Music" data:
    1,802 songs (ids 2-2058; 45-second excerpts, full songs for ids 2001-2058) with song-level valence/arousal on a
    9-point scale and per-time (2 Hz, from 15 s) valence/arousal on [-1, 1].

    Layout read (as distributed in ``DEAM_Annotations.zip`` + ``DEAM_audio.zip``)::

        <data_home>/
            MEMD_audio/<song_id>.mp3
            annotations/annotations averaged per song/song_level/
                static_annotations_averaged_songs_1_2000.csv      song_id, valence_mean, valence_std, arousal_mean, ...
                static_annotations_averaged_songs_2000_2058.csv   (adds *_max_*/*_min_* columns, ignored)
            annotations/annotations averaged per song/dynamic (per second annotations)/
                valence.csv  arousal.csv                          song_id, sample_15000ms, sample_15500ms, ...
            metadata/metadata_*.csv                               optional: artist, title, genre

    The song-level files are fixed-width (values space-padded); they are read with leading/trailing spaces
    stripped. When they are absent, Music2Emo's copy ``music2emo-meta/static_annotations.csv`` (or
    ``meta/static_annotations.csv``, as in the Music2Emo repository's ``dataset/deam/meta``) is used: same values.

    Scales: ``valence``/``arousal`` and their ``*_std`` are on 1-9 as published. ``dynamic`` is the 2 Hz
    annotation mapped from [-1, 1] to 1-9 by ``5 + 4x`` (assumption: the dynamic scale's ends coincide with the
    static scale's ends; DEAM publishes no std for the averaged dynamic files).

    Splits: ``get_track_splits()`` returns Music2Emo's split (1261 / 271 / 270 ids, shipped with m2e).
"""

from __future__ import annotations

import glob
import os

from mirdata import core

from .core import (
    EmotionDataset,
    VATrack,
    join_metadata,
    load_audio,
    make_indexes,
    metadata_property,
    read_static_va,
)

NAME = "deam"
#: Splits ``get_track_splits`` knows, and the one it gives by default.
SPLITS = ("music2emo",)
DEFAULT_SPLIT = "music2emo"

BIBTEX = """@article{aljanaki2017developing,
    author = {Aljanaki, Anna and Yang, Yi-Hsuan and Soleymani, Mohammad},
    title = {Developing a benchmark for emotional analysis of music},
    journal = {PLOS ONE},
    volume = {12},
    number = {3},
    pages = {e0173392},
    year = {2017},
    doi = {10.1371/journal.pone.0173392}
}"""

INDEXES = make_indexes(NAME)

REMOTES = None

DOWNLOAD_INFO = """
    DEAM is distributed at https://cvml.unige.ch/databases/DEAM/ (also mirrored on Kaggle as "DEAM dataset").
    Download DEAM_Annotations.zip and DEAM_audio.zip and unzip both into data_home, so that it holds
    MEMD_audio/<song_id>.mp3 and annotations/annotations averaged per song/...
"""

LICENSE_INFO = (
    "DEAM: annotations for non-commercial research use (see https://cvml.unige.ch/databases/DEAM/); the audio comes "
    "from freemusicarchive.org, jamendo.com and medleyDB under Creative Commons licences."
)

SONG_LEVEL_DIR = os.path.join("annotations", "annotations averaged per song", "song_level")
STATIC_FILES = (
    os.path.join(SONG_LEVEL_DIR, "static_annotations_averaged_songs_1_2000.csv"),
    os.path.join(SONG_LEVEL_DIR, "static_annotations_averaged_songs_2000_2058.csv"),
)
FALLBACK_STATIC_FILES = (
    os.path.join("music2emo-meta", "static_annotations.csv"),
    os.path.join("meta", "static_annotations.csv"),
)
DYNAMIC_DIR = os.path.join("annotations", "annotations averaged per song", "dynamic (per second annotations)")


class Track(VATrack):
    """DEAM track

    Args:
        track_id (str): song id, e.g. ``"2"``

    Attributes:
        audio_path (str): path of ``MEMD_audio/<song_id>.mp3``
        track_id (str): track id

    Cached Properties:
        valence (float): mean valence, 1-9
        arousal (float): mean arousal, 1-9
        valence_std (float): standard deviation of valence across annotators, 1-9 units
        arousal_std (float): standard deviation of arousal across annotators, 1-9 units
        quadrant (str): Russell quadrant of (valence, arousal) split at 5
        dynamic (VAData or None): 2 Hz valence/arousal from 15 s, mapped to 1-9
        artist (str or None): artist, when the metadata files are present
        title (str or None): song title, when the metadata files are present
        genre (str or None): genre, when the metadata files are present

    """

    _download_info = DOWNLOAD_INFO
    _dynamic_scale = "bipolar"

    artist = metadata_property("artist", "str or None: artist")

    title = metadata_property("title", "str or None: song title")

    genre = metadata_property("genre", "str or None: genre")


@core.docstring_inherit(core.Dataset)
class Dataset(EmotionDataset):
    """The DEAM dataset"""

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

    def _label_files(self):
        present = [rel for rel in STATIC_FILES if os.path.isfile(os.path.join(self.data_home, rel))]
        if present:
            return present
        fallback = self._first_existing(FALLBACK_STATIC_FILES)
        return [fallback] if fallback else []

    def _metadata_files(self):
        return {f"static_{i}": rel for i, rel in enumerate(self._label_files())}

    def _shared_track_files(self):
        files = {}
        for key in ("valence", "arousal"):
            rel = os.path.join(DYNAMIC_DIR, f"{key}.csv")
            if os.path.isfile(os.path.join(self.data_home, rel)):
                files[f"dynamic_{key}"] = rel
        return files

    def _audio_relpath(self, track_id, meta):
        return os.path.join("MEMD_audio", f"{track_id}.mp3")

    @core.cached_property
    def _metadata(self):
        files = self._label_files()
        if not files:
            raise self._missing_labels(list(STATIC_FILES) + list(FALLBACK_STATIC_FILES))
        meta = {}
        for rel in files:
            self._check_music2emo_copy(rel)
            meta.update(read_static_va(os.path.join(self.data_home, rel), scale="nine_point"))
        self._add_song_metadata(meta)
        return meta

    def _add_song_metadata(self, meta):
        """Artist/title/genre from ``metadata/metadata_*.csv`` when present (columns matched by name)."""
        for path in sorted(glob.glob(os.path.join(glob.escape(self.data_home), "metadata", "metadata_*.csv"))):
            join_metadata(meta, path, id_columns=["song_id", "id"], require_id=False,
                          fields={"artist": ["Artist", "artist"], "title": ["Song title", "Track", "title"],
                                  "genre": ["Genre", "genre"]})


__all__ = ["Dataset", "Track", "load_audio", "BIBTEX", "DOWNLOAD_INFO", "LICENSE_INFO", "INDEXES", "REMOTES"]
