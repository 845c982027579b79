"""`m2e predict FILE...`: JSON Lines on stdout (one object per input), or a table; optional timeline plot."""

from __future__ import annotations

import argparse
import json
import sys


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
    p.add_argument("--model", default="lite", help="lite (default, offline) or music2emo")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--threshold", type=float, default=0.5, help="mood probability threshold (default 0.5)")
    p.add_argument("--timeline", action="store_true", help="add per-window valence/arousal")
    p.add_argument("--window", type=float, default=None, help="timeline window in seconds (model default)")
    p.add_argument("--hop", type=float, default=None, help="timeline hop in seconds (model default)")
    p.add_argument("--format", choices=("json", "table"), default="json", help="json lines (default) or table")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="write a PNG of the valence/arousal timeline (needs matplotlib; implies --timeline)")
    p.add_argument("--mert", default=None, help="music2emo: MERT hub id or local directory")
    p.add_argument("--checkpoint", default=None, help="music2emo: head checkpoint (.ckpt / .safetensors)")
    p.add_argument("--chord-model", default=None, help="music2emo: BTC chord model (.pt)")
    p.add_argument("--chords", choices=("auto", "btc", "offline"), default=None,
                   help="music2emo: chord recogniser (auto = BTC when its weights are available, else offline "
                   "with a warning in the output; btc = BTC or exit 2)")
    p.add_argument("--key-input", choices=("estimated", "major"), default=None,
                   help="music2emo: key-mode token fed to the head (major = the reference script's constant 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problem = _check_arguments(args)
    if problem:  # before the model loads: a typo should not cost a model load and every file's prediction
        print(f"m2e predict: {problem}", file=sys.stderr)
        return 2
    from m2e_plugin.predictor import Music2emo

    options = {k: v for k, v in (("mert", args.mert), ("checkpoint", args.checkpoint),
                                 ("chord_model", args.chord_model), ("chords", args.chords),
                                 ("key_input", args.key_input)) if v is not None}
    try:
        model = Music2emo(model=args.model, device=args.device, threshold=args.threshold, **options)
    except Exception as exc:  # model cannot be built: nothing to do for any file
        print(f"m2e predict: {exc}", file=sys.stderr)
        return 2
    timeline = args.timeline or args.plot is not None
    inputs = list(args.files)
    if args.demo:
        from m2e_plugin.demo import synth_music

        inputs.append(("<demo>", (synth_music(20.0, 22050), 22050)))
    if not inputs:
        print("m2e predict: give audio files (or --demo)", file=sys.stderr)
        return 2
    results = []
    failed = False
    for item in inputs:
        path, source = item if isinstance(item, tuple) else (item, item)
        try:
            out = model.predict(source, timeline=timeline, window=args.window, hop=args.hop)
            out = {"file": path, **out}
        except Exception as exc:
            failed = True
            out = {"file": path, "error": str(exc), "error_type": type(exc).__name__}
        results.append(out)
        if args.format == "json":
            print(json.dumps(out), flush=True)
    if args.format == "table":
        print(format_table(results))
    if args.plot:
        ok = [r for r in results if "error" not in r]
        if not ok:
            print(f"m2e predict: no prediction succeeded, {args.plot} not written", file=sys.stderr)
        else:
            try:
                plot_timelines(ok, args.plot)
            except OSError as exc:
                print(f"m2e predict: cannot write {args.plot}: {exc.strerror or exc}", file=sys.stderr)
                return 1
            print(f"m2e predict: wrote {args.plot}", file=sys.stderr)
    return 1 if failed else 0


def _check_arguments(args: argparse.Namespace) -> str | None:
    """The reason the options cannot work, or None."""
    import math
    import os

    for name in ("window", "hop"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"--{name} must be a positive number of seconds, got {value:g}"
    if not 0.0 <= args.threshold <= 1.0:
        return f"--threshold is a probability between 0 and 1, got {args.threshold:g}"
    if args.plot:
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            return f"cannot write {args.plot}: folder {folder} does not exist"
    return None


def format_table(results: list[dict]) -> str:
    rows = [("file", "valence", "arousal", "quadrant", "moods")]
    for r in results:
        if "error" in r:
            rows.append((r["file"], "-", "-", "-", f"ERROR: {r['error']}"))
        else:
            rows.append((r["file"], f"{r['valence']:.2f}", f"{r['arousal']:.2f}", r["quadrant"],
                         ", ".join(r["predicted_moods"]) or "-"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(lines)


def plot_timelines(results: list[dict], out_path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("m2e predict --plot needs matplotlib: pip install 'm2e[plot]'") from exc
    fig, axes = plt.subplots(len(results), 1, figsize=(9, 2.6 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        t = [(e["start"] + e["end"]) / 2 for e in r["timeline"]]
        ax.plot(t, [e["valence"] for e in r["timeline"]], label="valence", marker="o")
        ax.plot(t, [e["arousal"] for e in r["timeline"]], label="arousal", marker="s")
        ax.axhline(5.0, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0.7, 9.3)  # a margin: values at the ends of the scale would be half-hidden by the frame
        ax.set_ylabel("1-9")
        ax.set_title(f"{r['file']} ({r['model']})", fontsize=9)
        ax.legend(loc="best", fontsize=8)  # values often sit at the top of the scale
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
