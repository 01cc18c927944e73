"""A small vision transformer (Dosovitskiy et al., ICLR 2021, "An Image is Worth 16x16 Words"), for attention models
on the embedded data.

Non-overlapping ``patch x patch`` patches are embedded by a strided convolution, a learned class token is prepended,
learned position embeddings are added, ``depth`` pre-norm encoder blocks (``nn.TransformerEncoderLayer`` with
``norm_first=True``: multi-head self-attention with the packed Q/K/V ``in_proj_weight``, then a GELU MLP) follow, and
the class token's final LayerNorm feeds the linear head, as in the paper's ViT. No dropout (the at-init criteria
score a deterministic network, and the runs are short).

Prunable set (:mod:`prunebench.pruning.prunable`): the patch embedding, every block's packed Q/K/V projection, output
projection and two MLP layers, and the head. The class token and position embeddings are bare parameters and stay
dense, as biases and LayerNorm do.

Initialization follows the paper's code (``google-research/vision_transformer``): Xavier-uniform for the Linear
weights and for each of the query, key and value projections, LeCun-normal (fan-in, gain 1) for the patch embedding,
position embeddings normal with std 0.02, class token and biases zero, LayerNorm identity. The paper's code has
separate ``E x E`` Q, K and V layers, so each of the three ``E x E`` blocks of the packed ``in_proj_weight`` is
initialized on its own. PyTorch's ``nn.MultiheadAttention`` instead draws the packed ``3E x E`` matrix with one
Xavier bound, ``sqrt(6 / 4E)`` instead of ``sqrt(6 / 2E)``: its Q/K/V weights then all lie below the output
projection's largest ones, and global magnitude pruning at initialization removed every one of them at 90% sparsity.
(With the paper's bounds it is the MLP layers, Xavier bound ``sqrt(6 / 3E)``, that global magnitude at
initialization empties at 90%: a property of the paper's bounded initialization, which the records flag as layer
collapse.)
Deviations: the head is Xavier-initialized like the other Linear layers, not zero as in the paper's fine-tuning
code (a zero head would give every at-init criterion that multiplies by the weight a zero score for it); and this
registry's other models use Kaiming-normal (:mod:`prunebench.zoo.model_zoo`), which a transformer does not need: its
LayerNorms rescale every block's input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prunebench.zoo.model_zoo import register_model


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, position embeddings, pre-norm encoder blocks, LayerNorm and linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        if height % patch or width % patch:
            raise ValueError(f"a {height}x{width} image does not split into {patch}x{patch} patches")
        tokens = (height // patch) * (width // patch)
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        block = nn.TransformerEncoderLayer(
            dim, heads, mlp_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._initialize()

    @torch.no_grad()
    def _initialize(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):
                for projection in module.in_proj_weight.chunk(3):  # Q, K and V, each E x E
                    nn.init.xavier_uniform_(projection)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        fan_in = self.patch_embed.weight[0].numel()
        nn.init.normal_(self.patch_embed.weight, std=1.0 / math.sqrt(fan_in))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.zeros_(self.cls_token)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.encoder(x)[:, 0]))


@register_model(
    "vit_tiny",
    summary="ViT with 7x7 patches, width 64, 2 pre-norm blocks of 4 heads, MLP 128 (69k weights on MNIST)",
    source="Dosovitskiy et al., ICLR 2021 (ViT), scaled down for 28x28 digits on CPUs",
)
def vit_tiny(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two blocks: on mnist5k at the ``mnist5k-vit`` recipe a third block was slower and no more accurate."""
    return VisionTransformer(input_shape, num_classes, patch=7, dim=64, depth=2, heads=4, mlp_dim=128)
