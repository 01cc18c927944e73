"""The one_shot schedule: calibration statistics against a hand computation, blocks, the sequential pass on the
already-pruned predecessors, the allocation of every scope, and whole runs through the runner."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.datasets.memory import TensorLoader, epoch_generator
from prunebench.grid.grid_choices import parse_methods
from prunebench.methods.base import LayerPruning, OneShotMethod
from prunebench.methods.magnitude import Magnitude
from prunebench.methods.method_registry import get_method, register
from prunebench.pruning.allocation import keep_budget, layer_keep_counts
from prunebench.pruning.calibration import LayerInputs, capture_inputs, first_examples, pruning_blocks
from prunebench.run import method_contract as contract
from prunebench.run.one_shot import allocate, calibration_set, one_shot, prune_sequentially
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute

CPU = torch.device("cpu")


def _needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless the comparison-group, OWL or method modules the test exercises are installed."""
    absent = [module for module in modules if importlib.util.find_spec(module) is None]
    return pytest.mark.skipif(bool(absent), reason=f"needs {', '.join(absent)}")


GROUPS = "prunebench.pruning.comparison_groups"


# Calibration statistics ------------------------------------------------------------------------------------------
def test_linear_inputs_are_the_rows_over_every_leading_dimension():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    x = torch.randn(2, 4, 5)  # batch x tokens x features
    (inputs,) = capture_inputs(nn.Sequential(layer), ["0.weight"], [x], hessian=True).values()
    rows = x.double().reshape(8, 5)
    assert inputs.rows == 8
    torch.testing.assert_close(inputs.sq_norms.double(), (rows**2).sum(dim=0))
    torch.testing.assert_close(inputs.hessian.double(), 2.0 / 8 * rows.T @ rows)


def _patches(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Every receptive field of ``conv`` on ``x`` as a row (channel, kernel row, kernel column), by explicit
    slicing of the zero-padded input."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    padded = F.pad(x, (pw, pw, ph, ph))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for sample in padded:
        for i in range(out_h):
            for j in range(out_w):
                window = sample[
                    :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw
                ]
                rows.append(window.reshape(-1))
    return torch.stack(rows)


def test_conv_inputs_are_its_patches_with_padding_stride_and_dilation():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    x = torch.randn(3, 2, 7, 6)
    patches = _patches(conv, x).double()
    # the rows are what the weight multiplies: they rebuild the convolution's output
    rebuilt = patches @ conv.weight.double().reshape(4, -1).T + conv.bias.double()
    expected = conv(x).double().permute(0, 2, 3, 1).reshape(-1, 4)
    torch.testing.assert_close(rebuilt, expected)
    (inputs,) = capture_inputs(nn.Sequential(conv), ["0.weight"], [x[:2], x[2:]], hessian=True).values()
    assert inputs.rows == patches.shape[0]
    torch.testing.assert_close(inputs.sq_norms.double(), (patches**2).sum(dim=0))
    torch.testing.assert_close(inputs.hessian.double(), 2.0 / patches.shape[0] * patches.T @ patches)


def test_the_hessian_is_captured_only_when_asked_and_the_model_mode_is_restored():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model.train()
    (inputs,) = capture_inputs(model, ["0.weight"], [torch.randn(4, 3)]).values()
    assert inputs.hessian is None and model.training and not model[0]._forward_hooks


def test_unsupported_layers_are_refused_by_name():
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(UsageError, match="groups=2"):
        capture_inputs(grouped, ["0.weight"], [torch.randn(1, 4, 5, 5)])
    with pytest.raises(UsageError, match="0.weight belongs to a Embedding"):
        capture_inputs(nn.Sequential(nn.Embedding(5, 3)), ["0.weight"], [torch.tensor([[1, 2]])])
    attention = nn.MultiheadAttention(4, 1, batch_first=True)
    with pytest.raises(UsageError, match="received no input"):  # its out_proj's module is never called
        capture_inputs(_Attention(attention), ["attention.out_proj.weight"], [torch.randn(1, 3, 4)])


class _Attention(nn.Module):
    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x):
        return self.attention(x, x, x)[0]


def test_the_calibration_set_is_the_first_examples_of_the_seeds_epoch_zero_order():
    inputs = torch.arange(50.0).reshape(50, 1)
    loader = TensorLoader(inputs, torch.zeros(50), 8, shuffle=True, seed=3)
    loader.set_epoch(4)  # where a dense pre-training trained in the run leaves it
    batches = calibration_set(loader, 20)
    order = torch.randperm(50, generator=epoch_generator(3, 0))
    assert torch.equal(torch.cat([x for x, _ in batches]).flatten(), order[:20].float())
    assert [len(x) for x, _ in batches] == [8, 8, 4]


def test_first_examples_takes_exactly_the_count_in_their_batches():
    batches = [(torch.arange(4), torch.arange(4)), (torch.arange(4, 8), torch.arange(4, 8))]
    taken = first_examples(batches, 6)
    assert [x.tolist() for x, _ in taken] == [[0, 1, 2, 3], [4, 5]]
    assert sum(len(x) for x, _ in first_examples(batches, 100)) == 8


