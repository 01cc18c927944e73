"""One run's configuration and its identity.

A run is a pure function of its :class:`RunConfig`. Its id is the hash of everything that changes its result and of
nothing else (:meth:`RunConfig.identity`):

* the dataset and the data's own version, the model and its version;
* the full training recipe (:class:`~prunebench.run.recipe.Recipe`);
* the method as criterion and schedule, all its hyperparameters resolved against the current defaults (so a
  changed default changes the id), and the algorithm versions of the method and of its schedule;
* :data:`HARNESS_VERSION`, the version of the training semantics every method shares;
* the scope, the target sparsity, the seed and the prunable-set options;
* the allocation control (``shuffle``, ``reinit``; :mod:`prunebench.run.allocation_controls`), only when set, so that the id of
  every run that is not a control is what it was before controls existed.
* the track and its target unit, only on the structured track (so every unstructured run keeps its id).
* the comparison group inside each layer (``per_output`` or an N:M pattern such as ``2:4``;
  :mod:`prunebench.pruning.comparison_groups`), only when it is not the default ``per_layer``.
* the content hash of a pretrained model's given weights (``weights``; :mod:`prunebench.zoo.pretrained`), only for a
  model that starts from given weights.

Descriptive text (preset names, summaries, sources) and how a run executes (device, loader, worker count) are not
part of it. The same run asked for by an alias (``gmp``) or by criterion and schedule (``magnitude@gradual``) has one id.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from prunebench.core.hashing import stable_hash
from prunebench.run.recipe import Recipe

if TYPE_CHECKING:
    from prunebench.methods.method_registry import MethodSpec
    from prunebench.zoo.presets import Preset

HARNESS_VERSION = 2
"""The version of the shared training semantics (training loop, optimizer, evaluation, data order, accounting of
sparsity). Bump it whenever a change to the harness changes what runs compute: every run id changes with it.

