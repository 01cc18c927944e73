"""The vision transformer preset: its model's prunable set counted by hand, and a run of it end to end."""

from __future__ import annotations

import pytest
import torch

import prunebench
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.zoo.model_zoo import build_model
from prunebench.zoo.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def test_vit_tiny_is_patches_attention_blocks_and_a_head_counted_by_hand():
    model = build_model("vit_tiny", (1, 28, 28), 10)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    weights = prunable_weights(model)
    depth = len(model.encoder.layers)
    # per block: Q/K/V packed (3*64 x 64), output (64 x 64), MLP (128 x 64, 64 x 128)
    block = 3 * 64 * 64 + 64 * 64 + 2 * 128 * 64
    assert sum(w.numel() for w in weights.values()) == 64 * 7 * 7 + depth * block + 10 * 64
    assert list(weights)[:2] == ["patch_embed.weight", "encoder.layers.0.self_attn.in_proj_weight"]
    assert "pos_embed" not in weights and "cls_token" not in weights


def test_each_of_q_k_v_is_initialized_as_its_own_layer():
    torch.manual_seed(0)
    model = build_model("vit_tiny", (1, 28, 28), 10)
    bound = (6 / (64 + 64)) ** 0.5  # Xavier-uniform of one 64 x 64 projection
    for block in model.encoder.layers[0].self_attn.in_proj_weight.detach().chunk(3):
        assert bound * 0.95 < float(block.abs().max()) <= bound
    # PyTorch's packed init put every Q/K/V weight below the output projection's largest: global magnitude at
    # initialization then removed all of them.
    masks = prunebench.prune(model, "magnitude_init", 0.9, scope="global")
    assert int(masks["encoder.layers.0.self_attn.in_proj_weight"].sum()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grasp", "movement"])
def test_a_vit_run_prunes_the_attention_projections_to_the_target(tmp_path, method):
    config = RunConfig(get_preset("mnist5k-vit").with_epochs(2), method, "global", 0.9, seed=0)
    record = execute(config, torch.device("cpu"), tmp_path)
    assert record["status"] == "ok"
    assert abs(record["achieved_sparsity"] - 0.9) < 1e-4
    layers = {layer["name"]: layer for layer in record["layers"]}
    assert layers["encoder.layers.0.self_attn.in_proj_weight"]["size"] == 3 * 64 * 64
    assert record["prunable_weights"] == sum(layer["size"] for layer in record["layers"])
