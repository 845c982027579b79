"""Feature extractors that feed the heads: MERT (music2emo) and the lite spectral front end.

Names are resolved lazily (see :mod:`m2e_plugin._lazy`).
"""

from m2e_plugin._lazy import lazy_exports

_LAZY = {
    "load_mert": "m2e_plugin.backbones.mert",
    "music2emo_embedding": "m2e_plugin.backbones.mert",
    "segment_embeddings": "m2e_plugin.backbones.mert",
    "mert_hidden_means": "m2e_plugin.backbones.mert",
    "MertLoadError": "m2e_plugin.backbones.mert",
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
