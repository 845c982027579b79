"""What plugins register: :class:`ModelEntry` (a model and its static card) and the checks applied to registered
models and extractor classes. Discovery and the registries themselves are in :mod:`m2e_plugin.plugins`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_REQUIRED_ATTRIBUTES = ("name", "version", "sample_rate", "outputs")


@dataclass
class ModelEntry:
    """A registered model: its backend class, the plugin that registered it and its static model card."""

    name: str
    backend: type
    plugin: str
    card_source: Any = None  # dict, or a callable returning one (read on first use)
    _card: dict[str, Any] | None = field(default=None, repr=False)

    def registered_card(self) -> dict[str, Any]:
        """The card fields the plugin gave to ``register`` (resolved once)."""
        if self._card is None:
            source = self.card_source() if callable(self.card_source) else self.card_source
            self._card = dict(source or {})
        return self._card

    def card(self) -> dict[str, Any]:
        """The card known without loading the model: the class attributes, then the registered card on top."""
        cls = self.backend
        card: dict[str, Any] = {"name": self.name}
        for attr in ("version", "sample_rate", "block_seconds", "window_seconds", "hop_seconds", "window_batch"):
            value = getattr(cls, attr, None)
            if value not in (None, "", 0):
                card[attr] = value
        if getattr(cls, "mood_tags", ()):
            card["mood_tags"] = list(cls.mood_tags)
        card.update(self.registered_card())
        classes = card.get("classes")
        if "mood_tags" not in card and isinstance(classes, dict) and "mood_tags" in classes:
            card["mood_tags"] = list(classes["mood_tags"])
        return card

    def describe(self) -> dict[str, Any]:
        """What ``m2e plugins --models`` prints; a card that cannot be read is reported, not raised."""
        out: dict[str, Any] = {"name": self.name, "plugin": self.plugin,
                               "class": f"{self.backend.__module__}.{self.backend.__qualname__}"}
        try:
            out["card"] = self.card()
        except Exception as exc:
            out["error"] = f"model card unavailable: {type(exc).__name__}: {exc}"
        return out


def accept_model(cls, card=None) -> tuple[type, Any]:
    """What a plugin passes to ``m2e_register_models``'s ``register``, checked (``TypeError`` otherwise)."""
    from m2e_plugin.backends.base import EmotionBackend

    if not (isinstance(cls, type) and issubclass(cls, EmotionBackend)):
        raise TypeError(f"register() expects an EmotionBackend subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name.strip():
        raise TypeError(f"model class {cls.__qualname__}: name must be a non-empty string, got {cls.name!r}")
    if card is not None and not (callable(card) or isinstance(card, dict)):
        raise TypeError(f"model {cls.name!r}: card must be a dict or a callable returning one")
    return cls, card


def accept_extractor(cls) -> type:
    """What a plugin passes to ``m2e_register_extractors``'s ``register``, checked (``TypeError`` otherwise)."""
    validate_extractor_class(cls)
    return cls


def validate_extractor_class(cls: object) -> None:
    """Raise ``TypeError`` if ``cls`` does not follow the extractor protocol (see the hookspec)."""
    if not isinstance(cls, type):
        raise TypeError(f"register() expects an extractor class, got {cls!r}")
    # Looked up statically: a class may resolve e.g. sample_rate lazily from its model, which listing must not load.
    missing = [a for a in _REQUIRED_ATTRIBUTES if not any(a in vars(k) for k in cls.__mro__)]
    if not callable(getattr(cls, "compute", None)):
        missing.append("compute()")
    if missing:
        raise TypeError(f"extractor class {cls.__qualname__} lacks {', '.join(missing)}")
    if not isinstance(cls.name, str) or not cls.name.strip():
        raise TypeError(f"extractor class {cls.__qualname__}: name must be a non-empty string, got {cls.name!r}")
    if not isinstance(cls.version, str):
        raise TypeError(f"extractor {cls.name!r}: version must be a string, got {cls.version!r}")
    outputs = cls.outputs
    if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
        raise TypeError(f"extractor {cls.name!r}: outputs must be a tuple of descriptor names")


def check_extractor(extractor: object) -> None:
    """Raise ``TypeError`` if an extractor *instance* breaks the protocol (checked once the model is loaded)."""
    validate_extractor_class(type(extractor))
    try:
        rate = int(extractor.sample_rate)
    except (TypeError, ValueError):
        rate = 0
    if rate <= 0:
        raise TypeError(f"extractor {extractor.name!r}: sample_rate must be a positive int, "
                        f"got {extractor.sample_rate!r}")
