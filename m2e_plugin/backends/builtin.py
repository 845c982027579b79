"""The package's default plugin: the built-in models register through ``m2e_register_models`` exactly as a third
party's do (listed in :data:`m2e_plugin.plugins.DEFAULT_PLUGINS`, so ``M2E_LOAD_PLUGINS`` never switches them off)."""

from __future__ import annotations

import json

from m2e_plugin.hookspecs import hookimpl


def _lite_card() -> dict:
    # lite learns its sample rate and tag list from the card beside its shipped weights, not from class attributes.
    from m2e_plugin.backends.lite import default_weights

    return json.loads(default_weights().with_suffix(".json").read_text(encoding="utf-8"))


@hookimpl
def m2e_register_models(register):
    """``lite`` (default, embedded, offline) and ``music2emo`` (the paper's model)."""
    from m2e_plugin.backends.lite import LiteBackend
    from m2e_plugin.backends.music2emo import Music2EmoBackend

    register(LiteBackend, card=_lite_card)
    register(Music2EmoBackend)
