"""EmoMusic ("1000 Songs for Emotional Analysis of Music") loader.

.. admonition:: Dataset Info
    :class: dropdown

    The 1000 Songs database (Soleymani et al., CrowdMM 2013), used in MediaEval 2013 "Emotion in Music" and known in
    the literature as EmoMusic: 744 distinct 45-second clips from freemusicarchive.org (the 1000 released clips
    minus duplicates), with song-level valence/arousal on a 9-point scale and per-time (2 Hz, 15-45 s) annotations
    on [-1, 1].

    Layout read (as distributed)::

        <data_home>/
            clips_45seconds/<song_id>.mp3
            songs_info.csv                           "song_id","file_name","Artist","Song title",...,"Mediaeval 2013 set"
            annotations/static_annotations.csv       song_id,mean_arousal,std_arousal,mean_valence,std_valence   (1-9)
            annotations/valence_cont_average.csv     song_id,sample_15000ms,...,sample_44500ms                   [-1, 1]
            annotations/arousal_cont_average.csv
            annotations/valence_cont_std.csv         (optional)
            annotations/arousal_cont_std.csv         (optional)

    ``songs_info.csv`` pads its quoted fields with TAB characters (``"\\t2.mp3"``); values are stripped. When the
    publisher's label file is absent, Music2Emo's copy (``music2emo-meta/`` or ``meta/``: ``static_annotations.csv``
    with ``valence_mean,...`` columns and ``songs_info.csv``) is used.

    Scales: ``valence``/``arousal``/``*_std`` on 1-9 as published; ``dynamic`` mapped from [-1, 1] by ``5 + 4x``
    (standard deviations by ``4x``).

    Splits: ``get_track_splits()`` returns Music2Emo's split (495 / 124 / 125 ids, shipped with m2e);
    ``get_track_splits("mediaeval2013")`` returns the official MediaEval 2013 sets from ``songs_info.csv``
    (``{"development": 619 ids, "evaluation": 125 ids}``).
"""

from __future__ import annotations

import os
from typing import Optional

from mirdata import core

from .core import (
    DatasetFileError,
    EmotionDataset,
    VATrack,
    join_metadata,
    load_audio,
    make_indexes,
    metadata_property,
    read_static_va,
)

NAME = "emomusic"
#: Splits ``get_track_splits`` knows, and the one it gives by default.
SPLITS = ("music2emo", "mediaeval2013")
DEFAULT_SPLIT = "music2emo"

BIBTEX = """@inproceedings{soleymani20131000,
    author = {Soleymani, Mohammad and Caro, Micheal N. and Schmidt, Erik M. and Sha, Cheng-Ya and Yang, Yi-Hsuan},
    title = {1000 Songs for Emotional Analysis of Music},
    booktitle = {Proceedings of the 2nd ACM International Workshop on Crowdsourcing for Multimedia (CrowdMM)},
    pages = {1--6},
    year = {2013},
    doi = {10.1145/2506364.2506365}
}"""

INDEXES = make_indexes(NAME)

REMOTES = None

DOWNLOAD_INFO = """
    The 1000 Songs database is distributed at https://cvml.unige.ch/databases/emoMusic/ (registration required).
    Unzip clips_45sec_mp3.zip (into clips_45seconds/), annotations.zip (into annotations/) and place songs_info.csv
    in data_home.
"""

LICENSE_INFO = (
    "1000 Songs for Emotional Analysis of Music: annotations for research use (see "
    "https://cvml.unige.ch/databases/emoMusic/); the clips come from freemusicarchive.org under Creative Commons "
    "licences."
)

STATIC_FILE = os.path.join("annotations", "static_annotations.csv")
SONGS_INFO_FILES = ("songs_info.csv", os.path.join("annotations", "songs_info.csv"))
MUSIC2EMO_DIRS = ("music2emo-meta", "meta")
LAST_SONG_ID = 1000  # the 1000 songs are numbered 1 to 1000
DYNAMIC_FILES = {
    "dynamic_valence": os.path.join("annotations", "valence_cont_average.csv"),
    "dynamic_arousal": os.path.join("annotations", "arousal_cont_average.csv"),
    "dynamic_valence_std": os.path.join("annotations", "valence_cont_std.csv"),
    "dynamic_arousal_std": os.path.join("annotations", "arousal_cont_std.csv"),
}


def _min_sec(value: str, path: str, row_id: str, column: str) -> Optional[float]:
    """``"1.33"`` (minutes.seconds, as songs_info.csv writes segment bounds) -> 93.0 seconds."""
    if not value:
        return None
    minutes, _, seconds = value.partition(".")
    try:
        # The file writes two second digits ("0.48", "1.33"); a lone digit is read as tens, as a decimal would be.
        return 60.0 * int(minutes or 0) + float((seconds or "0").ljust(2, "0"))
    except ValueError:
        raise DatasetFileError(path, f"row {row_id!r}, column {column!r}: {value!r} is not minutes.seconds") from None


