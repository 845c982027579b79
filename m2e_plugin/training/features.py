"""Feature cache: per-track model inputs computed once, stored one file per track, resumable.

Layout under the cache root (``--out``)::

    <root>/manifest.json          model, dataset, feature version, names/shapes, list of done and failed tracks
    <root>/<track_id>.npz         the track's arrays (see below)

``lite``: musicnn embeddings of the clip's 3 s patches (:mod:`m2e_plugin.training.lite_features`).
``music2emo``: ``mert`` (S, 1536) per-30 s-segment MERT layer 6+7 means, ``root`` / ``attr`` (100,) chord ids,
``mode`` () key mode id, as the reference's cache (reference doc section 4.4).

A track whose ``.npz`` exists is skipped, so an interrupted run resumes where it stopped; a track that fails is
recorded with its error in the manifest and the run goes on.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np


def default_cache_root() -> Path:
    """``$M2E_CACHE`` or ``~/.cache/m2e``: features live outside the repository."""
    return Path(os.environ.get("M2E_CACHE", Path.home() / ".cache" / "m2e"))


def lite_extractor():
    """(path -> arrays, description) for the lite model: see :mod:`m2e_plugin.training.lite_features`."""
    from m2e_plugin.training.lite_features import lite_extractor as extractor

    return extractor()


def music2emo_extractor(*, mert: str | None = None, chord_method: str = "offline", device: str = "auto",
                        ) -> tuple[Callable[[str], dict[str, np.ndarray]], dict]:
    """(path -> arrays, description) for the Music2Emo inputs: MERT 1536-d per 30 s segment + chord/key ids."""
    from m2e_plugin import harmony
    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones import mert as mert_mod
    from m2e_plugin.backends.base import resolve_device

    device = resolve_device(device)
    encoder = mert_mod.load_mert(mert or "m-a-p/MERT-v1-95M", device=device)
    mert_sr = int(mert_mod.MERT_SAMPLE_RATE)

    def extract(path: str) -> dict[str, np.ndarray]:
        audio, sr = load_audio(path, target_sr=mert_sr)
        segments = np.stack(list(mert_mod.segment_embeddings(encoder, mert_mod.split_segments(audio, sr))))
        chords = harmony.recognize_chords(audio, sr, method=chord_method)
        tonic, mode, _ = harmony.key_from_chords(chords)
        root, attr = harmony.encode_music2emo(chords, tonic, mode)
        return {"mert": segments.astype(np.float32), "root": np.asarray(root, dtype=np.int64),
                "attr": np.asarray(attr, dtype=np.int64), "mode": np.asarray(harmony.mode_id(mode), dtype=np.int64)}

    return extract, {"version": "music2emo-features-1", "sample_rate": mert_sr, "chord_method": chord_method,
                     "mert": str(mert or "m-a-p/MERT-v1-95M")}


def build_cache(tracks: Iterable[tuple[str, str]], out: str | os.PathLike,
                extract: Callable[[str], dict[str, np.ndarray]], description: dict, *,
                progress: bool = True, limit: int | None = None) -> dict:
    """Compute and store ``extract(path)`` for each ``(track_id, path)``; skip tracks already cached.

    Returns the manifest (also written to ``<out>/manifest.json`` after every track, so a crash loses at most
    one track). ``description`` must match an existing cache's (a different feature version refuses to mix).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    manifest = {"description": description, "done": [], "failed": {}}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("description", {}).get("version") != description.get("version"):
            raise ValueError(f"{manifest_path}: cache holds {old.get('description', {}).get('version')!r} features, "
                             f"not {description.get('version')!r}; use another --out")
        manifest = old
        manifest["failed"] = {}  # failures are retried
    tracks = list(tracks)[:limit] if limit else list(tracks)
    done = set(manifest["done"])
    start = time.time()
    for i, (track_id, path) in enumerate(tracks, 1):
        target = root / f"{track_id}.npz"
        if track_id in done and target.is_file():
            continue
        try:
            arrays = extract(str(path))
            tmp = root / f".{track_id}.tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, target)  # atomic: a killed run never leaves a half-written entry
            done.add(track_id)
            manifest["done"] = sorted(done)
        except Exception as exc:  # batch work goes on past a bad file
            manifest["failed"][track_id] = f"{path}: {exc}"
            if progress:
                print(f"\nm2e features: {track_id}: {exc}", file=sys.stderr)
        manifest_path.write_text(json.dumps(manifest, indent=1))
        if progress:
            rate = i / max(time.time() - start, 1e-9)
            print(f"\rm2e features: {i}/{len(tracks)} ({rate:.1f} tracks/s, {len(manifest['failed'])} failed)",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def load_cache(out: str | os.PathLike, track_ids: Iterable[str], key: str) -> list[np.ndarray]:
    """Load array ``key`` for each track id from a cache; raises FileNotFoundError naming missing entries."""
    root = Path(out)
    result, missing = [], []
    for tid in track_ids:
        p = root / f"{tid}.npz"
        if not p.is_file():
            missing.append(tid)
            continue
        with np.load(p, allow_pickle=False) as z:
            result.append(z[key])
    if missing:
        raise FileNotFoundError(f"{root}: {len(missing)} tracks not in the feature cache (e.g. {missing[:3]}); "
                                f"run `m2e features` first")
    return result
