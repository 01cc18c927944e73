"""One run of the structured track: train, prune channels to the exact target, fine-tune, remove them, measure.

A structured run (``RunConfig.track.name == "structured"``) goes:

1. **Train** for the recipe's training epochs (``epochs - finetune_epochs``): the shared dense pre-training for a
   criterion scored after training (L1-norm, Taylor), or from the initial weights with the method's sparsity
   penalty (Network Slimming, MaskSparsity).
2. **Prune**: the method's scores go through the one allocation layer (:func:`prunebench.structured.channels.allocate`) at the
   target (``channels`` or ``flops``) in the run's scope (``global`` or ``uniform``); the removed channels are
   zeroed (:func:`prunebench.structured.channels.channel_masks`).
3. **Fine-tune** the recipe's fine-tuning epochs with the removed channels held at zero.
4. **Remove** the channels physically with Torch-Pruning (:func:`prunebench.structured.channels.remove_channels`) and check
   that the smaller model's outputs equal the masked model's (the run fails if not).
5. **Evaluate** the smaller model once on the held-out data; count its parameters and FLOPs
   (``torch.utils.flop_counter``) and time it against the dense model of the same architecture, in the same
   process and on the run's device: batch 1 and the recipe's batch size, median of repeated passes after warm-up.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.datasets import get_dataset
from prunebench.methods.base import ScoringData
from prunebench.methods.channel_methods import ChannelCriterion, SparsityTraining
from prunebench.methods.method_registry import all_methods
from prunebench.pruning.accounting import account
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.record_head import evaluation_fields, record_head
from prunebench.run.run_record import RunRecord
from prunebench.structured.channels import (
    FlopModel,
    allocate,
    channel_groups,
    channel_masks,
    check_same_outputs,
    kept_fraction,
    measure_latency,
    remove_channels,
)

if TYPE_CHECKING:
    from prunebench.methods.method_registry import MethodSpec
    from prunebench.run.run_context import RunContext

LATENCY_WARMUP = 10
LATENCY_REPEATS = 50
"""Forward passes timed per model and batch size (after the warm-up), their median recorded."""


def execute_structured(ctx: RunContext) -> RunRecord:
    """Run the structured ``ctx.config`` with the run's context (:class:`~prunebench.run.run_context.RunContext`) and
    return its record (status ``ok``; exceptions propagate)."""
    config, device, recipe = ctx.config, ctx.device, ctx.config.recipe
    started = time.perf_counter()
    loaders = ctx.loaders()
    example = next(iter(loaders.test))[0][:1]
    pruning = _prune_channels(ctx, loaders, example)
    model, keep = pruning.model, pruning.keep
    masks = channel_masks(model, pruning.groups, keep)
    apply_masks(model, masks)
    hooks = [MaskEnforcer(model, masks)]
    trainer = ctx.fit(model, loaders.train, recipe.finetune_optim, recipe.finetune_epochs, "finetune", hooks)
    pruning.epochs.update({"budget": recipe.epochs, "finetune": recipe.finetune_epochs})

    pruned = remove_channels(model, example, keep)
    check_batch = next(iter(loaders.test))[0]
    difference = check_same_outputs(model, pruned, check_batch)
    evaluation = evaluation_fields(pruned, loaders.test)
    dense = ctx.initial_model()
    measured = _measure(dense, pruned, example, check_batch, recipe.batch_size)
    dense_account = account(dense, example, prunable_weights(dense))
    accounting = account(pruned, example, prunable_weights(pruned))
    structured = _summary(config, pruning, dense_account, accounting)
    return {
        **record_head(config, device, "ok", time.perf_counter() - started),
        **evaluation,
        **accounting,
        "achieved_sparsity": structured["achieved"],
        "flops_dense": dense_account["flops_dense"],
        "flops_sparse": accounting["flops_dense"],
        "speedup": dense_account["flops_dense"] / accounting["flops_dense"],
        "method_sparsity": None,
        "enforcement": None,
        "method_details": pruning.details or None,
        "epochs": pruning.epochs,
        "train_loss": trainer.last_loss,
        "loader": loaders.kind,
        "precision": "bf16-autocast" if device.type == "cuda" else "fp32",
        "track": "structured",
        "structured": {**structured, "max_output_difference": difference, **measured},
    }


@dataclass
class _ChannelPruning:
    """What a structured method decided: the model it pruned, its channel groups, the channels kept."""

    model: nn.Module
    groups: list
    flop_model: FlopModel
    keep: dict[str, torch.Tensor]
    epochs: dict[str, int]
    details: dict[str, Any]


def _prune_channels(ctx: RunContext, loaders, example: torch.Tensor) -> _ChannelPruning:
    """Score the channels of the dense pre-training once (a channel criterion), or train with the method's
    sparsity regularizer from initialization (a sparsity-training method), and allocate the kept channels."""
    config, recipe, spec = ctx.config, ctx.config.recipe, ctx.config.spec
    method = spec.build(config.hparams)
    data = ScoringData(loaders.train, get_dataset(config.dataset).num_classes)
    if isinstance(method, ChannelCriterion):
        model = ctx.dense_pretrained(loaders)
    elif isinstance(method, SparsityTraining):
        model = ctx.initial_model()
    else:
        raise TypeError(f"{spec.name} is not a structured method")
    groups = channel_groups(model, example)
    flop_model = FlopModel(model, example, groups)

    def keep_of(scores):
        return allocate(scores, groups, config.track.unit, config.sparsity, config.scope, flop_model)

    torch.manual_seed(config.seed + 1)
    if isinstance(method, ChannelCriterion):
        keep = keep_of(method.group_scores(copy.deepcopy(model), groups, data))
        return _ChannelPruning(model, groups, flop_model, keep, {"dense": recipe.pretrain_epochs}, {})
    session = method.attach(model, groups, keep_of)
    ctx.fit(model, loaders.train, recipe.optim, recipe.pretrain_epochs, "sparsity", [session])
    epochs = {"sparsity": recipe.pretrain_epochs}
    return _ChannelPruning(model, groups, flop_model, session.keep(keep_of), epochs, session.details())


def _summary(config, pruning: _ChannelPruning, dense_account: dict, accounting: dict) -> dict[str, Any]:
    """The record's ``structured`` block: the target, what was removed, FLOPs and parameters before and after."""
    keep, unit = pruning.keep, config.track.unit
    predicted = pruning.flop_model.flops({name: int(mask.sum()) for name, mask in keep.items()})
    flops_reduction = 1.0 - accounting["flops_dense"] / dense_account["flops_dense"]
    channels_removed = 1.0 - kept_fraction(keep)
    return {
        "unit": unit,
        "target": config.sparsity,
        "achieved": channels_removed if unit == "channels" else flops_reduction,
        "channels_total": sum(mask.numel() for mask in keep.values()),
        "channels_removed": channels_removed,
        "flops_dense": dense_account["flops_dense"],
        "flops_pruned": accounting["flops_dense"],
        "flops_predicted": predicted,
        "flops_reduction": flops_reduction,
        "params_dense": dense_account["params_total"],
        "params_pruned": accounting["params_total"],
        "params_reduction": 1.0 - accounting["params_total"] / dense_account["params_total"],
        "groups": [
            {"name": g.name, "size": g.size, "kept": int(keep[g.name].sum()), "layers": len(g.of("producer"))}
            for g in pruning.groups
        ],
    }


