"""The language-model task: the embedded corpus, character tokenization, sequences, the token loss, perplexity,
the GPT's prunable blocks, the AdamW option and a short training of the preset's model."""

from __future__ import annotations

import gzip
import math
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prunebench.core.errors import UsageError
from prunebench.datasets.dataset_registry import get_dataset
from prunebench.datasets.memory import TensorLoader
from prunebench.datasets.spec import LoaderRequest
from prunebench.datasets.text_corpus import (
    SHAKESPEARE_FILE,
    CharVocabulary,
    load_shakespeare,
    sequences,
    shakespeare_splits,
    split_text,
)
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.recipe import OptimConfig, Recipe
from prunebench.run.trainer import Trainer, build_optimizer, cross_entropy, evaluate_examples
from prunebench.zoo.gpt import GPT
from prunebench.zoo.model_zoo import build_model, check_model_fits
from prunebench.zoo.presets import get_preset


def _tiny_gpt(vocabulary: int = 11, context: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(vocabulary, context, dim=16, depth=2, heads=2)


def test_the_embedded_corpus_is_the_first_250000_characters_and_a_changed_file_is_refused(tmp_path):
    text = load_shakespeare()
    assert len(text) == 250_000
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    changed = tmp_path / SHAKESPEARE_FILE.name
    changed.write_bytes(gzip.compress(text.replace("Citizen", "citizen", 1).encode("ascii"), mtime=0))
    with pytest.raises(ValueError, match="SHA-256 .* not the shipped"):
        load_shakespeare(changed)


def test_tokenization_round_trips_over_a_sorted_vocabulary():
    text = "To be, or not to be: that is the question.\nÆther"
    vocabulary = CharVocabulary.of(text)
    assert list(vocabulary.chars) == sorted(set(text))
    ids = vocabulary.encode(text)
    assert ids.dtype == torch.int64
    assert [vocabulary.chars[i] for i in ids] == list(text)
    assert vocabulary.decode(ids) == text
    with pytest.raises(UsageError, match="'z'"):
        vocabulary.encode("buzz")


def test_sequences_are_the_targets_shifted_by_one_token():
    inputs, targets = sequences(torch.arange(11), 3)
    assert inputs.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert targets.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(UsageError):
        sequences(torch.arange(3), 3)


def test_the_embedded_test_split_is_the_last_tenth_of_the_text():
    splits = shakespeare_splits()
    train_text, test_text = split_text(load_shakespeare())
    assert len(test_text) == 25_000 and train_text + test_text == load_shakespeare()
    test_x, test_y = splits.test
    assert test_x.shape == (390, 64)  # (25,000 - 1) // 64 whole sequences with their next characters
    assert splits.vocabulary.decode(test_x.flatten()) == test_text[: test_x.numel()]
    assert splits.vocabulary.decode(test_y.flatten()) == test_text[1 : test_x.numel() + 1]
    assert len(splits.vocabulary) == get_dataset("shakespeare-char").num_classes == 62


def test_the_token_loss_is_cross_entropy_over_flattened_tokens():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator, requires_grad=True)
    targets = torch.randint(0, 7, (3, 5), generator=generator)
    log_probs = logits.log_softmax(-1)
    expected = -torch.stack([log_probs[b, t, targets[b, t]] for b in range(3) for t in range(5)]).mean()
    torch.testing.assert_close(cross_entropy(logits, targets), expected)
    flat = F.cross_entropy(logits.reshape(15, 7), targets.reshape(15))
    assert torch.equal(cross_entropy(logits, targets), flat)
    classifier_logits, labels = logits[:, 0], targets[:, 0]  # [B, C]: F.cross_entropy itself, bit for bit
    assert torch.equal(cross_entropy(classifier_logits, labels), F.cross_entropy(classifier_logits, labels))
    model = _tiny_gpt(vocabulary=7, context=5)
    tokens = torch.randint(0, 7, (3, 5), generator=generator)
    trainer = Trainer(model, TensorLoader(tokens, targets, 3, shuffle=False), OptimConfig(lr=0.1), 1)
    with torch.no_grad():
        expected = -model(tokens).log_softmax(-1).gather(-1, targets[..., None]).mean()
        torch.testing.assert_close(trainer.loss(tokens, targets), expected)


