"""`m2e` entry point. Each subcommand lives in ``m2e_plugin/cli/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a ``run(args) -> int``.

Conventions: machine-readable output is JSON on stdout; human text, warnings and progress go to stderr.
Subcommand modules import heavy libraries (torch, transformers) inside ``run`` so ``m2e --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import warnings

from m2e_plugin.signals import Terminated

#: Warning classes shown as one plain "m2e: ..." line (m2e_plugin.plugins / m2e_plugin.analysis).
PLAIN_WARNINGS = ("PluginLoadWarning", "SparseWindowsWarning")

# Module names under m2e_plugin.cli, in the order `m2e --help` lists them.
SUBCOMMANDS = (
    "predict",
    "extract",
    "plugins",
    "datasets",
    "stream",
    "devices",
    "features",
    "train",
    "evaluate",
    "evaluate_harmony",
)


def build_parser() -> argparse.ArgumentParser:
    from m2e_plugin import __version__

    parser = argparse.ArgumentParser(prog="m2e", description="Music emotion recognition (Music2Emo) toolkit.")
    parser.add_argument("--version", action="version", version=f"m2e {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"m2e_plugin.cli.{name}").register(sub)
    return parser


def entry() -> None:
    """The ``m2e`` console script: :func:`main`, then a quick exit.

    Tearing down an interpreter that imported torch (module by module, library by library) took 1.2-1.5 s on the
    build machine, a third of a short ``m2e predict``. Once the command is done the process ends directly, after
    what a normal exit must still do: waiting for non-daemon threads, atexit handlers (logging, multiprocessing,
    temporary files) and flushing stdout/stderr (``benchmarks/bench_startup.py`` measures it).
    """
    code = main()
    _exit_now(code)


def _exit_now(code: int) -> None:
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe (`m2e ... | head`): nothing more can be written anyway
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The library's warnings (audio that decoded only in part, a chord-recogniser fallback) reach the user on
    # stderr once, as "m2e: ...", whatever logging setup a subcommand makes.
    library = logging.getLogger("m2e_plugin")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("m2e: %(message)s"))
    handler.setLevel(logging.WARNING)
    library.addHandler(handler)
    propagate, library.propagate = library.propagate, False
    terminated = []

    def on_sigterm(signum, frame):
        # A scheduler, `timeout` or `docker stop` sends SIGTERM: stop the way Ctrl-C does (a batch keeps its
        # finished tracks and records the run as interrupted), then exit 143. `m2e stream` installs its own.
        terminated.append(signum)
        raise Terminated

    previous = _install(signal.SIGTERM, on_sigterm)
    show_warning = warnings.showwarning

    def show_plugin_warning_plainly(message, category, *rest, **kwargs):
        # A plugin that failed to load or windows that skip audio are the user's news, not a Python warning: one
        # "m2e: ..." line on stderr without the warning's source line; other warnings as Python shows them.
        if category.__name__ in PLAIN_WARNINGS:  # by name: the CLI does not import the plugin machinery
            print(f"m2e: {message}", file=sys.stderr)
        else:
            show_warning(message, category, *rest, **kwargs)

    warnings.showwarning = show_plugin_warning_plainly
    try:
        code = int(args.func(args) or 0)
        return 128 + signal.SIGTERM if terminated and code == 130 else code
    except KeyboardInterrupt:
        print("m2e: terminated" if terminated else "m2e: interrupted", file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else 130
    except BrokenPipeError:
        # The reader went away (`m2e predict *.mp3 | head -1`): stop quietly, with the status a shell gives a
        # process that SIGPIPE ended. Later writes (the final flush) go nowhere instead of raising again.
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 128 + signal.SIGPIPE
    finally:
        warnings.showwarning = show_warning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        library.removeHandler(handler)
        library.propagate = propagate


def _install(signum: int, handler):
    """The previous handler, or None where signals cannot be set (a thread other than the main one)."""
    try:
        return signal.signal(signum, handler)
    except ValueError:
        return None


if __name__ == "__main__":
    entry()
