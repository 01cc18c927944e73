"""The batched engine: the runs of a batch train their shared phases as one stacked computation.

A batch is K runs executed together (``bench run --batch K``: consecutive runs of one schedule, a cell's seeds
and then the next cell's, :func:`prunebench.grid.scheduler.batch_order`). Each run executes its own plan,
unchanged, in a thread of its own; the threads take turns (one holds the baton at a time, so the runs' Python code never
interleaves within a turn), and each keeps its own torch, NumPy and Python random state across turns, so that a run
draws exactly the numbers it draws alone. A run that reaches a phase the engine can batch (:func:`batchable`)
hands its :class:`~prunebench.run.trainer.Trainer` to the coordinator and waits.
When every live run waits or has finished, the coordinator trains each group of waiting trainers that agree on the
phase, the recipe, the schedule's steps and the model's shapes (:func:`group_key`) as one computation (a group of
one run too: a run of a batch is trained by the engine whatever its batch holds), and the runs go on. A phase the
engine cannot batch (active dropout, weights shared between modules, a hook that computes its own loss without
saying its forward passes) trains alone, in its run's thread.

Two ways to stack. Where every hook only multiplies masks between its own steps (:func:`stacks_steps`: every
fixed-mask phase: dense pre-training, sparse training from initialization, fine-tuning after pruning, gradual
pruning, iterative rounds, the allocation controls, the structured track's fine-tuning), whole steps are stacked,
optimizer included (:class:`StackedRuns`, below). Where the hooks do more (:func:`stacks_passes`: the learned-mask
methods' scores and thresholds, a dynamic sparse training's regrowth, gradient clipping), only the forward and
backward passes are stacked and each run takes its own step, with its own hooks and optimizers
(:class:`StackedPasses`).

The stacked step (:class:`StackedRuns`) is the trainer's step over K runs at once, with PyTorch's public API:
:func:`torch.func.stack_module_state` stacks the K models' weights and buffers, :func:`torch.func.vmap` over
:func:`torch.func.functional_call` runs the K forward passes (each on its own run's batch, drawn from that run's own
loader: its order and augmentation), the sum of the K mean losses is backpropagated (run k's weights receive run k's
gradient only), one optimizer of the recipe (:func:`~prunebench.run.trainer.build_optimizer`) steps the stacked
weights (SGD and Adam act elementwise, so each run's slice takes its own step, with its own momentum), and one fused
multiply applies the K runs' masks. BatchNorm's running statistics are stacked buffers, updated per run. The
learning rate is the runs' own schedule: each run's scheduler steps as it would alone, and they agree, since the
group's runs share the recipe, the phase's length and its start.

The runs' own trainers stay the truth between epochs: at each epoch's end (and before a checkpoint is written when
a stop is requested mid-epoch) the stacked state is written back into each run's model, optimizer state and
counters, each run's epoch end runs as it would alone (its loss check, its curves, its checkpoint, under its own
random state), and the next epoch stacks them again. So a batched run's checkpoint is the same per-run checkpoint as
today's, and a killed batch resumes each run from it (the grid claims and resumes a batch whole:
:func:`prunebench.grid.scheduler.batch_id`). A run that diverges, is stopped or loses its
claim leaves the group and raises in its own thread; the others train on.

The mathematics are the same as alone; the stacked products and convolutions may round differently in the last
bits (the ``engine`` field of a record says which phases were batched, ``docs/batched.md``).
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.utils import parametrize

from prunebench.run.run_checkpoint import RunInterrupted, rng_state, set_rng_state
from prunebench.run.trainer import (
    LossPasses,
    Trainer,
    TrainHook,
    autocast_context,
    build_optimizer,
    computes_own_loss,
    cross_entropy,
)

ENGINE = "vmap"
"""The ``engine`` a record names when a phase of its run was trained batched."""

_MEMBER: contextvars.ContextVar[BatchMember | None] = contextvars.ContextVar("batch_member", default=None)


def current_member() -> BatchMember | None:
    """The batch member the calling run executes as, ``None`` for a run executed alone."""
    return _MEMBER.get()


def batchable(trainer: Trainer) -> bool:
    """Whether the engine can train ``trainer``'s phase stacked with others, in either way: :func:`stacks_steps`
    or :func:`stacks_passes`."""
    return stacks_steps(trainer) or stacks_passes(trainer)


def stacks_steps(trainer: Trainer) -> bool:
    """Whether the engine can train ``trainer``'s whole steps stacked (:class:`StackedRuns`): every hook says what
    it multiplies after a step (:meth:`~prunebench.run.trainer.TrainHook.stacked_masks`: fixed masks, a gradual
    pruner), no method parameters, no gradient clipping (a norm per run), and the model computes as
    :func:`stacks_passes` asks."""
    if trainer.method_parameters or trainer.optim_config.grad_clip is not None:
        return False
    if any(hook.stacked_masks() is None for hook in trainer.hooks):
        return False
    return _plain_forward(trainer.model)


def stacks_passes(trainer: Trainer) -> bool:
    """Whether the engine can stack ``trainer``'s forward and backward passes and leave each run its own step
    (:class:`StackedPasses`: a learned-mask method, a dynamic sparse training): every hook that computes the loss
    itself says its forward passes (:meth:`~prunebench.run.trainer.TrainHook.loss_passes`), and the model computes
    as a function of its weights and buffers alone: no active dropout (random per run), no weight shared between
    modules, no module hooks (the stacked pass calls none)."""
    if any(
        computes_own_loss(hook) and type(hook).loss_passes is TrainHook.loss_passes for hook in trainer.hooks
    ):
        return False
    return _plain_forward(trainer.model)


def _plain_forward(model: nn.Module) -> bool:
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return False
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules()):
        return False
    # The model's own weights (a parametrized one by its original; a method's parameters held by its
    # parametrizations, such as STR's thresholds shared by every layer, are the method's, not the model's).
    weights = [
        p
        for name, p in model.named_parameters(remove_duplicate=False)
        if ".parametrizations." not in name or name.endswith(".original")
    ]
    return bool(weights) and len({id(p) for p in weights}) == len(weights)


def mask_factors(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The factor each weight of ``trainer``'s model is multiplied by after a step (its hooks' masks), by the
    weight's name; a weight two hooks mask has the product."""
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    factors: dict[str, torch.Tensor] = {}
    for hook in trainer.hooks:
        for weight, factor in hook.stacked_masks() or ():
            name = names[id(weight)]
            factors[name] = factors[name] * factor if name in factors else factor
    return factors


