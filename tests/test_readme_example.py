"""The "Adding a method" example of the manual (``docs/adding-a-method.md``) works as printed, and the README's numbers
are those of the committed example."""

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


def test_the_readmes_numbers_are_those_of_the_committed_example():
    """The README's default-grid block is what scripts/readme_numbers.py writes from examples/default-grid."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "readme_numbers.py"
    spec = importlib.util.spec_from_file_location("readme_numbers", path)
    numbers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(numbers)
    readme = numbers.README.read_text()
    start, end = readme.index(numbers.BEGIN), readme.index(numbers.END) + len(numbers.END)
    assert readme[start:end] == numbers.render()
