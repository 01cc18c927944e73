"""Every registered weight-pruning method in a training loop of the user's own: :func:`sparsify` and its session.

The session runs the code the harness's trainer runs around each step (:class:`~prunebench.run.sparsification.
Sparsification`): a learned-mask method's session with its own parameters and their optimizers, the gradual
schedule's pruning steps, or fixed masks, so a loop written as in ``docs/python-api.md`` computes the harness's masks
for the same seed, initial weights and batches. What must happen before the weights move (a method's gradient
clipping or gradient terms, its own parameters' step, RigL's drop and grow) runs in a step pre-hook of the user's
optimizer (:meth:`torch.optim.Optimizer.register_step_pre_hook`); :meth:`SparsifySession.step`, called right after
``optimizer.step()``, does the rest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods._scoring import MissingData
from prunebench.methods.base import FinalMasks, Masks, ScoringData, TrainingContext, TrainingMethod
from prunebench.methods.method_registry import MethodSpec, get_method
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.pruning.prunable import prunable_weights
from prunebench.pruning.public_api import prune
from prunebench.run.recipe import OptimConfig
from prunebench.run.sparsification import Sparsification
from prunebench.run.trainer import LoopPosition, TrainHook, computes_own_loss, cross_entropy

__all__ = ["OwnLoop", "SparsifySession", "sparsify"]

SCHEDULES = ("at_init", "after_training", "gradual", "during_training")
"""The schedules a session serves: iterative pruning rewinds and retrains in rounds, which only the harness does."""


class OwnLoop(LoopPosition):
    """A user's training loop as the methods' hooks see it: the attributes of the harness's trainer they read.

    ``optimizer`` is the user's: its first parameter group gives the learning rate and the momentum, Nesterov
    setting and weight decay a method reads (:attr:`optim_config`; a method's own SGD takes the weights' momentum).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        self.model = model
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.steps_per_epoch = total_steps
        self.epoch = 0
        self.step = 0
        """Optimizer steps taken so far (inside ``after_step`` the step just taken counts), as the trainer's."""
        self.last_loss = math.nan
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.weight_parameters = [p for p in model.parameters() if id(p) in held]
        """The parameters the optimizer trains, in the model's order (as the trainer's)."""
        first = optimizer.param_groups[0]
        self.optim_config = OptimConfig(
            lr=first.get("initial_lr", first["lr"]),
            momentum=first.get("momentum", 0.0),
            weight_decay=first.get("weight_decay", 0.0),
            nesterov=first.get("nesterov", False),
            schedule="constant",
        )

    @property
    def base_lr(self) -> float:
        """The first parameter group's rate before a learning-rate scheduler moved it (its ``initial_lr``), else the
        rate it had when the loop was wrapped."""
        return self.optimizer.param_groups[0].get("initial_lr", self.optim_config.lr)


