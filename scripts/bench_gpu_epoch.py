"""One training epoch of cifar10-resnet20 on generated CIFAR-shaped data: FFCV vs the torch DataLoader, on a GPU.

UNTESTED ON A GPU: written without access to one; run it on a CUDA machine with ffcv installed and check the output
before quoting figures. On a machine without CUDA it stops with a message.

For each loader it builds the preset's loaders and ResNet-20 (bf16 autocast and channels-last, as ``bench run`` does
on CUDA), trains one warm-up epoch (FFCV compiles its pipeline then), then times ``--epochs`` epochs with the
shared Trainer, sampling GPU utilisation every 0.1 s (``torch.cuda.utilization``, which needs ``pynvml``, else
``nvidia-smi``).

    python scripts/bench_gpu_epoch.py [--images 50000] [--epochs 2] [--loaders ffcv,torch] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.datasets.generated import write_cifar_layout
from prunebench.datasets.prepare import prepare
from prunebench.run.run_context import RunOptions, initial_model
from prunebench.run.trainer import Trainer
from prunebench.zoo.presets import get_preset


def _utilisation() -> float:
    try:
        return float(torch.cuda.utilization())
    except Exception:  # noqa: BLE001  (pynvml missing: ask nvidia-smi)
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        return float(subprocess.run(query, capture_output=True, text=True, check=True).stdout.split()[0])


class Sampler:
    """GPU utilisation (percent) sampled in a background thread while the body runs."""

    def __enter__(self) -> Sampler:
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(_utilisation())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    parser.add_argument("--loaders", default="ffcv,torch")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu_epoch: no CUDA device here")
    device = torch.device("cuda")
    preset = get_preset("cifar10-resnet20")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_cifar_layout(root, "cifar10", train=args.images, test=1000)
        prepare("cifar10", root)
        for kind in args.loaders.split(","):
            request = LoaderRequest(
                batch_size=preset.batch_size, seed=0, device=device, data_root=root, loader=kind
            )
            loaders = get_dataset("cifar10").make_loaders(request)
            model = initial_model(preset, 0, device, RunOptions(compile=args.compile))
            Trainer(model, loaders.train, preset.optim, 1).fit()
            torch.cuda.synchronize()
            trainer = Trainer(model, loaders.train, preset.optim, args.epochs)
            with Sampler() as sampler:
                started = time.perf_counter()
                trainer.fit()
                torch.cuda.synchronize()
                elapsed = (time.perf_counter() - started) / args.epochs
            utilisation = statistics.mean(sampler.samples) if sampler.samples else float("nan")
            print(
                f"{loaders.kind:<6} {elapsed:7.2f} s/epoch  {args.images / elapsed:9,.0f} images/s  "
                f"GPU utilisation {utilisation:5.1f}%  ({torch.cuda.get_device_name()})"
            )


if __name__ == "__main__":
    main()
