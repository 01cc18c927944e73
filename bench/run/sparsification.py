"""The hooks of one training loop and their parameter groups' optimizers, run at the loop's points.

A :class:`Sparsification` is what the harness's :class:`~prunebench.run.trainer.Trainer` calls around each step for
its hooks (a method's session, a gradual pruner, fixed masks), and what :func:`prunebench.sparsify` gives a
researcher to call from a training loop of their own, so the two run the same code in the same order: the hooks'
``before_step``, the steps of their declared parameter groups (:class:`~prunebench.run.trainer.ParamGroup`), the
weights' step (the loop's own), then the hooks' ``after_step``.

The hooks receive ``loop`` as their ``trainer`` argument: the harness's trainer, or the stand-in a user's loop gets
(:class:`prunebench.pruning.sparsify.OwnLoop`), both with the trainer's attributes hooks read (``model``, ``step``,
``total_steps``, ``progress``, ``lr``, ``lr_factor``, ``optimizer``, ``weight_parameters``, ``optim_config``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from prunebench.run.fused_step import optimizer_step
from prunebench.run.recipe import OptimConfig

if TYPE_CHECKING:
    from prunebench.run.trainer import LossPasses, ParamGroup, Schedule, TrainHook


class Sparsification:
    """``hooks`` run at the points of the loop ``loop``, and the optimizers of their parameter groups.

    :meth:`build_optimizers` must be called once the loop knows its length (a group's ``lr`` may be a function of
    it) and before the first step.
    """

    def __init__(self, hooks: Sequence[TrainHook], loop: Any) -> None:
        self.hooks = list(hooks)
        self.loop = loop
        self.param_groups = declared_groups(self.hooks)
        self.group_optimizers: list[torch.optim.Optimizer] = []
        self._group_lrs: list[float] = []
        self._group_steps: list = []

    @property
    def method_parameters(self) -> list[torch.Tensor]:
        """Every parameter of the declared groups, in hook and group order."""
        return [p for group in self.param_groups for p in group.params]

    def build_optimizers(self, weights: OptimConfig) -> None:
        """Each parameter group's base learning rate (:attr:`ParamGroup.lr`, resolved once, now that the phase's
        length is known), its optimizer, with ``weights``' momentum and Nesterov setting where the group leaves them
        at ``None``, and the call that steps it (:mod:`~prunebench.run.fused_step`)."""
        self._group_lrs = [
            group.lr(self.loop) if callable(group.lr) else group.lr for group in self.param_groups
        ]
        self.group_optimizers = [
            build_group_optimizer(group, lr, weights)
            for group, lr in zip(self.param_groups, self._group_lrs, strict=True)
        ]
        self._group_steps = [optimizer_step(optimizer) for optimizer in self.group_optimizers]

    def start(self) -> None:
        """Before the first step (and before a resumed loop loads its state)."""
        for hook in self.hooks:
            hook.on_train_start(self.loop)

    def epoch_start(self, epoch: int) -> None:
        for hook in self.hooks:
            hook.on_epoch_start(self.loop, epoch)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """The first hook's own loss of the batch, or ``None`` when no hook computes one."""
        for hook in self.hooks:
            loss = hook.compute_loss(self.loop, inputs, targets)
            if loss is not None:
                return loss
        return None

    def loss_passes(self, inputs: torch.Tensor, targets: torch.Tensor) -> LossPasses | None:
        """The first hook's own loss of the batch as forward passes (:meth:`~prunebench.run.trainer.TrainHook.
        loss_passes`), or ``None`` when no hook computes one."""
        for hook in self.hooks:
            passes = hook.loss_passes(self.loop, inputs, targets)
            if passes is not None:
                return passes
        return None

    def before_step(self) -> None:
        """After ``backward``, before the weights step: every hook's ``before_step``, then every group's step."""
        for hook in self.hooks:
            hook.before_step(self.loop)
        self._step_groups()

    def after_step(self) -> None:
        """After the weights stepped and the loop counted the step."""
        for hook in self.hooks:
            hook.after_step(self.loop)

    def end(self) -> None:
        """After the last step."""
        for hook in self.hooks:
            hook.on_train_end(self.loop)

    def state_dict(self) -> dict[str, Any]:
        """Each parameter group's optimizer state (by the group's name) and every hook's state."""
        return {
            "param_groups": {
                group.name: optimizer.state_dict()
                for group, optimizer in zip(self.param_groups, self.group_optimizers, strict=True)
            },
            "hooks": [hook.state_dict() for hook in self.hooks],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for group, optimizer in zip(self.param_groups, self.group_optimizers, strict=True):
            optimizer.load_state_dict(state["param_groups"][group.name])
        for hook, hook_state in zip(self.hooks, state["hooks"], strict=True):
            hook.load_state_dict(hook_state)

    def _step_groups(self) -> None:
        """Step every parameter group's optimizer at its rate of this step (``lr`` times its schedule's factor)."""
        for group, optimizer, lr, step in zip(
            self.param_groups, self.group_optimizers, self._group_lrs, self._group_steps, strict=True
        ):
            rate = lr * self.schedule_factor(group.schedule)
            for options in optimizer.param_groups:
                options["lr"] = rate
            step()

    def schedule_factor(self, schedule: Schedule) -> float:
        """The factor of ``schedule`` at the loop's current step (see :class:`~prunebench.run.trainer.ParamGroup`)."""
        loop = self.loop
        if callable(schedule):
            return schedule(loop)
        if schedule == "weights":
            return loop.lr_factor
        if schedule == "relative":
            return loop.lr
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * loop.progress))
        return 1.0


def build_group_optimizer(group: ParamGroup, lr: float, weights: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``group`` declares, at the base rate ``lr``, with ``weights``' momentum and Nesterov setting
    where the group leaves them at ``None``."""
    params = list(group.params)
    fused = group.fused and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if group.optimizer == "adam":
        return torch.optim.Adam(
            params,
            lr=lr,
            betas=group.betas,
            eps=group.eps,
            weight_decay=group.weight_decay,
            fused=fused or None,
        )
    momentum = weights.momentum if group.momentum is None else group.momentum
    nesterov = weights.nesterov if group.nesterov is None else group.nesterov
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=group.weight_decay,
        fused=fused or None,
    )


def declared_groups(hooks: Sequence[TrainHook]) -> list[ParamGroup]:
    """Every hook's parameter groups, in hook order; refused when two share a name or a parameter."""
    groups = [group for hook in hooks for group in hook.param_groups()]
    names = [group.name for group in groups]
    if len(set(names)) < len(names):
        raise ValueError(f"two parameter groups share a name: {names}")
    params = [id(p) for group in groups for p in group.params]
    if len(set(params)) < len(params):
        raise ValueError("a parameter is declared in two parameter groups")
    return groups