class Track(VATrack):
    """EmoMusic track

    Args:
        track_id (str): song id, e.g. ``"2"``

    Attributes:
        audio_path (str): path of ``clips_45seconds/<file_name>``
        track_id (str): track id

    Cached Properties:
        valence (float): mean valence, 1-9
        arousal (float): mean arousal, 1-9
        valence_std (float): standard deviation of valence across annotators, 1-9 units
        arousal_std (float): standard deviation of arousal across annotators, 1-9 units
        quadrant (str): Russell quadrant of (valence, arousal) split at 5
        dynamic (VAData or None): 2 Hz valence/arousal from 15 s to 44.5 s, mapped to 1-9
        artist (str or None): artist
        title (str or None): song title
        genre (str or None): genre
        segment_start (float or None): start of the 45 s clip in the full song, seconds
        segment_end (float or None): end of the clip in the full song, seconds
        mediaeval2013_set (str or None): ``"development"`` or ``"evaluation"``

    """

    _download_info = DOWNLOAD_INFO
    _dynamic_scale = "bipolar"

    artist = metadata_property("artist", "str or None: artist")

    title = metadata_property("title", "str or None: song title")

    genre = metadata_property("genre", "str or None: genre")

    segment_start = metadata_property("segment_start", "float or None: clip start in the full song (s)")

    segment_end = metadata_property("segment_end", "float or None: clip end in the full song (s)")

    mediaeval2013_set = metadata_property("mediaeval2013_set", "str or None: MediaEval 2013 set")


@core.docstring_inherit(core.Dataset)
class Dataset(EmotionDataset):
    """The EmoMusic (1000 Songs) dataset"""

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

    @core.cached_property
    def _label_files(self):
        static = self._first_existing([STATIC_FILE] + [os.path.join(d, "static_annotations.csv") for d in MUSIC2EMO_DIRS])
        info = self._first_existing(list(SONGS_INFO_FILES) + [os.path.join(d, "songs_info.csv") for d in MUSIC2EMO_DIRS])
        return static, info

    def _metadata_files(self):
        static, info = self._label_files
        files = {"static": static} if static else {}
        if info:
            files["songs_info"] = info
        return files

    def _shared_track_files(self):
        return {k: v for k, v in DYNAMIC_FILES.items() if os.path.isfile(os.path.join(self.data_home, v))}

    def _audio_relpath(self, track_id, meta):
        return os.path.join("clips_45seconds", meta.get("file_name") or f"{track_id}.mp3")

    @core.cached_property
    def _metadata(self):
        static, info = self._label_files
        if static is None:
            raise self._missing_labels([STATIC_FILE] + [os.path.join(d, "static_annotations.csv") for d in MUSIC2EMO_DIRS])
        self._check_music2emo_copy(static)
        meta = read_static_va(os.path.join(self.data_home, static), scale="nine_point")
        beyond = [tid for tid in meta if not tid.isdigit() or not 1 <= int(tid) <= LAST_SONG_ID]
        if beyond:  # DEAM's copy has the same columns and a split too; its ids run to 2058
            raise DatasetFileError(os.path.join(self.data_home, static),
                                   f"song id {beyond[0]!r} is not an EmoMusic id (1 to {LAST_SONG_ID}); "
                                   f"{len(beyond)} such ids: another dataset's labels?")
        if info:
            self._add_songs_info(meta, os.path.join(self.data_home, info))
        return meta

    @staticmethod
    def _add_songs_info(meta, path):
        join_metadata(meta, path, id_columns=["song_id", "id"],
                      fields={"file_name": ["file_name"], "artist": ["Artist"], "title": ["Song title", "title"],
                              "genre": ["Genre"], "mediaeval2013_set": ["Mediaeval 2013 set"],
                              "segment_start": ["start of the segment (min.sec)"],
                              "segment_end": ["end of the segment (min.sec)"]},
                      convert={"segment_start": _min_sec, "segment_end": _min_sec})

    def _track_splits(self, split):
        """``"music2emo"`` (Music2Emo's train/validation/test lists) or ``"mediaeval2013"`` (the official
        development/evaluation sets of songs_info.csv)."""
        if split == "mediaeval2013":
            out = {"development": [], "evaluation": []}
            for tid in self.track_ids:
                name = self.track(tid).mediaeval2013_set
                if name is None:
                    raise NotImplementedError(
                        f"{NAME}: track {tid!r} has no 'Mediaeval 2013 set' (songs_info.csv missing under {self.data_home})"
                    )
                out.setdefault(name, []).append(tid)
            return out
        return self._music2emo_split()


__all__ = ["Dataset", "Track", "load_audio", "BIBTEX", "DOWNLOAD_INFO", "LICENSE_INFO", "INDEXES", "REMOTES"]
