"""One run's full configuration, its stable id, and the grid a command line expands to."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from prunebench.presets import Preset


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; a run is a pure function of it."""

    preset: Preset
    method: str
    scope: str
    sparsity: float
    seed: int
    keep_first_dense: bool = False
    keep_last_dense: bool = False

    @property
    def dataset(self) -> str:
        return self.preset.dataset

    @property
    def model(self) -> str:
        return self.preset.model

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dataset"] = self.dataset
        data["model"] = self.model
        return data

    @property
    def run_id(self) -> str:
        """A stable id derived from the full configuration (same config, same id, on any machine)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        if self.method == "dense":
            return f"dense seed={self.seed}"
        return f"{self.method}/{self.scope} s={self.sparsity:g} seed={self.seed}"


def dense_pretrain_key(preset: Preset, seed: int) -> str:
    """Key of the shared dense pre-training for after-training methods: (dataset, model, seed, recipe, budget)."""
    blob = json.dumps(
        {
            "dataset": preset.dataset,
            "model": preset.model,
            "seed": seed,
            "epochs": preset.pretrain_epochs,
            "batch_size": preset.batch_size,
            "optim": preset.optim.to_dict(),
            "extra": preset.extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
