"""Every method on attention models: the during-training methods' parametrizations of Q/K/V and of tied weights,
GraSP's Hessian-gradient product through scaled-dot-product attention, SynFlow on a model that starts with an
Embedding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils import parametrize

import prunebench
from prunebench.datasets.memory import TensorLoader
from prunebench.methods import get_method
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.grasp import GraSP
from prunebench.methods.synflow import SynFlow
from prunebench.pruning.allocation import keep_budget
from prunebench.pruning.mask_application import apply_masks
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.trainer import OptimConfig, Trainer

DURING_TRAINING = ("movement", "soft_movement", "str", "probmask", "asl")


pytestmark = pytest.mark.usefixtures("one_thread")


def token_data(count: int = 48, length: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (count, length), generator=generator)
    return ids, torch.arange(count) % 4


def attach(name: str, model: nn.Module, sparsity: float, loader: TensorLoader):
    spec = get_method(name)
    context = TrainingContext(
        epochs=2,
        steps_per_epoch=len(loader),
        device=torch.device("cpu"),
        seed=0,
        num_classes=4,
        train_data=ScoringData(loader, 4),
    )
    torch.manual_seed(0)
    return spec.build().attach(model, prunable_weights(model), sparsity, spec.scopes[0], context)


@pytest.mark.parametrize("name", DURING_TRAINING)
def test_during_training_methods_train_and_prune_the_attention_projections(
    name, make_attention_model, hand_count
):
    model = make_attention_model()
    loader = TensorLoader(*token_data(), 8, shuffle=False)
    session = attach(name, model, 0.8, loader)
    assert parametrize.is_parametrized(model.attention, "in_proj_weight")
    assert parametrize.is_parametrized(model.encoder.self_attn, "in_proj_weight")
    trainer = Trainer(
        model,
        loader,
        OptimConfig(lr=0.01, schedule="constant"),
        2,
        hooks=[session],
    )
    trainer.fit()
    final = session.finish(trainer)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert list(final.masks) == list(hand_count)
    assert sum(int(m.sum()) for m in final.masks.values()) == keep_budget(sum(hand_count.values()), 0.8)
    params = dict(model.named_parameters())
    assert all(bool((params[n][~m] == 0).all()) for n, m in final.masks.items())


@pytest.mark.parametrize("train", [True, False])
def test_a_movement_mask_on_the_packed_projection_is_what_the_attention_computes_with(
    train, make_attention_model
):
    model = make_attention_model()
    session = attach("movement", model, 0.5, TensorLoader(*token_data(), 8, shuffle=False))
    name = "encoder.self_attn.in_proj_weight"
    mask = torch.rand(3 * 16, 16, generator=torch.Generator().manual_seed(1)) > 0.5
    session.masks[name].mask.copy_(mask)
    masked = copy.deepcopy(make_attention_model())
    with torch.no_grad():
        masked.encoder.self_attn.in_proj_weight.mul_(mask)
    ids = token_data(4)[0]
    model.train(train)
    masked.train(train)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), masked(ids))


def test_a_tied_weight_is_masked_in_every_module_that_uses_it(make_tied):
    model = make_tied()
    original = model.a.weight
    session = attach(
        "movement", model, 0.5, TensorLoader(torch.randn(16, 6), torch.arange(16) % 4, 8, shuffle=False)
    )
    mask = torch.rand(6, 6, generator=torch.Generator().manual_seed(2)) > 0.5
    session.masks["a.weight"].mask.copy_(mask)
    torch.testing.assert_close(model.b.weight, original.detach() * mask)
    torch.testing.assert_close(model.a.weight, original.detach() * mask)
    session.release()
    apply_masks(model, {"a.weight": mask, "middle.weight": torch.ones(6, 6, dtype=torch.bool)})
    assert model.a.weight is original and model.b.weight is original
    assert torch.equal(original != 0, mask)


# --- GraSP ------------------------------------------------------------------------------------------------------------


def grasp_reference(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """θ ⊙ Hg of the mean loss on logits / 200 with torch.autograd.functional.hvp (math attention kernel)."""
    model.eval()
    names = list(prunable_weights(model))
    params = tuple(dict(model.named_parameters())[n].detach().clone() for n in names)

    def loss(*weights):
        logits = functional_call(model, dict(zip(names, weights, strict=True)), (ids,))
        return F.cross_entropy(logits / 200.0, targets)

    leaves = tuple(p.clone().requires_grad_() for p in params)
    grad = torch.autograd.grad(loss(*leaves), leaves)
    with sdpa_kernel(SDPBackend.MATH):
        _, hg = torch.autograd.functional.hvp(loss, params, grad)
    return {name: p * h for name, p, h in zip(names, params, hg, strict=True)}


def test_grasp_hessian_gradient_product_through_attention_equals_autograd_hvp(
    make_attention_model, hand_count
):
    ids, targets = token_data(12)
    expected = grasp_reference(make_attention_model().double(), ids, targets)
    model = make_attention_model().double()
    scores = GraSP(samples_per_class=3, chunks=1).scores(
        model, prunable_weights(model), ScoringData([(ids, targets)], 4)
    )
    assert list(scores) == list(hand_count)
    for name, score in scores.items():
        torch.testing.assert_close(score, expected[name], rtol=1e-7, atol=1e-16)


def test_every_data_based_method_prunes_the_attention_model_at_the_exact_target(
    make_attention_model, hand_count
):
    data = [token_data(40)]
    for name in ("snip", "grasp", "synflow"):
        masks = prunebench.prune(make_attention_model(), name, 0.9, scope="global", data=data)
        assert sum(int(m.sum()) for m in masks.values()) == keep_budget(sum(hand_count.values()), 0.9), name


# --- SynFlow ----------------------------------------------------------------------------------------------------------


def test_synflow_treats_an_embedding_as_a_linear_layer_fed_all_ones():
    torch.manual_seed(3)
    embedded = nn.Sequential(
        nn.Embedding(7, 5), nn.Flatten(), nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)
    )
    linear = nn.Sequential(
        nn.Linear(7, 5, bias=False), nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)
    )
    with torch.no_grad():  # the same network, with the embedding as the linear map of a one-hot input
        linear[0].weight.copy_(embedded[0].weight.T)
        linear[1].weight.copy_(embedded[2].weight)
        linear[2].weight.copy_(embedded[3].weight)
    scored = SynFlow(input_shape=(1,)).scores(
        embedded, prunable_weights(embedded, prune_embeddings=True), None
    )
    expected = SynFlow(input_shape=(7,)).scores(linear, prunable_weights(linear), None)
    torch.testing.assert_close(scored["0.weight"], expected["0.weight"].T, rtol=1e-12, atol=0)
    torch.testing.assert_close(scored["2.weight"], expected["1.weight"], rtol=1e-12, atol=0)
    torch.testing.assert_close(scored["3.weight"], expected["2.weight"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("prune_embeddings", [False, True])
def test_synflow_prunes_a_model_that_starts_with_an_embedding_without_data(
    prune_embeddings, make_attention_model, hand_count
):
    model = make_attention_model()
    masks = prunebench.prune(
        model, "synflow", 0.9, input_shape=(6,), rounds=5, prune_embeddings=prune_embeddings
    )
    total = sum(hand_count.values()) + (50 * 16 if prune_embeddings else 0)
    assert sum(int(m.sum()) for m in masks.values()) == keep_budget(total, 0.9)
    assert all(int(m.sum()) > 0 for m in masks.values())