def group_key(trainer: Trainer) -> tuple:
    """What the trainers of one stacked computation share: the phase, the recipe, the schedule's steps (length,
    start, stop and where it stands), the loader's length, the model's class, tensors and device, the hooks'
    kinds, the precision and the way they stack (:func:`stacks_steps`)."""
    state = tuple((name, tuple(t.shape), str(t.dtype)) for name, t in trainer.model.state_dict().items())
    return (
        trainer.phase,
        repr(trainer.optim_config),
        trainer.epochs,
        trainer.start,
        trainer.stop,
        trainer.step,
        trainer._in_epoch,
        trainer.steps_per_epoch,
        type(trainer.model).__qualname__,
        state,
        str(next(trainer.model.parameters()).device),
        tuple(type(hook).__qualname__ for hook in trainer.hooks),
        str(trainer.autocast),
        stacks_steps(trainer),
    )


@dataclass(eq=False)
class BatchMember:
    """One run of a batch, as its thread and the coordinator see it.

    ``outcome``: ``None`` once the coordinator has trained the phase the run waits in, else the exception the run
    raises."""

    index: int
    batch: Batch | None
    rng: dict[str, Any] | None = None
    waiting: Trainer | None = None
    outcome: BaseException | None = None
    done: bool = False
    result: Any = None

    def fit(self, trainer: Trainer) -> None:
        """Train ``trainer``'s epochs in the batch (``trainer.begin()`` was called, ``finish()`` is the caller's):
        wait for the coordinator to train them stacked."""
        self.waiting, self.outcome = trainer, None
        assert self.batch is not None
        self.batch.pass_baton(self)
        outcome, self.outcome = self.outcome, None
        if outcome is not None:
            raise outcome


