"""The "Adding a method" example of the manual (``docs/adding-a-method.md``) works as printed."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import prunebench

PAGE = Path(__file__).resolve().parent.parent / "docs" / "adding-a-method.md"


def test_the_documented_method_example_registers_and_prunes(method_registry, small_convnet):
    block = r"```python\n# methods/gradient_magnitude.py\n(.*?)```"
    source = re.search(block, PAGE.read_text(), re.S).group(1)
    exec(compile(source, "gradient_magnitude.py", "exec"), {"__name__": "documented_example"})
    batches = [(torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,)))]
    masks = prunebench.prune(small_convnet, "gradient_magnitude", 0.9, scope="erk", data=batches)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(total * 0.1)
