"""Count the residual-group channels that one global channel ranking removes from CIFAR ResNets, with a shared
channel's score the sum or the mean over its layers (the table of docs/structured.md, "Residual groups").

    python scripts/residual_groups.py            # ResNet-20 and ResNet-56, 50% and 70% of the channels

For each model and target it scores the channel groups (:func:`prunebench.structured.channels.channel_groups`) with
i.i.d. |gamma| (half-normal or uniform, fixed seed) and with each structured method's scores on the initial weights
(Taylor on seeded random inputs and labels), allocates the target globally
(:func:`prunebench.structured.channels.allocate`) and counts the removed channels of the residual groups (those with
more than one BatchNorm).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

from prunebench.methods.channel_methods import GROUP_REDUCES, L1Filter, NetworkSlimming, Scores, TaylorFO
from prunebench.structured.channels import ChannelGroup, allocate, channel_groups
from prunebench.zoo.model_zoo import build_model

SHAPE = (3, 32, 32)
CLASSES = 10
Scorer = Callable[[nn.Module, list[ChannelGroup], str], Scores]


def _gamma_scores(model: nn.Module, groups: list[ChannelGroup], how: str) -> Scores:
    """|gamma| of the model's BatchNorms as Network Slimming and MaskSparsity score them."""
    return NetworkSlimming(group_reduce=how).attach(model, groups, lambda scores: {}).scores()


def iid_gamma(seed: int, draw: Callable[[int, torch.Generator], torch.Tensor]) -> Scorer:
    """|gamma| drawn i.i.d. by ``draw`` for every BatchNorm channel, then scored as Slimming does."""

    def score(model: nn.Module, groups: list[ChannelGroup], how: str) -> Scores:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.copy_(draw(module.num_features, generator).abs())
        return _gamma_scores(model, groups, how)

    return score


def taylor(seed: int, batches: int) -> Scorer:
    """Taylor-FO-BN on the initial weights, averaged over ``batches`` seeded batches of random inputs and labels."""

    def score(model: nn.Module, groups: list[ChannelGroup], how: str) -> Scores:
        generator = torch.Generator().manual_seed(seed)
        data = [
            (torch.randn(32, *SHAPE, generator=generator), torch.randint(CLASSES, (32,), generator=generator))
            for _ in range(batches)
        ]
        return TaylorFO(batches=batches, group_reduce=how).group_scores(model, groups, data)

    return score


def scorers(seed: int, batches: int) -> dict[str, Scorer]:
    return {
        "i.i.d. |γ|, half-normal": iid_gamma(seed, lambda n, generator: torch.randn(n, generator=generator)),
        "i.i.d. |γ|, uniform (0, 1)": iid_gamma(
            seed, lambda n, generator: torch.rand(n, generator=generator)
        ),
        "slimming, masksparsity: |γ| at init (all 1)": _gamma_scores,
        "l1_filter at init": lambda model, groups, how: L1Filter(group_reduce=how).group_scores(
            model, groups, None
        ),
        "taylor at init": taylor(seed, batches),
    }


def removed(model_name: str, scorer: Scorer, fraction: float, how: str) -> tuple[int, int, int]:
    """Residual-group channels removed, residual-group channels, and all channels removed."""
    torch.manual_seed(0)
    model = build_model(model_name, SHAPE, CLASSES)
    groups = channel_groups(model, torch.randn(1, *SHAPE))
    keep = allocate(scorer(model, groups, how), groups, "channels", fraction, "global")
    residual = [g for g in groups if len(g.of("norm")) > 1]
    return (
        sum(int((~keep[g.name]).sum()) for g in residual),
        sum(g.size for g in residual),
        sum(int((~mask).sum()) for mask in keep.values()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--fractions", default="0.5,0.7")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", type=int, default=4, help="random batches Taylor averages over")
    args = parser.parse_args()
    print(
        "| model | scores | target (channels removed) | residual removed, `sum` (before) | `mean` (after) "
        "| residual channels |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for model_name in args.models.split(","):
        for label, scorer in scorers(args.seed, args.batches).items():
            for fraction in map(float, args.fractions.split(",")):
                counts = {how: removed(model_name, scorer, fraction, how) for how in GROUP_REDUCES}
                _, residual, total = counts["mean"]
                shown = label.replace("|", "\\|")  # a Markdown table cell
                print(
                    f"| {model_name} | {shown} | {fraction:.0%} ({total}) | {counts['sum'][0]} | "
                    f"{counts['mean'][0]} | {residual} |"
                )


if __name__ == "__main__":
    main()
