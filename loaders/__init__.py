"""mirdata-style loaders for music-emotion datasets (installed as ``m2e_plugin.loaders``).

mirdata discovers datasets only inside its own package and hard-codes where indexes live, so these loaders are
constructed through this module's :func:`initialize`, which mirrors ``mirdata.initialize``::

    from m2e_plugin import loaders
    deam = loaders.initialize("deam", data_home="/data/DEAM")
    track = deam.track("2")
    track.valence, track.arousal        # 1-9 scale
    audio, sr = track.audio             # mono float32, native rate

Each dataset's index is built from the files its publisher distributes (see each module's docstring for the layout).
"""

from __future__ import annotations

import importlib

#: Dataset names, one module each.
DATASETS = ("deam", "emomusic", "fourq", "mtg_jamendo_moodtheme", "pmemo")


def list_datasets():
    """Get the list of dataset names.

    Returns:
        list: dataset names as strings

    """
    return list(DATASETS)


def _module(dataset_name):
    if dataset_name not in DATASETS:
        raise ValueError(f"Invalid dataset {dataset_name!r}; available: {', '.join(DATASETS)}")
    return importlib.import_module(f"{__name__}.{dataset_name}")


def list_dataset_versions(dataset_name):
    """List the versions of a dataset.

    Returns:
        str: the available versions and the default one, in mirdata's wording

    """
    module = _module(dataset_name)
    versions = [v for v in module.INDEXES if v not in ("default", "sample", "test")]
    return f"Available versions for {dataset_name}: {versions}. Default version: {module.INDEXES['default']}"


def initialize(dataset_name, data_home=None, version="default"):
    """Load a dataset by name (same signature as ``mirdata.initialize``).

    Args:
        dataset_name (str): one of :data:`DATASETS`
        data_home (str or None): where the dataset lives; default ``~/mir_datasets/<dataset_name>``
        version (str): index version; ``"default"``

    Returns:
        mirdata.core.Dataset: the dataset object

    """
    return _module(dataset_name).Dataset(data_home=data_home, version=version)


__all__ = ["DATASETS", "list_datasets", "list_dataset_versions", "initialize"]
