"""`m2e evaluate-harmony`: score the offline chord recogniser and the key estimators on music21's annotated corpus
(20 Bach chorales + 48 Monteverdi madrigals rendered with fluidsynth). See :mod:`m2e_plugin.harmony.evaluation`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from m2e_plugin.cli.options import add_format, add_progress, progress_mode


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-harmony",
        help="score chord recognition and key estimation on music21's RomanText corpus",
        description="Render the scores of music21's 68 RomanText analyses (Bach chorales, Monteverdi madrigals) "
        "with fluidsynth into a cache (resumable, parallel-safe), run the offline chord recogniser and the key "
        "estimators, and print mir_eval chord majmin/mirex/sevenths (duration-weighted over the corpus) and key "
        "weighted scores (reference key = the analysis's first key). Needs music21 and the fluidsynth program.",
    )
    p.add_argument("--rendering", action="append", default=None, metavar="NAME",
                   help="a named rendering (soundfont, instrument, tempo; repeatable): "
                   "'all', 'tuning', 'held-out', 'seen' or one of: fluidr3-piano, timgm-piano, fluidr3-organ, "
                   "timgm-strings, fluidr3mono-guitar, gmbank-brass, musescore-accordion (held out: never tuned on), "
                   "musescore-choir (held out before, scored before); one table row each. "
                   "Overrides --bpm/--soundfont/--program")
    p.add_argument("--pieces", nargs="*", default=None,
                   help="only these analyses (name or prefix, e.g. riemenschneider001 madrigal.3)")
    p.add_argument("--cache", default=None, help="render cache folder (default ~/.cache/m2e/harmony-eval)")
    p.add_argument("--bpm", type=float, default=100.0, help="rendering tempo, quarter notes per minute")
    p.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default: FluidR3, else TimGM6mb)")
    p.add_argument("--program", type=int, default=0, help="GM program of every part (0 = acoustic grand piano)")
    p.add_argument("--jobs", type=int, default=2, help="parallel renders")
    p.add_argument("--vgmidi", default=None, metavar="DIR",
                   help="with --rendering: also score the audio key on VGMIDI pieces (DIR = the dataset's folder, "
                   "e.g. ../shared/data/vgmidi) played by each rendering, against music21's key of the MIDI")
    p.add_argument("--vgmidi-pieces", type=int, default=40, metavar="N",
                   help="how many VGMIDI pieces (the first N by name; first 60 s of each)")
    add_format(p, help="json: the results as JSON on stdout, the table on stderr (default); table: the table only")
    p.add_argument("--verbose", action="store_true", help="per-piece results on stderr")
    add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from m2e_plugin.harmony import evaluation as ev

    try:
        import mir_eval  # noqa: F401
        import music21  # noqa: F401
    except ImportError as exc:
        print(f"m2e evaluate-harmony: {exc.name} is not installed (pip install 'm2e[harmony]')", file=sys.stderr)
        return 2

    quiet = progress_mode(args) == "never"

    def log(message: str) -> None:
        if not quiet:  # progress only: warnings, errors and the table are printed whatever the mode
            print(message, file=sys.stderr, flush=True)

    cache = Path(args.cache) if args.cache else ev.DEFAULT_CACHE
    problem = ("--bpm must be a positive tempo" if not 0 < args.bpm < float("inf") else
               "--jobs must be at least 1" if args.jobs < 1 else
               "--vgmidi-pieces must be at least 1" if args.vgmidi_pieces < 1 else
               f"--cache {cache} is a file, not a folder" if cache.exists() and not cache.is_dir() else None)
    if problem:
        print(f"m2e evaluate-harmony: {problem}", file=sys.stderr)
        return 2
    if args.rendering:
        return _run_renderings(args, cache, log)
    try:
        pieces, errors = ev.prepare_corpus(args.pieces, cache=cache, bpm=args.bpm, soundfont=args.soundfont,
                                           program=args.program, jobs=args.jobs,
                                           progress=log if args.verbose else None)
    except ev.EvaluationError as exc:  # nothing could start (no such piece, no soundfont...)
        print(f"m2e evaluate-harmony: {exc}", file=sys.stderr)
        return 2
    for err in errors:
        print(f"m2e evaluate-harmony: left out: {err}", file=sys.stderr)
    if not pieces:
        print("m2e evaluate-harmony: no piece could be rendered", file=sys.stderr)
        return 1
    scores = ev.evaluate(pieces, progress=log if args.verbose else None)
    table = ev.format_table(scores)
    if args.format == "json":
        print(table, file=sys.stderr)
        out = asdict(scores)
        out["left_out"] = errors
        print(json.dumps(out, indent=1))
    else:
        print(table)
    return 0


def _vgmidi_key(args, rendering, cache, log) -> dict:
    """Mean MIREX weighted score of the audio key on the rendering's VGMIDI pieces."""
    import numpy as np

    from m2e_plugin.harmony.evaluation import audio_key_scores
    from m2e_plugin.harmony.vgmidi_eval import vgmidi_pieces

    log(f"{rendering.name}: VGMIDI key ({args.vgmidi_pieces} pieces)")
    pieces = vgmidi_pieces(Path(args.vgmidi), args.vgmidi_pieces, rendering, cache,
                           progress=log if args.verbose else None)
    scores = audio_key_scores(pieces)
    return {"pieces": len(scores), "key": float(np.mean(scores)) if scores else float("nan")}


