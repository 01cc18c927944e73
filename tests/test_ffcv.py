"""The FFCV path: files written by `bench data prepare`, decoded exactly, and batch for batch the torch loader's.

Skipped when ffcv (or its system libraries) is missing. FFCV is slow to import and each Loader compiles with numba,
so the files are written once per module and few loaders are built.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from prunebench.cli import main
from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.datasets.cifar import read_cifar
from prunebench.datasets.generated import write_cifar_layout, write_image_folder
from prunebench.datasets.imagenet import imagenet_samples

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("ffcv") is None, reason="ffcv is not installed"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    from prunebench.datasets.ffcv_loaders import ffcv_problem

    problem = ffcv_problem()
    if problem:
        pytest.skip(f"ffcv cannot be imported: {problem}")
    cifar = tmp_path_factory.mktemp("cifar")
    write_cifar_layout(cifar, "cifar10", train=300, test=60)
    assert main(["data", "prepare", "cifar10", "--data-root", str(cifar), "--workers", "2"]) == 0
    imagenet = tmp_path_factory.mktemp("imagenet")
    write_image_folder(imagenet, classes=3, per_class=4)
    command = ["data", "prepare", "imagenet", "--data-root", str(imagenet), "--write-mode", "raw"]
    assert main([*command, "--max-resolution", "0", "--workers", "2"]) == 0
    return cifar, imagenet


def _loaders(root, loader, dataset="cifar10", batch_size=64):
    request = LoaderRequest(batch_size=batch_size, seed=0, device=CPU, data_root=root, loader=loader)
    return get_dataset(dataset).make_loaders(request)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_prepare_leaves_only_complete_files(roots):
    for root, name in zip(roots, ("cifar10", "imagenet"), strict=True):
        assert sorted(p.name for p in (root / "ffcv").iterdir()) == [
            f"{name}-test.beton",
            f"{name}-train.beton",
        ]


def test_raw_files_decode_to_the_source_pixels_and_labels(roots):
    from prunebench.datasets.ffcv_loaders import FFCVBatches

    cifar, imagenet = roots
    batches = FFCVBatches(
        cifar / "ffcv" / "cifar10-test.beton", 25, shuffle=False, seed=0, device=CPU, num_workers=2
    )
    pairs = [(x.clone(), y.clone()) for x, y in batches]
    images, labels = read_cifar(cifar, "cifar10", train=False)
    assert torch.equal(torch.cat([x for x, _ in pairs]), torch.as_tensor(images).permute(0, 3, 1, 2))
    assert torch.equal(torch.cat([y for _, y in pairs]), torch.as_tensor(labels))

    batches = FFCVBatches(
        imagenet / "ffcv" / "imagenet-test.beton", 4, shuffle=False, seed=0, device=CPU, num_workers=2
    )
    decoded = torch.cat([x.clone() for x, _ in batches])
    samples = imagenet_samples(imagenet, "val")
    source = np.stack([np.asarray(Image.open(path).convert("RGB")) for path, _ in samples])
    assert torch.equal(decoded, torch.as_tensor(source).permute(0, 3, 1, 2))


def test_ffcv_and_torch_loaders_give_the_same_batches(roots):
    cifar, _ = roots
    ffcv, torch_path = _loaders(cifar, "auto"), _loaders(cifar, "torch")
    assert (ffcv.kind, torch_path.kind) == ("ffcv", "torch")
    for epoch in (0, 1):
        from_ffcv, from_torch = _epoch(ffcv.train, epoch), _epoch(torch_path.train, epoch)
        assert Counter(torch.cat([y for _, y in from_ffcv]).tolist()) == Counter(i % 10 for i in range(300))
        for (x1, y1), (x2, y2) in zip(from_ffcv, from_torch, strict=True):
            assert torch.equal(y1, y2) and torch.allclose(x1, x2)
    again = _epoch(ffcv.train, 0)
    assert torch.equal(again[0][0], _epoch(torch_path.train, 0)[0][0])
    assert not torch.equal(again[0][0], _epoch(ffcv.train, 1)[0][0])


def test_prepared_cifar_runs_the_resnet20_preset_end_to_end(roots, tmp_path):
    cifar, _ = roots
    out = tmp_path / "results"
    command = [
        "run",
        "--preset",
        "cifar10-resnet20",
        "--epochs",
        "2",
        "--methods",
        "magnitude",
        "--scopes",
        "global",
    ]
    command += [
        "--sparsity",
        "0.9",
        "--seeds",
        "1",
        "--data-root",
        str(cifar),
        "--loader",
        "ffcv",
        "--jobs",
        "1",
    ]
    assert main([*command, "--out", str(out)]) == 0
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {(r["method"], r["loader"], r["status"]) for r in records} == {
        ("dense", "ffcv", "ok"),
        ("magnitude", "ffcv", "ok"),
    }
    pruned = next(r for r in records if r["method"] == "magnitude")
    assert pruned["prunable_nonzero"] == round(pruned["prunable_weights"] * 0.1)
    assert (out / "leaderboard.md").read_text().count("resnet20") >= 1
