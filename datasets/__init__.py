"""Datasets: the registry, the embedded default and the loaders.

Importing this package imports no loader (and no torch): the registry declares the package's datasets from the
registry index and imports a module when its dataset is used (:mod:`prunebench.datasets.dataset_registry`).
"""

from prunebench.datasets.dataset_registry import all_datasets, get_dataset, register_dataset
from prunebench.datasets.spec import DataLoaders, DatasetSpec, LoaderRequest

__all__ = ["DataLoaders", "DatasetSpec", "LoaderRequest", "all_datasets", "get_dataset", "register_dataset"]
