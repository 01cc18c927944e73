"""Character-level text datasets for language models: the embedded Tiny Shakespeare subset, a user's text files, and
Hugging Face ``datasets`` by name.

Every text dataset is read the same way. The vocabulary is the corpus's characters, sorted by code point (fixed by
the text, so the same text always gives the same token ids); each character is one token. The token stream is cut
into non-overlapping sequences of ``context`` tokens: the inputs are ``x[t]`` and the targets ``x[t + 1]`` (the next
character), so an example is an input ``[context]`` of token ids and a target ``[context]``. A model's logits are
``[batch, context, vocabulary]``; the trainer's loss and evaluation average over every token, and records add the
perplexity (:mod:`prunebench.run.trainer`). A trailing piece shorter than ``context + 1`` tokens is dropped.

* ``shakespeare-char`` (registered in :mod:`prunebench.datasets.shakespeare`): the embedded corpus, ``context`` 64. The file ``shakespeare250k.txt.gz`` beside this module is
  the first 250,000 bytes (bytes 0 to 249,999, all ASCII, so 250,000 characters, cut mid-line) of Tiny Shakespeare,
  ``data/tinyshakespeare/input.txt`` of Andrej Karpathy's char-rnn repository (commit ``6f9487a``; the whole file is
  1,115,394 bytes, SHA-256 ``86c4e6aa...c565ed``), gzip-compressed (level 9, no name, time stamp 0). The text is a
  compilation of passages of Shakespeare's plays, in the public domain; the char-rnn repository is under the MIT
  licence. The last 10% of the text (its last 25,000 characters) is the test split, the rest the training split. The
  file's SHA-256 is checked on every load. Its 62 distinct characters are the vocabulary.
* ``text:PATH`` or ``text:PATH:CONTEXT``: a UTF-8 text file, or a directory whose ``.txt`` files (found recursively,
  read in the sorted order of their paths) are concatenated; the last 10% is the test split. Its version is a
  fingerprint of the text, so editing a file changes the runs' ids.
* ``hf-text:NAME``, ``hf-text:NAME@CONFIG``, optionally ``:CONTEXT`` after either: a Hugging Face dataset through
  ``datasets.load_dataset`` (downloaded or read from the Hugging Face cache, as that library does; set
  ``HF_DATASETS_OFFLINE=1`` to stay offline), e.g. ``hf-text:wikitext@wikitext-2-raw-v1``. The rows of its ``text``
  column (else its first string column) are joined with blank lines, as the Wanda repository joins WikiText-2's; the
  test split is its ``test`` split, else ``validation``, else the last 10% of ``train``. The ``datasets`` package is
  imported only here.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunebench.core.errors import UsageError
from prunebench.core.hashing import read_shipped
from prunebench.datasets.memory import TensorLoader
from prunebench.datasets.spec import DataLoaders, DatasetSpec, LoaderRequest, never_ffcv

CONTEXT = 64
"""Tokens per sequence of ``shakespeare-char`` and the default of ``text:`` and ``hf-text:``."""
TEST_FRACTION = 0.1
"""The share of a corpus (its end) held out as the test split when the corpus has no test split of its own."""

SHAKESPEARE_FILE = Path(__file__).with_name("shakespeare250k.txt.gz")
SHAKESPEARE_SHA256 = "b82e1bda04179c4b6074b6b59dec273de7d45671b2e243ceecc389f64ebb6e02"
"""The SHA-256 of :data:`SHAKESPEARE_FILE`, the file as shipped."""
SHAKESPEARE_VOCABULARY = 62
"""The distinct characters of the embedded text (its class count)."""

TEXT, HF_TEXT = "text:", "hf-text:"


@dataclass(frozen=True)
class CharVocabulary:
    """The characters of a corpus sorted by code point; a character's token id is its position."""

    chars: str

    @classmethod
    def of(cls, *texts: str) -> CharVocabulary:
        return cls("".join(sorted(set().union(*texts))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """The token ids (``int64``) of ``text``; a character outside the vocabulary is a :class:`UsageError`."""
        known = _code_points(self.chars)
        codes = _code_points(text)
        ids = np.searchsorted(known, codes)
        inside = ids < len(known)
        unknown = ~inside | (known[np.minimum(ids, len(known) - 1)] != codes)
        if unknown.any():
            raise UsageError(
                f"the text has the character {chr(codes[unknown.argmax()])!r}, not in the vocabulary"
            )
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.chars[i] for i in ids.tolist())


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def load_shakespeare(path: Path = SHAKESPEARE_FILE) -> str:
    """The embedded text, from ``path`` once its SHA-256 is :data:`SHAKESPEARE_SHA256` (a one-line error
    otherwise: the package's data file is damaged)."""
    return gzip.decompress(read_shipped(path, SHAKESPEARE_SHA256)).decode("ascii")


def split_text(text: str, test_fraction: float = TEST_FRACTION) -> tuple[str, str]:
    """``(train, test)``: the test split is the last ``test_fraction`` of ``text`` (rounded to a character)."""
    cut = len(text) - round(len(text) * test_fraction)
    return text[:cut], text[cut:]


def sequences(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-overlapping sequences of ``context`` tokens of ``ids`` as ``(inputs, targets)``, each
    ``[count, context]``, the targets the inputs shifted by one token."""
    count = (len(ids) - 1) // context
    if count < 1:
        raise UsageError(f"a text of {len(ids)} characters has no sequence of {context} + 1 characters")
    return ids[: count * context].view(count, context), ids[1 : count * context + 1].view(count, context)


@dataclass(frozen=True)
class TextSplits:
    """A corpus's vocabulary and its training and test sequences (:func:`sequences`)."""

    vocabulary: CharVocabulary
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def text_splits(train: str, test: str, context: int) -> TextSplits:
    """The sequences of ``train`` and ``test`` over the vocabulary of both."""
    vocabulary = CharVocabulary.of(train, test)
    return TextSplits(
        vocabulary, sequences(vocabulary.encode(train), context), sequences(vocabulary.encode(test), context)
    )


def memory_loaders(splits: TextSplits, request: LoaderRequest) -> DataLoaders:
    """The train and test loaders of ``splits``, held in memory on the request's device."""
    (train_x, train_y), (test_x, test_y) = splits.train, splits.test
    on = [t.to(request.device) for t in (train_x, train_y, test_x, test_y)]
    return DataLoaders(
        train=TensorLoader(on[0], on[1], request.batch_size, shuffle=True, seed=request.seed),
        test=TensorLoader(on[2], on[3], request.eval_batch_size, shuffle=False),
        kind="memory",
    )


@functools.cache
def shakespeare_splits() -> TextSplits:
    """The embedded text's sequences of :data:`CONTEXT` characters, its last 10% the test split."""
    splits = text_splits(*split_text(load_shakespeare()), CONTEXT)
    if len(splits.vocabulary) != SHAKESPEARE_VOCABULARY:
        raise ValueError(
            f"the embedded text has {len(splits.vocabulary)} characters, not {SHAKESPEARE_VOCABULARY}"
        )
    return splits


def text_dataset(name: str) -> DatasetSpec:
    """The dataset ``text:PATH[:CONTEXT]`` or ``hf-text:NAME[@CONFIG][:CONTEXT]`` (module docstring)."""
    prefix = TEXT if name.startswith(TEXT) else HF_TEXT
    where, context = _where_and_context(name, name[len(prefix) :])
    return _text_spec(name, prefix, where, context)


def _where_and_context(name: str, text: str) -> tuple[str, int]:
    head, _, tail = text.rpartition(":")
    where, context = (head, int(tail)) if head and tail.isdigit() else (text, CONTEXT)
    if not where or context < 1:
        raise UsageError(
            f"{name!r}: give {TEXT}PATH[:CONTEXT] or {HF_TEXT}NAME[@CONFIG][:CONTEXT], CONTEXT >= 1"
        )
    return where, context


@functools.cache
def _text_spec(name: str, prefix: str, where: str, context: int) -> DatasetSpec:
    train, test = _user_texts(name, Path(where)) if prefix == TEXT else _hf_texts(name, where)
    splits = text_splits(train, test, context)
    fingerprint = hashlib.sha256(f"{train}\0{test}".encode()).hexdigest()[:16]
    return DatasetSpec(
        name=name,
        num_classes=len(splits.vocabulary),
        input_shape=(context,),
        summary=f"{where}: {len(train)} training and {len(test)} test characters, {len(splits.vocabulary)} "
        f"characters, sequences of {context}",
        source=where,
        make_loaders=functools.partial(memory_loaders, splits),
        version=f"text-{fingerprint}",
        check=functools.partial(never_ffcv, name, "held in memory"),
    )


def _user_texts(name: str, path: Path) -> tuple[str, str]:
    """The ``(train, test)`` text of a file, or of a directory's ``.txt`` files in sorted order."""
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise UsageError(f"{name}: the directory {path} has no .txt file")
    elif path.is_file():
        files = [path]
    else:
        raise UsageError(f"{name}: {path} is neither a text file nor a directory of .txt files")
    try:
        text = "".join(file.read_text(encoding="utf-8") for file in files)
    except UnicodeDecodeError as error:
        raise UsageError(f"{name}: a file is not UTF-8 text ({error.reason} at byte {error.start})") from None
    return split_text(text)


def _hf_texts(name: str, where: str) -> tuple[str, str]:
    """The ``(train, test)`` text of the Hugging Face dataset ``NAME[@CONFIG]``."""
    load_dataset = _hf_load_dataset()
    dataset_name, _, config = where.partition("@")
    try:
        splits = load_dataset(dataset_name, config or None)
    except Exception as error:  # noqa: BLE001  (the library's many errors: not found, offline, bad config)
        raise UsageError(f"{name}: datasets.load_dataset failed: {type(error).__name__}: {error}") from None
    if "train" not in splits:
        raise UsageError(f"{name}: the dataset has no train split (it has {', '.join(splits)})")
    train = _joined_rows(name, splits["train"])
    held_out = next((splits[s] for s in ("test", "validation") if s in splits), None)
    return split_text(train) if held_out is None else (train, _joined_rows(name, held_out))


def _hf_load_dataset():
    """``datasets.load_dataset`` of Hugging Face's ``datasets``; a one-line error when it is not installed (a
    ``datasets`` folder on the path, such as this package's own, is not it)."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise UsageError("hf-text: needs Hugging Face's datasets package: pip install datasets") from None
    return load_dataset


def _joined_rows(name: str, split) -> str:
    columns = [c for c, feature in split.features.items() if getattr(feature, "dtype", None) == "string"]
    if not columns:
        raise UsageError(f"{name}: the dataset has no text column (its columns: {', '.join(split.features)})")
    column = "text" if "text" in columns else columns[0]
    return "\n\n".join(split[column])
