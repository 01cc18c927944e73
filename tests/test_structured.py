"""The structured track: channel groups and residual coupling, exact channel and FLOPs targets, removal equal to the
masked model, the Slimming and MaskSparsity penalties, the track's place in the grid and one end-to-end run."""

from __future__ import annotations

import dataclasses
import types

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from prunebench.core.errors import UsageError
from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_choices import parse_methods, parse_target
from prunebench.methods.channel_methods import MaskSparsity, NetworkSlimming, add_l1_subgradient
from prunebench.pruning.accounting import count_flops
from prunebench.pruning.mask_application import apply_masks
from prunebench.run.run_config import RunConfig, Track
from prunebench.structured.channels import (
    FlopModel,
    OutputMismatch,
    allocate,
    channel_groups,
    channel_masks,
    check_same_outputs,
    remove_channels,
)
from prunebench.zoo.model_zoo import build_model

CPU = torch.device("cpu")


def _model(name: str = "cnn_bn", shape=(1, 28, 28)) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    for module in model.modules():  # BatchNorm with non-trivial statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


def _scores(groups) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {g.name: torch.rand(g.size, generator=generator) for g in groups}


def test_residual_block_channels_form_one_group():
    model = _model()
    groups = {g.name: g for g in channel_groups(model, torch.randn(1, 1, 28, 28))}
    # the conv before the block and the block's second conv add into one stream: one group, both BatchNorms with it
    stream = groups["4"]
    assert {m.module for m in stream.of("producer")} == {"4", "8.conv2"}
    assert {m.module for m in stream.of("norm")} == {"5", "8.bn2"}
    assert {m.module for m in stream.of("consumer")} == {"8.conv1", "11"}
    assert set(groups) == {"0", "4", "8.conv1"}  # the classifier's outputs are not a group


def test_channel_masks_remove_coupled_channels_together():
    model = _model()
    groups = channel_groups(model, torch.randn(1, 1, 28, 28))
    keep = allocate(_scores(groups), groups, "channels", 0.5, "global")
    masks = channel_masks(model, groups, keep)
    removed = (~keep["4"]).nonzero().flatten()
    for name in ("4.weight", "8.conv2.weight", "5.weight", "5.bias", "8.bn2.weight", "8.bn2.bias"):
        rows = masks[name].reshape(masks[name].shape[0], -1).any(1)
        assert torch.equal(~rows, ~keep["4"]), name
    assert removed.numel() > 0


@pytest.mark.parametrize(
    "unit,scope,model_name,shape",
    [
        ("channels", "global", "cnn_bn", (1, 28, 28)),
        ("channels", "uniform", "cnn_bn", (1, 28, 28)),
        ("flops", "global", "cnn_bn", (1, 28, 28)),
        ("flops", "uniform", "resnet20", (3, 8, 8)),
    ],
)
def test_physically_pruned_model_equals_masked_model(unit, scope, model_name, shape):
    model = _model(model_name, shape).eval()
    example = torch.randn(1, *shape)
    groups = channel_groups(model, example)
    keep = allocate(_scores(groups), groups, unit, 0.4, scope, FlopModel(model, example, groups))
    apply_masks(model, channel_masks(model, groups, keep))
    pruned = remove_channels(model, example, keep)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    inputs = torch.randn(8, *shape)
    assert check_same_outputs(model, pruned, inputs) < 1e-4
    torch.testing.assert_close(pruned(inputs), model(inputs), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # a wrong removal is caught
        next(p for p in pruned.parameters() if p.dim() == 4).add_(0.5)
    with pytest.raises(OutputMismatch):
        check_same_outputs(model, pruned, inputs)


@pytest.fixture(scope="module")
def resnet():
    """ResNet-20 (a projection shortcut, residual groups across blocks), its groups and FLOPs model."""
    model = _model("resnet20", (3, 8, 8)).eval()
    example = torch.randn(1, 3, 8, 8)
    groups = channel_groups(model, example)
    return model, example, groups, FlopModel(model, example, groups)


@pytest.mark.parametrize("scope", ["global", "uniform"])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.77])
def test_channel_targets_are_exact(scope, fraction, resnet):
    _, _, groups, _ = resnet
    keep = allocate(_scores(groups), groups, "channels", fraction, scope)
    total = sum(g.size for g in groups)
    assert sum(int((~k).sum()) for k in keep.values()) == round(total * fraction)
    assert all(k.any() for k in keep.values())
    if scope == "uniform":
        for group in groups:
            assert abs(int(keep[group.name].sum()) - group.size * (1 - fraction)) <= 1


