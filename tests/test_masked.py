"""The learned-mask methods' shared plumbing: wrapping weights by name and unwrapping them, the exact-count step."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunebench.methods.base import FinalMasks
from prunebench.methods.masked import MaskedSession, exact_top_k


class Halves(nn.Module):
    """A mask function: ``W -> W * M`` with a fixed mask."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class FixedSession(MaskedSession):
    def __init__(self, model, weights, masks) -> None:
        self.masks = masks
        super().__init__(model, weights, {name: Halves(m) for name, m in masks.items()})

    def final_masks(self, trainer) -> FinalMasks:
        return FinalMasks(masks=self.masks, method_sparsity=0.5)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def test_wrapping_by_name_and_unwrapping_leave_a_plain_module_with_exactly_the_masked_weights_zeroed() -> (
    None
):
    torch.manual_seed(0)
    model = Attention()
    names = [
        "attn.in_proj_weight",
        "attn.out_proj.weight",
        "head.weight",
    ]  # the first is held by the MHA itself
    params = dict(model.named_parameters())
    weights = {name: params[name] for name in names}
    raw = {name: w.detach().clone() for name, w in weights.items()}
    masks = {name: torch.rand(w.shape) > 0.5 for name, w in weights.items()}
    session = FixedSession(model, weights, masks)

    assert parametrize.is_parametrized(model.attn, "in_proj_weight") and parametrize.is_parametrized(
        model.head
    )
    torch.testing.assert_close(
        model.attn.in_proj_weight, raw["attn.in_proj_weight"] * masks["attn.in_proj_weight"]
    )
    model(
        torch.randn(2, 5, 4)
    ).sum().backward()  # the network computes with the masked weights, the raw ones learn
    assert weights["attn.in_proj_weight"].grad is not None

    final = session.finish(trainer=None)  # type: ignore[arg-type]
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    after = dict(model.named_parameters())
    assert set(after) == set(params) and all(after[name] is params[name] for name in params)
    for name in names:
        assert torch.equal(after[name] == 0, ~final.masks[name])  # zero exactly where the mask drops
        assert torch.equal(after[name][masks[name]], raw[name][masks[name]])  # the raw values elsewhere


def test_exact_top_k_keeps_each_layers_floor_then_the_highest_scores() -> None:
    scores = {"a": torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0]), "b": torch.tensor([-1.0, -2.0, -3.0])}
    # round(9 * 0.6) = 5 kept: b's two highest (its floor), then the three highest scores left, all in a
    masks = exact_top_k(scores, 0.4, {"a": 1, "b": 2})
    assert masks["a"].tolist() == [True, True, True, False, False, False]
    assert masks["b"].tolist() == [True, True, False]
    plain = exact_top_k(scores, 0.4)
    assert plain["a"].tolist() == [True] * 5 + [False] and not plain["b"].any()
