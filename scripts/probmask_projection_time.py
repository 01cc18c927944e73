"""Time ProbMask's budget projection against a whole ProbMask training step, and that step against a dense one.

    python scripts/probmask_projection_time.py [--preset mnist5k-lenet5] [--device auto] [--epochs 2] [--threads N]

The steps are timed through the harness's own :class:`~prunebench.run.trainer.Trainer` (whole epochs, divided by the
number of steps, after one warm-up epoch), so they include everything a run pays: the K relaxed forward passes, the
backward pass, the clipping, both optimizers and the projection. The projection is timed alone on the session's
probability vector at the target budget. Targets: projection under 5% of a ProbMask step; a ProbMask step about K
times a dense step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from prunebench.core.environment import describe_device, resolve_device
from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.probmask import ProbMask, project_to_budget
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.run_context import initial_model
from prunebench.run.trainer import Trainer
from prunebench.zoo.presets import DEFAULT_PRESET, get_preset


def _timed(device: torch.device, work: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each kind of step")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    device = resolve_device(args.device)
    dataset = get_dataset(preset.dataset)
    loader = dataset.make_loaders(LoaderRequest(batch_size=preset.batch_size, seed=0, device=device)).train
    steps = args.epochs * len(loader)

    dense = initial_model(preset, 0, device)
    Trainer(dense, loader, preset.optim, 1).fit()  # warm-up
    dense_step = _timed(device, Trainer(dense, loader, preset.optim, args.epochs).fit) / steps

    model = initial_model(preset, 0, device)
    method = ProbMask()
    context = TrainingContext(
        epochs=args.epochs,
        steps_per_epoch=len(loader),
        device=device,
        seed=0,
        num_classes=dataset.num_classes,
        train_data=ScoringData(loader, dataset.num_classes),
    )
    session = method.attach(model, prunable_weights(model), args.sparsity, "learned", context)

    def probmask_trainer(epochs: int) -> Trainer:
        return Trainer(model, loader, preset.optim, epochs, hooks=[session])

    probmask_trainer(1).fit()  # warm-up
    probmask_step = _timed(device, probmask_trainer(args.epochs).fit) / steps

    k = (1.0 - args.sparsity) * session.size
    project_to_budget(session.scores.detach(), k)  # warm-up
    repeats = 200
    projection = (
        _timed(device, lambda: [project_to_budget(session.scores.detach(), k) for _ in range(repeats)])
        / repeats
    )

    print(
        f"preset {preset.name} ({preset.model}), device {describe_device(device)}, {torch.get_num_threads()} threads"
    )
    print(f"probabilities: {session.size} in {len(session.slices)} layers, K = {method.samples}")
    print(
        f"projection:      {1e3 * projection:8.3f} ms  ({100 * projection / probmask_step:.1f}% of a ProbMask step)"
    )
    print(f"ProbMask step:   {1e3 * probmask_step:8.3f} ms  ({probmask_step / dense_step:.2f}x a dense step)")
    print(f"dense step:      {1e3 * dense_step:8.3f} ms")


if __name__ == "__main__":
    main()
