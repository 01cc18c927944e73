"""Datasets: the registry, the embedded default and the loaders. Importing this package registers them all."""

from prunebench.datasets import cifar as _cifar  # noqa: F401  (registers cifar10 and cifar100)
from prunebench.datasets import embedded as _embedded  # noqa: F401  (registers mnist5k and synthetic)
from prunebench.datasets import imagenet as _imagenet  # noqa: F401  (registers imagenet)
from prunebench.datasets.registry import (
    DataLoaders,
    DatasetSpec,
    LoaderRequest,
    all_datasets,
    get_dataset,
    register_dataset,
)

__all__ = ["DataLoaders", "DatasetSpec", "LoaderRequest", "all_datasets", "get_dataset", "register_dataset"]
