"""Shared fixtures: tiny models and quick grids, and the attention model of the prunable-set tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture
def small_convnet() -> nn.Module:
    """Conv -> conv -> linear -> linear, small enough to reason about (seeded)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids the spin-waiting of a thread pool on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def method_registry(monkeypatch):
    """The method registry, loaded, restored after the test: methods registered in the test disappear with it."""
    from prunebench.methods import method_registry as registry

    registry.all_methods()
    # Every class imported first: a method module first imported under the copy would stay imported after the
    # test, its class gone from the restored registry.
    for name in registry._CLASSES.names():
        registry._class_of(name)
    monkeypatch.setattr(registry._CLASSES, "_entries", dict(registry._CLASSES._entries))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    return registry


VOCAB, DIM, HIDDEN, CLASSES = 50, 16, 32, 4


class AttentionModel(nn.Module):
    """The issue's model: Embedding + Conv1d + nn.MultiheadAttention + nn.TransformerEncoderLayer + head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.conv = nn.Conv1d(DIM, DIM, 3, padding=1)
        self.attention = nn.MultiheadAttention(DIM, 2, batch_first=True)
        self.encoder = nn.TransformerEncoderLayer(DIM, 2, HIDDEN, dropout=0.0, batch_first=True)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.embed(ids).transpose(1, 2)).transpose(1, 2)
        x = x + self.attention(x, x, x, need_weights=False)[0]
        return self.head(self.encoder(x).mean(1))


# Counted by hand: (out, in) of every weight matrix of the model, embeddings apart.
HAND = {
    "conv.weight": DIM * DIM * 3,
    "attention.in_proj_weight": 3 * DIM * DIM,  # Q, K and V packed
    "attention.out_proj.weight": DIM * DIM,
    "encoder.self_attn.in_proj_weight": 3 * DIM * DIM,
    "encoder.self_attn.out_proj.weight": DIM * DIM,
    "encoder.linear1.weight": HIDDEN * DIM,
    "encoder.linear2.weight": DIM * HIDDEN,
    "head.weight": CLASSES * DIM,
}
EMBEDDING = {"embed.weight": VOCAB * DIM}


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Linear(6, 6)
        self.middle = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.middle(torch.relu(self.a(x)))))


@pytest.fixture
def make_attention_model():
    """Builds :class:`AttentionModel`, seeded."""

    def make(seed: int = 0) -> AttentionModel:
        torch.manual_seed(seed)
        return AttentionModel()

    return make


@pytest.fixture
def hand_count() -> dict[str, int]:
    """The sizes of :class:`AttentionModel`'s weight matrices, counted by hand (embedding apart), in module order."""
    return dict(HAND)


@pytest.fixture
def make_tied():
    return Tied
