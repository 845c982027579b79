"""Emotion-model backends (``lite``, ``music2emo``) behind one interface; see :mod:`m2e_plugin.backends.base`."""

from m2e_plugin.backends.base import EmotionBackend, Prediction, get_backend, resolve_device

__all__ = ["EmotionBackend", "Prediction", "get_backend", "resolve_device"]
