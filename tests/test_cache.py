"""The one cache root: M2E_CACHE, else XDG_CACHE_HOME/m2e, else ~/.cache/m2e; every user of a cache goes through it."""

from pathlib import Path

from m2e_plugin.cache import cache_dir, cache_root


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("M2E_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "m2e"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "m2e"
    monkeypatch.setenv("M2E_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert cache_dir("features", "lite") == tmp_path / "mine" / "features" / "lite"


def test_feature_and_index_caches_live_under_the_root(monkeypatch, tmp_path):
    from m2e_plugin.loaders.core import user_cache_dir
    from m2e_plugin.training.features import default_cache_root

    monkeypatch.setenv("M2E_CACHE", str(tmp_path))
    assert default_cache_root() == tmp_path
    assert Path(user_cache_dir()) == tmp_path / "indexes"
