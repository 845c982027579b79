"""Feature extractors that feed the heads: MERT (music2emo) and the lite spectral front end.

Names are resolved lazily so that importing this package does not import torch/transformers.
"""

_LAZY = {
    "load_mert": "m2e_plugin.backbones.mert",
    "music2emo_embedding": "m2e_plugin.backbones.mert",
    "segment_embeddings": "m2e_plugin.backbones.mert",
    "mert_hidden_means": "m2e_plugin.backbones.mert",
    "MertLoadError": "m2e_plugin.backbones.mert",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2e_plugin.backbones' has no attribute {name!r}")


__all__ = sorted(_LAZY)
