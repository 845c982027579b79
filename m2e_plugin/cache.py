"""The one cache root for what m2e keeps outside the repository: feature caches, harmony renders, dataset indexes.

``$M2E_CACHE`` when set, else ``$XDG_CACHE_HOME/m2e`` (``~/.cache/m2e``). Read at each call, so tests and hosts can
change it at run time. Hugging Face downloads (MERT, the Music2Emo head, BTC) stay in huggingface_hub's own cache
(``HF_HUB_CACHE``), where other tools find and share them.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$M2E_CACHE``, or ``$XDG_CACHE_HOME/m2e`` (``~/.cache/m2e`` when XDG_CACHE_HOME is unset)."""
    explicit = os.environ.get("M2E_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "m2e"


def cache_dir(*parts: str) -> Path:
    """A folder under :func:`cache_root` (not created): ``cache_dir("features", "lite")``."""
    return cache_root().joinpath(*parts)
