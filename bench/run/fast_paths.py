"""Which opt-in speed-ups run: each computes the same bits as the plain path, and is on only where it was measured
to pay.

The plain path is public PyTorch: ``optimizer.step()`` for every optimizer, ``torch.topk`` for every top-k. Two
speed-ups replace one call of it each by a faster computation of the same result, and are tested bit-equal to it:

* ``fused_step`` (:mod:`prunebench.run.fused_step`): the optimizer's fused kernel called directly, without the Python
  work of ``optimizer.step()``; only on the PyTorch versions it was tested on (it calls private API);
* ``tracked_top_k`` (:mod:`prunebench.methods.fast_topk`): hard movement's per-step top-k found near the previous
  step's threshold instead of by ``torch.topk`` over all scores.

Each is on for the devices in :data:`PAYS_ON` (where ``scripts/step_time.py --plain`` measured it faster), and off
everywhere when the environment sets ``PRUNEBENCH_PLAIN=1``. Either way a run computes the same records: the switch
is not part of a run's identity.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prunebench.core.errors import UsageError

if TYPE_CHECKING:
    import torch

PLAIN_VARIABLE = "PRUNEBENCH_PLAIN"
"""The environment variable that turns every speed-up off (``1``) or leaves them where they pay (``0`` or unset)."""

PAYS_ON: dict[str, frozenset[str]] = {
    "fused_step": frozenset({"cpu"}),
    "tracked_top_k": frozenset({"cpu"}),
}
"""The device types on which each speed-up was measured to pay; on the others the plain path runs."""


def plain_requested() -> bool:
    """Whether ``PRUNEBENCH_PLAIN=1`` asks for the plain path everywhere."""
    value = os.environ.get(PLAIN_VARIABLE, "0").strip()
    if value not in ("", "0", "1"):
        raise UsageError(f"{PLAIN_VARIABLE} must be 0 or 1, got {value!r}")
    return value == "1"


def speedup_on(name: str, device: torch.device) -> bool:
    """Whether the speed-up ``name`` (a key of :data:`PAYS_ON`) runs on ``device``."""
    return device.type in PAYS_ON[name] and not plain_requested()