class Batch:
    """Executes ``jobs`` (one per run) as a batch: each in its thread, taking turns, their batchable phases trained
    stacked. :meth:`run` returns each job's result, or the exception it raised, in order."""

    def __init__(self, jobs: Sequence[Callable[[], Any]]) -> None:
        self.jobs = list(jobs)
        self.members = [BatchMember(index, self) for index in range(len(self.jobs))]
        self._turn: BatchMember | None = None
        self._condition = threading.Condition()

    # The baton ----------------------------------------------------------------------------------------------
    def _give(self, member: BatchMember | None) -> None:
        with self._condition:
            self._turn = member
            self._condition.notify_all()

    def _await(self, member: BatchMember | None) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._turn is member)

    def pass_baton(self, member: BatchMember) -> None:
        """From ``member``'s thread: give the turn back to the coordinator, keeping ``member``'s random state, and
        wait for the next turn."""
        member.rng = rng_state()
        self._give(None)
        self._await(member)
        set_rng_state(member.rng)

    def _thread(self, member: BatchMember, job: Callable[[], Any], settings: tuple[int, bool]) -> None:
        threads, denormals = settings
        self._await(member)
        torch.set_num_threads(threads)
        torch.set_flush_denormal(denormals)
        _MEMBER.set(member)
        set_rng_state(member.rng)
        try:
            member.result = job()
        except BaseException as error:  # noqa: BLE001  (handed to the caller of run(), in order)
            member.result = error
        member.done = True
        self._give(None)

    # The coordinator ----------------------------------------------------------------------------------------
    def run(self) -> list[Any]:
        """Execute the jobs; return each one's result or exception."""
        start = rng_state()
        # Whether flushing denormals is supported here (every run turns it on itself, in runner.execute).
        denormals = torch.set_flush_denormal(True)
        settings = (torch.get_num_threads(), denormals)
        threads = []
        for member, job in zip(self.members, self.jobs, strict=True):
            member.rng = start
            thread = threading.Thread(
                target=self._thread,
                args=(member, job, settings),
                name=f"batch-run-{member.index}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        while not all(member.done for member in self.members):
            for member in self.members:
                if not member.done and member.waiting is None:
                    self._give(member)
                    self._await(None)
            self._train_waiting()
        for thread in threads:
            thread.join()
        set_rng_state(start)
        return [member.result for member in self.members]

    def _train_waiting(self) -> None:
        """Train the phases the runs wait in, stacked per group."""
        groups: dict[tuple, list[BatchMember]] = {}
        for member in self.members:
            if member.waiting is not None and not member.done:
                groups.setdefault(group_key(member.waiting), []).append(member)
        for members in groups.values():
            train_stacked(members)
            for member in members:
                member.waiting = None


class StackedRuns:
    """The stacked state of the trainers of one group: weights and buffers (:func:`torch.func.stack_module_state`),
    one optimizer over the stacked weights with the runs' optimizer state, and the runs' stacked masks."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        self.trainers = list(trainers)
        template = self.trainers[0]
        self.model = template.model
        self.params, self.buffers = stack_module_state([t.model for t in self.trainers])
        own = [dict(t.model.named_parameters()) for t in self.trainers]
        trained = {id(p) for p in template.weight_parameters}
        self.names = [name for name, p in template.model.named_parameters() if id(p) in trained]
        for name, stacked in self.params.items():
            stacked.requires_grad_(name in self.names)
        self._own = [[weights[name] for name in self.names] for weights in own]
        self.optimizer = build_optimizer([self.params[name] for name in self.names], template.optim_config)
        self.optimizer.param_groups[0]["lr"] = template.optimizer.param_groups[0]["lr"]
        for position, name in enumerate(self.names):
            states = [
                t.optimizer.state.get(weights[position], {})
                for t, weights in zip(self.trainers, self._own, strict=True)
            ]
            if states[0]:
                self.optimizer.state[self.params[name]] = _stack_state(states)
        factors = [mask_factors(t) for t in self.trainers]
        masked = sorted(set().union(*factors))
        self.masked = [self.params[name] for name in masked]
        self.factors = [
            torch.stack([f[name] if name in f else torch.ones_like(self.params[name][0]) for f in factors])
            for name in masked
        ]
        self.loss = vmap(self._one_loss, randomness="error")

    def _one_loss(self, params, buffers, inputs, targets) -> torch.Tensor:
        return cross_entropy(functional_call(self.model, (params, buffers), (inputs,)), targets)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One training step of every run on its own batch (``inputs[k]``, ``targets[k]``); the K losses."""
        with autocast_context(self.model, self.trainers[0].autocast):
            losses = self.loss(self.params, self.buffers, inputs, targets)
        for name in self.names:
            self.params[name].grad = None
        losses.sum().backward()
        self.optimizer.step()
        with torch.no_grad():
            if self.masked:
                torch._foreach_mul_(self.masked, self.factors)
        for trainer in self.trainers:
            _scheduler_step(trainer.scheduler)
            trainer.step += 1
        self.optimizer.param_groups[0]["lr"] = self.trainers[0].optimizer.param_groups[0]["lr"]
        return losses.detach()

    def train_step(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """:meth:`step` on each run's own batch (``batches[k]``, from run k's loader), its loss added to the run's
        running epoch loss."""
        losses = self.step(torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches]))
        for k, trainer in enumerate(self.trainers):
            trainer._epoch_total += losses[k]
            trainer._epoch_batches += 1

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy each run's slice of the stacked weights, buffers and optimizer state into its own trainer."""
        for k, trainer in enumerate(self.trainers):
            for name, parameter in trainer.model.named_parameters():
                parameter.copy_(self.params[name][k])
            for name, buffer in trainer.model.named_buffers():
                buffer.copy_(self.buffers[name][k])
            for position, name in enumerate(self.names):
                stacked = self.optimizer.state.get(self.params[name])
                if stacked:
                    own = self._own[k][position]
                    trainer.optimizer.state[own] = _slice_state(stacked, k, own.shape)


