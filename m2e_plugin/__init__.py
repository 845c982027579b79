"""m2e: music emotion recognition (a Music2Emo re-implementation) for audio-analysis toolchains.

Public entry points: :class:`Music2emo` (prediction API), :data:`hookimpl` (plugin marker), :class:`EmotionBackend`
and :class:`Prediction` (what a model plugin implements),
:mod:`m2e_plugin.harmony`, :mod:`m2e_plugin.loaders`, :mod:`m2e_plugin.realtime`.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from m2e_plugin._lazy import lazy_exports

try:
    __version__ = _version("m2e")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__getattr__, _exports = lazy_exports(__name__, {"Music2emo": "m2e_plugin.predictor",
                                                "hookimpl": "m2e_plugin.hookspecs",
                                                "EmotionBackend": "m2e_plugin.backends.base",
                                                "Prediction": "m2e_plugin.backends.base"})
__all__ = [*_exports, "__version__"]
