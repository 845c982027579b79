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

import filecmp
import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np


def default_cache_root() -> Path:
    """:func:`m2e_plugin.cache.cache_root`: features live outside the repository."""
    from m2e_plugin.cache import cache_root

    return cache_root()


def lite_extractor():
    """(path -> arrays, description) for the lite model: see :mod:`m2e_plugin.training.lite_features`."""
    from m2e_plugin.training.lite_features import lite_extractor as extractor

    return extractor()


def music2emo_extractor(*, mert: str | None = None, chords: str = "auto", chord_model=None, device: str = "auto",
                        local_files_only: bool | None = None) -> tuple[Callable[[str], dict[str, np.ndarray]], dict]:
    """(path -> arrays, description) for the Music2Emo inputs, computed by the stages inference uses.

    MERT layers 6+7 per 30 s block (the model stops after layer 7), chords per block with BTC or the offline
    recogniser joined across blocks, key from the chords, token ids: exactly what
    :class:`~m2e_plugin.backends.music2emo.Music2EmoBackend` feeds its head, so students train on the inputs
    ``J_all.ckpt`` saw. ``chords`` as in the backend: ``btc`` without weights raises
    :class:`~m2e_plugin.hub.WeightsUnavailableError`, ``auto`` falls back with a warning.
    """
    from m2e_plugin.audio import stream_audio
    from m2e_plugin.backbones import mert as mert_mod
    from m2e_plugin.backends.base import resolve_device
    from m2e_plugin.backends.music2emo import Music2EmoHarmony, check_chords, chords_fallback_warning, join_chords
    from m2e_plugin.hub import ENV_MERT, MERT_REPO, resolve_music2emo_weights

    check_chords(chords, chord_model)
    device = resolve_device(device)
    # MERT and BTC resolved together, as inference does (minus the head): one error lists every missing piece
    # (BTC alone was named before, MERT only once BTC was provided), and $M2E_MERT is honoured as documented.
    weights = resolve_music2emo_weights(mert, None, chord_model, local_files_only=local_files_only,
                                        use_btc=chords != "offline", require_btc=chords == "btc", use_head=False)
    btc = weights.chord_model
    harmony = Music2EmoHarmony(btc, device=device)
    mert_source = mert or os.environ.get(ENV_MERT) or MERT_REPO  # what the user named (the manifest's record)
    encoder = mert_mod.load_mert(weights.mert, device=device, last_layer=max(mert_mod.MUSIC2EMO_LAYERS))
    if chords == "auto" and btc is None:  # once everything loaded: no fallback notice before a failure
        chords_fallback_warning(weights.notes.get("chord_model", "unavailable"))
    mert_sr = int(mert_mod.MERT_SAMPLE_RATE)

    def extract(path: str) -> dict[str, np.ndarray]:
        segments, sequence, offset = [], [], 0.0
        for block in stream_audio(path, mert_sr, block_seconds=mert_mod.SEGMENT_SECONDS):
            segments.append(mert_mod.segment_embedding(encoder, block))
            join_chords(sequence, harmony.chords(block, mert_sr), offset)
            offset += block.size / mert_sr
        root, attr, mode, _ = harmony.encode(sequence, "estimated")
        return {"mert": np.stack(segments).astype(np.float32), "root": root, "attr": attr,
                "mode": np.asarray(mode, dtype=np.int64)}

    # The chord recogniser is part of the version: a cache never mixes BTC and offline chords.
    return extract, {"version": f"music2emo-features-2-{harmony.method}", "sample_rate": mert_sr,
                     "chords_method": harmony.method, "chord_model": str(btc) if btc else None, "mert": str(mert_source)}


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
        # Entries are keyed by track id alone: another dataset's ids ("2" is a DEAM and an EmoMusic id) or another
        # MERT's embeddings were taken as already cached, mixing them silently into the training inputs.
        def same(key, a, b):  # one MERT folder or BTC file named two ways (relative, absolute, a copy) is one
            if a == b or key == "dataset" or not os.path.exists(a):
                return a == b
            return os.path.realpath(a) == os.path.realpath(b) or (
                os.path.isfile(a) and os.path.isfile(b) and filecmp.cmp(a, b, shallow=False))

        # chord_model: BTC weights trained otherwise give other chord tokens under the same method name
        for key in ("dataset", "mert", "chord_model"):
            was, now = old.get("description", {}).get(key), description.get(key)
            if was is not None and now is not None and not same(key, was, now):
                raise ValueError(f"{manifest_path}: cache holds features of {key} {was!r}, not {now!r}; "
                                 "use another --out")
        manifest = old
        manifest["failed"] = {}  # failures are retried
    tracks = list(tracks)[:limit] if limit else list(tracks)
    done = set(manifest["done"])
    from m2e_plugin.progress import Progress, decoder_warning, native_stderr_captured

    mode = {True: "auto", False: "never"}.get(progress, progress)
    # Cached tracks are not work: counted in the bar, they made its rate absurd (26,000 tracks/s) on a resume.
    todo = [(tid, path) for tid, path in tracks if not (tid in done and (root / f"{tid}.npz").is_file())]
    bar = Progress(len(todo), "m2e features", unit="track", mode=mode)
    if len(todo) < len(tracks) and mode != "never":
        bar.write(f"m2e features: {len(tracks) - len(todo)} of {len(tracks)} tracks already cached")
    for track_id, path in todo:
        target = root / f"{track_id}.npz"
        try:
            with native_stderr_captured() as noise:  # libmpg123's lines on a damaged MP3 name no file: one line does
                arrays = extract(str(path))
            note = decoder_warning(str(path), noise)
            if note:
                bar.write(f"m2e features: {track_id}: {note}")
            tmp = root / f".{track_id}.tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, target)  # atomic: a killed run never leaves a half-written entry
            done.add(track_id)
            manifest["done"] = sorted(done)
        except Exception as exc:  # batch work goes on past a bad file
            # an audio error names its file already ("x.mp3: not a readable audio file"); say the path once
            manifest["failed"][track_id] = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
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
