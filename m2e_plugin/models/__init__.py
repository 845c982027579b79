"""Prediction heads and checkpoint loading (Music2Emo multitask head, lite head).

Names are resolved lazily (see :mod:`m2e_plugin._lazy`).
"""

from m2e_plugin._lazy import lazy_exports

_LAZY = {
    "load_music2emo_head": "m2e_plugin.models.music2emo",
    "load_attnck": "m2e_plugin.models.music2emo",
    "MTAttnCK": "m2e_plugin.models.music2emo",
    "AttnCK": "m2e_plugin.models.music2emo",
    "CheckpointError": "m2e_plugin.models.music2emo",
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
