"""Time per training step relative to a dense step, on a preset's model and data (default: the default preset).

Variants: a fixed mask applied after each optimizer step (what at-init and after-training methods train with), and
every registered during-training method's learning phase. Each variant trains whole epochs through the shared
Trainer; the variants are interleaved round by round so that machine noise hits them alike, and the median over
rounds is reported.

    python scripts/step_time.py [--preset mnist5k-lenet5] [--sparsity 0.95] [--rounds 5] [--methods probmask,str]
                                [--clock cpu] [--random-data 1280] [--against REF] [--floors] [--plain]

``--floors`` adds, for ProbMask and STR, a step that does only the part of their work that no implementation of their
formulas can skip, so that a method's ratio can be read against what is reachable at all:

* ``probmask floor``: ``K`` forward and backward passes of the model with a fixed mask (ProbMask's ``K`` relaxed
  masks are ``K`` whole passes), the ``K x N`` uniform draws from the device's torch generator (one noise per
  prunable weight per sample; the step's draws are also timed alone and printed), and the weights' SGD step with
  the mask applied. No relaxation, gradient of the probabilities, clipping, Adam or projection.
* ``str floor``: each prunable weight computed through ``softshrink(W, c)`` with a constant cutoff ``c`` (one pass
  forward; autograd's ``softshrink_backward``, one pass, gives ``dL/dW``), through the same parametrization as the
  methods. No gradient of the thresholds, no survivor count, no threshold step or controller.

``--plain`` also times every variant on the plain path (``, plain``: every opt-in speed-up of
:mod:`prunebench.run.fast_paths` off, as ``PRUNEBENCH_PLAIN=1``) and with each speed-up off alone (``, no NAME``), built
side by side and interleaved with the others: what each speed-up saves a step, on this device. It also times the
optimizer steps alone, ``optimizer.step()`` against the direct kernel call of :mod:`prunebench.run.fused_step`
(interleaved blocks of calls; whole steps vary more from epoch to epoch than that call's saving).

``--clock cpu`` times the process's CPU time instead of the wall clock: on a machine shared with other jobs, with one
thread (``OMP_NUM_THREADS=1``), it counts the work of each step and not the time spent waiting for a core.
``--random-data N`` trains on N random inputs of the dataset's shape, held in memory (for a preset whose data is not
on this machine, such as ``cifar10-resnet20``). ``--against REF`` also times the code of the git revision ``REF``
(checked out in a temporary worktree, run by this script in a child process) and prints both tables side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.nn import functional as F

from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.datasets.memory import TensorLoader
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.masked import MaskedSession
from prunebench.methods.method_registry import all_methods, get_method
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.pruning.prunable import prunable_weights
from prunebench.run import fast_paths
from prunebench.run.fused_step import AdamStep, SGDStep
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import initial_model
from prunebench.run.trainer import Trainer
from prunebench.zoo.presets import DEFAULT_PRESET, get_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", help="during-training methods to time (default: all registered)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall time, or CPU time on a shared machine"
    )
    parser.add_argument(
        "--random-data", type=int, help="train on this many random inputs of the dataset's shape"
    )
    parser.add_argument("--against", metavar="REF", help="also time the code of this git revision")
    parser.add_argument(
        "--floors", action="store_true", help="also time ProbMask's and STR's unavoidable work alone"
    )
    parser.add_argument(
        "--plain", action="store_true", help="also time each variant with the opt-in speed-ups off"
    )
    parser.add_argument(
        "--batched",
        type=int,
        metavar="K",
        help="time K runs' step batched against K single steps: fixed masks, and each of --methods if given",
    )
    parser.add_argument("--json", help=argparse.SUPPRESS)  # the child of --against writes its figures here
    args = parser.parse_args()
    if args.batched:
        for line in measure_batched(args):
            print(line)
        return
    if args.against:
        compare(args)
        return
    figures = measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures))
    else:
        print(figures["header"])
        print(f"{'variant':<44}{'ms/step':>10}{'x dense':>10}")
        for variant, (ms, ratio) in figures["variants"].items():
            print(f"{variant:<44}{ms:>10.3f}{ratio:>10.3f}")
        for line in figures.get("notes", []):
            print(line)


def _package_of(worktree: Path, into: Path) -> Path:
    """A directory that, on ``PYTHONPATH``, imports ``prunebench`` from ``worktree`` (the package maps ``bench/``,
    ``methods/``, ``datasets/`` and ``leaderboard/`` onto one import package, see pyproject.toml)."""
    package = into / "prunebench"
    package.mkdir(parents=True)
    for source in (worktree / "bench").iterdir():  # modules, subpackages and data files (the registry index)
        (package / source.name).symlink_to(source)
    for sub in ("methods", "datasets", "leaderboard"):
        (package / sub).symlink_to(worktree / sub)
    return into


def compare(args: argparse.Namespace) -> None:
    """Time ``args.against``'s code and this checkout's, one after the other, and print them side by side."""
    passed = [a for a in sys.argv[1:] if not a.startswith("--against") and a != args.against]
    with tempfile.TemporaryDirectory() as temporary:
        worktree = Path(temporary) / "worktree"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.against], check=True)
        try:
            path = _package_of(worktree, Path(temporary) / "path")
            results = {}
            for label, env in (
                (args.against, {**os.environ, "PYTHONPATH": str(path)}),
                ("this checkout", dict(os.environ)),
            ):
                out = Path(temporary) / f"{len(results)}.json"
                subprocess.run([sys.executable, __file__, *passed, "--json", str(out)], check=True, env=env)
                results[label] = json.loads(out.read_text())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], check=True)
    (before_label, before), (after_label, after) = results.items()
    print(after["header"])
    print(f"{'variant':<44}{'ms/step':>10}{'x dense':>10}{'ms/step':>10}{'x dense':>10}{'after/before':>14}")
    print(f"{'':<44}{before_label[:20]:>20}{after_label:>20}")
    for variant, (ms, ratio) in after["variants"].items():
        old_ms, old_ratio = before["variants"].get(variant, (float("nan"), float("nan")))
        print(f"{variant:<44}{old_ms:>10.3f}{old_ratio:>10.3f}{ms:>10.3f}{ratio:>10.3f}{ms / old_ms:>14.2f}")
    for line in after.get("notes", []):
        print(line)


class SampledPassesFloor(MaskEnforcer):
    """ProbMask's unavoidable work per step: ``samples`` forward and backward passes of the masked model and one
    uniform draw per prunable weight per sample, into a buffer kept from step to step (``--floors``). The draws are
    also timed alone with ``clock``, on the CPU only (on a GPU the call returns before the kernel has run)."""

    def __init__(
        self, model: torch.nn.Module, masks: dict[str, torch.Tensor], samples: int, clock: Callable[[], float]
    ) -> None:
        super().__init__(model, masks)
        self.samples = samples
        self.clock = clock
        size = sum(m.numel() for m in masks.values())
        self.draws = torch.empty(samples, size, device=self.weights[0].device)
        self.draw_time: list[float] = []

    def compute_loss(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        started = self.clock()
        self.draws.uniform_()
        if self.draws.device.type == "cpu":
            self.draw_time.append(self.clock() - started)
        loss = sum(F.cross_entropy(trainer.model(inputs), targets) for _ in range(self.samples))
        return loss / self.samples


class ConstantSoftThreshold(torch.nn.Module):
    """``softshrink(W, c)`` with a constant ``c``: the least a soft threshold costs a step (``--floors``)."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return F.softshrink(weight, self.cutoff)


