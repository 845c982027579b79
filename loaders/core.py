"""Shared machinery for the m2e dataset loaders, built on :mod:`mirdata.core`: the offline index, the Track and
Dataset base classes and the one split API. Annotations (:class:`VAData`, valence/arousal tables) live in
:mod:`m2e_plugin.loaders.annotations` and file reading in :mod:`m2e_plugin.loaders.io` -- mirdata's own
core / annotations / io division; the names the dataset modules use are re-exported here.

mirdata hard-codes where indexes live (inside its installed package, or its repository's ``tests/indexes``) and ships
no index for datasets whose audio cannot be downloaded by script. The emotion datasets here are all of that kind, so
every loader builds its index from the files the publisher distributes (label CSV/TSV files plus the audio layout)
the first time it is asked for, and keeps it in memory. :class:`OfflineIndex` points mirdata's ``index_path`` at a
user cache directory (never site-packages); :meth:`EmotionDataset.save_index` writes a mirdata-format JSON there on
request.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mirdata import core

from m2e_plugin.loaders.annotations import (VA_UNITS, VAData, bipolar_to_nine, load_long_va, load_wide_va,
                                            read_static_va, read_wide_dynamic, unit_to_nine)
from m2e_plugin.loaders.io import (SPLIT_NAMES, DatasetFileError, _read_id_list, check_audio_file, check_nine_point,
                                   file_exists, find_column, join_metadata, load_audio, normalise_id, optional_column,
                                   parse_float, read_csv_dicts, read_csv_lines, read_package_split)

INDEX_VERSION = "1.0"
#: The Music2Emo repository's label copies (``dataset/<name>/meta/``, shared as ``music2emo-meta/``) of DEAM, EmoMusic
#: and PMEmo share one static file layout; what else their folder holds tells whose copy it is.
MUSIC2EMO_COPY_DIRS = ("music2emo-meta", "meta")
MUSIC2EMO_COPY_MARKS = {"songs_info.csv": ("emomusic",), "metadata.csv": ("pmemo",),
                        "dynamic_annotations.csv": ("pmemo",), "split": ("deam", "emomusic")}
#: Marks that only count when the folder holds none of the loading dataset's own: Music2Emo keeps a ``split/`` in
#: PMEmo's copy too, so ``split/`` says "DEAM or EmoMusic" only beside no ``metadata.csv`` / dynamic file.
MUSIC2EMO_WEAK_MARKS = ("split",)


def damage_line(path, lost: list) -> str:
    """The one line that reports a usable track whose decode lost audio (``lost``: its warnings)."""
    return f"{path}: usable, but " + "; ".join(w["message"] for w in lost)


class MissingAudioError(FileNotFoundError):
    """A track's audio file is absent. The message names the path and says where to get the audio."""

    def __init__(self, path, track_id: str, dataset_name: str, download_info: str):
        self.path = str(path)
        self.track_id = track_id
        self.dataset_name = dataset_name
        msg = (
            f"{self.path}: audio of track {track_id!r} of dataset {dataset_name!r} is not on disk.\n"
            f"Where to get it:\n{textwrap.dedent(download_info).strip()}"
        )
        super().__init__(msg)


def metadata_property(name: str, doc: str):
    """A lazily cached track attribute read from the track's metadata row (``None`` when the row lacks it)."""

    def getter(self):
        return self._track_metadata.get(name)

    getter.__name__ = name  # mirdata's cached_property caches under the function's name
    getter.__doc__ = doc
    return core.cached_property(getter)


def user_cache_dir() -> str:
    """Directory for saved indexes: ``indexes`` under the one m2e cache root (:func:`m2e_plugin.cache.cache_root`)."""
    from m2e_plugin.cache import cache_dir

    return str(cache_dir("indexes"))


