"""Helpers for the loader tests (mirdata's pattern): copy a fixture dataset into tmp_path, generate its tiny audio,
and check that a track's every public property is tested."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import numpy as np

RESOURCES = Path(__file__).resolve().parent / "resources" / "mir_datasets"

# Audio files each fixture dataset lists (relative to its data_home). Generated at test time: no committed audio.
AUDIO = {
    "deam": ["MEMD_audio/2.mp3", "MEMD_audio/3.mp3", "MEMD_audio/5.mp3", "MEMD_audio/2001.mp3"],
    "pmemo": ["chorus/1.mp3", "chorus/4.mp3", "chorus/5.mp3"],
    "emomusic": ["clips_45seconds/2.mp3", "clips_45seconds/3.mp3", "clips_45seconds/4.mp3"],
    "mtg_jamendo_moodtheme": [
        "audios/48/948.mp3",
        "audios/50/950.mp3",
        "audios/05/1105.mp3",
        "audios/20/1120.mp3",
        "audios/00/1200.mp3",
    ],
    "fourq": ["Q1/MT0000040632.mp3", "Q2/MT0000133200.mp3", "Q3/MT0000202045.mp3", "Q4/MT0000054705.mp3"],
}

SAMPLE_RATE = 22050


def write_tone(path: Path, seconds: float = 1.0, freq: float = 440.0, sr: int = SAMPLE_RATE) -> None:
    """A short stereo MP3 tone (stereo so the loaders' mono mixdown is exercised)."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([y, 0.5 * y], axis=1).astype(np.float32), sr, format="MP3")


def build_home(tmp_path: Path, name: str, *, fixture: str | None = None, skip=(), corrupt=()) -> Path:
    """Copy ``resources/mir_datasets/<fixture or name>`` to ``tmp_path/<name>`` and write its audio files.

    ``skip``: audio relpaths left out (missing audio); ``corrupt``: relpaths written as non-audio bytes.
    """
    home = tmp_path / name
    shutil.copytree(RESOURCES / (fixture or name), home)
    for i, rel in enumerate(AUDIO.get(name, [])):
        if rel in skip:
            continue
        path = home / rel
        if rel in corrupt:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"this is not an mp3 file" * 10)
            continue
        write_tone(path, freq=220.0 * (i + 1))
    return home


def public_properties(track) -> set:
    """Names of the track class's public properties and cached properties (mirdata's run_track_tests notion)."""
    names = set()
    for cls in type(track).__mro__:
        for key, value in vars(cls).items():
            if key.startswith("_") or isinstance(value, (types.FunctionType, staticmethod, classmethod)):
                continue
            if isinstance(value, property) or type(value).__name__ == "cached_property":
                names.add(key)
    return names


def run_track_tests(track, expected_attributes: dict, expected_property_types: dict) -> None:
    """Check attribute values and property types, and fail on any public property that is not tested."""
    for attr, expected in expected_attributes.items():
        assert hasattr(track, attr), f"{attr} missing"
        value = getattr(track, attr)
        if isinstance(expected, float):
            assert value == expected or np.isclose(value, expected), f"{attr}: {value!r} != {expected!r}"
        else:
            assert value == expected, f"{attr}: {value!r} != {expected!r}"
    for prop, expected_type in expected_property_types.items():
        value = getattr(track, prop)
        assert isinstance(value, expected_type), f"{prop}: {type(value)} is not {expected_type}"
    untested = public_properties(track) - set(expected_attributes) - set(expected_property_types)
    assert not untested, f"untested public properties: {sorted(untested)}"
