"""Evaluation of the chord recogniser and key estimators on music21's annotated corpus.

music21 ships 68 RomanText analyses (20 Bach chorales, 48 Monteverdi madrigals) written against scores in the same
corpus. For each analysis we

1. parse the real score (Bach: ``bach/bwv<BWV>`` named in the analysis header; Monteverdi: the ``.mxl`` beside
   the analysis), write every note of every part to MIDI at a fixed tempo (``bpm`` quarter notes per minute,
   ties merged, repeats not expanded - the analyses do not expand them either) and render it with the
   ``fluidsynth`` program and a General MIDI soundfont;
2. turn the analysis into time-stamped Harte labels (root + quality from the Roman numeral's pitches, the
   inversion as ``/bass``; chords that are no Harte quality, e.g. augmented sixths or ``[no3]`` shells, and bars
   before the analysis starts become ``X`` and are left out of the scores, as mir_eval does) and keys. Roman
   numerals are placed by bar number in the score; an analysis of another edition (transposed, or numbered from
   another bar) is lined up by the transposition/shift under which most of the notes are chord tones. A piece's
   reference key is the analysis's first key (its main key; later local keys are modulations), which is what a
   single-key estimator predicts. An analysis that no alignment lines up with its score (chord tones under
   ``MIN_ALIGNMENT_FIT`` of the notes: BWV 41.6, whose corpus score is the cantata version) is left out, and said so;
3. score with ``mir_eval``: chord ``majmin``, ``mirex`` and ``sevenths`` duration-weighted over the whole corpus, key
   ``weighted_score`` averaged over pieces.

Cached under one root (default ``~/.cache/m2e/harmony-eval``): each analysis parsed once (``scores/``, in quarters,
for every rendering), rendered audio (mono FLAC) in a folder whose name encodes the rendering settings, and the
recognisers' semitone spectra beside each render (:func:`piece_spectra`); files are written to a temporary name and
renamed, so parallel and interrupted runs are safe and a re-run resumes. The named renderings the README reports
live in :mod:`m2e_plugin.harmony.renderings`. music21, mir_eval and fluidsynth are only needed here.

Over 400 lines because the score -> notes -> labels alignment, rendering, caching and scoring are one pipeline whose
steps share the cache layout; the scoring half (from :func:`piece_spectra` on) is the natural place to split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m2e_plugin.cache import cache_dir

DEFAULT_CACHE = cache_dir("harmony-eval")
DEFAULT_BPM = 100.0
RENDER_SR = 22050  # the recognisers' own rate, so nothing is resampled
ANNOTATION_VERSION = 11  # bump when the analysis -> labels conversion changes
RENDER_VERSION = 4
# An analysis whose chord tones cover less than this share of the score's note duration under its best alignment
# describes another version of the music (every corpus piece but one is at >= 0.80; BWV 41.6 is at 0.67: music21's
# score is the cantata movement, with instrumental interludes and fermata bars the analysed chorale lacks), so its
# labels would score the recogniser against chords that are not sounding.
MIN_ALIGNMENT_FIT = 0.75  # bump when the score -> notes -> audio path changes (new cache folder)
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)

# Harte quality of a set of intervals above the root (music21 gives the pitches of each Roman numeral).
_QUALITIES = {
    (0, 4, 7): "maj", (0, 3, 7): "min", (0, 3, 6): "dim", (0, 4, 8): "aug",
    (0, 4, 7, 10): "7", (0, 4, 7, 11): "maj7", (0, 3, 7, 10): "min7", (0, 3, 7, 11): "minmaj7",
    (0, 3, 6, 9): "dim7", (0, 3, 6, 10): "hdim7", (0, 4, 7, 9): "maj6", (0, 3, 7, 9): "min6",
    (0, 5, 7): "sus4", (0, 2, 7): "sus2",
}
# Bass interval -> Harte degree for the inversion suffix.
_DEGREES = {0: "1", 1: "b2", 2: "2", 3: "b3", 4: "3", 5: "4", 6: "b5", 7: "5", 8: "#5", 9: "6", 10: "b7", 11: "7"}


class EvaluationError(RuntimeError):
    """A piece could not be prepared (missing tool, unparsable file, analysis and score that do not line up)."""


@dataclass
class Piece:
    """One annotated piece: its analysis file, the score it refers to and its reference annotations."""

    name: str
    analysis: str
    score: str
    chords: list = field(default_factory=list)  # [(start_s, end_s, harte)]
    key: tuple = ("", "")  # (tonic, mode) of the main key
    duration: float = 0.0
    transpose: int = 0  # semitones applied to the analysis to match the score (another edition)
    shift_quarters: float = 0.0  # time shift applied to the analysis
    fit: float = 0.0  # share of the score's note duration that are chord tones of the aligned analysis


def corpus_analyses() -> list[tuple[str, str]]:
    """``(name, analysis path)`` of every RomanText analysis in music21's corpus that has a score beside it."""
    from music21 import corpus

    out = []
    for path in sorted(str(p) for p in corpus.getCorePaths() if str(p).endswith(".rntxt")):
        p = Path(path)
        if "choraleAnalyses" in p.parts:
            out.append((p.stem, path))  # riemenschneider001 ...
        elif p.with_suffix(".mxl").exists():
            out.append((p.stem, path))  # madrigal.3.1 ...
    return out


