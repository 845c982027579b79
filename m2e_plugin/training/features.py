"""Feature cache: per-track model inputs computed once, stored one file per track, resumable.

Layout under the cache root (``--out``)::

    <root>/manifest.json          model, dataset, feature version, names/shapes, list of done and failed tracks
    <root>/<track_id>.npz         the track's arrays (see below)

``lite``: ``clip`` (D,) descriptors of the whole clip, ``windows`` (W, D) descriptors of 10 s windows every 5 s
(augmentation, and the view the realtime face sees).
``music2emo``: ``mert`` (S, 1536) per-30 s-segment MERT layer 6+7 means, ``root`` / ``attr`` (100,) chord ids,
``mode`` () key mode id, as the reference's cache (reference doc section 4.4).

A track whose ``.npz`` exists is skipped, so an interrupted run resumes where it stopped; a track that fails is
recorded with its error in the manifest and the run goes on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

LITE_FEATURE_VERSION = "lite-features-2"
WINDOW_SECONDS = 10.0
WINDOW_HOP = 5.0


def default_cache_root() -> Path:
    """:func:`m2e_plugin.cache.cache_root`: features live outside the repository."""
    from m2e_plugin.cache import cache_root

    return cache_root()


def lite_track_arrays(audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """The `lite` cache entry of one track: whole-clip descriptors and 10 s / 5 s-hop window descriptors."""
    from m2e_plugin.backbones.lite import clip_features
    from m2e_plugin.predictor import sliding_windows

    clip = clip_features(audio, sr)
    windows = [clip_features(seg, sr) for _, seg in sliding_windows([audio], sr, WINDOW_SECONDS, WINDOW_HOP)]
    return {"clip": clip, "windows": np.stack(windows).astype(np.float32)}


def lite_extractor() -> tuple[Callable[[str], dict[str, np.ndarray]], dict]:
    """(path -> arrays, description) for the lite front end."""
    from m2e_plugin.audio import load_audio
    from m2e_plugin.backbones.lite import SAMPLE_RATE, feature_names

    def extract(path: str) -> dict[str, np.ndarray]:
        audio, sr = load_audio(path, target_sr=SAMPLE_RATE)
        return lite_track_arrays(audio, sr)

    return extract, {"version": LITE_FEATURE_VERSION, "sample_rate": SAMPLE_RATE, "feature_names": feature_names()}


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
                progress: str | bool = "auto", limit: int | None = None) -> dict:
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
    from m2e_plugin.progress import Progress

    mode = {True: "auto", False: "never"}.get(progress, progress)
    bar = Progress(len(tracks), "m2e features", unit="track", mode=mode)
    for track_id, path in tracks:
        target = root / f"{track_id}.npz"
        if track_id in done and target.is_file():
            bar.update(1)
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
            bar.write(f"m2e features: {track_id}: {exc}")
        manifest_path.write_text(json.dumps(manifest, indent=1))
        bar.update(1, failed=track_id in manifest["failed"])
    bar.close()
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
