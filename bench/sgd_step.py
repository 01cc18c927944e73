"""The weights' SGD step: PyTorch's fused SGD kernel called directly, the same update as ``optimizer.step()``.

``torch.optim.SGD(fused=True).step()`` spends about as long in Python as in its kernel on a small model (on
LeNet-300-100, one thread: 130 us a call, 63 of them in ``torch._fused_sgd_``), grouping the tensors by device and
dtype and reading the group's options at every call; that is 3-4% of a training step. :class:`SGDStep` makes the
kernel's call itself, with the arguments ``torch.optim.SGD`` passes it, so the weights and momentum buffers are the
same bits (tested against ``optimizer.step()``). The momentum buffers stay in ``optimizer.state``, so the optimizer's
``state_dict`` (checkpoints, resume) is unchanged.
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as _optimizer_module


class SGDStep:
    """``step()`` updates the parameters of ``optimizer`` (a ``torch.optim.SGD``) as ``optimizer.step()`` would.

    The kernel is called directly when the optimizer is fused, has one parameter group on one device and dtype, no
    step hooks, and every parameter has a gradient and (with momentum) a buffer; otherwise, and for the first step
    (which creates the buffers, and which the learning-rate scheduler checks was taken), ``optimizer.step()`` runs.
    """

    def __init__(self, optimizer: torch.optim.SGD) -> None:
        self.optimizer = optimizer
        group = optimizer.param_groups[0] if len(optimizer.param_groups) == 1 else None
        params = group["params"] if group is not None else []
        self._direct = (
            group is not None
            and bool(group.get("fused"))
            and not group["maximize"]
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
        self._buffers: list[torch.Tensor] | None = None
        """The momentum buffers (``[]`` without momentum), read from the optimizer's state after its own step."""
        self._state: object = None

    def step(self) -> None:
        grads = [p.grad for p in self._params]
        # Read at every step: the scheduler writes the lr there, a loaded state_dict replaces the group, and
        # add_param_group may add one that the direct call would miss.
        groups = self.optimizer.param_groups
        if (
            not self._direct
            or len(groups) != 1
            or self._buffers is None
            or self.optimizer.state is not self._state  # a loaded state_dict brings other buffers
            or any(g is None for g in grads)
            or any(self._hooks)
        ):
            self.optimizer.step()
            self._buffers = self._read_buffers()
            self._state = self.optimizer.state
            return
        group = groups[0]
        with torch.no_grad():
            torch._fused_sgd_(
                self._params,
                grads,
                self._buffers,
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

    def _read_buffers(self) -> list[torch.Tensor] | None:
        """The momentum buffers in the optimizer's state (``[]`` without momentum), or ``None`` while any is missing."""
        if not self._direct or self.optimizer.param_groups[0]["momentum"] == 0:
            return []
        state = self.optimizer.state
        buffers = [state[p].get("momentum_buffer") if p in state else None for p in self._params]
        return None if any(b is None for b in buffers) else buffers