def find_soundfont(explicit: str | None = None) -> str:
    """The soundfont to render with: ``explicit``, else the first installed General MIDI one (FluidR3 first)."""
    if explicit:
        if not Path(explicit).is_file():
            raise EvaluationError(f"{explicit}: soundfont not found")
        return explicit
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return candidate
    raise EvaluationError("no General MIDI soundfont found (apt install fluid-soundfont-gm or timgm6mb-soundfont); "
                          "pass --soundfont")


def _score_path(name: str, analysis: str) -> str:
    from music21 import corpus

    if name.startswith("riemenschneider"):
        header = Path(analysis).read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^BWV:\s*([0-9.]+)", header, re.M)
        if not match:
            raise EvaluationError(f"{analysis}: no 'BWV:' line, cannot find the chorale's score")
        bwv = match.group(1)
        found = corpus.getWork(f"bach/bwv{bwv}")
        if not found:
            raise EvaluationError(f"{analysis}: score bach/bwv{bwv} is not in music21's corpus")
        return str(found[0] if isinstance(found, list) else found)
    return str(Path(analysis).with_suffix(".mxl"))


def harte_label(rn) -> str:
    """Harte label of a music21 ``RomanNumeral`` (``"G:maj/3"``), or ``"X"`` when it is no Harte quality."""
    pcs = sorted({p.pitchClass for p in rn.pitches})
    root = rn.root().pitchClass
    intervals = tuple(sorted({(pc - root) % 12 for pc in pcs}))
    quality = _QUALITIES.get(intervals)
    if quality is None:
        return "X"
    from m2e_plugin.harmony.vocabulary import PITCH_CLASSES

    label = f"{PITCH_CLASSES[root]}:{quality}"
    bass = (rn.bass().pitchClass - root) % 12
    return label if bass == 0 else f"{label}/{_DEGREES[bass]}"


def _key_name(key) -> tuple[str, str]:
    from m2e_plugin.harmony.vocabulary import sharp_name

    return sharp_name(key.tonic.name), key.mode


