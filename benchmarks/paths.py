"""Where the benchmark scripts find the shared data and keep their caches: one rule for all of them.

``python benchmarks/<script>.py`` puts this folder first on ``sys.path``, so scripts ``from paths import ...``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The real data beside the checkout (``../shared/data``), or ``$M2E_SHARED_DATA`` (as the tests read it)."""
    return Path(os.environ.get("M2E_SHARED_DATA", REPO.parent / "shared" / "data"))


def cache_dir(*parts: str) -> Path:
    """A folder under m2e's cache root (``$M2E_CACHE``, default ``~/.cache/m2e``), where ``m2e features`` writes."""
    from m2e_plugin.cache import cache_root

    return cache_root().joinpath(*parts)