def test_perplexity_is_exp_of_the_mean_token_nll_and_only_for_sequences():
    model = _tiny_gpt()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 11, (10, 8), generator=generator)
    targets = torch.randint(0, 11, (10, 8), generator=generator)
    evaluation = evaluate_examples(model, TensorLoader(inputs, targets, 4, shuffle=False))
    with torch.no_grad():
        log_probs = model(inputs).double().log_softmax(-1)
    nll = -log_probs.gather(-1, targets[..., None]).squeeze(-1)
    assert evaluation.metrics["loss"] == pytest.approx(float(nll.mean()), rel=1e-5)
    assert evaluation.metrics["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
    hits = log_probs.argmax(-1).eq(targets)
    assert evaluation.metrics["top1"] == pytest.approx(100.0 * float(hits.double().mean()))
    assert torch.equal(evaluation.top1, hits.flatten())  # per token, batch-major
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    images, labels = torch.randn(6, 1, 8), torch.randint(0, 3, (6,))
    assert (
        "perplexity"
        not in evaluate_examples(classifier, TensorLoader(images, labels, 4, shuffle=False)).metrics
    )


def test_gpt_pruning_blocks_name_only_its_prunable_linear_weights_in_forward_order():
    model = _tiny_gpt()
    blocks = model.pruning_blocks()
    assert len(blocks) == 2 and all(len(block) == 6 for block in blocks)
    named = [name for block in blocks for name in block]
    prunable = list(prunable_weights(model))
    assert named == prunable
    assert not any("embed" in name or "head" in name for name in prunable)  # the tied head is an embedding
    modules = dict(model.named_modules())
    called: list[str] = []
    for name, module in modules.items():
        if isinstance(module, nn.Linear) and module is not model.head:
            module.register_forward_hook(lambda m, i, o, name=name: called.append(f"{name}.weight"))
    model(torch.zeros(1, 8, dtype=torch.long))
    assert called == named
    assert all(isinstance(modules[name.rpartition(".")[0]], nn.Linear) for name in named)


def test_gpt_tiny_fits_the_embedded_corpus_and_is_causal():
    model, inputs = check_model_fits("gpt-tiny", (64,), 62, "shakespeare-char")
    assert inputs.dtype == torch.long
    model = _tiny_gpt().eval()
    tokens = torch.randint(0, 11, (2, 8))
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[:, :5], model(changed)[:, :5])


def test_the_default_optimizer_leaves_the_identity_as_it_was_and_adamw_is_built():
    default = OptimConfig(lr=0.05)
    assert "optimizer" not in default.to_dict() and "beta2" not in default.to_dict()
    recipe = Recipe(epochs=3, batch_size=8, optim=default, finetune_epochs=1, finetune_optim=default)
    assert "optimizer" not in recipe.to_dict()["optim"]
    adamw = OptimConfig(lr=1e-3, weight_decay=0.1, optimizer="adamw", beta2=0.99)
    assert adamw.to_dict()["optimizer"] == "adamw"
    optimizer = build_optimizer([nn.Parameter(torch.zeros(3))], adamw)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.99) and optimizer.defaults["weight_decay"] == 0.1
    mixed = Recipe(epochs=3, batch_size=8, optim=adamw, finetune_epochs=1, finetune_optim=default)
    assert Recipe.from_dict(mixed.to_dict()) == mixed
    with pytest.raises(UsageError, match="unknown optimizer"):
        OptimConfig(optimizer="lion")


def test_a_short_training_of_the_preset_model_lowers_the_test_perplexity():
    preset = get_preset("shakespeare-gpt")
    splits = shakespeare_splits()
    torch.manual_seed(0)
    model = build_model(preset.model, (64,), len(splits.vocabulary))
    (train_x, train_y), (test_x, test_y) = splits.train, splits.test
    train = TensorLoader(train_x[:240], train_y[:240], 16, shuffle=True, seed=0)
    test = TensorLoader(test_x[:32], test_y[:32], 32, shuffle=False)
    before = evaluate_examples(model, test).metrics["perplexity"]
    Trainer(model, train, preset.recipe.optim, 2).fit()
    after = evaluate_examples(model, test).metrics["perplexity"]
    assert math.isfinite(after) and after < 0.6 * before


def test_a_user_text_file_and_directory_load(tmp_path):
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(40))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    spec = get_dataset(f"text:{path}:16")
    assert spec.input_shape == (16,) and spec.num_classes == len(set(text))
    loaders = spec.make_loaders(LoaderRequest(batch_size=4, seed=0, device=torch.device("cpu")))
    inputs, targets = next(iter(loaders.train))
    assert inputs.shape == targets.shape == (4, 16)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    test_inputs, _ = next(iter(loaders.test))
    vocabulary = CharVocabulary.of(text)
    assert (
        vocabulary.decode(test_inputs.flatten())
        == text[len(text) - round(len(text) / 10) :][: test_inputs.numel()]
    )
    folder = tmp_path / "books"
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text(text[:600], encoding="utf-8")
    (folder / "b" / "c.txt").write_text(text[600:], encoding="utf-8")
    assert get_dataset(f"text:{folder}:16").version == spec.version  # the same text, the same version
    (folder / "a.txt").write_text(text[:600].upper(), encoding="utf-8")
    assert get_dataset(f"text:{folder}").version != spec.version
    with pytest.raises(UsageError, match="neither a text file"):
        get_dataset(f"text:{tmp_path / 'missing'}")


def test_hugging_face_text_without_the_datasets_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UsageError, match="pip install datasets"):
        get_dataset("hf-text:wikitext@wikitext-2-raw-v1")
