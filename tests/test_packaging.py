"""The wheel ships every file the package reads, and the licence texts of the networks it ships.

The package list in pyproject.toml is explicit (``loaders/`` and ``realtime/`` install inside ``m2e_plugin``), so a new
subpackage or data folder that is not listed would silently be left out of ``pip install .``: these tests compare
the source tree with the configuration, without building (a build needs setuptools from the network)."""

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = CONFIG["tool"]["setuptools"]
WEIGHTS = ROOT / "m2e_plugin" / "models" / "weights"


def _package_of(directory: Path) -> str | None:
    """The import name a source directory installs as (through ``package-dir``), None outside the package."""
    for name, source in sorted(SETUPTOOLS["package-dir"].items(), key=lambda item: -len(item[1])):
        base = ROOT / source
        if directory == base or base in directory.parents:
            rel = directory.relative_to(base).parts
            return ".".join((name, *rel))
    return None


def _source_files():
    for source in SETUPTOOLS["package-dir"].values():
        for path in (ROOT / source).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
                yield path


def test_every_module_and_data_file_is_configured_to_ship():
    packages, package_data = set(SETUPTOOLS["packages"]), SETUPTOOLS["package-data"]
    unlisted, unmatched = set(), []
    for path in _source_files():
        package = _package_of(path.parent)
        if package not in packages:
            unlisted.add(package)
        elif path.suffix != ".py" and not any(fnmatch.fnmatch(path.name, p) for p in package_data.get(package, [])):
            unmatched.append(str(path.relative_to(ROOT)))
    assert not unlisted, f"folders with files that pyproject.toml's `packages` does not list: {sorted(unlisted)}"
    assert not unmatched, f"files no `package-data` pattern ships: {unmatched}"


def test_package_data_patterns_all_match_something():
    """A stale pattern hides a renamed data file (the file would be flagged above; the pattern would not)."""
    for package, patterns in SETUPTOOLS["package-data"].items():
        assert package in SETUPTOOLS["packages"], package
        sources = [d for d in {p.parent for p in _source_files()} if _package_of(d) == package]
        assert len(sources) == 1, package
        for pattern in patterns:
            assert list(sources[0].glob(pattern)), f"{package}: {pattern} matches no file"


def test_licence_files_exist_and_every_shipped_network_has_its_licence_text():
    for pattern in CONFIG["project"]["license-files"]:
        assert list(ROOT.glob(pattern)), f"license-files: {pattern} matches no file"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    table = (WEIGHTS / "licences" / "README.md").read_text()
    for weights in sorted(WEIGHTS.glob("*.safetensors")):
        assert f"`{weights.name}`" in table, f"{weights.name} is not in licences/README.md"
    isc = (WEIGHTS / "licences" / "musicnn-ISC.txt").read_text()
    assert "Music Technology Group" in isc and "permission notice appear in all copies" in isc
    assert "Apache License" in (WEIGHTS / "licences" / "Apache-2.0.txt").read_text()
    assert "Spotify AB" in (WEIGHTS / "licences" / "basic-pitch-NOTICE.txt").read_text()
