"""Time per training step relative to a dense step, on a preset's model and data (default: the default preset).

Variants: a fixed mask applied after each optimizer step (what at-init and after-training methods train with), and
every registered during-training method's learning phase. Each variant trains whole epochs through the shared
Trainer; the variants are interleaved round by round so that machine noise hits them alike, and the median over
rounds is reported.

    python scripts/step_time.py [--preset mnist5k-lenet5] [--sparsity 0.95] [--rounds 5] [--methods probmask,str]
                                [--clock cpu]

``--clock cpu`` times the process's CPU time instead of the wall clock: on a machine shared with other jobs, with one
thread (``OMP_NUM_THREADS=1``), it counts the work of each step and not the time spent waiting for a core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prunebench.config import RunConfig
from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.masks import MaskEnforcer, apply_masks
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.registry import all_methods
from prunebench.presets import DEFAULT_PRESET, get_preset
from prunebench.prunable import prunable_weights
from prunebench.runner import initial_model
from prunebench.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", help="during-training methods to time (default: all registered)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall time, or CPU time on a shared machine"
    )
    args = parser.parse_args()

    preset = get_preset(args.preset)
    torch.set_flush_denormal(True)  # as every run does (see prunebench.runner.execute)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = get_dataset(preset.dataset)
    recipe = preset.recipe
    loaders = dataset.make_loaders(LoaderRequest(batch_size=recipe.batch_size, seed=0, device=device))
    steps = len(loaders.train)
    chosen = args.methods.split(",") if args.methods else None
    learned = [
        s for s in all_methods() if s.schedule == "during_training" and (chosen is None or s.name in chosen)
    ]

    def trainer_for(variant: str) -> Trainer:
        model = initial_model(RunConfig.from_preset(preset, "dense", "global", 0.0, 0), device)
        if variant == "dense":
            return Trainer(model, loaders.train, recipe.optim, args.rounds + 1)
        if variant == "fixed mask":
            weights = prunable_weights(model)
            masks = {n: torch.rand_like(w) > args.sparsity for n, w in weights.items()}
            apply_masks(model, masks)
            return Trainer(
                model, loaders.train, recipe.optim, args.rounds + 1, hooks=[MaskEnforcer(model, masks)]
            )
        spec = next(s for s in learned if f"{s.name} ({s.scopes[0]})" == variant)
        context = TrainingContext(
            epochs=args.rounds + 1,
            steps_per_epoch=steps,
            device=device,
            seed=0,
            num_classes=dataset.num_classes,
            train_data=ScoringData(loaders.train, dataset.num_classes),
        )
        session = spec.build().attach(model, prunable_weights(model), args.sparsity, spec.scopes[0], context)
        return Trainer(
            model,
            loaders.train,
            recipe.optim,
            args.rounds + 1,
            hooks=[session],
            exclude=session.method_parameters(),
        )

    variants = ["dense", "fixed mask", *(f"{s.name} ({s.scopes[0]})" for s in learned)]
    trainers = {v: trainer_for(v) for v in variants}
    for trainer in trainers.values():
        for hook in trainer.hooks:
            hook.on_train_start(trainer)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {v: [] for v in variants}
    for epoch in range(args.rounds + 1):
        for variant, trainer in trainers.items():
            started = clock()
            trainer.run_epoch(epoch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if epoch > 0:  # the first epoch warms up allocators and caches
                times[variant].append((clock() - started) / steps)

    dense = statistics.median(times["dense"])
    print(
        f"preset {preset.name}, {steps} steps per epoch, batch {recipe.batch_size}, device {device}, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} epochs, {args.clock} clock"
    )
    print(f"{'variant':<28}{'ms/step':>10}{'x dense':>10}")
    for variant in variants:
        median = statistics.median(times[variant])
        print(f"{variant:<28}{1e3 * median:>10.3f}{median / dense:>10.3f}")


if __name__ == "__main__":
    main()
