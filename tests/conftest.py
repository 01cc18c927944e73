"""Shared fixtures: tiny models and quick grids."""

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
def method_registry(monkeypatch):
    """The method registry, loaded, restored after the test: methods registered in the test disappear with it."""
    from prunebench.methods import registry

    registry.all_methods()
    monkeypatch.setattr(registry._CLASSES, "_entries", dict(registry._CLASSES._entries))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    return registry