def _measure(
    dense: nn.Module, pruned: nn.Module, example: torch.Tensor, batch: torch.Tensor, batch_size: int
) -> dict[str, Any]:
    """Median latency of the dense and pruned models at batch 1 and at ``batch_size`` (the test batch repeated to
    that size if it is smaller), and the speed-ups."""
    large = batch.repeat((-(-batch_size // batch.shape[0]),) + (1,) * (batch.dim() - 1))[:batch_size]
    found: dict[str, Any] = {"threads": torch.get_num_threads(), "throughput_batch": batch_size}
    for label, inputs in (("batch1", example), ("throughput", large)):
        times = measure_latency({"dense": dense, "pruned": pruned}, inputs, LATENCY_WARMUP, LATENCY_REPEATS)
        found[f"latency_dense_{label}_s"] = times["dense"]
        found[f"latency_pruned_{label}_s"] = times["pruned"]
        found[f"speedup_{label}"] = times["dense"] / times["pruned"]
    return found


def check_structured_model(
    model: nn.Module, example: torch.Tensor, name: str, methods: Iterable[MethodSpec]
) -> None:
    """Refuse, before any run, a model the structured track cannot prune with ``methods``: one whose channel groups
    cannot be traced or touch a layer the track does not support, one with no group, and a model without a
    BatchNorm in every group for a method that scores BatchNorm scales (Network Slimming, MaskSparsity).

    ``model`` and ``example`` are those of a dry forward (:func:`prunebench.zoo.model_zoo.check_model_fits`: on ``meta``
    where the model runs there, which Torch-Pruning traces as well).
    """
    try:
        groups = channel_groups(model, example)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001  (tracing the model's code may fail in any way)
        raise UsageError(
            f"the structured track cannot trace {name}: {type(error).__name__}: {error}"
        ) from None
    if not groups:
        raise UsageError(f"{name} has no channel group the structured track can prune")
    scoring_gamma = sorted(spec.name for spec in methods if _needs_batchnorm(spec))
    bare = [group.name for group in groups if not group.of("norm")]
    if scoring_gamma and bare:
        others = [s.name for s in all_methods() if s.track == "structured" and not _needs_batchnorm(s)]
        raise UsageError(
            f"{' and '.join(scoring_gamma)} score BatchNorm scales, but {len(bare)} of the {len(groups)} channel "
            f"groups of {name} have no BatchNorm (the first: layer {bare[0]}); give a model with BatchNorm after "
            f"every pruned layer, or other methods ({', '.join(others)})"
        )


def _needs_batchnorm(spec: MethodSpec) -> bool:
    return bool(getattr(spec.cls, "needs_batchnorm", False))
