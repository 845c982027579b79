"""SIGTERM as an exception: the CLI raises :class:`Terminated` (a KeyboardInterrupt, so every handler of Ctrl-C
also stops on it) where a scheduler, `timeout` or `docker stop` asks a command to end."""

from __future__ import annotations


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop now (unlike a Ctrl-C, which lets a batch's running tracks finish)."""
