"""Opt-in speed-up of the optimizer step: PyTorch's fused SGD and Adam kernels called directly, the same bits as
``optimizer.step()``.

Measured (``scripts/step_time.py --plain``, LeNet-300-100, one CPU thread): SGD's step 51 us a call against 79 us for
``optimizer.step()``, the scores' Adam 125-132 us against 160-180 us: 1-2% of a training step.

``optimizer.step()`` of a fused ``torch.optim.SGD`` or ``Adam`` spends a third of its time in Python on a small
model: it groups the tensors by device and dtype and reads the group's options at every call. :class:`SGDStep`
and :class:`AdamStep` make the kernel's call themselves (``torch._fused_sgd_``, ``torch._fused_adam_``: private API),
with the arguments the optimizer passes it, so the parameters and the optimizer's state are the same bits (tested
against ``optimizer.step()``); the state stays in ``optimizer.state``, so checkpoints and resume are unchanged.

:func:`optimizer_step` is what the trainer and the methods call: the direct step where the speed-up is on
(:mod:`prunebench.run.fast_paths`: the CPU, unless ``PRUNEBENCH_PLAIN=1``) and the PyTorch version is one it was
tested on (:data:`TESTED_TORCH`), ``optimizer.step`` everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import optimizer as _optimizer_module

from prunebench.run.fast_paths import speedup_on

TESTED_TORCH = ("2.14",)
"""The PyTorch versions (major.minor) whose private kernels take the arguments :meth:`FusedStep._kernel` passes,
checked by ``tests/test_fused_step.py``; on any other version :func:`optimizer_step` is ``optimizer.step``."""


def torch_tested(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed PyTorch's) is one of :data:`TESTED_TORCH`."""
    major_minor = ".".join((version or torch.__version__).split("+")[0].split(".")[:2])
    return major_minor in TESTED_TORCH


def optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """The call that steps ``optimizer``: :class:`SGDStep` or :class:`AdamStep`'s ``step`` for a plain
    ``torch.optim.SGD``, ``Adam`` or ``AdamW`` where the speed-up is on for its parameters' device and this PyTorch
    version was tested, else ``optimizer.step()`` (the plain path, looked up at each call: a learning-rate scheduler
    wraps the method once it is built)."""
    direct = {torch.optim.SGD: SGDStep, torch.optim.Adam: AdamStep, torch.optim.AdamW: AdamStep}.get(
        type(optimizer)
    )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if direct is None or not params or not torch_tested() or not speedup_on("fused_step", params[0].device):
        return lambda: optimizer.step()
    return direct(optimizer).step


class FusedStep:
    """``step()`` updates the parameters of a fused ``optimizer`` as ``optimizer.step()`` would.

    The kernel is called directly when the optimizer is fused, has one parameter group on one device and dtype, no
    step hooks, and every parameter has a gradient and its state; otherwise, and for the first step (which creates
    the state, and which a learning-rate scheduler checks was taken), and the first after a loaded state dict,
    ``optimizer.step()`` runs. Subclasses read the state (:meth:`_read_state`) and call the kernel (:meth:`_kernel`).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        group = optimizer.param_groups[0] if len(optimizer.param_groups) == 1 else None
        params = group["params"] if group is not None else []
        self._direct = (
            group is not None
            and bool(group.get("fused"))
            and not group["differentiable"]
            and len({(p.device, p.dtype) for p in params}) == 1
        )
        self._params = list(params)
        self._hooks = [
            getattr(owner, name, None)
            for owner, name in (
                (optimizer, "_optimizer_step_pre_hooks"),
                (optimizer, "_optimizer_step_post_hooks"),
                (_optimizer_module, "_global_optimizer_pre_hooks"),
                (_optimizer_module, "_global_optimizer_post_hooks"),
            )
        ]
        self._tensors: Any = None
        """The kernel's state tensors, read from the optimizer's state after its own step (``None`` until then)."""
        self._state: object = None

    def step(self) -> None:
        grads = [p.grad for p in self._params]
        # Read at every step: the scheduler writes the lr there, a loaded state_dict replaces the group, and
        # add_param_group may add one that the direct call would miss.
        groups = self.optimizer.param_groups
        if (
            not self._direct
            or len(groups) != 1
            or self._tensors is None
            or self.optimizer.state is not self._state  # a loaded state_dict brings other tensors
            or any(g is None for g in grads)
            or any(self._hooks)
            or groups[0]["maximize"]
            or not self._supports(groups[0])
        ):
            self.optimizer.step()
            self._tensors = self._read_state(groups[0]) if self._direct and len(groups) == 1 else None
            self._state = self.optimizer.state
            return
        with torch.no_grad():
            self._kernel(groups[0], grads)

    def _supports(self, group: dict[str, Any]) -> bool:
        """Whether the group's current options are ones :meth:`_kernel` passes on."""
        raise NotImplementedError

    def _read_state(self, group: dict[str, Any]) -> Any:
        """The kernel's state tensors in the optimizer's state, or ``None`` while any is missing."""
        raise NotImplementedError

    def _kernel(self, group: dict[str, Any], grads: list[torch.Tensor]) -> None:
        """The fused kernel's call, with the arguments the optimizer's own step passes it."""
        raise NotImplementedError

    def _per_parameter(self, key: str) -> list[torch.Tensor] | None:
        state = self.optimizer.state
        tensors = [state[p].get(key) if p in state else None for p in self._params]
        return None if any(t is None for t in tensors) else tensors


class SGDStep(FusedStep):
    """``torch.optim.SGD(fused=True).step()``: ``torch._fused_sgd_`` over the momentum buffers (none without
    momentum)."""

    def _supports(self, group: dict[str, Any]) -> bool:
        return (group["momentum"] == 0) == (self._tensors == []) and not torch.is_tensor(group["lr"])

    def _read_state(self, group: dict[str, Any]) -> list[torch.Tensor] | None:
        return [] if group["momentum"] == 0 else self._per_parameter("momentum_buffer")

    def _kernel(self, group: dict[str, Any], grads: list[torch.Tensor]) -> None:
        torch._fused_sgd_(
            self._params,
            grads,
            self._tensors,
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=False,
            is_first_step=False,
            grad_scale=None,
            found_inf=None,
        )


class AdamStep(FusedStep):
    """``torch.optim.Adam(fused=True).step()`` (``AdamW`` with decoupled weight decay): the step counters advanced,
    then ``torch._fused_adam_`` (``torch._fused_adamw_``) over the moving averages, without AMSGrad."""

    def _supports(self, group: dict[str, Any]) -> bool:
        return not group["amsgrad"] and not any(
            torch.is_tensor(value) for value in (group["lr"], *group["betas"])
        )

    def _read_state(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], ...] | None:
        found = tuple(self._per_parameter(key) for key in ("exp_avg", "exp_avg_sq", "step"))
        return None if any(tensors is None for tensors in found) else found

    def _kernel(self, group: dict[str, Any], grads: list[torch.Tensor]) -> None:
        exp_avgs, exp_avg_sqs, steps = self._tensors
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(
            self._params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )
