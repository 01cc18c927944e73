"""Accounting from the weights themselves, checked against torch.utils.flop_counter, hand counts and direct counts."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import prunebench
from prunebench.pruning.accounting import account, count_flops
from prunebench.zoo.model_zoo import build_model

E, L, S = 16, 5, 7
"""Embedding width, query length and key length of the attention examples."""


def reference_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FlopCounterMode's total for one example, attention on the path where the counter sees its products."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return counter.get_total_flops()


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` over a sequence of L tokens (packed Q/K/V weight)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(L, 1, E)
        return self.attn(x, x, x)[0]


class CrossAttention(nn.Module):
    """Queries of width E against S keys of width 8 and values of width 6: separate Q, K, V weights."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, 4, kdim=8, vdim=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = x.view(L, 1, E)
        return self.attn(query, torch.ones(S, 1, 8), torch.ones(S, 1, 6), need_weights=False)[0]


class CopiedWeight(nn.Module):
    """A layer that multiplies a float64 copy of its weight (the weight reaches the product through a copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.double(), self.weight.double())


def weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every weight a prunable set could hold: matrices and kernels, no biases or norms."""
    return {n: p for n, p in model.named_parameters() if p.dim() > 1}


def test_dense_flops_match_torch_flop_counter(small_convnet):
    counted = count_flops(small_convnet, (1, 8, 8))
    assert counted.total == reference_flops(small_convnet, (1, 8, 8))
    assert sum(counted.per_weight.values()) == counted.total
    assert counted.per_weight["0.weight"] == 2 * (4 * 6 * 6) * (1 * 3 * 3)  # outputs x kernel, by hand


def test_conv_transpose_is_counted_per_input_position():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(3, 5, 3, stride=2), nn.ReLU(), nn.Conv2d(5, 2, 1))
    counted = count_flops(model, (3, 4, 4))
    # each of the 3x4x4 inputs scatters a 5x3x3 kernel
    assert counted.per_weight["0.weight"] == 2 * (3 * 4 * 4) * (5 * 3 * 3)
    assert counted.per_weight["2.weight"] == 2 * (2 * 9 * 9) * 5
    assert counted.total == reference_flops(model, (3, 4, 4))


def test_self_attention_counts_projections_by_weight_and_scores_in_the_total():
    torch.manual_seed(0)
    model = SelfAttention()
    counted = count_flops(model, (L * E,), weights(model))
    assert counted.per_weight == {
        "attn.in_proj_weight": 2 * L * E * 3 * E,
        "attn.out_proj.weight": 2 * L * E * E,
    }
    assert (
        counted.total
        == reference_flops(model, (L * E,))
        == sum(counted.per_weight.values()) + 2 * 2 * L * L * E
    )


def test_separate_query_key_value_weights():
    torch.manual_seed(0)
    model = CrossAttention()
    counted = count_flops(model, (L * E,), weights(model))
    assert counted.per_weight == {
        "attn.q_proj_weight": 2 * L * E * E,
        "attn.k_proj_weight": 2 * S * 8 * E,
        "attn.v_proj_weight": 2 * S * 6 * E,
        "attn.out_proj.weight": 2 * L * E * E,
    }
    assert (
        counted.total
        == reference_flops(model, (L * E,))
        == sum(counted.per_weight.values()) + 2 * 2 * L * S * E
    )


@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_layer(batch_first):
    """With batch_first, PyTorch's fast path would hide every product of the layer from a plain FlopCounterMode."""
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(E, 4, dim_feedforward=32, batch_first=batch_first)
    # batch_first: one example of L tokens; otherwise dimension 0 is the sequence, here of one token
    shape, tokens = ((L, E), L) if batch_first else ((1, E), 1)
    counted = count_flops(model, shape, weights(model))
    assert counted.per_weight == {
        "self_attn.in_proj_weight": 2 * tokens * E * 3 * E,
        "self_attn.out_proj.weight": 2 * tokens * E * E,
        "linear1.weight": 2 * tokens * E * 32,
        "linear2.weight": 2 * tokens * 32 * E,
    }
    attention = 2 * 2 * tokens * tokens * E
    assert counted.total == reference_flops(model, shape) == sum(counted.per_weight.values()) + attention
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