def parse_piece(name: str, analysis: str, bpm: float) -> tuple[Piece, list]:
    """Reference annotations of one analysis (in seconds at ``bpm``) and the score's notes (quarters)."""
    from music21 import converter

    score_path = _score_path(name, analysis)
    try:
        rntext = converter.parse(analysis, format="romantext")
        score = converter.parse(score_path)
    except Exception as exc:  # music21 raises many types for malformed files
        raise EvaluationError(f"{analysis}: cannot parse ({type(exc).__name__}: {exc})") from exc
    sec = 60.0 / bpm
    notes, score_bars, end_q = score_timeline(score)
    # Direct children of the analysis's measures only: "m5var1" variant readings live in Variant objects that
    # recurse() would also visit.
    bars = [m for part in (rntext.parts or [rntext]) for m in part.getElementsByClass("Measure")]
    rns = [rn for m in bars for rn in m.getElementsByClass("RomanNumeral")]
    if not rns:
        raise EvaluationError(f"{analysis}: no Roman numerals")
    # The analysis must describe the same score; Roman numerals are placed by bar number below. An analysis that
    # stops before the end of the score is scored over its span only.
    if rns[-1].measureNumber not in score_bars:
        raise EvaluationError(f"{analysis}: analysis reaches bar {rns[-1].measureNumber} but {score_path} has "
                              f"bars {min(score_bars)}-{max(score_bars)}")
    # Place every Roman numeral by its measure number in the score: music21 puts an analysis's first measure at
    # offset 0 whatever its number (several madrigal analyses start at m5), so analysis offsets alone drift.
    ana_bars = {}
    for m in bars:
        ana_bars.setdefault(int(m.number), float(m.getOffsetInHierarchy(rntext)))
    onsets = []
    for rn in rns:
        q = float(rn.getOffsetInHierarchy(rntext))
        bar = rn.measureNumber
        if bar in score_bars and bar in ana_bars:
            q = score_bars[bar] + (q - ana_bars[bar])
        onsets.append(q)
    # Keep onsets in order (a beat written past a short bar's end must not overlap the next bar's chord), so the
    # segments below stay contiguous.
    onsets = list(np.maximum.accumulate(onsets))
    last_bar = rns[-1].measureNumber
    ana_stop = score_bars.get(last_bar + 1, end_q)
    segments = []  # (start_q, stop_q, RomanNumeral)
    for i, rn in enumerate(rns):
        start = onsets[i]
        stop = min(onsets[i + 1] if i + 1 < len(rns) else ana_stop, end_q)
        if stop > start:
            segments.append((start, stop, rn))
    if not segments:
        raise EvaluationError(f"{analysis}: the analysis does not line up with {score_path}")
    transpose, shift, fit = align_analysis(notes, segments, end_q)
    if fit < MIN_ALIGNMENT_FIT:
        raise EvaluationError(f"{analysis}: the analysis does not line up with {score_path} (chord tones cover "
                              f"{fit:.0%} of the notes under the best alignment, < {MIN_ALIGNMENT_FIT:.0%}): "
                              "another version of the piece")
    chords = []
    for start, stop, rn in segments:
        start, stop = max(0.0, start + shift), min(end_q, stop + shift)
        if stop > start:
            label = harte_label(rn)
            chords.append((start * sec, stop * sec, label if label == "X" else _transpose_label(label, transpose)))
    if chords and chords[0][0] > 0:
        # Bars before the analysis starts are unanalysed (e.g. a two-voice opening), not silent: "X" (not scored).
        chords.insert(0, (0.0, chords[0][0], "X"))
    tonic, mode = _key_name(rns[0].key)
    piece = Piece(name=name, analysis=analysis, score=score_path, chords=chords,
                  key=(_transpose_label(f"{tonic}:maj", transpose).split(":")[0], mode), duration=end_q * sec,
                  transpose=transpose, shift_quarters=shift, fit=fit)
    return piece, notes


