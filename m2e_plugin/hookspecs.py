"""Hook specifications for m2e plugins (pluggy project name ``m2e``, entry-point group ``m2e``).

A plugin is a module (or any object) with functions marked :data:`hookimpl` whose names match the specs below.
Third-party plugins are found through the ``m2e`` entry-point group::

    # pyproject.toml of the plugin package
    [project.entry-points.m2e]
    my_extractor = "my_package.m2e_hooks"

    # my_package/m2e_hooks.py
    from m2e_plugin import hookimpl

    @hookimpl
    def m2e_register_models(register):
        from my_package.model import MyBackend      # an m2e_plugin.EmotionBackend subclass

        register(MyBackend)

    @hookimpl
    def m2e_register_extractors(register):
        register(MyExtractor)

The built-in models (``lite``, ``music2emo``) register through the same hook from
:data:`m2e_plugin.plugins.DEFAULT_PLUGINS`, so a third-party model is a peer of the built-ins: it serves
``m2e predict --model``, ``m2e extract --model`` (through the generic model extractor) and ``m2e stream --model``.
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


@hookspec
def m2e_register_models(register):
    """Register emotion models.

    Parameters
    ----------
    register : callable
        Call ``register(BackendClass, card=None)`` once per model. ``BackendClass`` subclasses
        :class:`m2e_plugin.EmotionBackend` (``from m2e_plugin import EmotionBackend, Prediction``) and sets

        * ``name: str`` -- the model name users give to ``--model`` / ``Music2emo(model=...)``;
        * ``version``, ``sample_rate``, ``block_seconds``, ``window_seconds``, ``hop_seconds``, ``window_batch``,
          ``mood_tags`` -- class attributes where they are known before loading (``m2e plugins`` shows them);
          once built, ``sample_rate`` must be a positive whole number of Hz and ``mood_tags`` a tuple of distinct
          names (empty for valence/arousal only), or building it is a ``ValueError`` naming the model; ``version``
          is part of ``m2e extract``'s settings (a folder made with another version is not resumed);
        * ``predict_track(blocks) -> Prediction`` (and optionally ``predict_window``/``predict_windows``).

        The host builds it as ``BackendClass(device=..., **options)`` only when a user asks for that model.
        ``card`` (a dict, or a callable returning one, called when the card is first needed) adds model-card
        fields known without loading the weights (sample rate, mood tags, licence, metrics...).

    Notes
    -----
    Return value is ignored. A plugin that raises here, or registers something that is not an
    ``EmotionBackend`` subclass with a name, is listed by ``m2e plugins`` with its error and skipped; only a model
    the user asked for is fatal. A name already taken skips that model alone. A distribution whose ``Requires-Dist``
    on ``m2e`` excludes the installed version is skipped before its import. Import heavy libraries in the backend's
    ``__init__``, not at import time.
    """