# Blocks ----------------------------------------------------------------------------------------------------------
class _Blocks(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(width, 2)

    def pruning_blocks(self) -> list[list[str]]:
        return [["a.weight", "b.weight"], ["c.weight"]]

    def forward(self, x):
        return self.head(self.c(self.b(self.a(x))))


def test_blocks_follow_the_model_restricted_to_the_prunable_set():
    model = _Blocks()
    names = ["a.weight", "b.weight", "c.weight", "head.weight"]
    assert pruning_blocks(model, names) == [["a.weight", "b.weight"], ["c.weight"], ["head.weight"]]
    assert pruning_blocks(model, ["b.weight", "head.weight"]) == [["b.weight"], ["head.weight"]]
    plain = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    assert pruning_blocks(plain, ["0.weight", "1.weight"]) == [["0.weight"], ["1.weight"]]


# The sequential pass ---------------------------------------------------------------------------------------------
class _Recording(OneShotMethod):
    """Keeps the largest |w| of each layer and remembers the inputs it was given; ``scale`` multiplies the kept
    weights, as a reconstruction would update them."""

    name = "recording"

    def __init__(self, scale: float | None = None) -> None:
        self.scale = scale
        self.seen: dict[int, LayerInputs] = {}

    def layer_scores(self, weight, inputs):
        return weight.abs()

    def prune_layer(self, weight, inputs, count, group):
        self.seen[weight.shape[1]] = inputs
        flat = weight.abs().reshape(-1)
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[flat.topk(count).indices] = True
        mask = mask.view_as(weight)
        return LayerPruning(mask, None if self.scale is None else weight * self.scale * mask)


def _two_layers() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_the_second_layer_sees_the_outputs_of_the_pruned_first():
    model, x = _two_layers(), torch.randn(10, 4)
    dense_hidden = torch.relu(model[0](x)).detach()
    weights = dict(model.named_parameters())
    weights = {n: weights[n] for n in ("0.weight", "2.weight")}
    counts = {"0.weight": 12, "2.weight": 9}
    method = _Recording()
    result = prune_sequentially(model, weights, method, counts, "per_layer", [(x, None)])
    pruned_first = weights["0.weight"].detach()
    assert int((pruned_first != 0).sum()) == 12 and torch.equal(result.masks["0.weight"], pruned_first != 0)
    hidden = torch.relu(x @ pruned_first.T + model[0].bias.detach())
    torch.testing.assert_close(method.seen[6].sq_norms, (hidden**2).sum(dim=0))
    assert not torch.allclose(method.seen[6].sq_norms, (dense_hidden**2).sum(dim=0))
    assert result.details == {"weights_updated": False}


def test_a_reconstruction_writes_the_new_weights_and_records_their_change():
    model, x = _two_layers(), torch.randn(10, 4)
    dense = model[2].weight.detach().clone()
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    result = prune_sequentially(
        model, weights, _Recording(scale=3.0), {"0.weight": 8, "2.weight": 5}, "per_layer", [(x, None)]
    )
    mask = result.masks["2.weight"]
    torch.testing.assert_close(model[2].weight.detach(), 3.0 * dense * mask)
    assert torch.equal(result.weights["2.weight"], model[2].weight.detach())
    assert result.details["weights_updated"] is True
    assert result.details["kept_weight_change"]["2.weight"] == pytest.approx(2.0)  # ||3W - W|| / ||W||


# Allocation ------------------------------------------------------------------------------------------------------
def _lenet() -> tuple[nn.Module, dict[str, nn.Parameter], list]:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 20),
        nn.ReLU(),
        nn.Linear(20, 5),
    )
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    batches = [(torch.randn(8, 1, 6, 6), torch.zeros(8, dtype=torch.long))]
    return model, weights, batches


@_needs(GROUPS)
@pytest.mark.parametrize("scope", ["uniform", "erk", "uniform_plus"])
def test_layerwise_counts_are_the_scopes(scope):
    model, weights, batches = _lenet()
    counts, found = allocate(model, weights, _Recording(), 0.8, scope, "per_layer", batches)
    assert counts == layer_keep_counts({n: w.shape for n, w in weights.items()}, 0.8, scope) and found == {}


@_needs(GROUPS)
@pytest.mark.parametrize("method", [_Recording(), Magnitude()], ids=["one-shot method", "criterion"])
def test_global_counts_are_where_the_global_top_k_falls(method):
    model, weights, batches = _lenet()
    counts, _ = allocate(model, weights, method, 0.8, "global", "per_layer", batches)
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    top = torch.zeros_like(flat, dtype=torch.bool)
    top[flat.topk(keep_budget(flat.numel(), 0.8)).indices] = True
    expected, start = {}, 0
    for name, weight in weights.items():
        expected[name] = int(top[start : start + weight.numel()].sum())
        start += weight.numel()
    assert counts == expected


