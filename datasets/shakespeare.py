"""The embedded language-model dataset ``shakespeare-char``: Tiny Shakespeare's first 250,000 characters,
character-level (the corpus, its source, licence and hash check: :mod:`prunebench.datasets.text_corpus`)."""

from __future__ import annotations

import functools

from prunebench.datasets.dataset_registry import register_dataset
from prunebench.datasets.spec import DataLoaders, LoaderRequest, never_ffcv
from prunebench.datasets.text_corpus import (
    CONTEXT,
    SHAKESPEARE_VOCABULARY,
    memory_loaders,
    shakespeare_splits,
)


@register_dataset(
    "shakespeare-char",
    num_classes=SHAKESPEARE_VOCABULARY,
    input_shape=(CONTEXT,),
    summary="Tiny Shakespeare's first 250,000 characters, character-level, sequences of 64, last 10% the test split",
    source="Karpathy's char-rnn data/tinyshakespeare/input.txt (Shakespeare, public domain), embedded, hash-checked",
    check=functools.partial(never_ffcv, "shakespeare-char", "held in memory"),
)
def shakespeare_char(request: LoaderRequest) -> DataLoaders:
    return memory_loaders(shakespeare_splits(), request)