@contextlib.contextmanager
def speedups_off(names: tuple[str, ...]) -> Iterator[None]:
    """The speed-ups ``names`` of :mod:`prunebench.run.fast_paths` off for the trainers built inside (``--plain``)."""
    saved = dict(fast_paths.PAYS_ON)
    fast_paths.PAYS_ON.update({name: frozenset() for name in names})
    try:
        yield
    finally:
        fast_paths.PAYS_ON.update(saved)


def optimizer_step_times(
    optimizers: dict[str, torch.optim.Optimizer], clock: Callable[[], float], rounds: int, calls: int = 200
) -> list[str]:
    """One line per optimizer: the median time of a call of ``optimizer.step()`` and of the direct kernel call
    (:class:`~prunebench.run.fused_step.SGDStep`, :class:`~prunebench.run.fused_step.AdamStep`), over ``rounds`` interleaved
    blocks of ``calls`` calls each (``--plain``; it steps the optimizers' parameters, after the epochs are timed)."""
    lines = []
    for label, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = torch.full_like(parameter, 1e-3)
        direct = (SGDStep if isinstance(optimizer, torch.optim.SGD) else AdamStep)(optimizer)
        times: dict[str, list[float]] = {"plain": [], "direct": []}
        for block in range(rounds + 1):
            for name, call in (("plain", optimizer.step), ("direct", direct.step)):
                started = clock()
                for _ in range(calls):
                    call()
                if block > 0:
                    times[name].append((clock() - started) / calls)
        plain, fast = (1e6 * statistics.median(times[name]) for name in ("plain", "direct"))
        lines.append(
            f"{label}: optimizer.step() {plain:.0f} us a call, direct {fast:.0f} us ({plain - fast:.0f} saved)"
        )
    return lines