@pytest.mark.parametrize("scope,fraction", [("global", 0.6), ("uniform", 0.3)])
def test_flops_targets_are_reached_as_closely_as_channels_allow(scope, fraction, resnet):
    model, example, groups, flop_model = resnet
    keep = allocate(_scores(groups), groups, "flops", fraction, scope, flop_model)
    kept = {name: int(mask.sum()) for name, mask in keep.items()}
    pruned = remove_channels(model, example, keep)
    real = count_flops(pruned, example, {}).total
    assert real == pytest.approx(flop_model.flops(kept), rel=1e-9)  # the FLOPs model is exact
    target = (1 - fraction) * flop_model.dense
    assert real <= target
    if scope == "global":  # one channel fewer removed would miss the target: the largest step bounds the gap
        step = max(
            flop_model.flops({**kept, name: kept[name] + 1}) - real
            for name in kept
            if kept[name] < keep[name].numel()
        )
        assert target - real < step
    else:  # the next coarser common fraction overshoots
        assert target - real < 0.05 * flop_model.dense


def test_slimming_penalty_gradient_is_l1_subgradient():
    bn = torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.2, 0.0, 3.0]))
    inputs = torch.randn(6, 4)
    bn(inputs).pow(2).sum().backward()
    before = bn.weight.grad.clone()
    add_l1_subgradient([bn], 1e-4)
    # by hand: lambda * sign(gamma), sign(0) = 0 as torch.sign and the official updateBN
    torch.testing.assert_close(bn.weight.grad, before + torch.tensor([1e-4, -1e-4, 0.0, 1e-4]))
    # and the autograd gradient of lambda * sum |gamma| where gamma != 0
    gamma = bn.weight.detach().clone().requires_grad_()
    (1e-4 * gamma.abs().sum()).backward()
    torch.testing.assert_close((bn.weight.grad - before)[[0, 1, 3]], gamma.grad[[0, 1, 3]])


def _grads_after_hook(model, session, trainer) -> tuple[dict, dict]:
    model.zero_grad()
    F.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.arange(8)).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    session.before_step(trainer)
    return plain, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_slimming_session_penalizes_every_batchnorm_scale_and_nothing_else():
    model = _model().train()
    groups = channel_groups(model, torch.randn(1, 1, 28, 28))
    session = NetworkSlimming(strength=1e-3).attach(model, groups, lambda scores: {})
    plain, after = _grads_after_hook(model, session, types.SimpleNamespace(progress=0.0, step=0))
    params = dict(model.named_parameters())
    for name in plain:
        expected = plain[name]
        if name.endswith("weight") and isinstance(
            model.get_submodule(name[: -len(".weight")]), torch.nn.BatchNorm2d
        ):
            expected = expected + 1e-3 * torch.sign(params[name].detach())
        torch.testing.assert_close(after[name], expected, rtol=0, atol=1e-9)


def test_masksparsity_regularizes_exactly_the_masked_channels():
    model = _model().train()
    example = torch.randn(1, 1, 28, 28)
    groups = channel_groups(model, example)

    def allocator(scores):
        return allocate(scores, groups, "channels", 0.5, "global")

    session = MaskSparsity(strength=1e-3, mask_at=0.0).attach(model, groups, allocator)
    plain, after = _grads_after_hook(model, session, types.SimpleNamespace(progress=0.0, step=0))
    mask = session.keep(allocator)
    params = dict(model.named_parameters())
    penalized = 0
    for group in groups:
        removed = ~mask[group.name]
        for member in group.of("norm"):
            name = f"{member.module}.weight"
            index = torch.tensor(member.index)
            difference = (after[name] - plain[name])[index]
            sign = torch.sign(params[name].detach())[index]
            # float32: (g + s) - g is s up to an ulp of g (about 1e-8 for the gradients here)
            torch.testing.assert_close(difference[removed], 1e-3 * sign[removed], rtol=1e-5, atol=1e-7)
            assert torch.equal(difference[~removed], torch.zeros(int((~removed).sum())))  # untouched, exactly
            penalized += int(removed.sum())
    assert penalized > 0
    for name in plain:  # no other parameter is touched
        if not any(name == f"{m.module}.weight" for g in groups for m in g.of("norm")):
            assert torch.equal(after[name], plain[name]), name


def test_tracks_do_not_mix_and_unstructured_ids_stay():
    assert all(spec.track == "unstructured" for spec in parse_methods("all"))
    assert {spec.name for spec in parse_methods("all", "structured")} == {
        "l1_filter",
        "masksparsity",
        "slimming",
        "taylor",
    }
    with pytest.raises(UsageError, match="slimming belongs to the structured track"):
        parse_methods("slimming")
    with pytest.raises(UsageError, match="belongs to the unstructured track"):
        parse_methods("magnitude", "structured")
    with pytest.raises(UsageError, match="--target"):
        parse_target("0.5")
    assert parse_target("flops:0.5,0.3") == ("flops", [0.3, 0.5])
    plain = RunConfig.from_preset("mnist5k-lenet300", "magnitude", "global", 0.9, 0)
    assert "track" not in plain.identity
    structured = Experiment(track="structured", target="flops:0.5", methods="l1_filter", seeds=1).configs()
    assert (
        structured[0].method == "dense" and "track" not in structured[0].identity
    )  # the shared dense baseline
    assert [c.identity["track"] for c in structured[1:]] == [{"name": "structured", "unit": "flops"}] * 2
    assert structured[1].model == "cnn_bn"
    with pytest.raises(UsageError, match="not a sparsity"):
        Experiment(track="structured", sparsity=[0.5]).configs()
    with pytest.raises(UsageError, match="structured track"):
        Experiment(target="channels:0.5").configs()
    import prunebench

    with pytest.raises(UsageError, match="prunes channels"):
        prunebench.prune(_model(), "l1_filter", 0.5)


