"""The GPU figures of the batched engine, one per line, in at most about 8 minutes on one H100.

* ``cifar10-resnet20`` epoch time with fixed masks (sparsity 0.9) at K = 1, 4, 16 runs batched
  (:func:`prunebench.run.batched_engine.stacked_epoch`; K = 1 is the trainer alone), with the peak GPU memory of each;
* runs per GPU-hour for each K: ``3600 K / (epoch time x the preset's epochs)``;
* the loaders alone: FFCV's images/s against the torch loader's (``--loader torch``, torchvision-style decoding and
  augmentation), where FFCV is installed;
* K = 1 with bf16 autocast and channels-last each switched off (``bench run`` on CUDA has both on).

CIFAR-10 is read from ``--data-root`` if it holds it, else CIFAR-shaped images are generated (``--images``, default
10,000) and converted to FFCV. Without a GPU the script says so and exits with status 0; ``--dry-run`` runs the same
code on the CPU with tiny sizes (what ``tests/test_batched_engine.py`` checks), its figures meaningless.

    python scripts/gpu_check.py [--images 10000] [--epochs 2] [--data-root DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.batched_engine import stacked_epoch
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import initial_model
from prunebench.run.trainer import Trainer
from prunebench.zoo.presets import get_preset

PRESET = "cifar10-resnet20"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[list[float]]:
    """The peak GPU memory (GiB) of the block, in the yielded list once it ends (0 on the CPU)."""
    found: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    yield found
    found.append(torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0)


def _trainers(
    k: int, device: torch.device, root: Path, loader: str, channels_last: bool, autocast
) -> list[Trainer]:
    """K runs of the preset (seeds 0..K-1), each with its own data order and a random mask at sparsity 0.9."""
    preset = get_preset(PRESET)
    built = []
    for seed in range(k):
        model = initial_model(RunConfig.from_preset(preset, "dense", "global", 0.0, seed), device)
        if not channels_last:
            model = model.to(memory_format=torch.contiguous_format)
        masks = {n: torch.rand_like(w) > 0.9 for n, w in prunable_weights(model).items()}
        apply_masks(model, masks)
        request = LoaderRequest(
            batch_size=preset.recipe.batch_size, seed=seed, device=device, data_root=root, loader=loader
        )
        train = get_dataset(preset.dataset).make_loaders(request).train
        trainer = Trainer(
            model, train, preset.recipe.optim, 3, hooks=[MaskEnforcer(model, masks)], autocast=autocast
        )
        trainer.begin()
        built.append(trainer)
    return built


def epoch_time(
    k: int,
    device: torch.device,
    root: Path,
    epochs: int,
    loader: str = "auto",
    channels_last: bool = True,
    autocast="auto",
) -> tuple[float, float]:
    """(median seconds per epoch after a warm-up epoch, peak GiB) of K runs, batched when K > 1."""
    trainers = _trainers(k, device, root, loader, channels_last, autocast)

    def epoch(index: int) -> None:
        if k == 1:
            trainers[0].run_epoch(index)
        else:
            stacked_epoch(trainers, index)

    times = []
    with _peak_memory(device) as peak:
        for index in range(epochs + 1):
            _synchronize(device)
            started = time.perf_counter()
            epoch(index % 3)
            _synchronize(device)
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:]), peak[0]


def loader_rate(root: Path, device: torch.device, loader: str, epochs: int) -> float:
    """Images per second of the preset's training loader alone (median over epochs after the first)."""
    preset = get_preset(PRESET)
    request = LoaderRequest(
        batch_size=preset.recipe.batch_size, seed=0, device=device, data_root=root, loader=loader
    )
    train = get_dataset(preset.dataset).make_loaders(request).train
    rates = []
    for index in range(epochs + 1):
        train.set_epoch(index)
        count = 0
        started = time.perf_counter()
        for images, _ in train:
            count += len(images)
        _synchronize(device)
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates[1:])


def _data(args: argparse.Namespace, scratch: Path) -> tuple[Path, bool]:
    """The CIFAR-10 root, and whether FFCV files are there (generated and converted when none is given)."""
    from prunebench.datasets.generated import write_cifar_layout
    from prunebench.datasets.prepare import prepare

    if args.data_root:
        root = Path(args.data_root)
        return root, any((root / "ffcv").glob("cifar10-*.beton"))
    write_cifar_layout(scratch, "cifar10", train=args.images, test=256)
    try:
        prepare("cifar10", scratch)
    except Exception as error:  # noqa: BLE001  (FFCV not installed: the torch loader only)
        print(f"ffcv: not available ({type(error).__name__}: {error})")
        return scratch, False
    return scratch, True


def _figure(name: str, compute: Callable[[], str]) -> None:
    try:
        print(f"{name}: {compute()}", flush=True)
    except Exception as error:  # noqa: BLE001  (one figure failing leaves the others)
        print(f"{name}: failed ({type(error).__name__}: {error})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=10_000, help="generated training images (without --data-root)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    parser.add_argument("--data-root", help="a directory holding CIFAR-10 (and its FFCV files)")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU, tiny sizes")
    args = parser.parse_args()
    if args.dry_run:
        device, sizes, args.images, args.epochs = torch.device("cpu"), (1, 2), 256, 1
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured")
        return
    else:
        device, sizes = torch.device("cuda"), (1, 4, 16)
    epochs = get_preset(PRESET).recipe.epochs
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)"
    print(
        f"device: {name}; torch {torch.__version__}; {PRESET}, {args.images} training images, fixed masks 0.9"
    )
    with tempfile.TemporaryDirectory() as scratch:
        root, has_ffcv = _data(args, Path(scratch))
        loader = "ffcv" if has_ffcv and device.type == "cuda" else "torch"
        for k in sizes:
            seconds, peak = epoch_time(k, device, root, args.epochs, loader)
            print(f"epoch time K={k}: {seconds:.3f} s ({loader} loader)", flush=True)
            print(f"runs per GPU-hour K={k}: {3600 * k / (seconds * epochs):.1f} (at {epochs} epochs a run)")
            print(f"peak memory K={k}: {peak:.2f} GiB", flush=True)
        for kind in ("ffcv", "torch") if has_ffcv else ("torch",):
            _figure(
                f"loader {kind}",
                lambda kind=kind: f"{loader_rate(root, device, kind, args.epochs):,.0f} images/s",
            )
        _figure(
            "epoch time K=1, bf16 off",
            lambda: f"{epoch_time(1, device, root, args.epochs, loader, autocast=None)[0]:.3f} s",
        )
        _figure(
            "epoch time K=1, channels-last off",
            lambda: f"{epoch_time(1, device, root, args.epochs, loader, channels_last=False)[0]:.3f} s",
        )


if __name__ == "__main__":
    main()