1: the first versioned harness. 2: SGD steps with PyTorch's fused kernel (0.83x the step time on LeNet-300-100;
weights differ from version 1 in the last bits)."""


@dataclass(frozen=True)
class PrunableOptions:
    """Options of the prunable set (:func:`prunebench.pruning.prunable.prunable_weights`); they apply to every method alike
    and enter the run id when they differ from their defaults (so that an option added later leaves existing ids)."""

    keep_first_dense: bool = False
    keep_last_dense: bool = False
    prune_embeddings: bool = False

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class Track:
    """What a run prunes. ``unstructured``: weights, ``sparsity`` is the fraction of prunable weights removed.
    ``structured``: output channels (:mod:`prunebench.structured.channels`), ``sparsity`` is the fraction of ``unit`` removed:
    ``channels`` (of the group channels) or ``flops`` (of the dense model's FLOPs). It enters the run id only when it
    is not the default, as :class:`PrunableOptions` does."""

    name: str = "unstructured"
    unit: str = "weights"

    def changed(self) -> dict[str, Any]:
        return {} if self == Track() else {"name": self.name, "unit": self.unit}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on.

    ``method`` is a registered method name (an alias, a criterion's name or ``criterion@schedule``); ``settings``
    are the hyperparameters set explicitly (the others take the method's current defaults). ``preset`` only says
    where the dataset, model and recipe came from. ``control`` (``shuffle`` or ``reinit``) makes the run an
    allocation control of the run that is this config without it (:mod:`prunebench.run.allocation_controls`).
    ``group`` is where each layer's count goes inside the layer (the scope decides the count): ``per_layer`` (the
    layer's highest scores), ``per_output`` (each output row its share) or an N:M pattern.
    """

    dataset: str
    model: str
    recipe: Recipe
    method: str
    scope: str
    sparsity: float
    seed: int
    settings: tuple[tuple[str, Any], ...] = ()
    prunable: PrunableOptions = field(default_factory=PrunableOptions)
    preset: str = ""
    control: str = ""
    track: Track = field(default_factory=Track)
    group: str = "per_layer"

    @classmethod
    def from_preset(
        cls,
        preset: Preset | str,
        method: str,
        scope: str,
        sparsity: float,
        seed: int,
        *,
        epochs: int | None = None,
        settings: Mapping[str, Any] | None = None,
        prunable: PrunableOptions | None = None,
    ) -> RunConfig:
        """The run of ``method`` on a preset's dataset, model and recipe (at ``epochs`` when given)."""
        from prunebench.zoo.presets import get_preset

        preset = get_preset(preset) if isinstance(preset, str) else preset
        recipe = preset.recipe if epochs is None else preset.recipe.with_epochs(epochs)
        return cls(
            dataset=preset.dataset,
            model=preset.model,
            recipe=recipe,
            method=method,
            scope=scope,
            sparsity=sparsity,
            seed=seed,
            settings=settings_tuple(settings or {}),
            prunable=prunable or PrunableOptions(),
            preset=preset.name,
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for worker processes) with its computed identity but without the method's class: a worker
        looks the method up in its own registry."""
        return {k: v for k, v in self.__dict__.items() if k != "spec"}

    @functools.cached_property
    def spec(self) -> MethodSpec:
        from prunebench.methods.method_registry import get_method

        return get_method(self.method)

    @functools.cached_property
    def hparams(self) -> dict[str, Any]:
        """Every hyperparameter of the method and its schedule: the settings over the current defaults."""
        return self.spec.resolve(dict(self.settings))

    @property
    def variant(self) -> str:
        """The hyperparameters that differ from the defaults, e.g. ``samples=4`` ('' for the defaults)."""
        return self.spec.variant(self.hparams)

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """What the run id hashes (see the module docstring)."""
        from prunebench.datasets import get_dataset
        from prunebench.zoo.model_zoo import get_model
        from prunebench.zoo.pretrained import weights_digest

        spec, dataset, model = self.spec, get_dataset(self.dataset), get_model(self.model)
        identity = {
            "dataset": {"name": self.dataset, "version": dataset.version},
            "model": {"name": self.model, "version": model.version},
            "recipe": self.recipe.to_dict(),
            "method": {
                "criterion": spec.criterion,
                "schedule": spec.schedule,
                "hparams": self.hparams,
                "versions": spec.versions,
            },
            "harness_version": HARNESS_VERSION,
            "scope": self.scope,
            "sparsity": self.sparsity,
            "seed": self.seed,
            "prunable": self.prunable.changed(),
            **({"track": self.track.changed()} if self.track.changed() else {}),
        }
        if self.control:
            identity["control"] = self.control
        if self.group != "per_layer":
            identity["group"] = self.group
        weights = weights_digest(model, dataset.input_shape, dataset.num_classes)
        if weights is not None:
            identity["weights"] = weights
        return identity

    @functools.cached_property
    def run_id(self) -> str:
        """A stable id derived from :attr:`identity` (same configuration, same id, on any machine)."""
        return stable_hash(self.identity)

    @property
    def label(self) -> str:
        """A short description for progress displays."""
        if self.method == "dense":
            return f"dense seed={self.seed}"
        variant = f"[{self.variant}]" if self.variant else ""
        control = f" {self.control} control" if self.control else ""
        target = f"{self.track.unit}={self.sparsity:g}" if self.track.changed() else f"s={self.sparsity:g}"
        if self.group != "per_layer":
            target = f"{target} {self.group}"
        return f"{self.spec.name}{variant}/{self.scope} {target} seed={self.seed}{control}"


def dense_pretrain_key(config: RunConfig) -> str:
    """Key of the dense pre-training shared by the after-training runs of ``config``'s data, model, seed and recipe."""
    identity = config.identity
    return stable_hash(
        {
            "dataset": identity["dataset"],
            "model": identity["model"],
            "seed": config.seed,
            "epochs": config.recipe.pretrain_epochs,
            "batch_size": config.recipe.batch_size,
            "optim": config.recipe.optim.to_dict(),
            "harness_version": HARNESS_VERSION,
        }
    )


def settings_tuple(settings: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Hyperparameter settings as a hashable, ordered tuple (for :attr:`RunConfig.settings`)."""
    return tuple(sorted(settings.items()))
