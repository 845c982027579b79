"""VGMIDI pieces as a second, differently styled key benchmark (video-game music, not chorales and madrigals).

Each piece's MIDI (drums dropped, every part set to a rendering's GM program, the file's own tempo) is rendered with
fluidsynth, and the first ``SECONDS`` seconds' semitone spectra (the chord recogniser's and the previous key
estimator's CQT) and note salience (the transcription network's, which the key estimator reads) are cached under
``<cache>/vgmidi/<rendering>/``. The label is music21's ``analyze('key')`` of the whole MIDI file: an
agreement with a symbolic key-profile analysis, not a human annotation (VGMIDI annotates emotion, not key).
Used by ``benchmarks/tune_harmony.py`` (a second objective for the key's settings), ``benchmarks/bench_harmony.py``
and ``m2e evaluate-harmony --vgmidi DIR``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

SECONDS = 60.0
KEYS_VERSION = 1
SPECTRA_VERSION = 2  # 2: with the note salience


def vgmidi_files(root: Path, count: int) -> list[Path]:
    """The first ``count`` labelled VGMIDI MIDI files (sorted by name) under ``root`` (``.../vgmidi``)."""
    folder = Path(root) / "labelled" / "midi"
    return sorted(folder.glob("*.mid"))[:count] if folder.is_dir() else []


def vgmidi_keys(files: list[Path], cache: Path) -> dict[str, str]:
    """``file name -> "C major"``: music21's key of each MIDI file (cached; files music21 cannot read are left out)."""
    from music21 import converter

    from m2e_plugin.harmony.vocabulary import PITCH_CLASSES

    path = Path(cache) / "vgmidi" / f"keys.v{KEYS_VERSION}.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    missing = [f for f in files if f.name not in known]
    for f in missing:
        try:
            key = converter.parse(str(f)).analyze("key")
            known[f.name] = f"{PITCH_CLASSES[key.tonic.pitchClass]} {key.mode}"
        except Exception:  # music21 raises many types on odd MIDI files: recorded as unusable
            known[f.name] = None
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=0, sort_keys=True))
        os.replace(tmp, path)
    return {f.name: known[f.name] for f in files if known.get(f.name)}


def vgmidi_spectra(midi: Path, rendering, cache: Path) -> dict:
    """``{"chord", "key_cqt", "notes", "duration"}``: the chord and previous key semitone spectra and the note
    salience of the first ``SECONDS`` s of ``midi`` played by ``rendering`` (a
    :class:`~m2e_plugin.harmony.renderings.Rendering`), and that duration; cached."""
    import pretty_midi
    import soundfile as sf

    from m2e_plugin.harmony.chords import chord_spectrum
    from m2e_plugin.harmony.evaluation import RENDER_SR, EvaluationError, render
    from m2e_plugin.harmony.features import CHROMA_HOP, semitone_spectrum
    from m2e_plugin.harmony.transcription import note_salience

    soundfont = rendering.soundfont()
    if soundfont is None:
        raise EvaluationError(f"{rendering.name}: soundfont not installed (apt install {rendering.package})")
    folder = Path(cache) / "vgmidi" / rendering.name
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{Path(midi).stem}.v{SPECTRA_VERSION}.npz"
    if out.exists():
        with np.load(out) as z:
            return {"chord": z["chord"], "key_cqt": z["key_cqt"], "notes": z["notes"],
                    "duration": float(z["duration"])}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        pm = pretty_midi.PrettyMIDI(str(midi))
        pm.instruments = [inst for inst in pm.instruments if not inst.is_drum]
        for inst in pm.instruments:
            inst.program = rendering.program
            # Only the first SECONDS are scored: notes starting later cannot change them (the synthesiser is
            # causal), and leaving them out makes the render several times quicker.
            inst.notes = [n for n in inst.notes if n.start < SECONDS]
        pm.write(str(Path(tmp) / "piece.mid"))
        render(Path(tmp) / "piece.mid", Path(tmp) / "piece.flac", soundfont)
        y, sr = sf.read(str(Path(tmp) / "piece.flac"), dtype="float32")
    assert sr == RENDER_SR
    y = y[: int(SECONDS * sr)]
    spectra = {"chord": chord_spectrum(y), "key_cqt": semitone_spectrum(y, hop=CHROMA_HOP),
               "notes": note_salience(y), "duration": y.size / sr}
    tmp_out = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp_out, **spectra)
    os.replace(tmp_out, out)
    return spectra


def vgmidi_pieces(root: Path, count: int, rendering, cache: Path, progress=None) -> list[dict]:
    """``[{"name", "key", "key_spec", "key_cqt", "chord_spec", "notes", "duration_s"}]`` for the first ``count``
    VGMIDI pieces (``key_spec``: what the audio key estimator reads, :func:`m2e_plugin.harmony.key.key_input`)."""
    files = vgmidi_files(root, count)
    keys = vgmidi_keys(files, cache)
    pieces = []
    for i, f in enumerate(files):
        if f.name not in keys:
            continue
        spectra = vgmidi_spectra(f, rendering, cache)
        pieces.append({"name": f.stem, "key": keys[f.name].split(), "key_spec": spectra["notes"],
                       "key_cqt": spectra["key_cqt"], "chord_spec": spectra["chord"], "notes": spectra["notes"],
                       "duration_s": spectra["duration"]})
        if progress:
            progress(f"[{i + 1}/{len(files)}] {rendering.name} {f.stem}")
    return pieces
