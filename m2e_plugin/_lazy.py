"""Lazy package attributes: `import m2e_plugin` and its subpackages stay cheap (no torch/transformers) for plugin
discovery and CLI start-up; a name's module is imported on first access."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, names: dict[str, str]):
    """``(__getattr__, __all__)`` for a package whose public ``names`` live in the mapped modules."""

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(names)