def score_timeline(score) -> tuple[list[tuple[float, float, int]], dict[int, float], float]:
    """Notes ``(start_q, end_q, midi)`` of all parts on one bar timeline, bar starts by number, and the end.

    Parts are placed bar by bar, not by their own offsets: in several madrigal files a part's multi-bar rests are
    stored as one over-long bar, so its later bars sit at the wrong offset. A bar lasts what most parts say, at
    most its time signature's length.
    Tied notes are merged into one note.
    """
    lengths: dict[int, list[float]] = {}
    parts = list(score.parts) or [score]
    for part in parts:
        for m in part.getElementsByClass("Measure"):
            length = float(m.duration.quarterLength)
            try:  # an over-long bar (stored multi-bar rest) is cut to its time signature's length
                length = min(length, float(m.barDuration.quarterLength))
            except Exception:  # no time signature in context: keep the bar's own length
                pass
            lengths.setdefault(int(m.number), []).append(length)
    bar_starts, bar_lengths, t = {}, {}, 0.0
    for number in sorted(lengths):
        values, counts = np.unique(np.round(lengths[number], 3), return_counts=True)
        bar_starts[number] = t
        bar_lengths[number] = float(values[np.argmax(counts)])
        t += bar_lengths[number]
    end_q = t
    notes: list[list] = []
    for part in parts:
        open_ties: dict[int, int] = {}  # midi pitch -> index in notes of the note a tie continues
        seen = set()
        for m in part.getElementsByClass("Measure"):
            number = int(m.number)
            if number in seen:
                continue  # a repeated bar number (rare): keep the first
            seen.add(number)
            bar_len = bar_lengths[number]
            for n in m.flatten().notes:
                off = float(n.offset)
                dur = float(n.quarterLength)
                if dur <= 0 or off >= bar_len:
                    continue  # grace notes; content past the bar's length in a malformed bar
                start = bar_starts[number] + off
                stop = bar_starts[number] + min(off + dur, bar_len)
                tie = n.tie.type if n.tie is not None else None
                for p in n.pitches:
                    midi = int(p.midi)
                    if tie in ("stop", "continue") and midi in open_ties:
                        notes[open_ties[midi]][1] = stop
                    else:
                        notes.append([start, stop, midi])
                        open_ties[midi] = len(notes) - 1
                    if tie in (None, "stop"):
                        open_ties.pop(midi, None)
    return [tuple(x) for x in notes], bar_starts, end_q


def _transpose_label(label: str, semitones: int) -> str:
    from m2e_plugin.harmony.vocabulary import PITCH_CLASSES, pitch_class

    if semitones == 0 or label in ("N", "X"):
        return label
    root, rest = label.split(":", 1)
    return f"{PITCH_CLASSES[(pitch_class(root) + semitones) % 12]}:{rest}"


def align_analysis(notes, segments, end_q: float, grid: float = 0.25) -> tuple[int, float, float]:
    """Transposition (semitones), time shift (quarters) and fit that best line the analysis up with the score.

    Some corpus scores are another edition than the one analysed (e.g. BWV 145.5 is a whole tone higher than its
    analysis) or count the upbeat differently. We measure how much of the notes' duration are chord tones of the
    sounding Roman numeral for every transposition and shifts up to two 4/4 bars, and keep the identity unless another
    alignment is clearly (15 %) better. The fit is the share of the notes' duration that are chord tones.
    """
    n = int(np.ceil(end_q / grid)) + 1
    roll = np.zeros((n, 12))
    for start, stop, midi in notes:
        a, b = int(round(start / grid)), int(round(stop / grid))
        roll[a:max(b, a + 1), midi % 12] += 1.0
    notes = roll
    tones = np.zeros((n, 12))
    for start, stop, rn in segments:
        a, b = int(round(start / grid)), int(round(stop / grid))
        for p in rn.pitches:
            tones[a:b, p.pitchClass] = 1.0
    max_shift = int(round(8.0 / grid))

    def fit(tr: int, sh: int) -> float:
        shifted = np.roll(tones, tr, axis=1)
        if sh >= 0:
            return float((notes[sh:] * shifted[: n - sh]).sum())
        return float((notes[: n + sh] * shifted[-sh:]).sum())

    total = max(float(notes[: int(round(segments[-1][1] / grid))].sum()), 1e-9)
    base = fit(0, 0)
    best = max(((fit(tr, sh), tr, sh) for tr in range(12) for sh in range(-max_shift, max_shift + 1)),
               key=lambda x: x[0])
    if best[0] > 1.15 * base:
        return (best[1] + 6) % 12 - 6, best[2] * grid, best[0] / total
    return 0, 0.0, base / total