class OfflineIndex(core.Index):
    """A mirdata Index that is built from the dataset on disk instead of downloaded.

    ``remote`` is None (nothing to download) and ``indexes_dir`` is the user cache directory, so nothing is ever
    looked up in or written to the installed package. ``get_path(data_home)`` gives one file per data_home, since
    an index built from disk describes that copy of the dataset.
    """

    def __init__(self, filename: str):
        super().__init__(filename)
        self.remote = None

    @property
    def indexes_dir(self) -> str:
        """The user cache directory, read at each use so ``M2E_CACHE`` can change at run time."""
        return user_cache_dir()

    @indexes_dir.setter
    def indexes_dir(self, value) -> None:
        # mirdata's Index.__init__ assigns a path inside its package; an offline index never lives there.
        pass

    def get_path(self, data_home: Optional[str] = None) -> str:
        """Path of the saved index for ``data_home`` (inside the user cache directory)."""
        if data_home is None:
            return os.path.join(self.indexes_dir, self.filename)
        digest = hashlib.sha1(os.path.realpath(data_home).encode("utf-8")).hexdigest()[:12]
        stem, ext = os.path.splitext(self.filename)
        return os.path.join(self.indexes_dir, f"{stem}_{digest}{ext}")


def make_indexes(name: str) -> dict:
    """mirdata-style INDEXES dict for a loader whose index is built offline."""
    return {"default": INDEX_VERSION, "test": INDEX_VERSION, INDEX_VERSION: OfflineIndex(f"{name}_index_{INDEX_VERSION}.json")}


class EmotionTrack(core.Track):
    """Base Track: ``audio_path`` attribute, lazily loaded mono ``audio``, clear error when audio is missing.

    Subclasses set ``_download_info`` (the module's DOWNLOAD_INFO).
    """

    _download_info = ""

    def __init__(self, track_id, data_home, dataset_name, index, metadata):
        super().__init__(track_id, data_home, dataset_name, index, metadata)
        self.audio_path = self.get_path("audio")

    @property
    def audio(self) -> Tuple[np.ndarray, int]:
        """tuple: (mono float32 np.ndarray, native sample rate int), decoded on each access (not cached: it is large).

        Returns:
            * np.ndarray - mono audio signal, float32
            * int - native sample rate

        """
        if not os.path.exists(self.audio_path):  # a directory there is not "missing": load_audio says what it is
            raise MissingAudioError(self.audio_path, self.track_id, self._dataset_name, self._download_info)
        return load_audio(self.audio_path)


class VATrack(EmotionTrack):
    """Base Track for datasets with numeric valence/arousal (DEAM, PMEmo, EmoMusic).

    Static labels come from the dataset metadata (already on the 1-9 scale); the dynamic annotation is read lazily
    from the files named in the track's index entry (``dynamic_valence``/``dynamic_arousal`` and optional ``*_std``
    for wide files, ``dynamic``/``dynamic_std`` for long files), scaled per ``_dynamic_scale``.
    """

    _dynamic_scale = "bipolar"

    @core.cached_property
    def valence(self) -> float:
        """float: mean valence, 1-9 scale"""
        return self._track_metadata["valence"]

    @core.cached_property
    def arousal(self) -> float:
        """float: mean arousal, 1-9 scale"""
        return self._track_metadata["arousal"]

    valence_std = metadata_property("valence_std", "float or None: across-annotator standard deviation of valence, 1-9 scale units")

    arousal_std = metadata_property("arousal_std", "float or None: across-annotator standard deviation of arousal, 1-9 scale units")

    @core.cached_property
    def quadrant(self) -> str:
        """str: Russell quadrant of the static (valence, arousal), split at 5 (Q1 +V+A .. Q4 +V-A)"""
        from m2e_plugin.labels import quadrant

        return quadrant(self.valence, self.arousal)

    def _path(self, key: str) -> Optional[str]:
        return self.get_path(key) if key in self._track_paths else None

    @core.cached_property
    def dynamic(self) -> Optional[VAData]:
        """VAData or None: valence/arousal over time (1-9 scale, seconds); None when the files are absent or the
        track is not in them"""
        if "dynamic" in self._track_paths:
            path = self._path("dynamic")
            if not file_exists(path):
                return None
            return load_long_va(path, self._path("dynamic_std"), scale=self._dynamic_scale).get(self.track_id)
        vpath, apath = self._path("dynamic_valence"), self._path("dynamic_arousal")
        if not (file_exists(vpath) and file_exists(apath)):
            return None
        table = load_wide_va(
            vpath, apath, self._path("dynamic_valence_std"), self._path("dynamic_arousal_std"), scale=self._dynamic_scale
        )
        return table.get(self.track_id)


