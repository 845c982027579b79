"""Every `m2e ...` example in the README's bash blocks parses with today's options (renames cannot leave stale
examples behind). Placeholders in brackets (`[--decode]`) are optional parts and are dropped."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from m2e_plugin.cli.main import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while "m2e" in words:
                words = words[words.index("m2e"):]
                end = words.index("&&") if "&&" in words else len(words)
                commands.append(" ".join(shlex.quote(w) for w in words[:end]))
                words = words[end:]
    return commands


EXAMPLES = _examples()


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize("command", EXAMPLES)
def test_readme_example_parses(command):
    argv = [w for w in shlex.split(command)[1:] if not (w.startswith("[") and w.endswith("]"))]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of rejecting an option
        pytest.fail(f"README example no longer parses: {command} (exit {exc.code})")
    assert callable(args.func)
