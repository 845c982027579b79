"""`m2e stream`: follow live audio (or a file) and send its emotion over OSC.

Human messages go to stderr; at the end a JSON summary (counters, latency median/p95) goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time

from m2e_plugin.cli.options import add_device, add_model_files, model_file_options


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
    src.add_argument("--input-device", default=None, metavar="DEVICE",
                     help="audio input: index or (part of the) name, see `m2e devices` (default: system input)")
    src.add_argument("--samplerate", type=float, default=None, help="capture rate (default: the device's)")
    src.add_argument("--channels", type=int, default=None, help="channels to capture, mixed to mono (default: up to 2)")
    src.add_argument("--blocksize", type=int, default=None, help="frames per audio callback (default 1024)")
    src.add_argument("--no-pace", action="store_true",
                     help="with --input: read as fast as the model keeps up (no window is skipped)")
    src.add_argument("--loop", action="store_true", help="with --input: start again at the end of the file")

    mod = p.add_argument_group("model")
    mod.add_argument("--model", default="lite",
                     help="lite (default, offline), music2emo, or a plugin's model (see `m2e plugins --models`)")
    add_device(mod, help="compute device: auto (default; GPU when present), cpu, cuda, cuda:N")
    mod.add_argument("--latency", choices=("normal", "low"), default="normal",
                     help=f"normal: the model's realtime window, hop 0.5 s; low: {LOW_LATENCY[0]:g} s windows every "
                     f"{LOW_LATENCY[1]:g} s (reacts to a change within about 2 s; --window/--hop override)")
    mod.add_argument("--window", type=float, default=None,
                     help="analysis window in seconds (default: set by --latency)")
    mod.add_argument("--hop", type=float, default=None, help="seconds between analyses (default: set by --latency)")
    mod.add_argument("--batch", type=int, default=None,
                     help="windows analysed together when the model falls behind (default: 4 on a GPU, 1 on a CPU)")
    add_model_files(mod)

    out = p.add_argument_group("output")
    out.add_argument("--osc", action="append", default=[], metavar="HOST:PORT[@PROFILE]",
                     help="OSC destination (host:port, [IPv6]:port, or a host alone on the profile's port; "
                     "'-' or --osc=-@PROFILE prints the messages on standard output instead, a dry run); repeat for several "
                     "(default: 127.0.0.1 on the profile's port)")
    out.add_argument("--profile", default="default", metavar="PROFILE",
                     help="mapping for destinations without @PROFILE: default, resolume, touchdesigner, wekinator, "
                     "max, or a .yaml/.toml mapping file (default: default)")
    out.add_argument("--rate", type=float, default=30.0, help="OSC bundles per second between updates (default 30)")
    out.add_argument("--smoothing", choices=("euro", "ema", "none"), default="euro",
                     help="valence/arousal smoothing: one-euro (default), exponential, none")
    out.add_argument("--smooth-amount", type=float, default=None,
                     help="one-euro min cutoff in Hz (default 1.0) or EMA time constant in s (default 0.5)")
    out.add_argument("--mood-tau", type=float, default=0.5, help="mood probability smoothing time constant, s")
    out.add_argument("--dwell", type=float, default=1.0, help="seconds a new top mood must lead before it shows")
    out.add_argument("--margin", type=float, default=0.05, help="probability lead a new top mood needs")
    out.add_argument("--quadrant-dwell", type=float, default=2.0,
                     help="seconds the point must stay in a new quadrant before /m2e/quadrant changes (default 2)")
    out.add_argument("--quadrant-margin", type=float, default=0.03,
                     help="distance past an axis (0-1 scale) that counts as the other side (default 0.03)")
    out.add_argument("--top", type=int, default=3, help="at most this many tags in /m2e/moods (default 3)")
    out.add_argument("--threshold", type=float, default=0.5, help="probability other tags need to be listed")

    ctl = p.add_argument_group("control")
    ctl.add_argument("--control", type=_port, default=None, metavar="PORT",
                     help="accept OSC control (/m2e/ctl/pause, resume, window, hop, model, threshold) on this UDP port")
    ctl.add_argument("--control-host", default="127.0.0.1", help="interface for --control (default 127.0.0.1)")
    ctl.add_argument("--monitor", type=_port, default=None, metavar="PORT",
                     help="serve a live monitor page on http://127.0.0.1:PORT/")
    ctl.add_argument("--oscquery", type=lambda text: _port(text, lowest=0), nargs="?", const=0, default=None,
                     metavar="PORT", help="describe the OSC addresses sent and the control methods over OSCQuery "
                     "(HTTP + JSON) on this TCP port (no PORT or 0: any free port, logged at start); advertised over "
                     "mDNS when zeroconf is installed (pip install 'm2e[oscquery]')")
    ctl.add_argument("--oscquery-host", default="127.0.0.1", help="interface for --oscquery (default 127.0.0.1)")
    ctl.add_argument("--duration", type=float, default=None,
                     help="stop after this many seconds of streaming (counted once the model is ready)")
    ctl.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    p.set_defaults(func=run)


def _port(text: str, lowest: int = 1) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range {lowest}-65535")
    return port


LOW_LATENCY = (3.0, 0.5)  # window, hop (s) of --latency low
NORMAL_HOP = 0.5
STOP_DEADLINE_S = 1.8  # after SIGINT/SIGTERM the process is gone within this, whatever hangs


class _Stopping(Exception):
    """A signal arrived while the stream was still starting."""


def _wait_thread(thread, stop, poll: float = 0.05, every_second=None) -> None:
    """Join ``thread`` but give up when ``stop`` is set (the main thread must stay responsive to signals); call
    ``every_second`` once a second meanwhile, from the start."""
    next_call = time.monotonic()
    while thread.is_alive():
        if stop.is_set():
            raise _Stopping
        if every_second is not None and time.monotonic() >= next_call:
            next_call += 1.0
            every_second()
        thread.join(poll)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="m2e stream: %(message)s", stream=sys.stderr)
    log = logging.getLogger("m2e.realtime")

    from m2e_plugin.analysis import check_window_hop, warn_if_sparse
    from m2e_plugin.realtime.capture import MAX_WINDOW_S
    from m2e_plugin.realtime.memory import steady_heap
    from m2e_plugin.realtime.osc import get_mapping, parse_destination

    steady_heap()  # first, before any thread allocates: flat resident memory over a show (realtime/memory.py)

    def fail(message) -> int:
        print(f"m2e stream: {message}", file=sys.stderr)
        return 2

    try:
        specs = args.osc or [f"127.0.0.1:{get_mapping(args.profile).port}"]
        destinations = [parse_destination(s, args.profile, on_closed=lambda: on_stdout_closed()) for s in specs]
        if args.no_pace and args.input is None:
            raise ValueError("--no-pace only applies to --input FILE")
        if args.input is not None and args.input_device is not None:
            raise ValueError("give either --input FILE or --input-device, not both")
        if args.loop and args.input is None:  # they were ignored without a word
            raise ValueError("--loop only applies to --input FILE")
        given = [f"--{name}" for name in ("samplerate", "channels", "blocksize") if getattr(args, name) is not None]
        if given and args.input is not None:
            raise ValueError(f"{', '.join(given)} only apply to a live input (--input-device), not to --input FILE")
        if args.blocksize is not None and args.blocksize < 1:
            raise ValueError("--blocksize must be >= 1")
        window, hop = (LOW_LATENCY if args.latency == "low" else (None, NORMAL_HOP))
        window = args.window if args.window is not None else window
        hop = args.hop if args.hop is not None else hop
        check_window_hop(window, hop, max_seconds=MAX_WINDOW_S)
        warn_if_sparse(window, hop)
        # "not x >= 0" rather than "x < 0": NaN is rejected too
        if not args.rate >= 0 or args.rate == math.inf:
            raise ValueError("--rate must be a number >= 0 (0: only fresh values)")
        if args.batch is not None and args.batch < 1:
            raise ValueError("--batch must be >= 1")
        if args.top < 1:
            raise ValueError("--top must be >= 1")
        if not 0 <= args.threshold <= 1 or not 0 <= args.margin <= 1:
            raise ValueError("--threshold and --margin must be in [0, 1]")
        for name in ("dwell", "mood_tau", "quadrant_dwell"):
            if not 0 <= getattr(args, name) < math.inf:
                raise ValueError(f"--{name.replace('_', '-')} must be a number of seconds >= 0")
        if args.smooth_amount is not None and not 0 < args.smooth_amount < math.inf:
            raise ValueError("--smooth-amount must be a positive number")
        if not 0 <= args.quadrant_margin < 0.5:
            raise ValueError("--quadrant-margin must be in [0, 0.5)")
        if args.duration is not None and not args.duration > 0:  # "not >": NaN is rejected too
            raise ValueError(f"--duration must be a positive number of seconds, got {args.duration:g}")
    except ValueError as exc:
        return fail(exc)

    # Signals: the first asks for a clean stop, armed with a watchdog that ends the process after
    # STOP_DEADLINE_S whatever is stuck (model call, audio server); a second one ends it at once.
    stopping = threading.Event()
    finished = threading.Event()
    holder: dict = {}

    def watchdog():
        if not finished.wait(STOP_DEADLINE_S):
            log.error("shutdown did not finish within %.1f s; exiting now", STOP_DEADLINE_S)
            _flush_and_exit(128 + holder["signal"])

    def stop_with(signum, reason):
        if stopping.is_set():
            _flush_and_exit(128 + signum)
        holder["signal"] = signum
        stopping.set()
        if "sidecar" in holder:
            holder["sidecar"].request_stop(reason)
        threading.Thread(target=watchdog, name="m2e-stop-watchdog", daemon=True).start()

    def on_signal(signum, _frame):
        stop_with(signum, f"signal {signal.Signals(signum).name}")

    def on_stdout_closed():  # called by a `--osc -` destination's thread
        # `m2e stream --osc - | head`: no one reads any more. Stop as a broken pipe stops every m2e command (141).
        if not stopping.is_set():
            log.info("standard output closed: stopping")
            stop_with(signal.SIGPIPE, "standard output closed")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _run(args, log, fail, destinations, window, hop, stopping, holder)
    except _Stopping:
        log.info("stopped while starting")
        # a script reading the summary gets one, even when the show was called off before the model was ready
        print(json.dumps({"stop_reason": "stopped while starting", "model": args.model, "updates": 0}), flush=True)
        code = 0
    finally:
        finished.set()
        for s, handler in previous.items():
            signal.signal(s, handler)
    # Stopped by a signal: 130 (Ctrl-C) or 143 (SIGTERM), as every m2e command; the summary is out already.
    return _signalled(code, holder)


def _signalled(code: int, holder: dict) -> int:
    """A run a signal stopped exits 128 + the signal (130 Ctrl-C, 143 SIGTERM) unless something failed."""
    return 128 + holder["signal"] if "signal" in holder and code == 0 else code


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _run(args, log, fail, destinations, window, hop, stopping, holder) -> int:
    from m2e_plugin.audio import AudioError, audio_source
    from m2e_plugin.realtime.capture import CaptureError, DeviceSource, FileSource, MAX_WINDOW_S
    from m2e_plugin.realtime.control import ControlServer
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.monitor import MonitorServer
    from m2e_plugin.realtime.osc import OscOut
    from m2e_plugin.realtime.oscquery import OscQueryServer
    from m2e_plugin.realtime.output import status_args
    from m2e_plugin.realtime.sidecar import Sidecar

    # 1. Ports: a busy one fails now, not after the model loaded.
    servers = []
    try:
        if args.control is not None:
            servers.append(ControlServer(None, args.control, args.control_host))
        if args.monitor is not None:
            servers.append(MonitorServer(args.monitor))
        if args.oscquery is not None:  # after the control port, whose methods and port it advertises
            servers.append(OscQueryServer(args.oscquery, args.oscquery_host, top_k=args.top,
                                          control=next((x for x in servers if isinstance(x, ControlServer)), None)))
    except OSError as exc:
        for server in servers:
            server.stop()
        return fail(exc)
    control = next((x for x in servers if isinstance(x, ControlServer)), None)
    monitor = next((x for x in servers if isinstance(x, MonitorServer)), None)
    oscquery = next((x for x in servers if isinstance(x, OscQueryServer)), None)

    # 2. The model loads (and warms up) on a thread while the input opens.
    options = model_file_options(args, args.model)
    loaded: dict = {}

    def load():
        try:
            runner = ModelRunner(args.model, device=args.device, model_options=options)
            backend = runner.current.backend
            w = window if window is not None else min(float(backend.window_seconds), MAX_WINDOW_S)
            loaded["warm_up_ms"] = runner.warm_up(w)
            loaded["runner"], loaded["window"] = runner, w
            loaded["ready_at"] = time.monotonic()
        except BaseException as exc:  # reported by the main thread
            loaded["error"] = exc

    launched = time.monotonic()
    loader = threading.Thread(target=load, name="m2e-model-loader", daemon=True)
    loader.start()
    source = None
    spool = contextlib.ExitStack()  # stdin or a pipe given as --input: a temporary copy, removed at the end
    # The monitor page and the heartbeat say "warming up" while the model loads (seconds; more for music2emo),
    # instead of a page that does not answer and receivers that hear nothing.
    def warming_up() -> dict:  # the heartbeat's fields until the sidecar reports its own
        return {"state": "warming up", "uptime": time.monotonic() - launched, "updates": 0, "skipped": 0,
                "overflows": getattr(source, "overflows", 0), "model": args.model, "level_db": -120.0,
                "xruns": getattr(source, "xruns", 0), "input": getattr(source, "state", "live")}

    if monitor is not None:
        monitor.info = {"model": args.model, "source": ""}
        monitor.status = warming_up
        monitor.start()
    osc = OscOut(destinations)
    if oscquery is not None:  # answers while the model loads too (the heartbeat's VALUE says "warming up")
        oscquery.watch(osc)
        oscquery.start()
    try:
        try:
            if args.input is not None:
                path = spool.enter_context(audio_source(args.input))
                source = FileSource(os.fspath(path), pace=not args.no_pace, loop=args.loop, name=args.input)
            else:
                source = DeviceSource(args.input_device, samplerate=args.samplerate, channels=args.channels,
                                      **({"blocksize": args.blocksize} if args.blocksize is not None else {}))
            if source.realtime:
                # Live or paced audio fills the ring while the model loads, so the first values come as soon as
                # the model is ready (a replayed file stands for a live input: it plays from launch). A file read
                # without pace is decoded at the model's rate, so it waits for the model.
                source.start()
        except (CaptureError, ValueError, AudioError) as exc:
            return fail(exc)
        if stopping.is_set():
            raise _Stopping
        _wait_thread(loader, stopping, every_second=lambda: osc.send_status(status_args(warming_up(), 0.0)))
        if "error" in loaded:
            return fail(f"cannot load model {args.model!r}: {loaded['error']}")
        runner, window = loaded["runner"], loaded["window"]
        backend = runner.current.backend
        for mapping in {id(d.mapping): d.mapping for d in destinations}.values():
            for problem in mapping.unknown_moods(backend.mood_tags):
                log.warning("%s", problem)
        batch = args.batch or (4 if str(backend.device).startswith("cuda") else 1)
        try:
            sidecar = Sidecar(source, runner, destinations, osc=osc, launched=launched, window=window, hop=hop,
                              control=control, oscquery=oscquery,
                              monitor=monitor, batch=batch, rate=args.rate, smoothing=args.smoothing,
                              amount=_smooth_amount(args), mood_tau=args.mood_tau, margin=args.margin,
                              dwell=args.dwell, top_k=args.top, threshold=args.threshold,
                              quadrant_dwell=args.quadrant_dwell, quadrant_margin=args.quadrant_margin)
        except (OSError, ValueError) as exc:
            return fail(exc)
        holder["sidecar"] = sidecar
        if stopping.is_set():
            sidecar.request_stop("signal")
        log.info("model %s (%s), window %.2f s, hop %.2f s, warm-up %.0f ms", runner.name, backend.device, window,
                 hop, loaded["warm_up_ms"])
        log.info("input: %s", source.description)
        log.info("OSC to %s at %g Hz", ", ".join(d.label for d in destinations), args.rate)
        if control is not None:
            log.info("control: OSC on %s:%d (/m2e/ctl/...)", control.host, control.port)
        if monitor is not None:
            log.info("monitor: %s", monitor.url)
        if oscquery is not None:
            log.info("OSCQuery: %s (%s)", oscquery.url, f"control methods on UDP {control.port}" if control is not None
                     else "read-only: no --control, nothing receives OSC")
        servers, osc = [], None  # the sidecar owns them now
        source_owned = source
        source = None
        try:
            sidecar.start()
        except CaptureError as exc:
            sidecar.stop()
            return fail(exc)
        try:
            reason = sidecar.wait(args.duration)
        finally:
            sidecar.stop()
        log.info("stopped: %s", reason)
        summary = sidecar.summary()
        summary["warm_up_ms"] = round(loaded["warm_up_ms"], 1)
        # A live or paced input runs while the model loads: how much of it the values could not cover.
        if source_owned.opened_at is not None:
            summary["model_ready_seconds"] = round(max(0.0, loaded["ready_at"] - source_owned.opened_at), 3)
        print(json.dumps(summary), flush=True)
        code = 1 if source_owned.error is not None else 0
        if sidecar.engine.errors and not sidecar.engine.updates:
            log.error("the model failed on every window (%d): no values were sent", sidecar.engine.errors)
            code = 1
        if sidecar.engine.abandoned:  # a model call never returned: do not let interpreter shutdown wait for it
            _flush_and_exit(_signalled(code, holder))
        return code
    finally:
        for server in servers:
            server.stop()
        if osc is not None:
            osc.close()
        if source is not None:
            source.stop()
            source.close()
        spool.close()


def _smooth_amount(args) -> float:
    if args.smooth_amount is not None:
        return args.smooth_amount
    return 1.0 if args.smoothing == "euro" else 0.5
