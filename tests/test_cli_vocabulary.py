"""One CLI vocabulary (design.md, m2e_plugin/cli/options.py): walk every subcommand's parser and enforce it."""

from __future__ import annotations

import argparse

import pytest

from m2e_plugin.cli.main import build_parser

# Old spellings of concepts that have one name now (old -> new): --out -> -o/--output, --json -> --format json,
# --no-progress -> --progress never / -q, --compute -> --device, --chord-method -> --chords,
# --weights -> --checkpoint.
FORBIDDEN = {"--out", "--json", "--no-progress", "--compute", "--chord-method", "--weights"}
# Subcommands that run a model: each takes --device (the compute device).
RUN_A_MODEL = {"predict", "extract", "stream", "features", "train", "evaluate"}
# Subcommands whose work can take more than a few seconds: each takes -q/--quiet and --progress.
LONG_WORK = {"predict", "extract", "features", "train", "evaluate", "datasets validate"}


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, sub
                yield from _subparsers(sub, full)


PARSERS = dict(_subparsers(build_parser()))


def _params():
    for name in sorted(PARSERS):
        yield pytest.param(name, id=name.replace(" ", "-"))


def _options(parser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("command", list(_params()))
def test_subcommand_follows_the_vocabulary(command):
    parser = PARSERS[command]
    options = _options(parser)
    problems = []
    forbidden = sorted(FORBIDDEN & set(options))
    if forbidden:
        problems.append(f"old spellings {forbidden}")
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"no help for {action.option_strings or action.dest}")
    top = command.split()[0]
    if (top in RUN_A_MODEL) != ("--device" in options) and command != "datasets validate":
        problems.append("--device missing" if top in RUN_A_MODEL else "--device where no model runs")
    if "--device" in options:
        device = options["--device"]
        if device.default not in (None, "auto") or not all(w in device.help for w in ("compute", "auto", "cpu", "cuda")):
            problems.append(f"--device must be the compute device, default auto: {device.default!r}, {device.help!r}")
    if "--input-device" in options and top != "stream":
        problems.append("--input-device outside stream")
    if top == "stream" and "--input-device" not in options:
        problems.append("stream needs --input-device (the audio input)")
    if ("-o" in options or "--output" in options) and options.get("-o") is not options.get("--output"):
        problems.append("-o and --output must be one option")
    if "--format" in options:
        fmt = options["--format"]
        if not fmt.choices or "json" not in fmt.choices or fmt.default != "json":
            problems.append(f"--format must offer json and default to it: {fmt.choices}, {fmt.default!r}")
    if ("-q" in options or "--quiet" in options) and options.get("-q") is not options.get("--quiet"):
        problems.append("-q and --quiet must be one option")
    if command in LONG_WORK and not {"-q", "--progress"} <= set(options):
        problems.append("long work needs -q/--quiet and --progress")
    if "--progress" in options:
        progress = options["--progress"]
        if tuple(progress.choices) != ("auto", "always", "never") or progress.default != "auto":
            problems.append(f"--progress must be auto|always|never, default auto: {progress.choices}")
        if "--quiet" not in options:
            problems.append("--progress without -q/--quiet")
    if "--data-home" in options and options["--data-home"].metavar != "[NAME=]DIR":
        problems.append(f"--data-home must read [NAME=]DIR, not {options['--data-home'].metavar}")
    assert not problems, f"m2e {command}: " + "; ".join(problems)


def test_every_subcommand_is_walked():
    expected = {"predict", "extract", "plugins", "datasets", "datasets info", "datasets validate", "stream",
                "devices", "features", "train", "evaluate", "evaluate-harmony"}
    assert expected <= set(PARSERS)


def test_music2emo_options_have_one_name():
    assert "--chords" in _options(PARSERS["predict"]) and "--chords" in _options(PARSERS["features"])
    for command in ("predict", "evaluate"):
        assert "--checkpoint" in _options(PARSERS[command])


def test_dataset_names_in_help_match_the_loaders(capsys):
    from m2e_plugin import loaders
    from m2e_plugin.cli import datasets
    from m2e_plugin.cli.main import main

    assert tuple(sorted(datasets._NAMES)) == tuple(sorted(loaders.DATASETS))
    assert main(["datasets", "info"]) == 0
    import json

    assert json.loads(capsys.readouterr().out) == list(loaders.DATASETS)


@pytest.mark.parametrize("values, datasets, expected", [
    (["DIR"], ["deam"], {"deam": "DIR"}),
    (["deam=/a", "pmemo=/b"], ["deam", "pmemo"], {"deam": "/a", "pmemo": "/b"}),
    (["/x/a=b"], ["deam"], {"deam": "/x/a=b"}),  # "=" inside a path is not a NAME= prefix
])
def test_data_home_accepts_name_or_bare_dir(values, datasets, expected):
    from m2e_plugin.cli.options import data_homes

    assert data_homes(values, datasets) == expected


@pytest.mark.parametrize("values, datasets, message", [
    (["DIR"], ["deam", "pmemo"], "write NAME=DIR"),
    (["=DIR"], ["deam"], "expects [NAME=]DIR"),
    (["deam="], ["deam"], "expects [NAME=]DIR"),
    (["deam=/a", "deam=/b"], ["deam"], "given twice"),
])
def test_data_home_rejects_ambiguity(values, datasets, message):
    from m2e_plugin.cli.options import data_homes

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        data_homes(values, datasets)


def test_data_home_for_rejects_another_dataset():
    from m2e_plugin.cli.options import data_home_for

    assert data_home_for(["fourq=/d"], "fourq") == "/d" and data_home_for([], "fourq") is None
    with pytest.raises(ValueError, match="names deam but the dataset is fourq"):
        data_home_for(["deam=/d"], "fourq")