def _train_loader(args: argparse.Namespace, dataset, batch_size: int, device: torch.device, seed: int):
    """The preset's training loader for ``seed``, or ``--random-data`` random inputs of its shape."""
    if not args.random_data:
        request = LoaderRequest(batch_size=batch_size, seed=seed, device=device)
        return dataset.make_loaders(request).train
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(args.random_data, *dataset.input_shape, generator=generator).to(device)
    targets = torch.randint(0, dataset.num_classes, (args.random_data,), generator=generator).to(device)
    return TensorLoader(inputs, targets, batch_size, shuffle=True, seed=seed)


def learned_methods(args: argparse.Namespace) -> list:
    """The registered during-training methods of the unstructured track (``--methods`` picks some)."""
    chosen = args.methods.split(",") if args.methods else None
    return [
        s
        for s in all_methods()
        if s.schedule == "during_training"
        and s.track == "unstructured"
        and (chosen is None or s.name in chosen)
    ]


def learned_trainer(
    spec, model, loader, optim, args: argparse.Namespace, num_classes: int, seed: int
) -> Trainer:
    """A trainer of ``spec``'s learning phase (its first scope) on ``model``, ``args.rounds + 1`` epochs long."""
    context = TrainingContext(
        epochs=args.rounds + 1,
        steps_per_epoch=len(loader),
        device=next(model.parameters()).device,
        seed=seed,
        num_classes=num_classes,
        train_data=ScoringData(loader, num_classes),
    )
    session = spec.build().attach(model, prunable_weights(model), args.sparsity, spec.scopes[0], context)
    return Trainer(model, loader, optim, args.rounds + 1, hooks=[session])