def write_midi(notes, path: Path, bpm: float, program: int) -> None:
    """Notes ``(start_q, end_q, midi)`` (see :func:`score_timeline`) as a MIDI file at a constant tempo."""
    import pretty_midi

    sec = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=program, name="score")
    for start, stop, midi in notes:
        inst.notes.append(pretty_midi.Note(velocity=80, pitch=midi, start=start * sec, end=stop * sec))
    pm.instruments.append(inst)
    pm.write(str(path))


def render(midi: Path, out: Path, soundfont: str, sr: int = RENDER_SR) -> None:
    """Render a MIDI file with the fluidsynth program to a mono FLAC (a quarter of the stereo WAV's size).

    Atomic: written under temporary names and renamed, so parallel runs never read a half-written file.
    """
    import soundfile as sf

    exe = shutil.which("fluidsynth")
    if exe is None:
        raise EvaluationError("the 'fluidsynth' program is not installed (apt install fluidsynth)")
    tmp_wav = out.with_name(f".{out.name}.{os.getpid()}.tmp.wav")
    tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp.flac")
    # Dynamic sample loading: only the samples the piece plays are loaded (and, for .sf3, decompressed), which
    # makes a compressed soundfont as quick to render from as an .sf2; the audio is the same.
    cmd = [exe, "-ni", "-q", "-g", "0.6", "-r", str(sr), "-o", "synth.dynamic-sample-loading=1", "-T", "wav",
           "-F", str(tmp_wav), soundfont, str(midi)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not tmp_wav.exists():
            raise EvaluationError(f"{midi}: fluidsynth failed ({proc.stderr.strip()[-300:]})")
        y, file_sr = sf.read(str(tmp_wav), dtype="float32", always_2d=True)
        sf.write(str(tmp_out), y.mean(axis=1), file_sr, format="FLAC", subtype="PCM_16")
        os.replace(tmp_out, out)
    finally:
        tmp_wav.unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)


def _settings_tag(bpm: float, soundfont: str, program: int) -> str:
    raw = f"{bpm}|{Path(soundfont).name}|{program}|{RENDER_SR}|r{RENDER_VERSION}"
    return f"bpm{bpm:g}-p{program}-{Path(soundfont).stem}-{hashlib.sha1(raw.encode()).hexdigest()[:6]}"


def parsed_piece(name: str, analysis: str, cache: Path) -> dict:
    """Annotations (at 60 bpm: one quarter = 1 s) and notes of one analysis, parsed once per cache root.

    Parsing the score and the analysis with music21 costs seconds per piece, more than rendering it, and does not
    depend on the rendering; every rendering scales these by its tempo. A piece that cannot be used is cached as
    ``{"error": message}`` too, so it is not parsed again.
    """
    folder = Path(cache) / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / f"{name}.ann{ANNOTATION_VERSION}.json"
    if meta.exists():
        return json.loads(meta.read_text())
    try:
        piece, notes = parse_piece(name, analysis, 60.0)
        info = {"name": name, "analysis": analysis, "score": piece.score, "key": list(piece.key),
                "duration": piece.duration, "transpose": piece.transpose, "shift_quarters": piece.shift_quarters,
                "fit": piece.fit, "chords": [list(c) for c in piece.chords], "notes": [list(n) for n in notes]}
    except EvaluationError as exc:
        info = {"name": name, "error": str(exc)}
    tmp_meta = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(info))
    os.replace(tmp_meta, meta)
    return info


def prepare_piece(name: str, analysis: str, cache: Path, bpm: float, soundfont: str, program: int) -> dict:
    """Render one piece (unless cached) and return its annotation dict in seconds at ``bpm``."""
    parsed = parsed_piece(name, analysis, cache)
    if "error" in parsed:
        raise EvaluationError(parsed["error"])
    folder = Path(cache) / _settings_tag(bpm, soundfont, program)
    folder.mkdir(parents=True, exist_ok=True)
    audio = folder / f"{name}.flac"
    if not audio.exists():
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            midi = Path(tmp) / f"{name}.mid"
            write_midi(parsed["notes"], midi, bpm, program)
            render(midi, audio, soundfont)
    sec = 60.0 / bpm
    info = {k: v for k, v in parsed.items() if k != "notes"}
    info.update(duration=parsed["duration"] * sec, chords=[[s * sec, e * sec, lab] for s, e, lab in parsed["chords"]],
                audio=str(audio), rendering=folder.name)
    return info


