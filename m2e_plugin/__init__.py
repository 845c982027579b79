"""m2e: music emotion recognition (a Music2Emo re-implementation) for audio-analysis toolchains.

Public entry points: :class:`Music2emo` (prediction API), :data:`hookimpl` (plugin marker),
:mod:`m2e_plugin.harmony`, :mod:`m2e_plugin.loaders`, :mod:`m2e_plugin.realtime`.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("m2e")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name):
    # Lazy: `import m2e_plugin` stays cheap (no torch) for plugin discovery and CLI start-up.
    if name == "Music2emo":
        from m2e_plugin.predictor import Music2emo

        return Music2emo
    if name == "hookimpl":
        from m2e_plugin.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'm2e_plugin' has no attribute {name!r}")


__all__ = ["Music2emo", "hookimpl", "__version__"]
