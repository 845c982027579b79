"""PMEmo (Popular Music with Emotional annotations) loader.

.. admonition:: Dataset Info
    :class: dropdown

    PMEmo2019 (Zhang et al., ICMR 2018) holds 794 chorus clips of popular songs (Billboard, iTunes, UK charts);
    767 carry valence/arousal annotations: song-level means and standard deviations and 2 Hz dynamic annotations
    (from 15.5 s), all on a [0, 1] scale, plus EDA signals, lyrics and comments (not loaded here).

    Layouts read, in this order of preference:

    1. The publisher's release (``PMEmo2019/``)::

           <data_home>/
               chorus/<musicId>.mp3
               metadata.csv                         musicId,fileName,title,artist,album,duration,chorus_start_time,...
               annotations/static_annotations.csv   musicId,Arousal(mean),Valence(mean)          [0, 1]
               annotations/static_annotations_std.csv      musicId,Arousal(std),Valence(std)     [0, 1]
               annotations/dynamic_annotations.csv         musicId,frameTime,Arousal(mean),Valence(mean)
               annotations/dynamic_annotations_std.csv     musicId,frameTime,Arousal(std),Valence(std)

    2. Music2Emo's copy of the labels, in ``meta/`` (the Music2Emo repository's ``dataset/pmemo/meta``) or
       ``music2emo-meta/`` (as in m2e's shared data): ``static_annotations.csv`` with
       ``song_id,valence_mean,valence_std,arousal_mean,arousal_std`` whose **means are already on 1-9** (Music2Emo
       stored ``round(1 + 8x, 1)``) while the **standard deviations are still on [0, 1]**; ``metadata.csv`` and
       ``dynamic_annotations{,_std}.csv`` as in the release. Audio is still looked for in ``chorus/``. To use the
       shared copy, point data_home at the folder that holds ``music2emo-meta/`` (767 annotated tracks).

    Scales: every [0, 1] value is mapped to the 1-9 scale by ``1 + 8x`` (Music2Emo's mapping) and standard
    deviations by ``8x``, so ``valence``/``arousal``/``*_std``/``dynamic`` share DEAM's and EmoMusic's scale.
    The tracks are the annotated songs (767 in the full release); the 27 unannotated clips are not listed.

    Splits: Music2Emo's PMEmo split (536 / 116 / 115) is not shipped with m2e (its id lists were not available to
    this project); ``get_track_splits()`` reads ``meta/split/{train,validation,test}.txt`` (Music2Emo's own layout;
    or ``music2emo-meta/split/``) from data_home when present, else raises NotImplementedError. ``get_random_track_splits`` always works.
"""

from __future__ import annotations

import os

from mirdata import core

from .core import (
    EmotionDataset,
    VATrack,
    join_metadata,
    load_audio,
    make_indexes,
    metadata_property,
    parse_float,
    read_static_va,
)

NAME = "pmemo"
#: Splits ``get_track_splits`` knows, and the one it gives by default.
SPLITS = ("music2emo",)
DEFAULT_SPLIT = "music2emo"

BIBTEX = """@inproceedings{zhang2018pmemo,
    author = {Zhang, Kejun and Zhang, Hui and Li, Simeng and Yang, Changyuan and Sun, Lingyun},
    title = {The PMEmo Dataset for Music Emotion Recognition},
    booktitle = {Proceedings of the 2018 ACM International Conference on Multimedia Retrieval (ICMR)},
    pages = {135--142},
    year = {2018},
    doi = {10.1145/3206025.3206037}
}"""

INDEXES = make_indexes(NAME)

REMOTES = None

DOWNLOAD_INFO = """
    PMEmo2019 is distributed by its authors on request: see https://github.com/HuiZhangDB/PMEmo and
    http://huisblog.cn/PMEmo/ . Unzip PMEmo2019.zip and use the PMEmo2019/ folder as data_home (it holds chorus/,
    annotations/ and metadata.csv).
"""

LICENSE_INFO = (
    "PMEmo: annotations free for research use (repository under the MIT licence); the chorus clips are excerpts of "
    "commercial songs, research use only."
)

PUBLISHER = {
    "static": os.path.join("annotations", "static_annotations.csv"),
    "static_std": os.path.join("annotations", "static_annotations_std.csv"),
    "dynamic": os.path.join("annotations", "dynamic_annotations.csv"),
    "dynamic_std": os.path.join("annotations", "dynamic_annotations_std.csv"),
    "metadata": "metadata.csv",
}
MUSIC2EMO_DIRS = ("meta", "music2emo-meta")