def test_mixing_tracks_on_the_command_line_is_a_one_line_error(tmp_path, capsys):
    from prunebench.cli import main

    assert main(["run", "--track", "structured", "--methods", "magnitude", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "magnitude belongs to the unstructured track" in error and "\n" not in error


@pytest.mark.slow
def test_structured_run_end_to_end(tmp_path):
    from prunebench.run.runner import execute

    config = RunConfig.from_preset("synthetic-tiny", "slimming", "global", 0.5, 0, epochs=2)
    config = dataclasses.replace(config, model="cnn_bn", track=Track("structured", "channels"))
    record = execute(config, CPU, tmp_path)
    structured = record["structured"]
    assert record["status"] == "ok" and record["track"] == "structured"
    assert structured["channels_removed"] == pytest.approx(
        round(structured["channels_total"] * 0.5) / structured["channels_total"]
    )
    assert structured["flops_pruned"] < structured["flops_dense"]
    assert structured["params_pruned"] < structured["params_dense"]
    assert structured["max_output_difference"] < 1e-4
    assert structured["latency_dense_batch1_s"] > 0 and structured["speedup_throughput"] > 0
    assert record["flops_sparse"] == structured["flops_pruned"]


def _record(method: str, scope: str, target: float, seed: int, top1: float, speedup: float = 1.5) -> dict:
    """A record in the layout the structured runner writes (the dense baseline is an unstructured run)."""
    from prunebench.run.run_record import RECORD_VERSION

    structured = method != "dense"
    config = {"preset": "toy", "recipe": {"epochs": 4}}
    if structured:
        config["track"] = {"name": "structured", "unit": "flops"}
    costs = {
        "flops_reduction": target + 0.01,
        "params_reduction": target,
        "speedup_batch1": speedup,
        "speedup_throughput": speedup + 0.5,
    }
    return {
        "version": RECORD_VERSION,
        "run_id": f"{method}-{scope}-{target}-{seed}",
        "status": "ok",
        "config": config,
        "dataset": "toy",
        "model": "net",
        "preset": "toy",
        "method": method,
        "variant": "",
        "criterion": method,
        "schedule": "dense" if method == "dense" else "after_training",
        "scope": scope,
        "sparsity": target,
        "seed": seed,
        "hparams": {},
        "device": "cpu: test",
        "versions": {"python": "3.11.0", "torch": "2.5.0"},
        "wall_time_s": 1.0,
        "finished_at": "2026-01-01T00:00:00+00:00",
        **dict.fromkeys(("top1", "top5"), top1),
        "loss": 0.5,
        "train_loss": 0.5,
        "achieved_sparsity": target,
        **dict.fromkeys(("prunable_weights", "prunable_nonzero", "params_total", "params_nonzero"), 100),
        **dict.fromkeys(
            ("compression_ratio", "flops_dense", "flops_sparse", "speedup", "min_layer_density"), 1.0
        ),
        "collapsed": False,
        "layers": [],
        "method_sparsity": None,
        "enforcement": None,
        "method_details": None,
        "epochs": {"budget": 4},
        "loader": "memory",
        "precision": "fp32",
        **({"track": "structured", "structured": costs} if structured else {}),
    }


def test_leaderboard_structured_section_has_intervals_marks_and_speedups(tmp_path):
    import json

    from prunebench.leaderboard import write_leaderboard

    runs = tmp_path / "runs"
    runs.mkdir()
    records = [_record("dense", "none", 0.0, s, 99.0) for s in range(3)]
    for seed, (a, b) in enumerate([(90.0, 80.0), (91.0, 81.0), (92.0, 79.5)]):
        records += [
            _record("taylor", "global", 0.5, seed, a, 2.0),
            _record("l1_filter", "global", 0.5, seed, b),
        ]
    for item in records:
        (runs / f"{item['run_id']}.json").write_text(json.dumps(item))
    markdown = write_leaderboard([tmp_path], tmp_path, ["md", "csv"])
    assert "Weight" not in markdown.split("structured, flops")[0].split("## ")[-1]  # no unstructured section
    assert "## toy / net (structured, flops)" in markdown
    assert "**91.00 ± 2.48**" in markdown  # t interval of 90, 91, 92; the best is bold
    assert "80.17" in markdown and "†" not in markdown.split("taylor")[0].split("l1_filter")[-1]
    assert "−51.0% / −50.0% / 2.00× / 2.50×" in markdown
    cells = pd.read_csv(tmp_path / "leaderboard_structured.csv")
    taylor = cells[cells["method"] == "taylor"].iloc[0]
    assert taylor["speedup_batch1"] == 2.0 and taylor["best"]
    assert (tmp_path / "leaderboard.md").read_text() == markdown
