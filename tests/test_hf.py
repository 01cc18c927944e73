"""Hugging Face models built from a configuration (random weights, no download), pruned by every at-init and
after-training method at the exact target; their prunable set counted by hand."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.utils.prune as torch_prune

import prunebench
from prunebench.core.errors import UsageError
from prunebench.pruning.allocation import keep_budget
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.zoo.hf_models import parse_spec
from prunebench.zoo.model_zoo import build_model

transformers = pytest.importorskip("transformers")

SMALL = "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128"
BERT = f"hf:bert,{SMALL},vocab_size=100,max_position_embeddings=32"
VIT = f"hf:vit,{SMALL},patch_size=7"
# By hand: per layer Q, K, V and the attention output (64 x 64 each), the MLP (128 x 64 and 64 x 128).
ENCODER = 2 * (4 * 64 * 64 + 2 * 64 * 128)
BERT_WEIGHTS = ENCODER + 64 * 64 + 3 * 64  # + pooler, classifier (3 classes)
BERT_EMBEDDINGS = (100 + 32 + 2) * 64  # word, position, token type
VIT_WEIGHTS = (
    64 * 1 * 7 * 7 + ENCODER + 10 * 64
)  # patch embedding (1 channel), encoder, classifier (10 classes)
DATA_FREE = ("random", "magnitude", "magnitude_init", "lamp", "synflow")
DATA_BASED = ("snip", "grasp")


pytestmark = pytest.mark.usefixtures("one_thread")


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(BERT, (16,), 3)


def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(VIT, (1, 28, 28), 10)


def token_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 100, (30, 16), generator=generator), torch.arange(30) % 3)]


def image_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(40, 1, 28, 28, generator=generator), torch.arange(40) % 10)]


def test_a_config_builds_a_random_classifier_that_returns_logits():
    model = bert()
    assert isinstance(model.model, transformers.BertForSequenceClassification)
    assert model(token_batches()[0][0]).shape == (30, 3)
    assert vit()(image_batches()[0][0]).shape == (40, 10)
    assert parse_spec("hf:vit,patch_size=7,qkv_bias=false,hidden_act=gelu") == (
        "vit",
        {"patch_size": 7, "qkv_bias": False, "hidden_act": "gelu"},
    )


def test_the_prunable_set_of_bert_and_vit_is_counted_by_hand():
    assert sum(w.numel() for w in prunable_weights(bert()).values()) == BERT_WEIGHTS
    with_embeddings = prunable_weights(bert(), prune_embeddings=True)
    assert sum(w.numel() for w in with_embeddings.values()) == BERT_WEIGHTS + BERT_EMBEDDINGS
    assert sum(w.numel() for w in prunable_weights(vit()).values()) == VIT_WEIGHTS
    # Q, K, V, attention output and two MLP matrices per layer, each its own weight, as in the paper's BERT
    assert len(prunable_weights(bert())) == 2 * 6 + 2  # + pooler, classifier
    assert len(prunable_weights(vit())) == 1 + 2 * 6 + 1  # patch embedding + ... + classifier


def test_global_magnitude_on_bert_equals_torch_global_unstructured():
    model = bert()
    masks = prunebench.prune(model, "magnitude", 0.9)
    reference = copy.deepcopy(model)
    targets = [(reference.get_submodule(name.rpartition(".")[0]), "weight") for name in masks]
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.9)
    for (name, mask), (module, _) in zip(masks.items(), targets, strict=True):
        assert torch.equal(mask, module.weight_mask.bool()), name


@pytest.mark.parametrize("method", DATA_FREE + DATA_BASED)
@pytest.mark.parametrize(
    ("build", "batches", "size"), [(bert, token_batches, BERT_WEIGHTS), (vit, image_batches, VIT_WEIGHTS)]
)
def test_every_method_prunes_a_hugging_face_model_at_the_exact_target(method, build, batches, size):
    options = {"rounds": 10} if method == "synflow" else {}
    data = batches() if method in DATA_BASED or method == "synflow" else None
    masks = prunebench.prune(build(), method, 0.9, data=data, **options)
    assert sum(int(m.sum()) for m in masks.values()) == keep_budget(size, 0.9)


def test_bert_embeddings_are_pruned_on_request():
    masks = prunebench.prune(bert(), "synflow", 0.9, data=token_batches(), rounds=10, prune_embeddings=True)
    assert "model.bert.embeddings.word_embeddings.weight" in masks
    assert sum(int(m.sum()) for m in masks.values()) == keep_budget(BERT_WEIGHTS + BERT_EMBEDDINGS, 0.9)


def test_a_local_config_file_builds_the_model_it_describes(tmp_path):
    path = tmp_path / "config.json"
    transformers.AutoConfig.for_model(
        "bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    ).to_json_file(path)
    model = build_model(f"hf:{path},intermediate_size=48", (8,), 5)
    assert model.model.config.hidden_size == 32 and model.model.config.intermediate_size == 48
    assert model(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 5)


@pytest.mark.parametrize("method", ["snip", "movement"])
def test_a_harness_run_on_a_hugging_face_vit_reaches_the_target(tmp_path, method):
    spec = "hf:vit,hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,patch_size=4"
    config = dataclasses.replace(
        RunConfig.from_preset("synthetic-tiny", method, "global", 0.9, 0, epochs=2), model=spec
    )
    record = execute(config, torch.device("cpu"), tmp_path)
    assert record["status"] == "ok" and record["model"] == spec
    assert record["prunable_nonzero"] == keep_budget(record["prunable_weights"], 0.9)
    assert record["prunable_weights"] == 32 * 1 * 4 * 4 + 4 * 32 * 32 + 2 * 32 * 64 + 4 * 32  # 4 classes


def test_bad_specs_are_usage_errors():
    with pytest.raises(UsageError, match="not key=value"):
        build_model("hf:bert,hidden_size", (16,), 2)
    with pytest.raises(UsageError, match="no_such_model"):
        build_model("hf:no_such_model", (16,), 2)
    with pytest.raises(UsageError, match="no such configuration file"):
        build_model("hf:missing/config.json", (16,), 2)
    with pytest.raises(UsageError, match="neither images"):
        build_model(BERT, (4, 4), 2)