def _prepare_job(args):
    try:
        return prepare_piece(*args), None
    except EvaluationError as exc:
        return None, str(exc)


def prepare_corpus(names: list[str] | None = None, *, cache: Path = DEFAULT_CACHE, bpm: float = DEFAULT_BPM,
                   soundfont: str | None = None, program: int = 0, jobs: int = 2,
                   progress=None) -> tuple[list[dict], list[str]]:
    """Render (or reuse) the corpus; returns the pieces' annotation dicts and the errors of pieces left out."""
    sf = find_soundfont(soundfont)
    todo = corpus_analyses()
    if names:
        wanted = set(names)
        todo = [(n, a) for n, a in todo if n in wanted or any(n.startswith(w) for w in wanted)]
        if not todo:
            raise EvaluationError(f"no corpus analysis matches {sorted(wanted)}")
    jobs_args = [(n, a, Path(cache), float(bpm), sf, int(program)) for n, a in todo]
    pieces, errors = [], []
    if jobs <= 1 or len(jobs_args) == 1:
        results = map(_prepare_job, jobs_args)
    else:
        pool = ProcessPoolExecutor(max_workers=jobs)
        results = pool.map(_prepare_job, jobs_args)
    for i, (info, err) in enumerate(results):
        if info is not None:
            pieces.append(info)
        else:
            errors.append(err)
        if progress:
            progress(f"[{i + 1}/{len(jobs_args)}] {jobs_args[i][0]}" + (f": {err}" if err else ""))
    if jobs > 1 and len(jobs_args) > 1:
        pool.shutdown()
    return pieces, errors


def key_weighted_score(reference, estimate) -> float:
    """MIREX weighted score (mir_eval) of an estimated key ``(tonic, mode, ...)`` against ``reference``
    ``(tonic, mode)``: 1 same key, 0.5 fifth, 0.3 relative, 0.2 parallel, else 0; an estimate without a key scores
    0 (mir_eval cannot read "no key")."""
    import mir_eval

    if not estimate[0]:
        return 0.0
    return float(mir_eval.key.weighted_score(f"{reference[0]} {reference[1]}", f"{estimate[0]} {estimate[1]}"))


def audio_key_scores(pieces: list[dict], settings=None, hop: int | None = None) -> list[float]:
    """:func:`key_weighted_score` of the audio key estimator on each piece (``{"key": (tonic, mode), "key_spec":
    the estimator's input}``: corpus or VGMIDI pieces), with ``settings`` (default: the shipped ones) on frames
    ``hop`` samples apart (default: the key input's)."""
    from m2e_plugin.harmony.key import KEY_HOP, KEY_SETTINGS, key_from_spectrum

    return [key_weighted_score(p["key"], key_from_spectrum(p["key_spec"], settings or KEY_SETTINGS, hop or KEY_HOP))
            for p in pieces]