def _run_renderings(args, cache, log) -> int:
    """One evaluation per named rendering, one table row each (a rendering whose soundfont is missing is said so)."""
    from dataclasses import asdict

    from m2e_plugin.harmony import evaluation as ev
    from m2e_plugin.harmony import renderings as rd

    try:
        chosen = rd.select(args.rendering)
    except ValueError as exc:
        print(f"m2e evaluate-harmony: {exc}", file=sys.stderr)
        return 2
    if args.vgmidi and not (Path(args.vgmidi) / "labelled" / "midi").is_dir():
        print(f"m2e evaluate-harmony: {args.vgmidi}: no VGMIDI MIDI files (expected labelled/midi/*.mid)",
              file=sys.stderr)
        return 2
    results, left_out, vgmidi = {}, {}, {}
    for r in chosen:
        soundfont = r.soundfont()
        if soundfont is None:
            print(f"m2e evaluate-harmony: {r.name}: soundfont not installed (apt install {r.package}); skipped",
                  file=sys.stderr)
            continue
        log(f"{r.name}: rendering and scoring ({r.description})")
        try:
            pieces, errors = ev.prepare_corpus(args.pieces, cache=cache, bpm=r.bpm, soundfont=soundfont,
                                               program=r.program, jobs=args.jobs,
                                               progress=log if args.verbose else None)
        except ev.EvaluationError as exc:
            print(f"m2e evaluate-harmony: {r.name}: {exc}", file=sys.stderr)
            return 1
        if not pieces:
            print(f"m2e evaluate-harmony: {r.name}: no piece could be rendered", file=sys.stderr)
            return 1
        left_out[r.name] = errors
        results[r.name] = ev.evaluate(pieces, progress=log if args.verbose else None)
        if args.vgmidi:
            vgmidi[r.name] = _vgmidi_key(args, r, cache, log)
    if not results:
        print("m2e evaluate-harmony: no rendering could be evaluated", file=sys.stderr)
        return 1
    for err in sorted({e for errs in left_out.values() for e in errs}):
        print(f"m2e evaluate-harmony: left out: {err}", file=sys.stderr)
    table = rd.format_renderings_table(results, vgmidi or None)
    if args.format == "json":
        print(table, file=sys.stderr)
        print(json.dumps({name: {**asdict(s), "left_out": left_out[name], **({"vgmidi_key": vgmidi[name]} if vgmidi
                                                                              else {})}
                          for name, s in results.items()}, indent=1))
    else:
        print(table)
    return 0