class Track(VATrack):
    """PMEmo track

    Args:
        track_id (str): musicId, e.g. ``"1"``

    Attributes:
        audio_path (str): path of ``chorus/<fileName>`` (``<musicId>.mp3``)
        track_id (str): track id

    Cached Properties:
        valence (float): mean valence, 1-9 (``1 + 8x`` of the published [0, 1] value)
        arousal (float): mean arousal, 1-9
        valence_std (float or None): standard deviation of valence, 1-9 units (``8x``)
        arousal_std (float or None): standard deviation of arousal, 1-9 units
        quadrant (str): Russell quadrant of (valence, arousal) split at 5
        dynamic (VAData or None): 2 Hz valence/arousal (with std when available) from 15.5 s, 1-9
        title (str or None): song title
        artist (str or None): artist
        album (str or None): album
        duration (float or None): clip duration in seconds, as given in metadata.csv

    """

    _download_info = DOWNLOAD_INFO
    _dynamic_scale = "unit"

    title = metadata_property("title", "str or None: song title")

    artist = metadata_property("artist", "str or None: artist")

    album = metadata_property("album", "str or None: album")

    duration = metadata_property("duration", "float or None: clip duration in seconds")


@core.docstring_inherit(core.Dataset)
class Dataset(EmotionDataset):
    """The PMEmo dataset"""

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
    def _layout(self):
        """``(kind, {key: relpath})`` of the label files in use: kind is ``"publisher"`` or ``"music2emo"``."""
        if os.path.isfile(os.path.join(self.data_home, PUBLISHER["static"])):
            files = PUBLISHER
            kind = "publisher"
        else:
            kind, files = None, {}
            for folder in MUSIC2EMO_DIRS:
                if os.path.isfile(os.path.join(self.data_home, folder, "static_annotations.csv")):
                    kind = "music2emo"
                    files = {
                        "static": os.path.join(folder, "static_annotations.csv"),
                        "dynamic": os.path.join(folder, "dynamic_annotations.csv"),
                        "dynamic_std": os.path.join(folder, "dynamic_annotations_std.csv"),
                        "metadata": os.path.join(folder, "metadata.csv"),
                    }
                    break
            if kind is None:
                raise self._missing_labels(
                    [PUBLISHER["static"]] + [os.path.join(d, "static_annotations.csv") for d in MUSIC2EMO_DIRS]
                )
            if os.path.isfile(os.path.join(self.data_home, PUBLISHER["metadata"])):
                files["metadata"] = PUBLISHER["metadata"]
        present = {k: v for k, v in files.items() if os.path.isfile(os.path.join(self.data_home, v))}
        return kind, present

    def _metadata_files(self):
        return {k: v for k, v in self._layout[1].items() if not k.startswith("dynamic")}

    def _shared_track_files(self):
        return {k: v for k, v in self._layout[1].items() if k.startswith("dynamic")}

    def _audio_relpath(self, track_id, meta):
        return os.path.join("chorus", meta.get("file_name") or f"{track_id}.mp3")

    @core.cached_property
    def _metadata(self):
        kind, files = self._layout
        self._check_music2emo_copy(files["static"])
        static = os.path.join(self.data_home, files["static"])
        if kind == "publisher":
            std = files.get("static_std")
            meta = read_static_va(static, scale="unit", std_path=os.path.join(self.data_home, std) if std else None)
        else:
            # Music2Emo rescaled the means to 1-9 but left the standard deviations on [0, 1].
            meta = read_static_va(static, scale="nine_point", std_scale="unit")
        if "metadata" in files:
            self._add_song_metadata(meta, os.path.join(self.data_home, files["metadata"]))
        return meta

    @staticmethod
    def _add_song_metadata(meta, path):
        # Unannotated clips in metadata.csv are not tracks: join_metadata ignores rows of unknown ids.
        join_metadata(meta, path, id_columns=["musicId", "song_id", "id"],
                      fields={"title": ["title"], "artist": ["artist"], "album": ["album"],
                              "file_name": ["fileName", "file_name"], "duration": ["duration"]},
                      convert={"duration": parse_float})


__all__ = ["Dataset", "Track", "load_audio", "BIBTEX", "DOWNLOAD_INFO", "LICENSE_INFO", "INDEXES", "REMOTES"]