@pytest.mark.parametrize(
    ("name", "build", "shape"),
    [
        ("resnet18", lambda: torchvision.models.resnet18(num_classes=10), (3, 64, 64)),
        ("lenet300_100", lambda: build_model("lenet300_100", (1, 28, 28), 10), (1, 28, 28)),
        ("lenet5", lambda: build_model("lenet5", (1, 28, 28), 10), (1, 28, 28)),
    ],
)
def test_convolutional_and_dense_models_match_the_flop_counter(name, build, shape):
    torch.manual_seed(0)
    model = build()
    counted = count_flops(model, shape)
    assert counted.total == reference_flops(model, shape)
    # every counted FLOP multiplies a prunable weight
    assert sum(counted.per_weight.values()) == counted.total


def test_a_weight_reached_through_a_copy_is_still_attributed():
    torch.manual_seed(0)
    model = CopiedWeight()
    assert count_flops(model, (4,), {"weight": model.weight}).per_weight == {"weight": 2 * 4 * 3}


def test_a_bias_given_as_a_weight_does_not_take_the_product():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    counted = count_flops(model, (4,), dict(model.named_parameters()))
    assert counted.per_weight == {"0.weight": 2 * 4 * 3, "0.bias": 0}


def test_sparsity_and_flops_are_counted_from_zero_weights(small_convnet):
    masks = prunebench.prune(small_convnet, "magnitude", 0.75, scope="uniform")
    prunebench.apply_masks(small_convnet, masks)
    stats = account(small_convnet, (1, 8, 8))
    sizes = {n: m.numel() for n, m in masks.items()}
    kept = sum(int(m.sum()) for m in masks.values())
    assert stats["prunable_nonzero"] == kept
    assert stats["achieved_sparsity"] == 1 - kept / sum(sizes.values())
    dense = count_flops(small_convnet, (1, 8, 8)).per_weight
    expected_sparse = sum(dense[n] * int(masks[n].sum()) / sizes[n] for n in masks)
    assert stats["flops_sparse"] == expected_sparse
    assert stats["speedup"] == stats["flops_dense"] / expected_sparse
    total = sum(p.numel() for p in small_convnet.parameters())
    nonzero = sum(int((p != 0).sum()) for p in small_convnet.parameters())
    assert stats["compression_ratio"] == total / nonzero
    assert not stats["collapsed"]


def test_attention_scores_stay_dense_in_the_sparse_count():
    torch.manual_seed(0)
    model = SelfAttention()
    with torch.no_grad():
        model.attn.in_proj_weight[: 2 * E].zero_()  # a third of the packed Q/K/V weight is kept
    stats = account(model, (L * E,), weights(model))
    in_proj, out_proj, scores = 2 * L * E * 3 * E, 2 * L * E * E, 2 * 2 * L * L * E
    layers = {layer["name"]: layer for layer in stats["layers"]}
    assert layers["attn.in_proj_weight"]["density"] == pytest.approx(1 / 3)
    assert layers["attn.in_proj_weight"]["flops_sparse"] == pytest.approx(in_proj / 3)
    assert stats["flops_dense"] == in_proj + out_proj + scores
    assert stats["flops_sparse"] == pytest.approx(in_proj / 3 + out_proj + scores)


def test_a_layer_pruned_away_is_flagged_as_collapsed(small_convnet):
    with torch.no_grad():
        small_convnet[2].weight.zero_()
    stats = account(small_convnet, (1, 8, 8))
    assert stats["collapsed"] and stats["min_layer_density"] == 0.0
