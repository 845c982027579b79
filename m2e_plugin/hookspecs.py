"""Hook specifications for m2e plugins (pluggy project name ``m2e``, entry-point group ``m2e``).

A plugin is a module (or any object) with functions marked :data:`hookimpl` whose names match the specs below.
Third-party plugins are found through the ``m2e`` entry-point group::

    # pyproject.toml of the plugin package
    [project.entry-points.m2e]
    my_extractor = "my_package.m2e_hooks"

    # my_package/m2e_hooks.py
    from m2e_plugin import hookimpl

    @hookimpl
    def m2e_register_extractors(register):
        register(MyExtractor)

The built-in extractors (``lite``, ``music2emo``) register through the same hook (see
:data:`m2e_plugin.plugins.DEFAULT_PLUGINS`), so a third-party extractor is a peer of the built-ins.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "m2e"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def m2e_register_extractors(register):
    """Register descriptor extractors.

    Parameters
    ----------
    register : callable
        Call ``register(ExtractorClass)`` once per extractor class. The class must provide

        * ``name: str`` -- unique extractor name, used by ``m2e extract --extractor NAME``;
        * ``version: str`` -- version of the descriptor layout (bump it when outputs change);
        * ``sample_rate: int`` -- the rate ``compute`` wants (the batch runner decodes to it);
        * ``outputs: tuple[str, ...]`` -- every descriptor name ``compute`` may return (Essentia-style dotted
          names such as ``highlevel.music2emo.valence.mean``);
        * ``compute(self, audio: np.ndarray, sr: int) -> dict`` -- descriptors for one mono track.

        The class is instantiated by the host as ``ExtractorClass(**options)`` (options are those the user
        gave, e.g. ``device``), once per worker process, and ``compute`` is called once per track.

    Notes
    -----
    Return value is ignored. An exception raised here is reported and the plugin's extractors are skipped;
    the other plugins still load. Importing heavy libraries (torch, ...) should wait until the extractor is
    instantiated, so that listing plugins stays fast.
    """
