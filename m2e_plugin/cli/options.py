"""The options every `m2e` subcommand spells the same way (design.md, "One vocabulary").

==================  ==============================================================================================
``--model NAME``    the emotion model (``lite`` default, ``music2emo``, a plugin's)
``--device``        compute device: ``auto`` (GPU when present), ``cpu``, ``cuda``, ``cuda:N``
``--input-device``  the audio input of ``m2e stream`` (never the compute device)
``-o/--output``     where results go (a folder or a file, per command)
``--format``        output format; ``json`` is the default of every command that has it
``-q/--quiet``      only warnings and errors on stderr (no progress)
``--progress``      ``auto`` (on a terminal), ``always``, ``never``
``--data-home``     ``[NAME=]DIR``: where dataset NAME lives (NAME may be left out when one dataset is involved)
``--checkpoint``    another weights file for the model's head
``--chords``        the chord recogniser of ``music2emo``
==================  ==============================================================================================

``tests/test_cli_vocabulary.py`` walks every parser and enforces this table.
"""

from __future__ import annotations

import argparse
import os

DEVICE_HELP = "compute device: auto (default; GPU when present), cpu, cuda, cuda:N"
PROGRESS_CHOICES = ("auto", "always", "never")


def window_hop_problem(args) -> str | None:
    """Why ``--window``/``--hop`` (None: the model's) cannot work, or None: the rule of
    :func:`m2e_plugin.analysis.check_window_hop`, said before any model loads."""
    from m2e_plugin.analysis import MIN_WINDOW_HOP_S, check_window_hop

    for name in ("window", "hop"):
        value = getattr(args, name)
        if value is not None:
            try:
                check_window_hop(value, value)
            except ValueError:
                return f"--{name} must be a number of seconds >= {MIN_WINDOW_HOP_S:g}, got {value:g}"
    return None


def add_device(parser, *, default: str | None = "auto", help: str = DEVICE_HELP) -> None:
    parser.add_argument("--device", default=default, metavar="DEVICE", help=help)


def add_output(parser, *, help: str, required: bool = False, default=None, metavar: str = "OUT") -> None:
    parser.add_argument("-o", "--output", required=required, default=default, metavar=metavar, help=help)


def add_format(parser, choices=("json", "table"), *, help: str | None = None) -> None:
    """``--format`` whose default is always ``json`` (machine-readable output is JSON on stdout)."""
    parser.add_argument("--format", choices=choices, default="json",
                        help=help or f"{' or '.join(choices)} (default json)")


def add_progress(parser) -> None:
    """``-q/--quiet`` and ``--progress auto|always|never`` (read both with :func:`progress_mode`)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr (no progress)")
    parser.add_argument("--progress", choices=PROGRESS_CHOICES, default="auto",
                        help="progress on stderr: auto (default: only on a terminal), always (plain lines when "
                             "stderr is not a terminal), never")


def progress_mode(args: argparse.Namespace) -> str:
    """The effective progress mode: ``--quiet`` wins over ``--progress``."""
    return "never" if getattr(args, "quiet", False) else getattr(args, "progress", "auto")


def add_data_home(parser, *, repeat: bool = False, required: bool = False, dest: str = "data_home",
                  help: str | None = None) -> None:
    """``--data-home [NAME=]DIR`` (read with :func:`data_homes` / :func:`data_home_for`)."""
    default_help = ("where dataset NAME lives; NAME= may be left out when one dataset is involved "
                    "(default ~/mir_datasets/<NAME>)")
    parser.add_argument("--data-home", dest=dest, action="append", default=None if required else [],
                        required=required, metavar="[NAME=]DIR",
                        help=(help or default_help) + (" (repeatable)" if repeat else ""))


def data_homes(values, datasets=(), *, option: str = "--data-home") -> dict[str, str]:
    """``[NAME=]DIR`` values -> {name: dir}. A bare DIR belongs to the only dataset in ``datasets``. A leading ``~``
    is expanded: the shell leaves it alone in ``--data-home=~/x`` and ``NAME=~/x``.

    Raises ValueError for an empty part, a bare DIR when the dataset is ambiguous, or a NAME given twice.
    """
    datasets = [d for d in datasets if d]
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or "/" in name or "\\" in name:  # a bare DIR (possibly with "=" inside the path)
            name, sep, path = "", "", value
        if not path or (sep and not name):
            raise ValueError(f"{option} expects [NAME=]DIR, got {value!r}")
        if path == "-":  # the audio subcommands read "-" as standard input; a dataset cannot come from there
            raise ValueError(f"{option} {value!r}: a dataset is a folder of audio and label files, it cannot be read "
                             "from standard input (- is one track: m2e predict - / m2e extract -)")
        if not name:
            if len(datasets) != 1:
                raise ValueError(f"{option} {value!r}: write NAME=DIR"
                                 + (f" (one of {', '.join(datasets)})" if datasets else ""))
            name = datasets[0]
        path = os.path.expanduser(path)
        if name in out and out[name] != path:
            raise ValueError(f"{option} given twice for {name}: {out[name]} and {path}")
        out[name] = path
    return out


def data_home_for(values, dataset: str | None) -> str | None:
    """The folder of ``dataset`` from ``[NAME=]DIR`` values (None: the loader's default), rejecting other names."""
    homes = data_homes(values, [dataset] if dataset else [])
    unknown = sorted(set(homes) - {dataset})
    if unknown:
        raise ValueError(f"--data-home names {', '.join(unknown)} but the dataset is {dataset}")
    return homes.get(dataset)


def add_model_files(parser, *, key_input: bool = False) -> None:
    """``--checkpoint`` and the faithful model's inputs (``--mert``, ``--chord-model``, ``--chords``; with
    ``key_input`` also ``--key-input``), spelt and explained the same in every subcommand that builds a model."""
    parser.add_argument("--checkpoint", default=None,
                        help="another checkpoint for the model's head (music2emo: .ckpt / .safetensors; lite: "
                        ".safetensors with its card beside it)")
    parser.add_argument("--mert", default=None, help="music2emo: MERT hub id or local directory")
    parser.add_argument("--chord-model", default=None, help="music2emo: BTC chord model (.pt)")
    parser.add_argument("--chords", choices=("auto", "btc", "offline"), default=None,
                        help="music2emo: chord recogniser (auto = BTC when its weights are available, else offline "
                        "with a warning in the output; btc = BTC or exit 2)")
    if key_input:
        parser.add_argument("--key-input", choices=("estimated", "major"), default=None,
                            help="music2emo: key-mode token fed to the head (major = the reference script's "
                            "constant 0)")


def model_file_options(args, model: str) -> dict[str, str]:
    """The backend keywords for what :func:`add_model_files` registered, only those given (a plugin need not
    take the built-ins' options)."""
    options = {key: getattr(args, name) for key, name in (("mert", "mert"), ("chord_model", "chord_model"),
                                                           ("chords", "chords"), ("key_input", "key_input"))
               if getattr(args, name, None) is not None}
    options.update(checkpoint_option(model, args.checkpoint))
    return options


def checkpoint_option(model: str, checkpoint: str | None) -> dict[str, str]:
    """The backend keyword for ``--checkpoint``: ``lite`` calls its weights file ``weights``, others ``checkpoint``."""
    if checkpoint is None:  # an empty --checkpoint "" (an unset shell variable) is passed on and refused by
        return {}           # music2emo, not swapped silently for the default or $M2E_CHECKPOINT
    return {"weights" if model == "lite" else "checkpoint": checkpoint}
