"""The training loop every method shares, with hooks where methods act, and the final evaluation.

Methods never write their own loop: they are :class:`TrainHook` objects called at fixed points (epoch start, loss,
before and after each optimizer step, end). Fixed masks are themselves a hook (:class:`prunebench.pruning.mask_application.MaskEnforcer`)
that zeroes pruned weights in place after each optimizer step. Nor do methods build optimizers: a hook declares the
parameters it trains besides the weights (a learned-mask method's scores or thresholds) in parameter groups
(:class:`ParamGroup`), and the trainer owns their optimizers, learning-rate schedules and checkpointed state as it
owns the weights'.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.run.fused_step import optimizer_step
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_checkpoint import RunCheckpoint, rng_state, set_rng_state
from prunebench.run.sparsification import Sparsification


class EpochLoader(Protocol):
    """Batches of one epoch, already on the training device; ``set_epoch`` reseeds order and augmentation."""

    def __iter__(self): ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


class Diverged(RuntimeError):
    """The training loss, a weight or the final evaluation became NaN or infinite."""


def check_finite_weights(model: nn.Module) -> None:
    """Raise :class:`Diverged` when a parameter of ``model`` holds a NaN or an infinity.

    The mean training loss of an epoch can stay finite while the weights of its last steps do not; this check at the
    end of every phase catches them.
    """
    for name, parameter in model.named_parameters():
        if not bool(torch.isfinite(parameter).all()):
            raise Diverged(f"weight {name} became NaN or infinite")


OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "weights", "relative", "cosine")

Schedule = Literal["constant", "weights", "relative", "cosine"] | Callable[["Trainer"], float]
"""How a parameter group's learning rate moves: the factor on its ``lr`` at each step (:class:`ParamGroup`)."""


@dataclass(frozen=True, eq=False)
class ParamGroup:
    """Parameters a hook trains besides the weights (a learned-mask method's scores or thresholds), with their
    optimizer and learning-rate schedule, declared by :meth:`TrainHook.param_groups`.

    The trainer builds the optimizer with PyTorch's public class, ``optimizer="sgd"`` (:class:`torch.optim.SGD`:
    ``momentum``, ``nesterov``, ``weight_decay``) or ``"adam"`` (:class:`torch.optim.Adam`: ``betas``, ``eps``,
    ``weight_decay``). ``momentum`` and ``nesterov`` left at ``None`` are the weights' (the recipe's; Nesterov only
    with momentum), as for a parameter group of the weights' SGD. ``fused``: PyTorch's fused kernel where every
    parameter allows it (floating point on the CPU or CUDA), as the weights' optimizer; ``False``, or elsewhere, its
    default implementation.

    ``lr``: the base learning rate, a number or a function of the trainer called once when it builds the optimizer
    (a rate scaled to the phase's :attr:`Trainer.total_steps`). At every step the group's rate is ``lr`` times the
    ``schedule``'s factor:

    * ``constant``: 1;
    * ``weights``: the weights' schedule factor :attr:`Trainer.lr_factor` (``lr`` is the group's rate where the
      weights' schedule is at its base rate);
    * ``relative``: the weights' current learning rate :attr:`Trainer.lr` (``lr`` is a multiple of it);
    * ``cosine``: ``(1 + cos(pi p)) / 2`` at the progress ``p`` (:attr:`Trainer.progress`), to zero over the phase;
    * a function of the trainer, called at every step, returning the factor.
    """

    name: str
    """Unique among the trainer's groups: the key of the optimizer's state in the trainer's checkpoints."""
    params: Sequence[torch.Tensor]
    _: KW_ONLY
    lr: float | Callable[[Trainer], float]
    optimizer: Literal["sgd", "adam"] = "sgd"
    schedule: Schedule = "constant"
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    fused: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"parameter group {self.name!r}: optimizer {self.optimizer!r} is not one of {OPTIMIZERS}"
            )
        if not callable(self.schedule) and self.schedule not in SCHEDULES:
            raise ValueError(
                f"parameter group {self.name!r}: schedule {self.schedule!r} is not one of {SCHEDULES} or a function"
            )
        if not self.params:
            raise ValueError(f"parameter group {self.name!r} has no parameters")