class SparsifySession:
    """A method at work in a user's loop (made by :func:`sparsify`): call :meth:`step` after every
    ``optimizer.step()``, compute the loss with :meth:`loss` (required where the method computes its own), and end
    with :meth:`finish`."""

    def __init__(
        self,
        spec: MethodSpec,
        loop: OwnLoop,
        hooks: list[TrainHook],
        finish: Callable[[], FinalMasks],
        prunable: list[str],
    ) -> None:
        self.spec = spec
        self.loop = loop
        self.sparsification = Sparsification(hooks, loop)
        self._finish = finish
        self._names = prunable
        self._final: FinalMasks | None = None
        self._own_loss = any(computes_own_loss(hook) for hook in hooks)
        """Whether a hook computes the training loss itself (then :meth:`loss` is required)."""
        self._loss_taken = False
        self._stepped = False
        self.sparsification.build_optimizers(loop.optim_config)
        self._clear_method_grads()
        self.sparsification.start()
        loop.optimizer.register_step_pre_hook(self._before_weights_step)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch as the harness computes it: the method's own (ProbMask's sampled masks,
        movement's and ASL's regularisers) or the cross-entropy of one forward pass."""
        self._loss_taken = True
        loss = self.sparsification.loss(inputs, targets) if self._final is None else None
        return loss if loss is not None else cross_entropy(self.loop.model(inputs), targets)

    def _before_weights_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """The hooks' ``before_step`` and the method's own parameters' step, right before the weights'."""
        if self._stepped:
            raise UsageError(
                "call session.step() after every optimizer.step() (two optimizer steps came in a row)"
            )
        if self._own_loss and self._final is None and not self._loss_taken:
            raise UsageError(
                f"{self.spec.name} computes its own training loss: compute it with loss = session.loss(inputs, "
                "targets) before loss.backward()"
            )
        self._stepped = True
        if self._final is None:
            self.sparsification.before_step()

    def step(self) -> None:
        """After ``optimizer.step()`` (and a learning-rate scheduler's step): count the step, then run the hooks'
        ``after_step`` (mask enforcement, the gradual schedule's pruning steps, a method's projections)."""
        if not self._stepped:
            raise UsageError("call session.step() after optimizer.step(), once per step")
        self._stepped = self._loss_taken = False
        self.loop.step += 1
        self.sparsification.after_step()
        self._clear_method_grads()

    @torch.no_grad()
    def masks(self) -> Masks:
        """The current keep masks: the final ones after :meth:`finish`, else the weights the model computes with
        now (non-zero entries of each prunable weight as the network sees it, through a method's
        parametrization)."""
        if self._final is not None:
            return {name: mask.clone() for name, mask in self._final.masks.items()}
        if not all(hook.evaluable for hook in self.sparsification.hooks):
            raise UsageError(
                f"{self.spec.name} draws a new mask at every step: its masks exist after session.finish()"
            )
        model = self.loop.model
        return {name: _effective(model, name) != 0 for name in self._names}

    def finish(self) -> FinalMasks:
        """Masks at exactly the target, as the harness's run ends its pruning: the model is a plain module again
        with the pruned weights at zero. Steps after it (fine-tuning) keep them at zero."""
        if self._final is None:
            self.sparsification.end()
            self._final = self._finish()
            apply_masks(self.loop.model, self._final.masks)
            self.sparsification = Sparsification(
                [MaskEnforcer(self.loop.model, self._final.masks)], self.loop
            )
        return self._final

    def state_dict(self) -> dict[str, Any]:
        """The session's state at a step boundary before :meth:`finish`: the step, the hooks' state and their
        optimizers'. The model's state (its parametrizations' parameters included), the user's optimizer's and the
        random generators' are saved beside it by the user."""
        if self._final is not None:
            raise UsageError(
                "session.state_dict() is for resuming before session.finish(); after it the model is plain: save "
                "the model and session.masks()"
            )
        return {"step": self.loop.step, **self.sparsification.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` in a session :func:`sparsify` made with the same arguments (load the
        model's state after that call: the model then has the method's parametrizations)."""
        self.sparsification.load_state_dict(state)
        self.loop.step = state["step"]

    def _clear_method_grads(self) -> None:
        """The method's own parameters start each step without gradients, as the trainer clears them."""
        for parameter in self.sparsification.method_parameters:
            parameter.grad = None


def sparsify(
    model: nn.Module,
    method: str,
    sparsity: float,
    scope: str | None = None,
    *,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    seed: int = 0,
    prune_embeddings: bool = False,
    **hparams: Any,
) -> SparsifySession:
    """A session that prunes ``model`` to exactly ``sparsity`` with ``method`` over ``total_steps`` steps of the
    caller's loop, whose weights ``optimizer`` trains (built before this call, so it holds none of a method's own
    parameters: the session trains those).

    ``method``: a registered weight-pruning method of the schedules ``at_init`` and ``after_training`` (masks once,
    now, then fixed), ``gradual`` (``magnitude@gradual``, ``gmp``: the cubic schedule's pruning steps) or
    ``during_training`` (the method's own session). ``scope`` one of its scopes (its first by default). ``data``: an
    iterable of ``(inputs, targets)`` training batches, for methods that score or choose with data. ``seed``: the
    criterion's random stream (``seed + 1``, as the harness) and the method's. Keyword arguments override the
    method's and its schedule's hyperparameters. A method or schedule this API cannot serve is refused with a
    one-line :class:`~prunebench.core.errors.UsageError`.
    """
    spec = _checked_spec(method, sparsity, total_steps)
    scope = scope or spec.scopes[0]
    if scope not in spec.scopes:
        raise UsageError(f"{method} supports scopes {', '.join(spec.scopes)}; got {scope!r}")
    resolved = spec.resolve(hparams)
    weights = prunable_weights(model, prune_embeddings=prune_embeddings)
    scoring = ScoringData(data) if data is not None else MissingData(method)
    names = list(weights)
    if spec.schedule == "during_training":
        context = TrainingContext(
            epochs=1,
            steps_per_epoch=total_steps,
            device=next(model.parameters()).device,
            seed=seed,
            num_classes=next(reversed(weights.values())).shape[0],
            train_data=scoring,
        )
        instance = spec.build(resolved)
        assert isinstance(instance, TrainingMethod)
        session = instance.attach(model, weights, sparsity, scope, context)
        loop = OwnLoop(model, optimizer, total_steps)  # after attach: the weights' order is the model's now
        return SparsifySession(spec, loop, [session], lambda: session.finish(loop), names)
    loop = OwnLoop(model, optimizer, total_steps)
    if spec.schedule == "gradual":
        return _gradual(spec, loop, resolved, sparsity, scope, scoring, seed, prune_embeddings, names)
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 1)  # the harness's stream for scoring (phases.Criterion)
        masks = prune(model, method, sparsity, scope, data, prune_embeddings=prune_embeddings, **hparams)
    apply_masks(model, masks)
    final = FinalMasks(masks=masks, method_sparsity=sparsity)
    return SparsifySession(spec, loop, [MaskEnforcer(model, masks)], lambda: final, names)


def _gradual(
    spec: MethodSpec,
    loop: OwnLoop,
    resolved: dict[str, Any],
    sparsity: float,
    scope: str,
    scoring: ScoringData,
    seed: int,
    prune_embeddings: bool,
    names: list[str],
) -> SparsifySession:
    """The session of a criterion under the gradual schedule (:class:`~prunebench.run.gradual_schedule.
    GradualPruning`), pruning with the harness's :func:`~prunebench.run.phases.live_masks`."""
    from prunebench.run.gradual_schedule import GradualPruning
    from prunebench.run.phases import live_masks

    model = loop.model
    prunable = functools.partial(prunable_weights, prune_embeddings=prune_embeddings)
    pruner = functools.partial(live_masks, spec.build(resolved), model, prunable)

    def prune_live(target: float, alive: Masks | None) -> Masks:
        return pruner(target, alive, scope, scoring, seed)

    pruning = GradualPruning(model, sparsity, spec.schedule_options(resolved), prune_live)

    def finish() -> FinalMasks:
        masks = pruning.finish(loop.step)
        return FinalMasks(masks=masks, method_sparsity=sparsity, details=pruning.details())

    return SparsifySession(spec, loop, [pruning], finish, names)


def _checked_spec(method: str, sparsity: float, total_steps: int) -> MethodSpec:
    """The registry's entry of ``method``, refused where a session cannot serve it (say which and why)."""
    spec = get_method(method)
    if spec.track != "unstructured":
        raise UsageError(
            f"sparsify() prunes weights; {method!r} prunes channels (bench run --track structured)"
        )
    if spec.schedule not in SCHEDULES:
        why = {
            "iterative": "it rewinds the weights and retrains them in rounds, which only `bench run` does",
            "dense": "it prunes nothing",
        }.get(spec.schedule, "the session does not implement it")
        raise UsageError(
            f"sparsify() serves the schedules {', '.join(SCHEDULES)}; {method!r} is {spec.schedule}: {why}"
        )
    if not 0.0 < sparsity < 1.0:
        raise UsageError(f"sparsity must lie in (0, 1), got {sparsity}")
    if total_steps < 1:
        raise UsageError(f"total_steps must be a positive number of optimizer steps, got {total_steps}")
    return spec


def _effective(model: nn.Module, name: str) -> torch.Tensor:
    """The weight ``name`` as the network computes with it (through a parametrization where it has one)."""
    module, _, attribute = name.rpartition(".")
    return getattr(model.get_submodule(module), attribute)
