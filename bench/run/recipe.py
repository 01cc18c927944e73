"""The training recipe every method of a grid shares: budget, batch size and the two optimizers.

Plain data, no torch: recipes are part of a run's identity and of experiment files, and the leaderboard reads them.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from prunebench.catalog.hparams import HParam
from prunebench.core.errors import UsageError

SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum and weight decay (or AdamW), and its learning-rate schedule.

    ``schedule``: ``cosine`` (to zero over the phase), ``step`` (multiply by ``gamma`` at each fraction of the phase
    in ``milestones``) or ``constant``. Milestones are fractions so that a recipe scales with the budget.

    ``optimizer``: ``sgd`` (the default) or ``adamw`` (Loshchilov and Hutter 2019, ``torch.optim.AdamW``: decoupled
    ``weight_decay`` on every weight, ``momentum`` its first moment's decay ``beta1`` and ``beta2`` its second's;
    ``nesterov`` is SGD's only), for the transformer language models that SGD trains poorly in a short budget. The two
    fields enter :meth:`to_dict` (a run's identity) only when they differ from their defaults, so the SGD recipes'
    run ids are those they had before the fields existed.
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    grad_clip: float | None = None
    optimizer: str = "sgd"
    beta2: float = 0.999

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if not 0 <= self.beta2 < 1:
            raise UsageError(f"optimizer needs 0 <= beta2 < 1, got beta2={self.beta2}")
        if self.schedule not in SCHEDULES:
            raise UsageError(
                f"unknown learning-rate schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}"
            )
        if self.lr < 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise UsageError(
                f"optimizer needs lr >= 0, weight_decay >= 0, 0 <= momentum < 1; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, momentum={self.momentum}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data, without ``optimizer`` and ``beta2`` where they are at their defaults."""
        values = asdict(self)
        for item in fields(self):
            if item.name in _IDENTITY_AT_DEFAULT_OMITTED and values[item.name] == item.default:
                del values[item.name]
        return values


_IDENTITY_AT_DEFAULT_OMITTED = ("optimizer", "beta2")
"""The fields of :class:`OptimConfig` added after run ids existed: in :meth:`OptimConfig.to_dict` only when set."""


@dataclass(frozen=True)
class Recipe:
    """What every method of a grid trains with.

    ``epochs`` is the budget: the number of weight-update epochs every method gets. After-training methods spend
    ``epochs - finetune_epochs`` on the shared dense pre-training (``optim``) and ``finetune_epochs`` fine-tuning the
    pruned model (``finetune_optim``); methods trained from scratch use ``optim`` for the whole budget.
    """

    epochs: int
    batch_size: int
    optim: OptimConfig
    finetune_epochs: int
    finetune_optim: OptimConfig

    def __post_init__(self) -> None:
        if self.epochs < 2:
            raise UsageError(
                f"the budget must be at least 2 epochs (pre-training and fine-tuning), got {self.epochs}"
            )
        if not 1 <= self.finetune_epochs < self.epochs:
            raise UsageError(
                f"finetune_epochs must lie in [1, epochs - 1] = [1, {self.epochs - 1}], got {self.finetune_epochs}"
            )
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {self.batch_size}")

    @property
    def pretrain_epochs(self) -> int:
        """Epochs of the shared dense pre-training of after-training methods."""
        return self.epochs - self.finetune_epochs

    def with_epochs(self, epochs: int) -> Recipe:
        """The same recipe at another budget, keeping the fine-tuning share (at least one epoch each side)."""
        if epochs < 2:
            raise UsageError(f"--epochs must be at least 2 (pre-training and fine-tuning), got {epochs}")
        finetune = min(max(1, round(epochs * self.finetune_epochs / self.epochs)), epochs - 1)
        return replace(self, epochs=epochs, finetune_epochs=finetune)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "optim": self.optim.to_dict(),
            "finetune_optim": self.finetune_optim.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The recipe of :meth:`to_dict`'s output (as stored in records)."""
        optim = {f.name for f in fields(OptimConfig)}

        def optimizer(values: dict[str, Any]) -> OptimConfig:
            values = {k: v for k, v in values.items() if k in optim}
            if "milestones" in values:
                values["milestones"] = tuple(values["milestones"])
            return OptimConfig(**values)

        return cls(
            epochs=data["epochs"],
            batch_size=data["batch_size"],
            optim=optimizer(data["optim"]),
            finetune_epochs=data["finetune_epochs"],
            finetune_optim=optimizer(data["finetune_optim"]),
        )


def recipe_fields() -> dict[str, HParam]:
    """Every field of a recipe a grid can set, by dotted name (``epochs``, ``optim.lr``, ``finetune_optim.lr``)."""
    hints = typing.get_type_hints(Recipe)
    optim_hints = typing.get_type_hints(OptimConfig)
    found: dict[str, HParam] = {}
    for item in fields(Recipe):
        if hints[item.name] is OptimConfig:
            for sub in fields(OptimConfig):
                name = f"{item.name}.{sub.name}"
                found[name] = HParam(name, optim_hints[sub.name], sub.default)
        else:
            found[item.name] = HParam(item.name, hints[item.name], None)
    return found


def apply_recipe_settings(recipe: Recipe, settings: dict[str, Any]) -> Recipe:
    """``recipe`` with ``settings`` (dotted names, checked values) applied.

    A new ``epochs`` without a new ``finetune_epochs`` keeps the fine-tuning share (:meth:`Recipe.with_epochs`).
    """
    known = recipe_fields()
    unknown = [name for name in settings if name not in known]
    if unknown:
        raise UsageError(f"the recipe has no field {unknown[0]!r}; its fields: {', '.join(known)}")
    values = {name: known[name].coerce(value) for name, value in settings.items()}
    if "epochs" in values and "finetune_epochs" not in values:
        recipe = recipe.with_epochs(values.pop("epochs"))
    top = {k: v for k, v in values.items() if "." not in k}
    for optim_name in ("optim", "finetune_optim"):
        changes = {k.partition(".")[2]: v for k, v in values.items() if k.startswith(optim_name + ".")}
        if changes:
            top[optim_name] = replace(getattr(recipe, optim_name), **changes)
    return replace(recipe, **top)