@_needs(GROUPS, "prunebench.pruning.owl", "prunebench.methods.wanda")
def test_owl_counts_meet_the_budget_and_share_each_blocks_density():
    torch.manual_seed(3)
    model = _Blocks(width=16)
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    outlier = torch.ones(16)
    outlier[3] = 100.0  # one input feature far above the others: block a's Wanda scores have outliers
    batches = [(torch.randn(32, 16) * outlier, None)]
    counts, found = allocate(model, weights, _Recording(), 0.6, "owl", "per_layer", batches)
    sizes = {n: w.numel() for n, w in weights.items()}
    assert sum(counts.values()) == keep_budget(sum(sizes.values()), 0.6)
    densities = found["owl"]["block_densities"]
    assert set(densities) == {"a.weight", "c.weight", "head.weight"}
    for name, key in {"a.weight": "a.weight", "b.weight": "a.weight", "c.weight": "c.weight"}.items():
        assert abs(counts[name] - sizes[name] * densities[key]) <= 1
    assert len(set(densities.values())) > 1  # the outlier ratios moved the densities off the uniform one


@_needs(GROUPS)
def test_nm_patterns_need_the_uniform_scope():
    model, weights, batches = _lenet()
    with pytest.raises(UsageError, match="scope uniform"):
        allocate(model, weights, _Recording(), 0.5, "global", "2:4", batches)
    with pytest.raises(UsageError, match="one_shot allocates in"):
        allocate(model, weights, _Recording(), 0.5, "learned", "per_layer", batches)


@_needs(GROUPS)
def test_a_criterion_prunes_from_its_dense_scores_in_place():
    model, weights, batches = _lenet()
    dense = {n: w.detach().clone() for n, w in weights.items()}
    result = one_shot(model, weights, Magnitude(), 0.75, "uniform", "per_layer", batches)
    for name, weight in weights.items():
        count = result.details["layer_counts"][name]
        kept = dense[name].abs().reshape(-1).topk(count).indices
        assert torch.equal(
            result.masks[name].reshape(-1).nonzero().flatten().sort().values, kept.sort().values
        )
        assert torch.equal(weight.detach(), dense[name] * result.masks[name])
    assert result.details["calibration_samples"] == 8 and result.details["weights_updated"] is False


# Registry and grid -----------------------------------------------------------------------------------------------
def test_registry_rules_of_the_one_shot_schedule(method_registry):
    assert "owl" in get_method("magnitude@one_shot").scopes
    assert "owl" not in get_method("magnitude").scopes
    with pytest.raises(ValueError, match="registers schedule='one_shot' only"):
        register("bad_one_shot", schedule="after_training", scopes=("uniform",), paper="p")(
            type("_Elsewhere", (_Recording,), {})
        )
    with pytest.raises(ValueError, match="only under schedule one_shot"):
        register("bad_owl", schedule="after_training", scopes=("owl",), paper="p")
    assert all(spec.schedule != "one_shot" for spec in parse_methods("all"))


# Whole runs ------------------------------------------------------------------------------------------------------
@_needs(GROUPS)
def test_magnitude_one_shot_runs_at_the_exact_target_with_its_calibration_in_the_run_id(tmp_path: Path):
    config = RunConfig.from_preset(
        "synthetic-tiny", "magnitude@one_shot", "uniform", 0.8, 0, epochs=2, settings={"calibration": 16}
    )
    assert config.identity["method"]["hparams"] == {"calibration": 16, "finetune": False}
    default = dataclasses.replace(config, settings=())
    assert default.run_id != config.run_id
    record = execute(config, CPU, tmp_path)
    assert record["status"] == "ok" and record["achieved_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert record["epochs"]["finetune"] == 0
    details = record["method_details"]
    assert details["calibration_samples"] == 16 and details["weights_updated"] is False
    assert sum(details["layer_counts"].values()) == record["prunable_nonzero"]


class _Scaled(_Recording):
    """Keep the largest |w| of each layer and scale the kept weights by 1.5 (a stand-in for a reconstruction)."""

    def __init__(self) -> None:
        super().__init__(scale=1.5)


@_needs(GROUPS)
def test_a_reconstructing_method_keeps_its_weights_through_a_resume(
    method_registry, tmp_path: Path, one_thread
):
    method_registry.register("scaled_one_shot", schedule="one_shot", scopes=("uniform",), paper="test")(
        _Scaled
    )
    config = contract.contract_config(
        "scaled_one_shot", "uniform", {"finetune": ["true"], "calibration": ["8"]}
    )
    reference = contract.run(config, tmp_path / "reference")
    assert reference["epochs"]["finetune"] == config.recipe.finetune_epochs > 0
    assert reference["method_details"]["weights_updated"] is True
    assert contract.target_problems(config, reference) == []
    assert contract.resume_problems(config, tmp_path, reference) == []


@pytest.mark.parametrize(
    "method",
    [pytest.param(m, marks=_needs(GROUPS, f"prunebench.methods.{m}")) for m in ("wanda", "sparsegpt")],
)
def test_the_one_shot_methods_run_at_the_exact_target(method, tmp_path: Path):
    config = RunConfig.from_preset(
        "synthetic-tiny", method, "uniform", 0.5, 0, epochs=2, settings={"calibration": 8}
    )
    config = dataclasses.replace(config, group="per_output")
    record = execute(config, CPU, tmp_path)
    assert record["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert record["method_details"]["weights_updated"] is (method == "sparsegpt")
