"""Prediction heads and checkpoint loading (Music2Emo multitask head, lite head).

Names are resolved lazily so that importing this package stays cheap.
"""

_LAZY = {
    "load_music2emo_head": "m2e_plugin.models.music2emo",
    "load_attnck": "m2e_plugin.models.music2emo",
    "MTAttnCK": "m2e_plugin.models.music2emo",
    "AttnCK": "m2e_plugin.models.music2emo",
    "CheckpointError": "m2e_plugin.models.music2emo",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2e_plugin.models' has no attribute {name!r}")


__all__ = sorted(_LAZY)