def measure_batched(args: argparse.Namespace) -> list[str]:
    """``--batched K``: one training step of K runs (K seeds, each its own mask or method state and data order) as
    the batched engine takes it (:func:`prunebench.run.batched_engine.stacked_epoch`: whole steps stacked for fixed
    masks, the passes stacked and each run's own step for the learned-mask and dynamic sparse methods), against the
    K runs' steps taken one after the other by their own trainers; whole epochs, interleaved round by round, medians
    over rounds."""
    from prunebench.run.batched_engine import stacked_epoch

    preset = get_preset(args.preset)
    torch.set_flush_denormal(True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = get_dataset(preset.dataset)
    recipe = preset.recipe
    k = args.batched

    def trainers(variant) -> list[Trainer]:
        built = []
        for seed in range(k):
            model = initial_model(RunConfig.from_preset(preset, "dense", "global", 0.0, seed), device)
            loader = _train_loader(args, dataset, recipe.batch_size, device, seed)
            if variant == "fixed mask":
                masks = {n: torch.rand_like(w) > args.sparsity for n, w in prunable_weights(model).items()}
                apply_masks(model, masks)
                hooks = [MaskEnforcer(model, masks)]
                trainer = Trainer(model, loader, recipe.optim, args.rounds + 1, hooks=hooks)
            else:
                trainer = learned_trainer(
                    variant, model, loader, recipe.optim, args, dataset.num_classes, seed
                )
            trainer.begin()
            built.append(trainer)
        return built

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    variants = ["fixed mask", *learned_methods(args)] if args.methods else ["fixed mask"]
    lines = []
    for variant in variants:
        alone, batched = trainers(variant), trainers(variant)
        steps = len(alone[0].loader)
        single_times, batched_times = [], []
        for epoch in range(args.rounds + 1):
            started = clock()
            for trainer in alone:
                trainer.run_epoch(epoch)
            single_times.append((clock() - started) / steps)
            started = clock()
            stacked_epoch(batched, epoch)
            batched_times.append((clock() - started) / steps)
        single = statistics.median(single_times[1:]) * 1e3  # the first round warms up
        together = statistics.median(batched_times[1:]) * 1e3
        name = variant if variant == "fixed mask" else f"{variant.name} ({variant.scopes[0]})"
        if not lines:
            lines.append(
                f"{preset.name} ({preset.model}, batch {recipe.batch_size}, {steps} steps an epoch), {device}, "
                f"{torch.get_num_threads()} thread(s), K = {k}, sparsity {args.sparsity}"
            )
        lines.append(
            f"{name}: {k} single steps {single:.3f} ms, one batched step {together:.3f} ms "
            f"({together / k:.3f} ms a run), batched / single {together / single:.3f}"
        )
    return lines


def measure(args: argparse.Namespace) -> dict:
    """Each variant's median time per step and its ratio to the dense step, and a header line."""
    preset = get_preset(args.preset)
    torch.set_flush_denormal(True)  # as every run does (see prunebench.run.runner.execute)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = get_dataset(preset.dataset)
    recipe = preset.recipe
    if args.random_data:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(args.random_data, *dataset.input_shape, generator=generator).to(device)
        targets = torch.randint(0, dataset.num_classes, (args.random_data,), generator=generator).to(device)
        train = TensorLoader(inputs, targets, recipe.batch_size, shuffle=True)
        loaders = SimpleNamespace(train=train)
    else:
        loaders = dataset.make_loaders(LoaderRequest(batch_size=recipe.batch_size, seed=0, device=device))
    steps = len(loaders.train)
    learned = learned_methods(args)

    def trainer_for(variant: str) -> Trainer:
        model = initial_model(RunConfig.from_preset(preset, "dense", "global", 0.0, 0), device)
        if variant == "dense":
            return Trainer(model, loaders.train, recipe.optim, args.rounds + 1)
        if variant in ("fixed mask", "probmask floor"):
            weights = prunable_weights(model)
            masks = {n: torch.rand_like(w) > args.sparsity for n, w in weights.items()}
            apply_masks(model, masks)
            hook = (
                SampledPassesFloor(model, masks, get_method("probmask").build().samples, clock)
                if variant == "probmask floor"
                else MaskEnforcer(model, masks)
            )
            return Trainer(model, loaders.train, recipe.optim, args.rounds + 1, hooks=[hook])
        if variant == "str floor":
            weights = prunable_weights(model)
            cutoffs = {
                name: float(w.detach().abs().flatten().kthvalue(int(args.sparsity * w.numel())).values)
                for name, w in weights.items()
            }
            # The learned-mask methods' own parametrization of every prunable weight (tied ones included).
            MaskedSession(model, weights, {name: ConstantSoftThreshold(c) for name, c in cutoffs.items()})
            return Trainer(model, loaders.train, recipe.optim, args.rounds + 1)
        spec = next(s for s in learned if f"{s.name} ({s.scopes[0]})" == variant)
        return learned_trainer(spec, model, loaders.train, recipe.optim, args, dataset.num_classes, seed=0)

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    variants = ["dense", "fixed mask", *(f"{s.name} ({s.scopes[0]})" for s in learned)]
    if args.floors:
        variants += ["probmask floor", "str floor"]
    trainers = {v: trainer_for(v) for v in variants}
    if args.plain:
        switches = {"plain": tuple(fast_paths.PAYS_ON), **{f"no {n}": (n,) for n in fast_paths.PAYS_ON}}
        for label, off in switches.items():
            with speedups_off(off):
                trainers.update({f"{v}, {label}": trainer_for(v) for v in variants})
        variants = list(trainers)
    for trainer in trainers.values():
        for hook in trainer.hooks:
            hook.on_train_start(trainer)
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
    header = (
        f"preset {preset.name}{' (random data)' if args.random_data else ''}, {steps} steps per epoch, batch "
        f"{recipe.batch_size}, device {device}, {torch.get_num_threads()} threads, median of {args.rounds} epochs, "
        f"{args.clock} clock, load average {os.getloadavg()[0]:.1f}"
    )
    medians = {v: statistics.median(times[v]) for v in variants}
    notes = []
    floor = trainers["probmask floor"].hooks[0] if args.floors else None
    if floor is not None and floor.draw_time:
        draws = statistics.median(floor.draw_time[steps:])  # after the warm-up epoch
        notes.append(
            f"probmask floor: its {floor.draws.numel():,} uniform draws take {1e3 * draws:.3f} ms a step "
            f"({draws / dense:.2f}x dense)"
        )
    if args.plain:
        optimizers = {"dense: SGD over the weights": trainers["dense"].optimizer}
        for spec in learned:
            variant = f"{spec.name} ({spec.scopes[0]})"
            optimizer = getattr(trainers[variant].hooks[0], "optimizer", None)
            if isinstance(optimizer, torch.optim.Adam):
                optimizers[f"{variant}: Adam over the scores"] = optimizer
        notes += optimizer_step_times(optimizers, clock, args.rounds)
    return {
        "header": header,
        "variants": {v: (1e3 * m, m / dense) for v, m in medians.items()},
        "notes": notes,
    }


if __name__ == "__main__":
    main()
