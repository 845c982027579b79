"""The 4Q audio emotion dataset (Panda, Malheiro & Paiva 2018) as `lite` training data.

Reads ``panda_dataset_taffc_annotations.csv`` / ``panda_dataset_taffc_metadata.csv`` and the ``Qn/<Song>.mp3``
layout. When the project's ``fourq`` loader is installed it is used for the file list; otherwise the CSVs are read
directly (same layout). AllMusic mood words are mapped onto the MTG-Jamendo tags they name or paraphrase
(:data:`MOOD_WORDS`), so `lite` predicts a subset of the product's 56-tag space and nothing it was not trained on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QUADRANT_NAMES = ("Q1", "Q2", "Q3", "Q4")

# MTG-Jamendo tag -> AllMusic mood words (lower case) that count as evidence for it. A word maps to a tag only when
# it is the tag itself or a close synonym; tags with too few clips in 4Q (< 25) are left out of `lite`.
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("calm", "peaceful", "serene", "tranquil"),
    "dark": ("dark", "gloomy", "bleak", "ominous", "menacing", "brooding", "somber"),
    "dramatic": ("dramatic", "theatrical", "intense"),
    "dream": ("dreamy", "ethereal", "hypnotic"),
    "energetic": ("energetic", "lively", "exciting", "rousing", "boisterous"),
    "fun": ("fun", "playful", "humorous", "whimsical", "witty"),
    "happy": ("happy", "cheerful", "joyous", "celebratory"),
    "heavy": ("harsh", "fierce", "hostile", "angry", "aggressive"),
    "melancholic": ("melancholy", "wistful", "bittersweet", "lonely", "nostalgic"),
    "meditative": ("meditative", "spiritual", "reverent"),
    "positive": ("positive", "bright", "optimistic", "carefree", "good-natured"),
    "relaxing": ("relaxed", "laid-back", "mellow", "soothing"),
    "romantic": ("romantic", "passionate", "intimate", "tender"),
    "sad": ("sad", "anguished", "distraught", "weary"),
    "sexy": ("sexy", "sensual", "sexual"),
    "soft": ("soft", "gentle", "delicate", "quiet"),
}
LITE_MOOD_TAGS: tuple[str, ...] = tuple(MOOD_WORDS)


@dataclass
class FourQClip:
    """One 4Q clip: id, audio path, quadrant index (0..3), artist and AllMusic mood words."""

    track_id: str
    audio_path: Path
    quadrant: int
    artist: str
    moods: frozenset = field(default_factory=frozenset)


def read_fourq(data_home) -> list[FourQClip]:
    """All clips of a 4Q dataset folder, sorted by id. Raises FileNotFoundError naming what is missing."""
    home = Path(data_home)
    ann = home / "panda_dataset_taffc_annotations.csv"
    meta = home / "panda_dataset_taffc_metadata.csv"
    for p in (ann, meta):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: 4Q annotation file not found (expected the dataset's original layout)")
    with open(meta, newline="", encoding="utf-8") as fh:
        info = {row["Song"]: row for row in csv.DictReader(fh)}
    clips = []
    with open(ann, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            song, quad = row["Song"].strip(), row["Quadrant"].strip()
            if quad not in QUADRANT_NAMES:
                raise ValueError(f"{ann}: song {song} has unknown quadrant {quad!r}")
            m = info.get(song, {})
            words = frozenset(w.strip().lower() for w in m.get("MoodsStrSplit", "").split(";") if w.strip())
            clips.append(FourQClip(song, home / quad / f"{song}.mp3", QUADRANT_NAMES.index(quad),
                                   m.get("Artist", "").strip(), words))
    clips.sort(key=lambda c: c.track_id)
    return clips


def mood_targets(clips: list[FourQClip]) -> np.ndarray:
    """Multi-hot (N, len(LITE_MOOD_TAGS)) float32 targets from the clips' AllMusic words."""
    y = np.zeros((len(clips), len(LITE_MOOD_TAGS)), dtype=np.float32)
    for i, c in enumerate(clips):
        for j, tag in enumerate(LITE_MOOD_TAGS):
            if c.moods.intersection(MOOD_WORDS[tag]):
                y[i, j] = 1.0
    return y


def artist_groups(clips: list[FourQClip]) -> np.ndarray:
    """Integer group id per clip (same artist -> same group), for artist-aware cross-validation."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(c.artist.lower() or c.track_id, len(ids)) for c in clips])