class StackedPasses:
    """The runs of one group whose hooks do more between steps than multiply masks (a learned-mask method's scores
    and thresholds, a dynamic sparse training's regrowth): their forward and backward passes stacked, each run's step
    its own.

    Each run's loss (:meth:`~prunebench.run.trainer.Trainer.loss_passes`) runs in its own code, under its random
    state, up to each forward pass; the pass itself is one :func:`torch.func.vmap` of :func:`functional_call` over
    the runs' weights as their models compute with them (through a method's parametrizations, with the run's own
    draws) and their buffers (written back after the pass), on a copy of the model without the parametrizations
    (:func:`plain_copy`). The sum of the runs' losses is backpropagated once (each run's parameters, weights and the
    method's own, receive their own run's gradient), and each run takes its own step
    (:meth:`~prunebench.run.trainer.Trainer.take_step`: clipping, its hooks, its parameter groups' and weights'
    optimizers), under its random state. The runs' own models and optimizers are the truth at every step."""

    def __init__(self, model: nn.Module) -> None:
        self.model = plain_copy(model)
        self.param_names = [name for name, _ in self.model.named_parameters()]
        self.buffer_names = [name for name, _ in self.model.named_buffers()]
        self.forward = vmap(self._one_forward, randomness="error")

    def _one_forward(self, params, buffers, inputs) -> torch.Tensor:
        return functional_call(self.model, (params, buffers), (inputs,))

    def tensors(self, model: nn.Module, names: Sequence[str]) -> list[torch.Tensor]:
        """``model``'s tensors by name, each as the module computes with it (a parametrized weight computed)."""
        tensors = []
        for name in names:
            path, _, attribute = name.rpartition(".")
            tensors.append(getattr(model.get_submodule(path), attribute))
        return tensors

    def train_step(
        self, live: list[BatchMember], batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> list[BatchMember]:
        """One step of every live run on its own batch (``batches[k]``); the runs still live after it (a run whose
        own code raised has the exception as its outcome)."""
        template = live[0].waiting
        assert template is not None
        passes = {id(m): m.waiting.loss_passes(*batch) for m, batch in zip(live, batches, strict=True)}
        inputs = {id(m): batch[0] for m, batch in zip(live, batches, strict=True)}
        outputs: dict[int, torch.Tensor | None] = {id(m): None for m in live}
        losses: dict[int, torch.Tensor] = {}
        pending = list(live)
        while pending:
            asking: list[BatchMember] = []
            weights: list[list[torch.Tensor]] = []
            for member in pending:
                error = _as_member(
                    member,
                    functools.partial(self._advance, member, passes, outputs, losses, asking, weights),
                )
                if error is not None:
                    member.outcome = error
            if not asking:
                break
            own = [self.tensors(m.waiting.model, self.buffer_names) for m in asking]
            params = {n: torch.stack([w[i] for w in weights]) for i, n in enumerate(self.param_names)}
            buffers = {n: torch.stack([b[i] for b in own]) for i, n in enumerate(self.buffer_names)}
            with autocast_context(self.model, template.autocast):
                stacked = self.forward(params, buffers, torch.stack([inputs[id(m)] for m in asking]))
            with torch.no_grad():
                for k, member_buffers in enumerate(own):
                    for i, buffer in enumerate(member_buffers):
                        buffer.copy_(buffers[self.buffer_names[i]][k])
            for k, member in enumerate(asking):
                outputs[id(member)] = stacked[k]
            pending = asking
        alive = [m for m in live if m.outcome is None and id(m) in losses]
        if not alive:
            return alive
        for member in alive:
            member.waiting.clear_gradients()
        torch.stack([losses[id(m)] for m in alive]).sum().backward()
        kept = []
        for member in alive:
            error = _as_member(member, functools.partial(member.waiting.take_step, losses[id(member)]))
            if error is None:
                kept.append(member)
            else:
                member.outcome = error
        return kept

    def _advance(
        self,
        member: BatchMember,
        passes: dict[int, LossPasses],
        outputs: dict[int, torch.Tensor | None],
        losses: dict[int, torch.Tensor],
        asking: list[BatchMember],
        weights: list[list[torch.Tensor]],
    ) -> None:
        """Run ``member``'s loss up to its next forward pass (then it asks for it, with its weights as its model
        computes with them now), or to its end (its loss)."""
        trainer = member.waiting
        with autocast_context(trainer.model, trainer.autocast):
            try:
                passes[id(member)].send(outputs[id(member)])
            except StopIteration as done:
                losses[id(member)] = done.value
                return
            weights.append(self.tensors(trainer.model, self.param_names))
        asking.append(member)


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its parametrizations (:mod:`torch.nn.utils.parametrize`: a learned-mask method's
    mask functions) and without its data: every parameter and buffer a placeholder of its shape on the meta device.
    The template the stacked passes call with the tensors the runs' models compute with."""
    lists = {
        name: module.parametrizations
        for name, module in model.named_modules()
        if parametrize.is_parametrized(module)
    }
    memo: dict[int, Any] = {id(plist): None for plist in lists.values()}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"), requires_grad=False)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    replica = copy.deepcopy(model, memo)
    for name, plist in lists.items():
        module = replica.get_submodule(name)
        module.__class__ = parametrize.type_before_parametrizations(model.get_submodule(name))
        del module._modules["parametrizations"]
        for attribute, parametrizations in plist.items():
            module._parameters[attribute] = nn.Parameter(
                torch.empty_like(parametrizations.original, device="meta"), requires_grad=False
            )
    return replica


def _scheduler_step(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Step a run's own schedule, whose optimizer the stacked one stands in for: its first step is not preceded by
    that optimizer's own, which PyTorch's scheduler warns about (the rates are the same: the stacked optimizer takes
    the step with the rate the schedule gave)."""
    if scheduler._step_count > 1:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        scheduler.step()


def _stack_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One optimizer state over stacked weights from the runs' own: per-weight tensors stacked, the shared rest
    (Adam's step count) taken from the first run (the group's runs are at one step)."""
    stacked: dict[str, Any] = {}
    for key, value in states[0].items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            stacked[key] = torch.stack([state[key] for state in states])
        else:
            stacked[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return stacked


def _slice_state(stacked: dict[str, Any], k: int, shape: torch.Size) -> dict[str, Any]:
    own: dict[str, Any] = {}
    for key, value in stacked.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[1:] == shape:
            own[key] = value[k].clone()
        else:
            own[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return own


def _as_member(member: BatchMember, call: Callable[[], None]) -> BaseException | None:
    """``call()`` under ``member``'s random state (what it draws stays its own); the exception it raised, if any."""
    set_rng_state(member.rng)
    try:
        call()
    except BaseException as error:  # noqa: BLE001  (the run's own: raised in its thread)
        return error
    finally:
        member.rng = rng_state()
    return None


def train_stacked(members: list[BatchMember]) -> None:
    """Train the waiting trainers of ``members`` (one group) stacked, epoch by epoch; a run whose epoch start or
    end, hook or checkpoint raises (diverged, stopped, claim lost) leaves the group with that exception as its
    outcome, the others go on."""
    live = list(members)
    template = live[0].waiting
    assert template is not None
    checkpoints = [m.waiting.checkpoint for m in live if m.waiting.checkpoint is not None]
    for checkpoint in checkpoints:
        checkpoint.staged = True
    try:
        for epoch in template.epochs_left():
            live = _each(live, lambda trainer, epoch=epoch: trainer.start_epoch(epoch))
            trained = _train_epoch(live, epoch)
            saves = {id(member.waiting): _saves(member.waiting) for member in trained}
            live = _each(trained, lambda trainer, epoch=epoch: trainer.end_epoch(epoch, trainer.epoch_loss()))
            live = _stopped_together(trained, live, _epoch_end_checkpoint)
            if any(_saves(member.waiting) > saves[id(member.waiting)] for member in live):
                live = _each(live, functools.partial(_saved_with_the_others, saves))
            live = _each(live, _checkpoint_written)
            live = _each(live, _checkpoint_committed)
            if not live:
                return
    finally:
        for checkpoint in checkpoints:
            checkpoint.staged = False


def _each(live: list[BatchMember], call: Callable[[Trainer], None]) -> list[BatchMember]:
    """``call`` on each live run's trainer under its random state; the runs it did not raise for (a run it
    raised for has the exception as its outcome)."""
    kept = []
    for member in live:
        error = _as_member(member, functools.partial(call, member.waiting))
        if error is None:
            kept.append(member)
        else:
            member.outcome = error
    return kept


def _train_epoch(live: list[BatchMember], epoch: int) -> list[BatchMember]:
    """The steps of ``epoch`` for the ``live`` runs, stacked as :func:`stacks_steps` or :func:`stacks_passes` allows;
    the runs still live at its end."""
    if stacks_steps(live[0].waiting):
        return _stacked_steps_epoch(live, epoch)
    return _stacked_passes_epoch(live, epoch)


def _stacked_passes_epoch(live: list[BatchMember], epoch: int) -> list[BatchMember]:
    """The steps of ``epoch`` for the ``live`` runs, their passes stacked (:class:`StackedPasses`); where a stop or a
    lost claim asks the checkpoints to act, each run's own checkpoint acts on its own trainer."""
    template = live[0].waiting
    first, last = template.epoch_steps(epoch)
    iterators = {id(member): iter(member.waiting.loader) for member in live}
    passes = StackedPasses(template.model)
    for index in range(template.steps_per_epoch):
        batches = [next(iterators[id(member)]) for member in live]
        if first + index < template.step:
            continue
        if first + index >= template.stop:
            break
        live = passes.train_step(live, batches)
        if live and first + index < last and any(_checkpoint_acts(m.waiting) for m in live):
            live = _mid_epoch_checkpoints(live)
        if not live:
            return live
    return live


def _mid_epoch_checkpoints(live: list[BatchMember]) -> list[BatchMember]:
    """Each live run's checkpoint acts inside an epoch (a stop was asked for, or a claim lost); if one stopped, the
    others stop at the same step (a stop request stays), so that the batch resumes together."""

    def act(trainer: Trainer) -> None:
        trainer.checkpoint.after_step(trainer, trainer.phase, epoch_end=False)

    return _stopped_together(live, _each(live, act), act)


def _stopped_together(
    tried: list[BatchMember], kept: list[BatchMember], act: Callable[[Trainer], None]
) -> list[BatchMember]:
    """After ``tried`` runs' checkpoints acted, ``kept`` going on: if a stop request stopped some, it came while
    the runs acted one after the other and reached those after it only, so ``act`` again on the others (a stop
    request stays), and every run of the batch stops, and is resumed, at the same step."""
    if any(isinstance(member.outcome, RunInterrupted) for member in tried if member not in kept):
        return _each(kept, act)
    return kept


def _stacked_steps_epoch(live: list[BatchMember], epoch: int) -> list[BatchMember]:
    """The steps of ``epoch`` for the ``live`` runs stacked (:class:`StackedRuns`); the runs still live at its end
    (their state written back). Where a run's hook acts after a step
    (:meth:`~prunebench.run.trainer.TrainHook.acts_after_step`), or a stop or a lost claim asks its checkpoint to
    act, the state is written back, each run's own code acts on its own trainer, and the runs left are stacked
    again."""
    trainers = [member.waiting for member in live]
    template = trainers[0]
    first, last = template.epoch_steps(epoch)
    iterators = [iter(t.loader) for t in trainers]
    stacked = None
    for index in range(template.steps_per_epoch):
        batches = [next(iterator) for iterator in iterators]
        if first + index < template.step:
            continue
        if first + index >= template.stop:
            break
        if stacked is None:
            stacked = StackedRuns([member.waiting for member in live])
        stacked.train_step(batches)
        step = stacked.trainers[0].step
        acting = [any(hook.acts_after_step(step) for hook in t.hooks) for t in stacked.trainers]
        checkpoints = first + index < last and any(_checkpoint_acts(t) for t in stacked.trainers)
        if any(acting) or checkpoints:
            stacked.write_back()
            stacked = None
            for member, acts in zip(list(live), acting, strict=True):
                if acts and _fails(member, _hook_events):
                    live.remove(member)
            if checkpoints:
                live = _mid_epoch_checkpoints(live)
            if len(live) < len(iterators):
                kept = {id(member.waiting) for member in live}
                iterators = [it for it, t in zip(iterators, trainers, strict=True) if id(t) in kept]
                trainers = [t for t in trainers if id(t) in kept]
            if not live:
                return live
    if stacked is not None:
        stacked.write_back()
    return live


def _hook_events(trainer: Trainer) -> None:
    """The hooks' own ``after_step`` on the run's own (written-back) trainer, where they act after this step."""
    for hook in trainer.hooks:
        if hook.acts_after_step(trainer.step):
            hook.after_step(trainer)


def _fails(member: BatchMember, call: Callable[[Trainer], None]) -> bool:
    """``call`` on the run's trainer under its random state; whether it raised (the exception is its outcome)."""
    return not _each([member], call)


def stacked_epoch(trainers: Sequence[Trainer], epoch: int) -> list[float]:
    """One epoch of ``trainers`` (started with :meth:`~prunebench.run.trainer.Trainer.begin`, no checkpoints)
    trained stacked as the engine trains them (:class:`StackedRuns` or :class:`StackedPasses`), each with its own
    random state; each one's mean loss. What the benchmark scripts time (``scripts/step_time.py --batched``,
    ``scripts/gpu_check.py``)."""
    for trainer in trainers:
        trainer.start_epoch(epoch)
    batches = zip(*(iter(t.loader) for t in trainers), strict=True)
    if stacks_steps(trainers[0]):
        stacked = StackedRuns(trainers)
        for step in batches:
            stacked.train_step(step)
        stacked.write_back()
    else:
        start = rng_state()
        members = [BatchMember(k, None, rng=start, waiting=t) for k, t in enumerate(trainers)]
        passes, live = StackedPasses(trainers[0].model), members
        for step in batches:
            live = passes.train_step(live, step)
        if failed := [m.outcome for m in members if m.outcome is not None]:
            raise failed[0]
    return [trainer.epoch_loss() for trainer in trainers]


def _epoch_end_checkpoint(trainer: Trainer) -> None:
    """The run's checkpoint acting at its epoch's end again (:func:`_stopped_together`)."""
    if trainer.checkpoint is not None:
        trainer.checkpoint.after_step(trainer, trainer.phase, epoch_end=True)


def _checkpoint_written(trainer: Trainer) -> None:
    """Wait for the run's save of this epoch's end, if one is in flight."""
    if trainer.checkpoint is not None:
        trainer.checkpoint.wait()


def _checkpoint_committed(trainer: Trainer) -> None:
    """Commit the run's save of this epoch's end (staged, :attr:`~prunebench.run.run_checkpoint.RunCheckpoint.
    staged`) once every run of the batch has written its own: the batch's runs then hold checkpoints of the same
    epoch before any trains on, and a batch killed while they write keeps the previous epoch's for all, so that it
    resumes them together, in one group, as it trained them (a run resumed an epoch apart from the others would
    train in a group of its own, with other bits). Only a kill within the renames of the commits themselves can
    still part them."""
    if trainer.checkpoint is not None:
        trainer.checkpoint.commit()


def _saves(trainer: Trainer) -> int:
    """How many saves the run's checkpoint has made."""
    return trainer.checkpoint.saves if trainer.checkpoint is not None else 0


def _saved_with_the_others(saves: dict[int, int], trainer: Trainer) -> None:
    """A save that was due for some runs of the batch at this epoch's end (each run's own clock says when a save
    every so many minutes is due) is made for every run, so that the batch's checkpoints stay at one epoch."""
    if trainer.checkpoint is not None and trainer.checkpoint.saves == saves[id(trainer)]:
        trainer.checkpoint.save(trainer, trainer.phase)


def _checkpoint_acts(trainer: Trainer) -> bool:
    """Whether ``trainer``'s checkpoint acts at a step inside an epoch: a stop was asked for, or the claim lost."""
    checkpoint = trainer.checkpoint
    return checkpoint is not None and (checkpoint.stop() or checkpoint.lost())
