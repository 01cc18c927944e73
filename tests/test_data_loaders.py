"""On-disk datasets through the torch DataLoader path: real layouts, seeded order and augmentation, loader choice."""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from prunebench.core.errors import UsageError
from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.datasets.augment import (
    cifar_augment,
    crop_by_gather,
    crop_by_slices,
    random_crop,
    random_flip,
)
from prunebench.datasets.cifar import read_cifar
from prunebench.datasets.generated import write_cifar_layout, write_image_folder
from prunebench.datasets.memory import epoch_generator
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import RunOptions
from prunebench.run.runner import execute
from prunebench.zoo.presets import get_preset

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_layout(root, "cifar10", train=300, test=60)
    write_cifar_layout(root, "cifar100", train=200, test=50, seed=1)
    return root


def _loaders(root, dataset="cifar10", seed=0, loader="torch", batch_size=64):
    request = LoaderRequest(batch_size=batch_size, seed=seed, device=CPU, data_root=root, loader=loader)
    return get_dataset(dataset).make_loaders(request)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_read_cifar_returns_the_pickled_pixels_and_labels(cifar_root):
    images, labels = read_cifar(cifar_root, "cifar10", train=True)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as handle:
        first = pickle.load(handle, encoding="latin1")
    assert np.array_equal(images[:60], first["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert labels[:60].tolist() == first["labels"]
    _, fine = read_cifar(cifar_root, "cifar100", train=False)
    assert sorted(set(fine.tolist())) == list(range(50))


def test_random_crop_is_a_padded_window_and_flip_mirrors():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    generator = epoch_generator(0, 0)
    offsets = torch.randint(0, 9, (2, 6), generator=epoch_generator(0, 0))
    crops = random_crop(images, generator, 4)
    padded = F.pad(images, (4, 4, 4, 4))
    for i in range(6):
        dy, dx = offsets[:, i].tolist()
        assert torch.equal(crops[i], padded[i, :, dy : dy + 8, dx : dx + 8])
    flipped = random_flip(images, epoch_generator(1, 0))
    for i in range(6):
        assert torch.equal(flipped[i], images[i]) or torch.equal(flipped[i], images[i].flip(-1))


def test_gather_crops_used_on_cuda_equal_the_slice_crops_used_on_cpu():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    offsets = torch.randint(0, 9, (2, 64))
    mirrored = torch.rand(64) < 0.5
    assert torch.equal(
        crop_by_gather(images, 4, offsets, mirrored), crop_by_slices(images, 4, offsets, mirrored)
    )


def test_augmentation_is_a_function_of_the_generator_seed():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    first = cifar_augment(images, epoch_generator(0, 1))
    assert torch.equal(first, cifar_augment(images, epoch_generator(0, 1)))
    assert not torch.equal(first, cifar_augment(images, epoch_generator(1, 1)))


def test_torch_loader_is_seeded_by_seed_and_epoch(cifar_root):
    first = _epoch(_loaders(cifar_root).train, 0)
    again = _epoch(_loaders(cifar_root).train, 0)
    other_seed = _epoch(_loaders(cifar_root, seed=1).train, 0)
    other_epoch = _epoch(_loaders(cifar_root).train, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], other_seed[0][0])
    assert not torch.equal(first[0][0], other_epoch[0][0])
    labels = Counter(torch.cat([y for _, y in first]).tolist())
    assert (
        labels
        == Counter(torch.cat([y for _, y in other_seed]).tolist())
        == Counter(i % 10 for i in range(300))
    )
    assert [len(y) for _, y in first] == [64, 64, 64, 64, 44]
    x = first[0][0]
    assert x.dtype == torch.float32 and x.shape == (64, 3, 32, 32) and abs(float(x.mean())) < 0.5


def test_test_split_is_unaugmented_and_in_file_order(cifar_root):
    loaders = _loaders(cifar_root)
    images, labels = read_cifar(cifar_root, "cifar10", train=False)
    batches = _epoch(loaders.test, 0)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.as_tensor(labels))
    x = batches[0][0][0]
    mean = torch.tensor((0.4914, 0.4822, 0.4465))[:, None, None]
    std = torch.tensor((0.2470, 0.2435, 0.2616))[:, None, None]
    pixels = torch.as_tensor(images[0]).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, (pixels - mean) / std, atol=1e-5)


def test_auto_falls_back_to_torch_with_one_message(cifar_root, caplog):
    with caplog.at_level(logging.WARNING, logger="prunebench.datasets"):
        assert _loaders(cifar_root, dataset="cifar100", loader="auto").kind == "torch"
        assert _loaders(cifar_root, dataset="cifar100", loader="auto").kind == "torch"
    messages = [r.getMessage() for r in caplog.records if "cifar100" in r.getMessage()]
    assert len(messages) == 1 and "torch DataLoader" in messages[0]


def test_explicit_ffcv_without_files_is_a_usage_error(cifar_root):
    with pytest.raises(UsageError, match="ffcv"):
        _loaders(cifar_root, loader="ffcv")


def test_missing_cifar_root_names_the_expected_folder(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", offline)
    with pytest.raises(UsageError, match="cifar-10-batches-py"):
        _loaders(tmp_path)


def test_imagenet_folder_through_the_torch_loader(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=4)
    loaders = _loaders(tmp_path, dataset="imagenet", batch_size=5)
    first = _epoch(loaders.train, 0)
    assert [tuple(x.shape) for x, _ in first] == [(5, 3, 224, 224), (5, 3, 224, 224), (2, 3, 224, 224)]
    assert Counter(torch.cat([y for _, y in first]).tolist()) == {0: 4, 1: 4, 2: 4}
    again = _epoch(_loaders(tmp_path, dataset="imagenet", batch_size=5).train, 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], _epoch(loaders.train, 1)[0][0])
    test = _epoch(loaders.test, 0)
    assert torch.cat([y for _, y in test]).tolist() == [0, 0, 1, 1, 2, 2]


def test_loader_choice_is_recorded_and_leaves_the_run_id_alone(cifar_root, tmp_path):
    preset = replace(get_preset("cifar10-resnet20"), model="lenet5")
    config = RunConfig.from_preset(preset, "dense", "none", 0.0, seed=0, epochs=2)
    options = RunOptions(loader="torch", data_root=cifar_root)
    record = execute(config, CPU, tmp_path, options=options)
    assert record["loader"] == "torch" and record["status"] == "ok"
    assert record["run_id"] == config.run_id
    assert record["precision"] == "fp32"


def test_run_command_takes_loader_and_data_root():
    from prunebench.cli import build_parser

    args = build_parser().parse_args(["run", "--loader", "ffcv", "--data-root", "somewhere", "--compile"])
    assert (args.loader, args.data_root, args.compile) == ("ffcv", "somewhere", True)
    assert build_parser().parse_args(["run"]).loader is None  # unset: the experiment's default (auto) applies