def piece_spectra(info: dict) -> dict:
    """``{"chord", "key_cqt", "notes", "duration"}`` of a rendered piece: the chord recogniser's semitone spectrum,
    the previous key estimator's (CQT, hop 2048), the transcription network's note salience (which the chord
    recogniser and the key estimator read) and its duration (s).

    They are what the recognisers compute first from audio and the costly part; cached beside the audio (float32,
    so decoding from the cache gives exactly what decoding the audio gives), so trying other decoder or front-end
    settings (``benchmarks/tune_harmony.py``) does not recompute them.
    """
    import soundfile as sf

    from m2e_plugin.harmony.chords import _FILTER_SCALE, _HOP, chord_spectrum
    from m2e_plugin.harmony.features import CHROMA_HOP, prepare, semitone_spectrum

    audio = Path(info["audio"])
    path = audio.with_name(f"{audio.stem}.spectra-h{_HOP}-f{_FILTER_SCALE:g}-k{CHROMA_HOP}.npz")
    y = None
    if path.exists():
        with np.load(path) as z:
            chord, key, duration = z["chord"], z["key"], float(z["duration"])
    else:
        y, sr = sf.read(str(audio), dtype="float32", always_2d=True)
        y = prepare(y.mean(axis=1), sr, source=str(audio))
        chord, key = chord_spectrum(y), semitone_spectrum(y, hop=CHROMA_HOP)
        duration = y.size / RENDER_SR
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, chord=chord, key=key, duration=duration)
        os.replace(tmp, path)
    return {"chord": chord, "key_cqt": key, "notes": piece_notes(info, y), "duration": duration}


NOTES_TAG = "notes-nmp1"  # bump when the transcription front end's output changes


def piece_notes(info: dict, prepared: np.ndarray | None = None) -> np.ndarray:
    """The transcription network's note salience of a rendered piece
    (:func:`~m2e_plugin.harmony.transcription.note_salience`), cached beside the audio; ``prepared``: the piece's
    audio already decoded and prepared (22.05 kHz mono), so it is not decoded twice."""
    import soundfile as sf

    from m2e_plugin.harmony.features import prepare
    from m2e_plugin.harmony.transcription import note_salience

    audio = Path(info["audio"])
    path = audio.with_name(f"{audio.stem}.{NOTES_TAG}.npz")
    if path.exists():
        with np.load(path) as z:
            return z["notes"]
    if prepared is None:
        y, sr = sf.read(str(audio), dtype="float32", always_2d=True)
        prepared = prepare(y.mean(axis=1), sr, source=str(audio))
    notes = note_salience(prepared)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, notes=notes)
    os.replace(tmp, path)
    return notes


@dataclass
class Scores:
    """Corpus-level results."""

    pieces: int
    seconds: float
    chord: dict  # method -> {"majmin": x, "mirex": y, "sevenths": z}
    key: dict  # method -> weighted score
    per_piece: list


