"""Batch inputs: files, folders, lists of paths and datasets expanded into :class:`Track` units of work."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Sequence

from m2e_plugin.audio import AUDIO_EXTENSIONS, STDIN

# The track id (and output name) of standard input.
STDIN_ID = "stdin"

LIST_EXTENSIONS = (".txt", ".lst", ".list", ".m3u", ".m3u8")


class BatchError(ValueError):
    """The batch cannot start (bad inputs, output folder made with other settings...)."""


@dataclass(frozen=True)
class Track:
    """One unit of work: an id (names the output), the audio path as the user gave it, and for standard input or
    a pipe the temporary copy that is read instead (:func:`spool_streams`)."""

    id: str
    path: str
    copy: str | None = None

    @property
    def audio(self):
        """What decoding reads: the path, or the copy labelled with the path (so messages name ``-``)."""
        if self.copy is None:
            return self.path
        from m2e_plugin.audio import SpooledAudio

        return SpooledAudio(self.copy, "<stdin>" if self.path == STDIN else self.path)


def expand_inputs(inputs: Sequence[str | os.PathLike], *, dataset: str | None = None, data_home: str | None = None,
                  dataset_version: str = "default", extensions: Sequence[str] = AUDIO_EXTENSIONS
                  ) -> tuple[list[Track], int]:
    """Turn CLI-style inputs into tracks.

    Parameters
    ----------
    inputs : sequence of paths
        ``"-"`` (standard input: track id ``stdin``; copy it with :func:`spool_streams` before extracting),
        audio files (taken whatever their extension: a bad one becomes an error line, not a silent skip),
        folders (searched recursively for ``extensions``; hidden entries skipped), or text files of paths
        (``.txt``, ``.lst``, ``.list``, ``.m3u``, ``.m3u8``: one path a line, ``#`` comments, relative paths
        taken from the list's folder).
    dataset, data_home, dataset_version : str, optional
        A dataset from :mod:`m2e_plugin.loaders` (e.g. ``"fourq"``); its track ids name the outputs.

    Returns
    -------
    tracks : list of Track
        In input order, duplicates removed.
    ignored : int
        Files inside input folders skipped for not having an audio extension.

    Raises
    ------
    BatchError
        Two inputs would write the same output (a missing input is a track whose extraction fails).
    """
    exts = tuple(e.lower() for e in extensions)
    tracks: list[Track] = []
    loose: list[Path] = []
    ignored = 0
    for item in inputs:
        if os.fspath(item) == STDIN:
            tracks.append(Track(STDIN_ID, STDIN))
            continue
        p = Path(os.fspath(item)).expanduser()
        if p.is_dir():
            found, skipped = _scan_folder(p, exts)
            ignored += skipped
            tracks += [Track(f.relative_to(p).as_posix(), _resolved(f)) for f in found]
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            loose += _read_list(p)
        else:  # a file, or a missing path: that one track fails with "file not found", the others still run
            loose.append(p)
    if loose:
        absolute = [Path(os.path.abspath(f)) for f in loose]
        base = Path(os.path.commonpath([str(f.parent) for f in absolute]))
        tracks += [Track(f.relative_to(base).as_posix(), str(f)) for f in absolute]
    if dataset:
        tracks += _dataset_tracks(dataset, data_home, dataset_version)
    unique: dict[str, Track] = {}
    for t in tracks:
        _check_id(t.id)
        if t.id in unique:
            if unique[t.id].path == t.path:
                continue  # the same file named twice
            raise BatchError(f"two inputs would write the same output {t.id!r}: {unique[t.id].path} and {t.path} "
                             "(give their common parent folder instead)")
        unique[t.id] = t
    return list(unique.values()), ignored


def spool_streams(tracks: Sequence[Track], stack: contextlib.ExitStack) -> list[Track]:
    """Copy standard input and pipes (FIFOs, ``<(...)``) among ``tracks`` to temporary files, once, in this process.

    Worker processes cannot read this process's standard input or its inherited pipe descriptors, and a pipe can
    be read only once; the copies live until ``stack`` closes. Raises
    :class:`m2e_plugin.audio.AudioError` (naming the input and the cause) when one cannot be read: standard input
    that is a terminal, or empty.
    """
    from m2e_plugin.audio import audio_source

    out = []
    for track in tracks:
        if track.copy is None and (track.path == STDIN or _is_pipe(track.path)):
            track = replace(track, copy=os.fspath(stack.enter_context(audio_source(track.path))))
        out.append(track)
    return out


def _is_pipe(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:  # missing or unreachable: the extraction reports it
        return False


def _scan_folder(folder: Path, exts: tuple[str, ...]) -> tuple[list[Path], int]:
    found, ignored = [], 0
    seen: set[tuple[int, int]] = set()
    # Symlinked sub-folders are followed (os.walk skipped them silently: a catalogue of links to album folders
    # lost those tracks without a word); each real folder is read once, so a link to an ancestor cannot loop.
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            st = None
        if st is not None:
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(exts):
                found.append(Path(root) / name)
            else:
                ignored += 1
    return found, ignored


def _read_list(list_file: Path) -> list[Path]:
    try:
        # utf-8-sig: playlists saved on Windows (.m3u8) often start with a byte-order mark, which made their first
        # line (#EXTM3U, or the first path) a bogus track
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"{list_file}: cannot read the list of paths ({exc})") from None
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        paths.append(p if p.is_absolute() else list_file.parent / p)
    return paths


def _resolved(path: Path) -> str:
    """The file's real path; a symlink loop keeps its own path, so that track alone fails ("too many levels of
    symbolic links") instead of the whole folder scan."""
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):  # RuntimeError: Python < 3.13's loop error
        return os.path.abspath(path)


def _dataset_tracks(name: str, data_home: str | None, version: str) -> list[Track]:
    from m2e_plugin import loaders

    try:
        ds = loaders.initialize(name, data_home=data_home, version=version)
        track_ids = list(ds.track_ids)
    except Exception as exc:  # unknown name, missing index or labels: nothing to extract
        raise BatchError(f"dataset {name!r} (data_home={data_home}): {exc}") from None
    tracks = []
    for tid in track_ids:
        track = ds.track(tid)
        path = getattr(track, "audio_path", None) or os.path.join(data_home or "", f"<no audio for {tid}>")
        tracks.append(Track(str(tid), str(path)))
    if tracks and not any(os.path.exists(t.path) for t in tracks):
        # Labels without audio (the usual first download): one message, not a failure line per track.
        import textwrap

        where = textwrap.dedent(getattr(ds, "_download_info", "") or "").strip()
        raise BatchError(f"dataset {name!r} (data_home={ds.data_home}): none of its {len(tracks)} tracks has its "
                         f"audio on disk (the first would be {tracks[0].path})"
                         + (f".\nWhere to get it:\n{where}" if where else ""))
    return tracks


def _check_id(track_id: str) -> None:
    parts = PurePosixPath(track_id).parts
    if not parts or track_id.startswith("/") or any(p in ("..", ".") for p in parts):
        raise BatchError(f"track id {track_id!r} cannot name an output file")
