"""A small decoder-only transformer language model (GPT: Radford et al. 2018, 2019), for the language-model task.

The model reads token ids ``[batch, T]`` (``T`` at most its context) and returns next-token logits
``[batch, T, vocabulary]``. It is GPT-2's layout: token and learned position embeddings, ``depth`` pre-norm blocks
(LayerNorm, causal multi-head self-attention, residual; LayerNorm, a GELU MLP of ``4 x dim``, residual), a final
LayerNorm, and the language-model head tied to the token embedding (one matrix, as GPT-2). The attention has separate
query, key and value ``nn.Linear`` layers and an output projection (as OPT and LLaMA, the decoders Wanda and
SparseGPT prune), computed with ``torch.nn.functional.scaled_dot_product_attention`` (``is_causal=True``). No
dropout: the runs are short and the at-init criteria score a deterministic network.

Prunable set (:mod:`prunebench.pruning.prunable`, its existing rule, nothing special here): every block's q, k, v and
output projections and MLP ``fc1`` and ``fc2`` (``nn.Linear``). The token and position embeddings are ``nn.Embedding``
layers and stay dense by default, and the head, tied to the token embedding, is an embedding matrix and follows it:
as Wanda and SparseGPT prune only the decoder layers' linear layers. :meth:`GPT.pruning_blocks` groups those weights
by block in forward order, for the one-shot pass that prunes block by block.

Initialization as GPT-2 (Radford et al. 2019, section 2.3, and its released code): Linear and embedding weights normal
with std 0.02, the residual projections (attention output and ``fc2``) with std ``0.02 / sqrt(2 * depth)``, biases
zero, LayerNorm identity.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.zoo.model_zoo import register_model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position attends to itself and the positions before it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} does not split into {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (
            proj(x).view(batch, length, self.heads, dim // self.heads).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, dim))


class MLP(nn.Module):
    """The block's position-wise feed-forward layer: ``fc2(gelu(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm decoder block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and position embeddings, ``depth`` decoder blocks, a final LayerNorm and the tied head."""

    def __init__(self, vocabulary: int, context: int, *, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.context = context
        self.token_embed = nn.Embedding(vocabulary, dim)
        self.pos_embed = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocabulary, bias=False)
        self.head.weight = self.token_embed.weight
        self._initialize(depth)

    @torch.no_grad()
    def _initialize(self, depth: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for residual in (block.attn.out_proj, block.mlp.fc2):
                nn.init.normal_(residual.weight, std=0.02 / math.sqrt(2 * depth))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.context:
            raise ValueError(
                f"a sequence of {length} tokens is longer than the model's context {self.context}"
            )
        positions = torch.arange(length, device=tokens.device)
        x = self.token_embed(tokens) + self.pos_embed(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def pruning_blocks(self) -> list[list[str]]:
        """Each decoder block's prunable weights, in forward order: q, k, v, output projection, fc1, fc2."""
        layers = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.fc1", "mlp.fc2")
        return [[f"blocks.{i}.{layer}.weight" for layer in layers] for i in range(len(self.blocks))]


def _gpt(input_shape: tuple[int, ...], num_classes: int, **size: int) -> GPT:
    """A GPT over sequences of ``input_shape == (context,)`` token ids of a ``num_classes``-token vocabulary."""
    if len(input_shape) != 1:
        raise ValueError(
            f"a GPT reads sequences of token ids (shape (context,)), got examples of shape {input_shape}"
        )
    return GPT(num_classes, input_shape[0], **size)


@register_model(
    "gpt-tiny",
    summary="Decoder-only transformer: width 128, 4 pre-norm blocks of 4 heads, MLP 512, tied head (0.8M weights)",
    source="Radford et al. 2019 (GPT-2) layout and initialization, scaled down for character-level text on CPUs",
)
def gpt_tiny(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return _gpt(input_shape, num_classes, dim=128, depth=4, heads=4)