class TrainHook:
    """Points in the loop where a method (or a fixed mask) acts. Every method has a no-op default."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first step of ``epoch`` (0-based)."""

    def compute_loss(
        self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        """The loss to backpropagate, or ``None`` for the default (cross-entropy of one forward pass)."""
        return None

    def loss_passes(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> LossPasses | None:
        """:meth:`compute_loss` written as a generator, for the batched engine (:mod:`prunebench.run.batched_engine`),
        which runs the forward passes of several runs as one: it yields before each forward pass of the model,
        receives that pass's output, and returns the loss. ``None`` (the default): the hook's loss is only what
        :meth:`compute_loss` computes (a hook that overrides :meth:`compute_loss` and not this trains alone in a
        batch). A hook that writes both computes one with the other (:func:`run_passes`)."""
        return None

    def before_step(self, trainer: Trainer) -> None:
        """After ``backward``, before the declared parameter groups and then the weights step (gradients are
        available: a hook may clip them, or add a term of its own)."""

    def after_step(self, trainer: Trainer) -> None:
        """After the parameter groups and the weights stepped (``trainer.step`` already counts this step)."""

    def param_groups(self) -> list[ParamGroup]:
        """The parameters the hook trains besides the weights, with their optimizers and schedules (none by
        default); asked once, when the trainer is built.

        The trainer keeps them out of the weight optimizer, clears their gradients with the weights' before each
        backward pass, steps each group after every hook's :meth:`before_step` and before the weights, and keeps
        their optimizers' state in its :meth:`Trainer.state_dict`."""
        return []

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last step."""

    def stacked_masks(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """For the batched engine (:mod:`prunebench.run.batched_engine`): the (weight, mask factor) pairs the hook
        multiplies after each step, if that is all it does between the steps :meth:`acts_after_step` names
        (``[]``: no mask yet); ``None`` (the default): the hook does more, and its run's phase trains alone."""
        return None

    def acts_after_step(self, step: int) -> bool:
        """Whether :meth:`after_step` after ``step`` optimizer steps does more than multiply the
        :meth:`stacked_masks` (a gradual pruner's mask update): the batched engine then calls it on the run's own
        model. Asked only of a hook whose :meth:`stacked_masks` is not ``None``."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """The hook's state at a step boundary, for a checkpoint (tensors, numbers, strings, lists and dicts of
        them). State held by the model itself (parameters and buffers of a parametrization) is saved with the
        model, and the optimizers of :meth:`param_groups` by the trainer; a hook with no state of its own keeps this
        default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; called after :meth:`on_train_start` when a run resumes."""

    evaluable: bool = True
    """Whether the model can be evaluated between steps while the hook acts (``False``: ProbMask's layers compute
    only inside a step, with the mask it drew), for the curves' evaluations during training."""

    def curve_values(self, trainer: Trainer) -> dict[str, float]:
        """The method's own quantities at an epoch's end, for the run's curves (:mod:`prunebench.run.curves`): a
        threshold, a temperature, a budget. None by default. A ``sparsity`` replaces the harness's count of the
        stored weights' zeros (a method whose layers multiply a reparametrized weight)."""
        return {}


LossPasses = Generator[None, torch.Tensor, torch.Tensor]
"""A loss computed over forward passes the caller runs (:meth:`TrainHook.loss_passes`): it yields before each pass,
is sent the pass's output, and returns the loss."""


def run_passes(passes: LossPasses, forward: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The loss ``passes`` computes, each of its forward passes computed by ``forward()``."""
    output = None
    try:
        while True:
            passes.send(output)
            output = forward()
    except StopIteration as done:
        return done.value


def one_pass(targets: torch.Tensor) -> LossPasses:
    """The default loss as passes: the cross-entropy of one forward pass."""
    logits = yield
    return cross_entropy(logits, targets)


def computes_own_loss(hook: TrainHook) -> bool:
    """Whether ``hook`` computes the training loss itself (:meth:`TrainHook.compute_loss`)."""
    return type(hook).compute_loss is not TrainHook.compute_loss


def build_optimizer(params: Iterable[torch.Tensor], config: OptimConfig) -> torch.optim.Optimizer:
    """SGD (or AdamW, ``config.optimizer``) as in ``config``, with PyTorch's fused kernel where every parameter allows
    it (floating point on CPU or CUDA), else its foreach implementation. Both compute the same update; the fused one in
    a different order of floating point operations, so weights differ from the foreach ones in the last bits (harness
    version 2)."""
    params = list(params)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params,
            lr=config.lr,
            betas=(config.momentum, config.beta2),
            weight_decay=config.weight_decay,
            fused=fused or None,
            foreach=None if fused else True,
        )
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
        fused=fused or None,
        foreach=None if fused else True,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int, start: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule over ``total_steps``, so recipes given per epoch scale with the budget.

    ``start``: the step of the schedule the first optimizer step takes (a run resumed at a rewind point).
    """
    total = max(total_steps, 1)
    bounds = [m * total for m in config.milestones]

    def factor(step: int) -> float:
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        if config.schedule == "step":
            return config.gamma ** sum(step >= b for b in bounds)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(start + step))


def autocast_context(
    model: nn.Module, dtype: torch.dtype | None | str = "auto"
) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: ``auto`` is bf16 autocast on CUDA and nothing elsewhere.

    ``None`` turns it off. On the CPU the default is a no-op, so CPU runs stay bit-identical.
    """
    device = next(model.parameters()).device
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class LoopPosition:
    """Where a training loop stands, as the methods' hooks read it: the harness's :class:`Trainer` and a user's own
    loop (:class:`prunebench.pruning.sparsify.OwnLoop`) both, from their ``step``, ``total_steps``, ``optimizer`` and
    ``base_lr``."""

    step: int
    total_steps: int
    optimizer: torch.optim.Optimizer

    @property
    def base_lr(self) -> float:
        """The weights' base learning rate, which :attr:`lr_factor` divides by."""
        raise NotImplementedError

    @property
    def progress(self) -> float:
        """Fraction of the schedule's steps taken: before the current step in ``compute_loss`` and ``before_step``,
        after it in ``after_step`` (where a method prepares the next step)."""
        return self.step / max(self.total_steps, 1)

    @property
    def lr(self) -> float:
        """The weights' learning rate at the current step."""
        return self.optimizer.param_groups[0]["lr"]

    @property
    def lr_factor(self) -> float:
        """The weights' current learning rate over the base rate (1 when the base rate is 0)."""
        base = self.base_lr
        return self.lr / base if base > 0 else 1.0


class Trainer(LoopPosition):
    """Trains ``model`` for ``epochs`` epochs of ``loader`` with SGD, calling ``hooks`` at each point of the loop.

    The hooks' parameter groups (:meth:`TrainHook.param_groups`: a method's own scores or thresholds) are left out
    of the weight optimizer and trained by optimizers of their own (:class:`ParamGroup`); ``exclude`` names more
    parameters to leave out (the runner passes the groups' own, which changes nothing). The trainer clears the
    gradients of all of them with the weights' before each backward pass. ``on_epoch_end(epoch, mean_loss)``
    reports progress. ``autocast`` is the mixed-precision dtype of the loss computation (see
    :func:`autocast_context`; default bf16 on CUDA, off on the CPU).

    ``start`` and ``stop`` train only the optimizer steps ``start, ..., stop - 1`` of the ``epochs``-long schedule
    (default: all of them): the learning rate is the schedule's at those steps and the batches are those the full
    run would see there (the epoch's order, from its ``start % steps_per_epoch``-th batch). Iterative pruning
    trains to a rewind point and resumes there this way.

    ``checkpoint`` (a :class:`~prunebench.run.run_checkpoint.RunCheckpoint`) saves the trainer's whole state at step
    boundaries as its policy says, under the name ``phase``, and resumes the phase from its saved state.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: EpochLoader,
        optim: OptimConfig,
        epochs: int,
        *,
        hooks: Sequence[TrainHook] = (),
        exclude: Sequence[torch.Tensor] = (),
        on_epoch_end: Callable[[int, float], None] | None = None,
        autocast: torch.dtype | None | str = "auto",
        start: int = 0,
        stop: int | None = None,
        checkpoint: RunCheckpoint | None = None,
        phase: str = "train",
    ) -> None:
        self.model = model
        self.autocast = autocast
        self.loader = loader
        self.optim_config = optim
        self.epochs = epochs
        self.hooks = list(hooks)
        self.on_epoch_end = on_epoch_end
        self.steps_per_epoch = len(loader)
        self.total_steps = self.steps_per_epoch * epochs
        self.start = start
        self.stop = self.total_steps if stop is None else stop
        if not 0 <= self.start <= self.stop <= self.total_steps:
            raise ValueError(
                f"steps {start}..{stop} do not lie within the schedule's {self.total_steps} steps"
            )
        self.sparsification = Sparsification(self.hooks, self)
        """The hooks' calls and their parameter groups' optimizers, as a user's own loop runs them
        (:func:`prunebench.sparsify`)."""
        self.param_groups = self.sparsification.param_groups
        declared = self.sparsification.method_parameters
        self.method_parameters = list({id(p): p for p in (*declared, *exclude)}.values())
        """The parameters outside the weight optimizer: the groups' and ``exclude``."""
        excluded = {id(p) for p in self.method_parameters}
        self.weight_parameters = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
        self.optimizer = build_optimizer(self.weight_parameters, optim)
        self._optimizer_step = optimizer_step(self.optimizer)
        """Calls ``self.optimizer.step()``, or takes the same step faster where that pays
        (:mod:`~prunebench.run.fused_step`)."""
        self.sparsification.build_optimizers(optim)
        self.group_optimizers = self.sparsification.group_optimizers
        """Each parameter group's optimizer, in the order of :attr:`param_groups`."""
        self._trained_parameters = self.weight_parameters + self.method_parameters
        self.scheduler = build_scheduler(self.optimizer, optim, self.total_steps, start)
        self.epoch = 0
        self.step = start
        """Optimizer steps of the schedule taken so far (inside ``after_step`` the step just taken counts)."""
        self.last_loss = float("nan")
        self.checkpoint = checkpoint
        self.phase = phase
        self._epoch_total: torch.Tensor | None = None
        self._epoch_batches = 0
        self._in_epoch = False
        """Whether the state is saved (or restored) in the middle of an epoch, its running loss included."""

    def state_dict(self) -> dict[str, Any]:
        """The whole training state at a step boundary: position, running loss, model, the weights' optimizer and
        scheduler, each parameter group's optimizer (by the group's name), every hook's state and every random
        generator (see :mod:`prunebench.run.run_checkpoint`)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "in_epoch": self._in_epoch,
            "epoch_total": self._epoch_total,
            "epoch_batches": self._epoch_batches,
            "last_loss": self.last_loss,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **self.sparsification.state_dict(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sparsification.load_state_dict(state)
        self.step, self.epoch, self.last_loss = state["step"], state["epoch"], state["last_loss"]
        self._in_epoch = state["in_epoch"]
        self._epoch_total, self._epoch_batches = state["epoch_total"], state["epoch_batches"]
        self.loader.set_epoch(self.epoch)
        set_rng_state(state["rng"])

    @property
    def base_lr(self) -> float:
        """The recipe's base learning rate."""
        return self.optim_config.lr

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.sparsification.loss(inputs, targets)
        return loss if loss is not None else cross_entropy(self.model(inputs), targets)

    def fit(self) -> float:
        """Run every epoch (of ``start..stop``); return the mean training loss of the last one.

        Raises :class:`Diverged` when an epoch's mean loss is not finite, or a weight is not at the end. The three
        parts (:meth:`begin`, the epochs, :meth:`finish`) are apart so that the batched engine
        (:mod:`prunebench.run.batched_engine`) can train the epochs of several trainers as one computation.
        """
        self.begin()
        for epoch in self.epochs_left():
            self.end_epoch(epoch, self.run_epoch(epoch))
        return self.finish()

    def begin(self) -> None:
        """Start the hooks, then resume the phase from the checkpoint's saved state if it holds one."""
        self.sparsification.start()
        saved = self.checkpoint.resume_state(self.phase) if self.checkpoint is not None else None
        if saved is not None:
            self.load_state_dict(saved)

    def epochs_left(self) -> range:
        """The epochs (0-based) that hold steps of ``step..stop``."""
        if self.step >= self.stop:
            return range(0)
        per_epoch = max(self.steps_per_epoch, 1)
        return range(self.step // per_epoch, -(-self.stop // per_epoch))

    def end_epoch(self, epoch: int, loss: float) -> None:
        """After epoch ``epoch``'s steps: keep its mean loss (:class:`Diverged` if not finite), report it, and let
        the checkpoint save as its policy says."""
        self.last_loss = loss
        if not math.isfinite(loss):
            raise Diverged(f"training loss became {loss} in epoch {epoch + 1}")
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, loss)
        if self.checkpoint is not None:
            self.checkpoint.after_step(self, self.phase, epoch_end=True)

    def finish(self) -> float:
        """End the hooks, check the weights are finite, mark the phase done; return the last epoch's loss."""
        self.sparsification.end()
        check_finite_weights(self.model)
        if self.checkpoint is not None:
            self.checkpoint.phase_done(self.phase, self)
        return self.last_loss

    def start_epoch(self, epoch: int) -> None:
        """Set up epoch ``epoch``: train mode, the loader's order, the hooks, a fresh running loss (kept when the
        epoch resumes in its middle)."""
        self.epoch = epoch
        self.model.train()
        self.loader.set_epoch(epoch)
        self.sparsification.epoch_start(epoch)
        if not self._in_epoch:  # a fresh epoch (else one resumed in its middle, with its running loss)
            self._epoch_total = torch.zeros((), device=next(self.model.parameters()).device)
            self._epoch_batches = 0
        self._in_epoch = True

    def epoch_steps(self, epoch: int) -> tuple[int, int]:
        """The schedule's steps of epoch ``epoch``: its first, and the last it trains (before ``stop``)."""
        first = epoch * self.steps_per_epoch
        return first, min(self.stop, first + self.steps_per_epoch) - 1

    def epoch_loss(self) -> float:
        """Close the epoch: the mean training loss of its steps."""
        self._in_epoch = False
        return float(self._epoch_total) / max(self._epoch_batches, 1)

    def loss_passes(self, inputs: torch.Tensor, targets: torch.Tensor) -> LossPasses:
        """The loss of one batch as forward passes for the batched engine (:meth:`TrainHook.loss_passes`): the first
        hook's own, else the cross-entropy of one pass; :meth:`loss` computes the same."""
        passes = self.sparsification.loss_passes(inputs, targets)
        return one_pass(targets) if passes is None else passes

    def clear_gradients(self) -> None:
        """Before a backward pass: no gradient on any trained parameter (``zero_grad(set_to_none=True)``, without its
        overhead)."""
        for parameter in self._trained_parameters:
            parameter.grad = None

    def take_step(self, loss: torch.Tensor) -> None:
        """After the backward pass of ``loss``: clip, the hooks' and the groups' steps, the weights' step and schedule,
        the hooks' ``after_step``, and the running epoch loss."""
        if self.optim_config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.weight_parameters, self.optim_config.grad_clip, foreach=True)
        self.sparsification.before_step()
        self._optimizer_step()
        self.scheduler.step()
        self.step += 1
        self.sparsification.after_step()
        self._epoch_total += loss.detach()
        self._epoch_batches += 1

    def run_epoch(self, epoch: int) -> float:
        """Train the steps of ``start..stop`` in epoch ``epoch`` (0-based); return their mean training loss."""
        self.start_epoch(epoch)
        first, last = self.epoch_steps(epoch)
        for index, (inputs, targets) in enumerate(self.loader):
            if first + index < self.step:
                continue
            if first + index >= self.stop:
                break
            with autocast_context(self.model, self.autocast):
                loss = self.loss(inputs, targets)
            self.clear_gradients()
            loss.backward()
            self.take_step(loss)
            if self.checkpoint is not None and first + index < last:  # the epoch's end saves after it
                self.checkpoint.after_step(self, self.phase, epoch_end=False)
        return self.epoch_loss()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The cross-entropy of classification logits ``[B, C]`` with labels ``[B]`` (``F.cross_entropy`` itself), or of
    a language model's next-token logits ``[B, T, V]`` with targets ``[B, T]``: over every token, flattened (the mean
    token NLL)."""
    if logits.dim() == 3:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)
    return F.cross_entropy(logits, targets, reduction=reduction)


def evaluate(
    model: nn.Module, loader: EpochLoader, autocast: torch.dtype | None | str = "auto"
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (percent) and mean cross-entropy of ``model`` on ``loader``, in eval mode (see
    :func:`evaluate_examples`)."""
    return evaluate_examples(model, loader, autocast).metrics


