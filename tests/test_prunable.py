"""The prunable set on attention models, tied and reparametrized weights, and the API's one-line errors.

Expectations are hand counts of the test model's weights and ``torch.nn.utils.prune.global_unstructured`` run on the
same tensors.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

import prunebench
from prunebench.core.errors import UsageError
from prunebench.methods.base import ScoringMethod
from prunebench.pruning.allocation import keep_budget
from prunebench.pruning.mask_application import MaskEnforcer
from prunebench.pruning.prunable import parameter_names, prunable_set, prunable_weights, weight_locations
from prunebench.zoo.model_zoo import all_models

EMBEDDING = {"embed.weight": 50 * 16}  # the attention model's (conftest.py) Embedding(50, 16)


def test_the_prunable_set_of_an_attention_model_is_every_weight_matrix_counted_by_hand(
    make_attention_model, hand_count
):
    weights = prunable_weights(make_attention_model())
    assert {name: w.numel() for name, w in weights.items()} == hand_count
    assert list(weights) == list(hand_count)  # module order
    assert sum(hand_count.values()) == 3904
    with_embeddings = prunable_weights(make_attention_model(), prune_embeddings=True)
    assert {name: w.numel() for name, w in with_embeddings.items()} == EMBEDDING | hand_count
    assert list(with_embeddings) == [*EMBEDDING, *hand_count]


@pytest.mark.parametrize("prune_embeddings", [False, True])
def test_global_magnitude_equals_torch_global_unstructured_on_the_same_tensors(
    prune_embeddings, make_attention_model, hand_count
):
    model = make_attention_model()
    masks = prunebench.prune(model, "magnitude", 0.9, scope="global", prune_embeddings=prune_embeddings)
    reference = copy.deepcopy(model)
    names = [*(EMBEDDING if prune_embeddings else {}), *hand_count]
    targets = []
    for name in names:
        path, _, attribute = name.rpartition(".")
        targets.append((reference.get_submodule(path), attribute))
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.9)
    assert list(masks) == names
    for name, (module, attribute) in zip(names, targets, strict=True):
        assert torch.equal(masks[name], getattr(module, f"{attribute}_mask").bool()), name


def test_a_requested_sparsity_is_the_sparsity_of_the_weight_matrices(make_attention_model, hand_count):
    model = make_attention_model()
    prunebench.apply_masks(model, prunebench.prune(model, "magnitude", 0.9, scope="global"))
    params = dict(model.named_parameters())
    zeros = sum(int((params[name] == 0).sum()) for name in hand_count)
    assert zeros == sum(hand_count.values()) - keep_budget(3904, 0.9)


def test_separate_query_key_value_projections_are_three_weights():
    attention = nn.MultiheadAttention(16, 2, kdim=8, vdim=12)
    shapes = {name: tuple(w.shape) for name, w in prunable_weights(attention).items()}
    assert shapes == {
        "q_proj_weight": (16, 16),
        "k_proj_weight": (16, 8),
        "v_proj_weight": (16, 12),
        "out_proj.weight": (16, 16),
    }


@pytest.mark.parametrize(
    "spec", [s for s in all_models() if not s.name.startswith(("vit", "gpt"))], ids=lambda spec: spec.name
)  # the transformers: their prunable sets are tested in tests/test_vit.py and tests/test_language_model.py
def test_the_prunable_set_of_the_registered_conv_and_linear_models_is_their_conv_and_linear_weights(spec):
    shape = (1, 28, 28) if spec.name.startswith("lenet") else (3, 32, 32)
    with torch.device("meta"):
        model = spec.build(shape, 10)
    expected = [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert list(prunable_weights(model)) == expected


def test_prunable_set_lists_every_parameter_once_with_shapes_even_on_the_meta_device(
    make_attention_model, hand_count
):
    with torch.device("meta"):
        model = make_attention_model()
    entries = prunable_set(model)
    assert [e.name for e in entries] == [
        *hand_count,
        *(n for n, _ in model.named_parameters() if n not in hand_count),
    ]
    assert {e.name: e.size for e in entries if e.pruned} == hand_count
    assert all(e.size == math.prod(e.shape) for e in entries)
    (embedding,) = [e for e in entries if e.name == "embed.weight"]
    assert not embedding.pruned and "prune_embeddings=True" in embedding.reason
    assert [e.name for e in prunable_set(model, keep_first_dense=True) if e.pruned] == list(hand_count)[1:]


# --- tied weights -----------------------------------------------------------------------------------------------------


def test_a_tied_weight_is_counted_and_masked_once_under_its_first_name(make_tied):
    model = make_tied()
    assert list(prunable_weights(model)) == ["a.weight", "middle.weight"]
    assert parameter_names(model)["b.weight"] == "a.weight"
    assert weight_locations(model, "b.weight") == [(model.a, "weight"), (model.b, "weight")]
    masks = prunebench.prune(model, "magnitude", 0.5, scope="global")
    assert list(masks) == ["a.weight", "middle.weight"]
    assert sum(int(m.sum()) for m in masks.values()) == keep_budget(72, 0.5)
    entry = next(e for e in prunable_set(model) if e.name == "a.weight")
    assert entry.aliases == ("b.weight",)


def test_apply_masks_and_the_enforcer_accept_a_tied_weight_under_either_name(make_tied):
    mask = torch.rand(6, 6, generator=torch.Generator().manual_seed(0)) > 0.5
    for name in ("a.weight", "b.weight"):
        model = make_tied()
        prunebench.apply_masks(model, {name: mask})
        assert torch.equal(model.a.weight != 0, mask) and model.b.weight is model.a.weight
        enforcer = MaskEnforcer(model, {name: mask})
        with torch.no_grad():
            model.b.weight.fill_(1.0)
        enforcer.after_step(None)
        assert torch.equal(model.a.weight != 0, mask)
    with pytest.raises(UsageError, match="tied parameter twice: a.weight and b.weight"):
        prunebench.apply_masks(make_tied(), {"a.weight": mask, "b.weight": mask})


def test_a_weight_tied_to_an_embedding_is_pruned_only_with_the_embeddings():
    torch.manual_seed(0)
    model = nn.ModuleDict({"embed": nn.Embedding(10, 4), "decoder": nn.Linear(4, 10, bias=False)})
    model["decoder"].weight = model["embed"].weight
    assert list(prunable_weights(model)) == []
    assert list(prunable_weights(model, prune_embeddings=True)) == ["embed.weight"]


# --- reparametrized weights -------------------------------------------------------------------------------------------


def weight_normed() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.utils.parametrizations.weight_norm(nn.Linear(4, 2)))


def torch_pruned() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    torch_prune.l1_unstructured(model[1], "weight", 0.5)
    model(torch.ones(1, 4))
    return model


def old_weight_normed() -> nn.Module:
    with pytest.warns(FutureWarning):
        return nn.Sequential(nn.Linear(4, 4), nn.utils.weight_norm(nn.Linear(4, 2)))


@pytest.mark.parametrize(
    ("build", "fix"),
    [
        (
            weight_normed,
            r"1\.weight is parametrized \(_WeightNorm\).*remove_parametrizations\(module, 'weight'\)",
        ),
        (torch_pruned, r"1\.weight is recomputed by .*torch\.nn\.utils\.prune\.remove\(module, 'weight'\)"),
        (old_weight_normed, r"1\.weight is recomputed by a WeightNorm hook.*remove_weight_norm"),
    ],
)
def test_a_reparametrized_weight_is_refused_with_the_fix(build, fix):
    with pytest.raises(UsageError, match=fix):
        prunable_weights(build())
    with pytest.raises(UsageError, match=fix):
        prunebench.prune(build(), "magnitude", 0.5)


# --- the API's one-line errors ----------------------------------------------------------------------------------------


def test_an_unknown_hyperparameter_is_named_with_the_accepted_ones(make_attention_model):
    with pytest.raises(UsageError, match="magnitude has no hyperparameter 'foo'; its hyperparameters: none"):
        prunebench.prune(make_attention_model(), "magnitude", 0.9, foo=1)
    with pytest.raises(
        UsageError, match="hyperparameters: samples_per_class, temperature, chunks, reinit_linear"
    ):
        prunebench.prune(make_attention_model(), "grasp", 0.9, samples=3)


def test_a_method_that_iterates_over_data_it_was_not_given_gets_a_usage_error(
    method_registry, make_attention_model
):
    @method_registry.register("plugin_gradient", schedule="at_init", scopes=("global",), paper="test")
    class PluginGradient(ScoringMethod):
        """Iterates over its data as the README's example does, without checking for None."""

        def scores(self, model, weights, data):
            for inputs, _ in data:
                return {name: w.detach().abs() * inputs.sum() for name, w in weights.items()}

    with pytest.raises(UsageError, match=r"plugin_gradient scores with training data: pass data="):
        prunebench.prune(make_attention_model(), "plugin_gradient", 0.9)
    for name in ("snip", "grasp"):
        with pytest.raises(UsageError, match=f"{name} scores with training data"):
            prunebench.prune(make_attention_model(), name, 0.9)


@pytest.mark.parametrize("method", ["random", "magnitude", "synflow"])
def test_a_model_on_the_meta_device_is_refused(method, make_attention_model):
    with torch.device("meta"):
        model = make_attention_model()
    with pytest.raises(UsageError, match="meta device.*materialize it first"):
        prunebench.prune(model, method, 0.9, **({"input_shape": (5,)} if method == "synflow" else {}))
