"""`m2e predict FILE...`: JSON Lines on stdout (one object per input), or a table; optional timeline plot."""

from __future__ import annotations

import argparse
import json
import sys

from m2e_plugin.cli.options import (add_device, add_format, add_model_files, add_progress, model_file_options,
                                    progress_mode, window_hop_problem)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict valence/arousal and moods for audio files",
        description="Predict valence/arousal (1-9) and mood tags. One JSON object per input on stdout; "
        "a file that fails gives an error object and exit status 1, the others still succeed.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files (wav, flac, ogg, mp3, m4a, ...); - reads standard input")
    p.add_argument("--demo", action="store_true",
                   help="predict on a built-in 20 s synthetic clip (a smoke run for a fresh install)")
    p.add_argument("--model", default="lite",
                   help="lite (default, offline), music2emo, or a plugin's model (see `m2e plugins --models`)")
    add_device(p)
    p.add_argument("--threshold", type=float, default=0.5, help="mood probability threshold (default 0.5)")
    p.add_argument("--timeline", action="store_true", help="add per-window valence/arousal")
    p.add_argument("--window", type=float, default=None, help="timeline window in seconds (model default)")
    p.add_argument("--hop", type=float, default=None, help="timeline hop in seconds (model default)")
    add_format(p, help="json: one JSON object per line (default); table: a readable table")
    add_progress(p)
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="write a PNG per file: valence/arousal over time, the quadrant plane, top moods (OUT.png "
                        "for one file, OUT-<name>.png for several; needs matplotlib; implies --timeline)")
    add_model_files(p, key_input=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problem = _check_arguments(args)
    inputs = list(args.files)
    if args.demo:
        from m2e_plugin.demo import synth_music

        inputs.append(("<demo>", (synth_music(20.0, 22050), 22050)))
    if not inputs:
        problem = problem or "give audio files (or --demo)"
    if problem:  # before the model loads: a typo should not cost a model load and every file's prediction
        print(f"m2e predict: {problem}", file=sys.stderr)
        return 2
    from m2e_plugin.predictor import Music2emo
    from m2e_plugin.progress import Progress

    options = model_file_options(args, args.model)
    try:
        model = Music2emo(model=args.model, device=args.device, threshold=args.threshold, **options)
    except Exception as exc:  # model cannot be built: nothing to do for any file
        print(f"m2e predict: {exc}", file=sys.stderr)
        return 2
    timeline = args.timeline or args.plot is not None
    results = []
    with Progress(len(inputs), "m2e predict", unit="file", mode=progress_mode(args)) as bar:
        for item in inputs:
            path, source = item if isinstance(item, tuple) else (item, item)
            out = _predict_one(model, path, source, args, timeline, bar)
            results.append(out)
            if args.format == "json":
                print(json.dumps(out), flush=True)
            bar.update(1, failed="error" in out)
    if args.format == "table":
        print(format_table(results))
    if args.plot:
        from m2e_plugin.cli.plot import write_plots

        ok = [r for r in results if "error" not in r]
        if not ok:
            print(f"m2e predict: no prediction succeeded, {args.plot} not written", file=sys.stderr)
        else:
            try:
                written = write_plots(ok, args.plot)
            except OSError as exc:
                print(f"m2e predict: cannot write {args.plot}: {exc.strerror or exc}", file=sys.stderr)
                return 1
            if not args.quiet:
                print(f"m2e predict: wrote {', '.join(written)}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


def _predict_one(model, path: str, source, args: argparse.Namespace, timeline: bool, bar) -> dict:
    """One input's result (or error object); progress inside the file; decoder noise as one warning."""
    import os

    from m2e_plugin.progress import decoder_warning, native_stderr_captured

    total = None
    name = os.path.basename(path)

    def on_audio(seconds: float) -> None:
        bar.position(name, seconds, total)

    with native_stderr_captured() as noise:  # the length probe decodes a header too: its noise is captured as well
        if not isinstance(source, tuple):
            try:
                from m2e_plugin.audio import info

                total = info(source).duration
            except Exception:  # unreadable: predict() reports it properly below
                pass
        try:
            out = {"file": path, **model.predict(source, timeline=timeline, window=args.window, hop=args.hop,
                                                 on_audio=on_audio)}
        except Exception as exc:
            error = str(exc)
            if isinstance(source, str) and os.path.isdir(source):  # a folder is extract's input, not predict's
                error += f" (for every audio file in a folder: m2e extract {path} -o OUT)"
            out = {"file": path, "error": error, "error_type": type(exc).__name__}
    # A file that failed is reported by its error; what the decoder said while failing adds nothing.
    warning = decoder_warning(path, noise) if "error" not in out else None
    if warning:
        bar.write(f"m2e predict: {warning}")
    return out


def _check_arguments(args: argparse.Namespace) -> str | None:
    """The reason the options cannot work, or None."""
    problem = window_hop_problem(args)
    if problem:
        return problem
    if not 0.0 <= args.threshold <= 1.0:
        return f"--threshold is a probability between 0 and 1, got {args.threshold:g}"
    if args.plot:
        from m2e_plugin.cli.plot import plot_problem

        return plot_problem(args.plot)
    return None


def format_table(results: list[dict]) -> str:
    """One row per file; what decoding lost follows as ``WARNING`` rows; with ``--timeline`` its windows follow as
    indented rows (start-end, top moods)."""
    rows = [("file", "valence", "arousal", "quadrant", "moods")]
    for r in results:
        if "error" in r:
            rows.append((r["file"], "-", "-", "-", f"ERROR: {r['error']}"))
            continue
        rows.append((r["file"], f"{r['valence']:.2f}", f"{r['arousal']:.2f}", r["quadrant"],
                     ", ".join(r["predicted_moods"]) or "-"))
        for w in r.get("warnings", []):
            rows.append(("", "", "", "", f"WARNING ({w.get('code', 'warning')}): {w.get('message', '')}"))
        for w in r.get("timeline", []):
            rows.append((f"  {_clock(w['start'])}-{_clock(w['end'])}", f"{w['valence']:.2f}", f"{w['arousal']:.2f}",
                         w.get("quadrant", "-"), "top: " + (", ".join(w.get("top_moods", [])) or "-")))
    widths = [max(_display_width(str(row[i])) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [str(c) + " " * (w - _display_width(str(c))) for c, w in zip(row[:4], widths)]
        lines.append("  ".join(cells) + "  " + row[4])
    return "\n".join(lines)


def _display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and full-width characters take two (a CJK file name would
    push its row's numbers out of their columns)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


def _clock(seconds: float) -> str:
    """m:ss.s for a timeline row."""
    minutes, rest = divmod(float(seconds), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"
