"""`m2e stream`: follow live audio (or a file) and send its emotion over OSC.

Human messages go to stderr; at the end a JSON summary (counters, latency median/p95) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stream",
        help="follow live audio (DAW loopback, JACK, a file) and send valence/arousal/moods over OSC",
        description="Realtime sidecar: capture an audio input (or replay a file), analyse sliding windows with the "
        "model and send OSC bundles at a steady rate to one or more destinations. Stops on Ctrl-C/SIGTERM, after "
        "--duration, or at the end of an --input file; prints a JSON summary on stdout.",
    )
    src = p.add_argument_group("input")
    src.add_argument("--input", metavar="FILE", default=None,
                     help="replay an audio file instead of a live device (paced in real time)")
    src.add_argument("--device", default=None,
                     help="input device: index or (part of the) name, see `m2e devices` (default: system input)")
    src.add_argument("--samplerate", type=float, default=None, help="capture rate (default: the device's)")
    src.add_argument("--channels", type=int, default=None, help="channels to capture, mixed to mono (default: up to 2)")
    src.add_argument("--blocksize", type=int, default=1024, help="frames per audio callback (default 1024)")
    src.add_argument("--no-pace", action="store_true",
                     help="with --input: read as fast as the model keeps up (no window is skipped)")
    src.add_argument("--loop", action="store_true", help="with --input: start again at the end of the file")

    mod = p.add_argument_group("model")
    mod.add_argument("--model", default="lite",
                     help="lite (default, offline), music2emo, or a plugin's model (see `m2e plugins --models`)")
    mod.add_argument("--compute", default="auto", help="compute device: auto (default; GPU when present), cpu, cuda")
    mod.add_argument("--window", type=float, default=None,
                     help="analysis window in seconds (default: the model's realtime window)")
    mod.add_argument("--hop", type=float, default=0.5, help="seconds between analyses (default 0.5)")
    mod.add_argument("--mert", default=None, help="music2emo: MERT hub id or local directory")
    mod.add_argument("--checkpoint", default=None, help="music2emo: head checkpoint")
    mod.add_argument("--chord-model", default=None, help="music2emo: BTC chord model")

    out = p.add_argument_group("output")
    out.add_argument("--osc", action="append", default=[], metavar="HOST:PORT[@PROFILE]",
                     help="OSC destination; repeat for several (default: 127.0.0.1 on the profile's port)")
    out.add_argument("--profile", default="default", choices=("default", "resolume", "touchdesigner", "wekinator"),
                     help="address scheme for destinations without @PROFILE (default: default)")
    out.add_argument("--rate", type=float, default=30.0, help="OSC bundles per second between updates (default 30)")
    out.add_argument("--smoothing", choices=("euro", "ema", "none"), default="euro",
                     help="valence/arousal smoothing: one-euro (default), exponential, none")
    out.add_argument("--smooth-amount", type=float, default=None,
                     help="one-euro min cutoff in Hz (default 1.0) or EMA time constant in s (default 0.5)")
    out.add_argument("--mood-tau", type=float, default=0.5, help="mood probability smoothing time constant, s")
    out.add_argument("--dwell", type=float, default=1.0, help="seconds a new top mood must lead before it shows")
    out.add_argument("--margin", type=float, default=0.05, help="probability lead a new top mood needs")
    out.add_argument("--top", type=int, default=3, help="at most this many tags in /m2e/moods (default 3)")
    out.add_argument("--threshold", type=float, default=0.5, help="probability other tags need to be listed")

    ctl = p.add_argument_group("control")
    ctl.add_argument("--control", type=int, default=None, metavar="PORT",
                     help="accept OSC control (/m2e/ctl/pause, resume, window, hop, model, threshold) on this UDP port")
    ctl.add_argument("--control-host", default="127.0.0.1", help="interface for --control (default 127.0.0.1)")
    ctl.add_argument("--monitor", type=int, default=None, metavar="PORT",
                     help="serve a live monitor page on http://127.0.0.1:PORT/")
    ctl.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ctl.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="m2e stream: %(message)s", stream=sys.stderr)
    log = logging.getLogger("m2e.realtime")

    from m2e_plugin.realtime.capture import CaptureError, FileSource, MAX_WINDOW_S, SoundDeviceSource
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.osc import PROFILES, parse_destination
    from m2e_plugin.realtime.sidecar import Sidecar

    try:
        specs = args.osc or [f"127.0.0.1:{PROFILES[args.profile].default_port}"]
        destinations = [parse_destination(s, args.profile) for s in specs]
        if args.no_pace and args.input is None:
            raise ValueError("--no-pace only applies to --input FILE")
        if args.hop <= 0 or (args.window is not None and args.window <= 0):
            raise ValueError("--window and --hop must be positive")
        if args.rate < 0:
            raise ValueError("--rate must be >= 0")
        if args.duration is not None and not args.duration > 0:  # "not >": NaN is rejected too
            raise ValueError(f"--duration must be a positive number of seconds, got {args.duration:g}")
    except ValueError as exc:
        print(f"m2e stream: {exc}", file=sys.stderr)
        return 2

    # The input first: a wrong device or file fails at once, before a model is loaded.
    try:
        if args.input is not None:
            source = FileSource(args.input, pace=not args.no_pace, loop=args.loop)
        else:
            source = SoundDeviceSource(args.device, samplerate=args.samplerate, channels=args.channels,
                                       blocksize=args.blocksize)
    except (CaptureError, ValueError) as exc:
        print(f"m2e stream: {exc}", file=sys.stderr)
        return 2

    options = {k: v for k, v in (("mert", args.mert), ("checkpoint", args.checkpoint),
                                 ("chord_model", args.chord_model)) if v is not None}
    try:
        runner = ModelRunner(args.model, device=args.compute, model_options=options)
    except Exception as exc:
        print(f"m2e stream: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    backend = runner.current.backend
    window = args.window if args.window is not None else min(float(backend.window_seconds), MAX_WINDOW_S)

    amount = args.smooth_amount if args.smooth_amount is not None else (1.0 if args.smoothing == "euro" else 0.5)
    try:
        sidecar = Sidecar(source, runner, destinations, window=window, hop=args.hop, control_port=args.control,
                          control_host=args.control_host, monitor_port=args.monitor, rate=args.rate,
                          smoothing=args.smoothing, amount=amount, mood_tau=args.mood_tau, margin=args.margin,
                          dwell=args.dwell, top_k=args.top, threshold=args.threshold)
    except (OSError, ValueError) as exc:
        print(f"m2e stream: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        sidecar.request_stop(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("model %s (%s), window %.2f s, hop %.2f s", runner.name, backend.device, window, args.hop)
        log.info("input: %s", source.description)
        log.info("OSC to %s at %g Hz", ", ".join(d.label for d in destinations), args.rate)
        if sidecar.control is not None:
            log.info("control: OSC on %s:%d (/m2e/ctl/...)", sidecar.control.host, sidecar.control.port)
        if sidecar.monitor is not None:
            log.info("monitor: %s", sidecar.monitor.url)
        try:
            sidecar.start()
        except CaptureError as exc:
            sidecar.stop()
            print(f"m2e stream: {exc}", file=sys.stderr)
            return 2
        try:
            reason = sidecar.wait(args.duration)
        finally:
            sidecar.stop()
        log.info("stopped: %s", reason)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    summary = sidecar.summary()
    print(json.dumps(summary), flush=True)
    return 1 if source.error is not None else 0