def chord_totals(ref: list, est: list, metrics=("majmin", "mirex", "sevenths")) -> dict:
    """mir_eval chord ``metrics``: ``metric -> (correct seconds, scored seconds)`` of one piece."""
    import mir_eval

    ref_iv = np.array([[s, e] for s, e, _ in ref])
    est_iv = np.array([[s, e] for s, e, _ in est])
    est_iv, est_lab = mir_eval.util.adjust_intervals(est_iv, [lab for *_, lab in est], ref_iv.min(), ref_iv.max(),
                                                     mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    iv, r_lab, e_lab = mir_eval.util.merge_labeled_intervals(ref_iv, [lab for *_, lab in ref], est_iv, est_lab)
    dur = mir_eval.util.intervals_to_durations(iv)
    out = {}
    for metric in metrics:
        comp = getattr(mir_eval.chord, metric)(r_lab, e_lab)
        valid = comp >= 0
        out[metric] = (float((comp[valid] * dur[valid]).sum()), float(dur[valid].sum()))
    return out


def _accumulate(totals: dict, piece: dict) -> dict:
    """Add one piece's ``{metric: (correct, scored)}`` to the running ``totals``; returns the piece's."""
    for metric, (correct, scored) in piece.items():
        totals[metric][0] += correct
        totals[metric][1] += scored
    return piece


def evaluate(pieces: list[dict], *, progress=None, chord_front=None, key_settings=None) -> Scores:
    """Run the offline recogniser and both key estimators on rendered pieces and score them with mir_eval; the
    previous release's CQT-only recogniser and audio key estimator too, for comparison.

    ``chord_front`` (a :class:`~m2e_plugin.harmony.features.FrontEnd`) and ``key_settings`` (a
    :class:`~m2e_plugin.harmony.key.KeySettings`) replace the shipped settings (cross-validation); the recognisers
    run from :func:`piece_spectra`, exactly as from the audio.
    """
    from m2e_plugin.harmony.chords import CHORD_FRONT_END, PREVIOUS_SHARPNESS, decode_spectrum
    from m2e_plugin.harmony.features import CHROMA_HOP
    from m2e_plugin.harmony.key import KEY_SETTINGS, PREVIOUS_KEY_SETTINGS, key_from_chords, key_from_spectrum

    totals = {"majmin": [0.0, 0.0], "mirex": [0.0, 0.0], "sevenths": [0.0, 0.0]}
    previous_totals = {"majmin": [0.0, 0.0], "mirex": [0.0, 0.0], "sevenths": [0.0, 0.0]}
    key_scores = {"audio": [], "chords": [], "reference chords (oracle)": [], "audio, previous release": []}
    audio_seconds = 0.0
    per_piece = []
    for info in pieces:
        spectra = piece_spectra(info)
        duration = spectra["duration"]
        audio_seconds += duration
        est = decode_spectrum(spectra["chord"], duration, front=chord_front or CHORD_FRONT_END, notes=spectra["notes"])
        ref = [tuple(c) for c in info["chords"]]
        row = {"name": info["name"], "key": " ".join(info["key"])}
        for metric, (correct, scored) in _accumulate(totals, chord_totals(ref, est)).items():
            row[metric] = correct / max(scored, 1e-9)
        previous = decode_spectrum(spectra["chord"], duration, front=chord_front or CHORD_FRONT_END,
                                   sharpness=PREVIOUS_SHARPNESS)
        _accumulate(previous_totals, chord_totals(ref, previous))
        k_audio = key_from_spectrum(spectra["notes"], key_settings or KEY_SETTINGS)
        k_chords = key_from_chords(est)
        k_oracle = key_from_chords([c for c in ref if c[2] != "X"])
        k_previous = key_from_spectrum(spectra["key_cqt"], PREVIOUS_KEY_SETTINGS, CHROMA_HOP)
        for name, k in (("audio", k_audio), ("chords", k_chords), ("reference chords (oracle)", k_oracle),
                        ("audio, previous release", k_previous)):
            key_scores[name].append(key_weighted_score(info["key"], k))
        row.update(key_audio=f"{k_audio[0]} {k_audio[1]}", key_chords=f"{k_chords[0]} {k_chords[1]}")
        per_piece.append(row)
        if progress:
            progress(f"{info['name']}: majmin {row['majmin']:.3f} mirex {row['mirex']:.3f} ref key {row['key']}, "
                     f"audio {row['key_audio']}, chords {row['key_chords']}")
    chord = {name: {m: (v[0] / v[1] if v[1] else float("nan")) for m, v in t.items()}
             for name, t in (("offline", totals), ("offline, previous release", previous_totals))}
    key = {k: float(np.mean(v)) if v else float("nan") for k, v in key_scores.items()}
    return Scores(pieces=len(pieces), seconds=audio_seconds, chord=chord, key=key, per_piece=per_piece)


def format_table(scores: Scores) -> str:
    """The results as a Markdown table."""
    lines = [f"{scores.pieces} pieces, {scores.seconds / 60:.1f} min of audio",
             "",
             "| method | chord majmin | chord mirex | chord sevenths | key weighted score |",
             "|---|---|---|---|---|"]
    for method, vals in scores.chord.items():
        lines.append(f"| {method} chord recogniser | {vals['majmin']:.3f} | {vals['mirex']:.3f} | "
                     f"{vals['sevenths']:.3f} | |")
    lines.append(f"| key from audio (`estimate_key`) | | | | {scores.key['audio']:.3f} |")
    lines.append(f"| key from recognised chords (`key_from_chords`) | | | | {scores.key['chords']:.3f} |")
    lines.append(f"| key from the reference chords (oracle, for scale) | | | | "
                 f"{scores.key['reference chords (oracle)']:.3f} |")
    lines.append(f"| key from audio, previous release (CQT) | | | | {scores.key['audio, previous release']:.3f} |")
    return "\n".join(lines)