class EmotionDataset(core.Dataset):
    """Base Dataset for loaders whose index is built from the files on disk.

    Subclasses implement ``_metadata`` (``{track_id: {...}}`` parsed from the label files; raise FileNotFoundError
    naming the expected files when absent) and ``_audio_relpath(track_id, meta)``; they may list their label files in
    ``_metadata_files()`` so the index records them.
    """

    def __init__(self, data_home=None, version="default", **kwargs):
        indexes = kwargs.get("indexes") or {}
        if version not in indexes:  # mirdata's own message prints "dict_keys([...])"
            raise ValueError(f"{kwargs.get('name')}: unknown dataset version {version!r}; available: "
                             f"{', '.join(v for v in indexes if v != 'test')}")
        # Explicit base call: a subclass may also inherit a mirdata loader whose __init__ hard-codes its INDEXES.
        core.Dataset.__init__(self, data_home, version, **kwargs)
        self.data_home = os.fspath(self.data_home)
        # mirdata computed index_path with no data_home; one saved index per copy of the dataset.
        self.index_path = self._index_data.get_path(self.data_home)

    # -- index -------------------------------------------------------------------------------------------------------

    def _audio_relpath(self, track_id: str, meta: dict) -> Optional[str]:
        """Audio path of a track relative to data_home; every dataset module overrides it (abstract hook)."""
        raise NotImplementedError(f"{type(self).__name__} must define where its audio files live")

    def _shared_track_files(self) -> Dict[str, str]:
        """``{index key: path relative to data_home}`` of annotation files every track reads (dynamic VA files that
        exist on disk); they go into each track's index entry, as mirdata does for per-track annotations."""
        return {}

    def _metadata_files(self) -> Dict[str, str]:
        """``{key: path relative to data_home}`` of the label files in use (recorded under the index's metadata)."""
        return {}

    @core.cached_property
    def _index(self):
        meta = self._metadata
        shared = {k: [v, None] for k, v in self._shared_track_files().items()}
        tracks = {}
        for track_id, m in meta.items():
            tracks[track_id] = {"audio": [self._audio_relpath(track_id, m), None], **shared}
        return {
            "version": INDEX_VERSION,
            "tracks": tracks,
            "metadata": {k: [v, None] for k, v in self._metadata_files().items()},
        }

    def save_index(self, path: Optional[str] = None) -> str:
        """Write the index (mirdata JSON format, checksums null) and return its path.

        Args:
            path (str or None): where to write; default ``self.index_path`` in the user cache directory

        """
        path = path or self.index_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self._index, fh)
        return path

    def _missing_labels(self, expected: Sequence[str]) -> FileNotFoundError:
        if os.path.isfile(self.data_home):  # not "no label files under it": a folder was meant
            return FileNotFoundError(f"{self.name}: data_home {self.data_home} is a file, not a folder")
        listing = "\n".join(f"  {os.path.join(self.data_home, p)}" for p in expected)
        return FileNotFoundError(
            f"{self.name}: no label files found under {self.data_home}. Expected one of:\n{listing}\n"
            f"Where to get the dataset:\n{textwrap.dedent(self._download_info or '').strip()}"
        )

    def _check_music2emo_copy(self, static_relpath: str) -> None:
        """Raise when the label file in use is in a Music2Emo copy whose folder marks it as another dataset's (a
        data_home pointed at the wrong dataset would otherwise load it silently, split included)."""
        folder = os.path.dirname(os.path.join(self.data_home, static_relpath))
        if os.path.basename(folder) not in MUSIC2EMO_COPY_DIRS:
            return
        present = {m: o for m, o in MUSIC2EMO_COPY_MARKS.items() if os.path.exists(os.path.join(folder, m))}
        own = any(self.name in owners for owners in present.values())
        for mark, owners in present.items():
            if self.name not in owners and not (own and mark in MUSIC2EMO_WEAK_MARKS):
                raise DatasetFileError(folder, f"holds {mark}, which marks the Music2Emo copy of "
                                               f"{' or '.join(o + chr(39) + 's' for o in owners)} labels, not {self.name}'s: point data_home at "
                                               f"the {self.name} folder")

    def _first_existing(self, candidates: Sequence[str]) -> Optional[str]:
        for rel in candidates:
            if file_exists(os.path.join(self.data_home, rel)):
                return rel
        return None

    # -- splits ------------------------------------------------------------------------------------------------------

    #: The splits :meth:`get_track_splits` knows and the one it gives by default; each dataset module declares them
    #: (``SPLITS``, ``DEFAULT_SPLIT``). No splits: the dataset has no official split.
    split_names: tuple = ()
    default_split = None

    def get_track_splits(self, split=None):
        """Get a predetermined split of the track ids -- the same call for every dataset.

        Args:
            split (str, int or None): one of ``split_names``; None: the dataset's ``default_split``

        Returns:
            dict: split name -> list of track ids

        Raises:
            ValueError: an unknown split name
            NotImplementedError: the dataset has no official split, or its id lists are not available

        """
        if not self.split_names:
            raise NotImplementedError(
                f"The {self.name} dataset has no official split. Use get_random_track_splits instead.")
        split = self.default_split if split is None else split
        if split not in self.split_names:  # "0" for split 0, as a command line gives it
            split = {str(n): n for n in self.split_names}.get(str(split), split)
        if split not in self.split_names:
            raise ValueError(f"unknown split {split!r} for {self.name}; available: "
                             f"{', '.join(repr(n) for n in self.split_names)}")
        return self._track_splits(split)

    def _track_splits(self, split) -> Dict[str, List[str]]:
        """The split ``split`` (a checked name); ``"music2emo"`` is common, datasets with others override this."""
        return self._music2emo_split()

    def _split_from_lists(self, lists: Dict[str, List[str]], source: str) -> Dict[str, List[str]]:
        known = set(self.track_ids)
        out = {}
        dropped = 0
        for name in SPLIT_NAMES:
            ids = [normalise_id(i) for i in lists.get(name, [])]
            out[name] = [i for i in ids if i in known]
            dropped += len(ids) - len(out[name])
        if dropped:
            warnings.warn(
                f"{self.name}: {dropped} track ids of the {source} split are not in this copy of the dataset "
                f"({self.data_home}); they were left out",
                stacklevel=3,
            )
        return out

    def _music2emo_split(self) -> Dict[str, List[str]]:
        """Music2Emo's split id lists: package data ``splits/<name>/``, else ``{meta,music2emo-meta}/split/``."""
        lists = read_package_split(self.name)
        source = "package data"
        if lists is None:
            for rel in ("music2emo-meta/split", "meta/split"):
                folder = os.path.join(self.data_home, rel)
                if all(file_exists(os.path.join(folder, f"{n}.txt")) for n in SPLIT_NAMES):
                    lists = {n: _read_id_list(os.path.join(folder, f"{n}.txt")) for n in SPLIT_NAMES}
                    source = folder
                    break
        if lists is None:
            raise NotImplementedError(
                f"{self.name}: Music2Emo's split id lists are not shipped with m2e for this dataset; put "
                f"train.txt/validation.txt/test.txt (one id a line) in {os.path.join(self.data_home, 'meta', 'split')} "
                "or use get_random_track_splits"
            )
        return self._split_from_lists(lists, f"music2emo ({source})")

    def get_random_track_splits(self, splits, seed=42, split_names=None, *, stratify=None):
        """Split the tracks at random into partitions (mirdata's method, optionally stratified).

        Args:
            splits (list of float): fractions summing to 1
            seed (int): seed of the random generator, for reproducibility
            split_names (list or None): keys of the output dictionary (default 0, 1, ...)
            stratify (str or None): a track attribute (e.g. ``"quadrant"``); each of its values is split in the
                given fractions separately, so every partition keeps the dataset's proportions

        Returns:
            dict: partition name -> array of track ids

        """
        if stratify is None:
            return core.Dataset.get_random_track_splits(self, splits, seed=seed, split_names=split_names)
        groups: Dict[object, List[str]] = {}
        for track_id in self.track_ids:
            groups.setdefault(getattr(self.track(track_id), stratify), []).append(track_id)
        names = split_names if split_names else list(range(len(splits)))
        merged: Dict[object, list] = {name: [] for name in names}
        for i, key in enumerate(sorted(groups, key=str)):
            # a different seed per group, derived from the user's, so groups are not shuffled in lockstep
            parts = self._get_partitions(groups[key], splits, seed + i, split_names)
            for name in names:
                merged[name].extend(parts[name].tolist())
        return {name: np.asarray(ids) for name, ids in merged.items()}

    # -- validation --------------------------------------------------------------------------------------------------

    def validate(self, verbose: bool = True, decode: bool = False, damaged: Optional[dict] = None, progress=None):
        """Check every track's audio: present, and readable (header, or a full decode with ``decode=True``).

        Never raises for bad audio; everything is reported.

        Args:
            verbose (bool): print progress and a summary to stderr
            decode (bool): decode each file fully instead of only reading its header (slower, finds truncation)
            damaged (dict, optional): filled with ``{track_id: [warning, ...]}`` for usable tracks whose decode
                lost audio (``decode=True``; see :func:`m2e_plugin.audio.stream_audio`)
            progress (optional): a :class:`m2e_plugin.progress.Progress` advanced once per track, in place of the
                tqdm bar (which ``verbose`` draws), so that a log gets plain progress lines too

        Returns:
            * dict - ``{track_id: [missing path]}``
            * dict - ``{track_id: ["path: cause"]}`` for corrupt or unreadable audio (a directory included)

        """
        from tqdm import tqdm

        missing, invalid = {}, {}
        tracks = tqdm(self.track_ids, disable=not verbose or progress is not None, desc=f"validate {self.name}",
                      file=sys.stderr)
        for track_id in tracks:
            self._validate_track(track_id, decode, missing, invalid, damaged, verbose)
            if progress is not None:
                progress.update(1, failed=track_id in missing or track_id in invalid)
        if verbose:
            n = len(self.track_ids)
            print(
                f"{self.name}: {n} tracks, {n - len(missing) - len(invalid)} with usable audio, "
                f"{len(missing)} missing, {len(invalid)} corrupt",
                file=sys.stderr,
            )
        return missing, invalid

    def _validate_track(self, track_id, decode, missing, invalid, damaged, verbose) -> None:
        from m2e_plugin.progress import native_stderr_captured

        path = self.track(track_id).audio_path
        if not os.path.exists(path):  # a directory in its place is reported by check_audio_file, as corrupt
            missing[track_id] = [path]
            return
        lost: list = []
        with native_stderr_captured() as noise:  # libmpg123's raw lines name no file: reported per track
            cause = check_audio_file(path, decode=decode, warnings=lost)
        if cause is None and noise.lines and not lost:
            lost.append({"code": "decoder_messages", "start": None, "seconds_lost": None,
                         "message": f"the decoder reported {len(noise.lines)} problem(s) (damaged frames are "
                                    f"skipped); first: {noise.lines[0]}"})
        if cause is not None:
            invalid[track_id] = [f"{path}: {cause}"]
        elif lost:
            if damaged is not None:
                damaged[track_id] = lost
            if verbose:
                print(damage_line(path, lost), file=sys.stderr)


__all__ = [
    "VAData", "VA_UNITS", "SPLIT_NAMES", "OfflineIndex", "EmotionTrack", "EmotionDataset", "MissingAudioError",
    "DatasetFileError", "metadata_property", "unit_to_nine", "bipolar_to_nine", "check_audio_file",
    "check_nine_point", "file_exists", "find_column", "join_metadata", "load_audio", "load_long_va", "load_wide_va",
    "normalise_id", "optional_column", "parse_float", "read_csv_dicts", "read_csv_lines", "read_package_split",
    "read_static_va", "read_wide_dynamic",
]