@dataclass(frozen=True)
class Evaluation:
    """The final evaluation: the metrics, and which test examples (in the loader's order) each top-k got right."""

    metrics: dict[str, float]
    top1: torch.Tensor
    top5: torch.Tensor


@torch.no_grad()
def evaluate_examples(
    model: nn.Module, loader: EpochLoader, autocast: torch.dtype | None | str = "auto"
) -> Evaluation:
    """Top-1 and top-5 accuracy (percent), mean cross-entropy, and the per-example outcomes of ``model`` on
    ``loader``, in eval mode.

    The forward pass runs under :func:`autocast_context` (bf16 on CUDA by default); the metrics are computed in fp32.
    A language model's logits ``[B, T, V]`` with targets ``[B, T]`` are scored per token: top-1 and top-5 are
    next-token accuracies, the loss is the mean token NLL, the outcomes are per token (batch-major), and the metrics
    add ``perplexity``, ``exp`` of the mean token NLL.
    """
    model.eval()
    correct1 = correct5 = 0.0
    loss_sum = 0.0
    count = 0
    top1, top5 = [], []
    sequences = False
    for inputs, targets in loader:
        with autocast_context(model, autocast):
            logits = model(inputs).float()
        if logits.dim() == 3:  # a language model: every token is an example
            sequences = True
            logits, targets = logits.flatten(0, 1), targets.flatten()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(targets[:, None])
        correct1 += float(hits[:, :1].sum())
        correct5 += float(hits.sum())
        count += targets.numel()
        top1.append(hits[:, 0].cpu())
        top5.append(hits.any(dim=1).cpu())
    metrics = {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "loss": loss_sum / count}
    if sequences:
        loss = torch.tensor(metrics["loss"], dtype=torch.float64)
        metrics["perplexity"] = float(loss.exp())  # inf where math.exp would raise
    return Evaluation(metrics, torch.cat(top1), torch.cat(top5))
