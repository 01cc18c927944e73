"""The comparison group as an axis of a grid: parsing (N:M sparsities, groups), the runs a grid plans, run identity,
and masks of the scoring criteria in each group against an independent computation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prunebench.core.errors import UsageError
from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_choices import parse_groups, parse_sparsities
from prunebench.pruning.allocation import layer_counts, masks_from_scores
from prunebench.run.run_config import RunConfig


def test_sparsity_tokens_mix_numbers_and_nm_patterns():
    assert parse_sparsities("0.9, 2:4,0.5,2:4") == [0.5, 0.9, "2:4"]
    for bad in ("0.9,x", "4:2", "0:4", "1.5"):
        with pytest.raises(UsageError):
            parse_sparsities(bad)


def test_groups_parse_and_refuse_patterns():
    assert parse_groups("all") == ["per_layer", "per_output"]
    assert parse_groups("per_output") == ["per_output"]
    with pytest.raises(UsageError, match="--sparsity 2:4"):
        parse_groups("2:4")
    with pytest.raises(UsageError):
        parse_groups("per_row")


def _grid(**fields) -> list[RunConfig]:
    experiment = Experiment(preset="synthetic-tiny", seeds=1, **fields)
    return [c for c in experiment.configs() if c.method != "dense"]


def test_grid_runs_groups_only_for_methods_that_support_them():
    configs = _grid(
        methods=["magnitude", "synflow"], scopes=["global", "uniform"], sparsity=[0.9, "2:4"], groups="all"
    )
    cells = {(c.spec.name, c.scope, c.sparsity, c.group) for c in configs}
    # magnitude: both groups at 0.9 in both scopes; 2:4 only under uniform, at sparsity 0.5
    assert {
        ("magnitude", s, 0.9, g) for s in ("global", "uniform") for g in ("per_layer", "per_output")
    } <= cells
    assert ("magnitude", "uniform", 0.5, "2:4") in cells
    assert ("magnitude", "global", 0.5, "2:4") not in cells
    # synflow makes its own masks in rounds: per_layer only
    assert {c.group for c in configs if c.spec.name == "synflow"} == {"per_layer"}


def test_group_enters_the_run_id_only_when_not_per_layer():
    base = RunConfig.from_preset("synthetic-tiny", "magnitude", "uniform", 0.9, 0)
    assert "group" not in base.identity
    other = dataclasses.replace(base, group="per_output")
    assert other.identity["group"] == "per_output" and other.run_id != base.run_id
    assert dataclasses.replace(base, group="per_layer").run_id == base.run_id


def _scores() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"a": torch.rand(6, 8, generator=generator), "b": torch.rand(4, 12, generator=generator)}


@pytest.mark.parametrize("scope", ["global", "uniform", "erk"])
def test_per_output_keeps_each_layers_scope_count_split_over_rows(scope):
    scores = _scores()
    counts = layer_counts(scores, 0.75, scope)
    masks = masks_from_scores(scores, 0.75, scope, "per_output")
    for name, mask in masks.items():
        assert int(mask.sum()) == counts[name]
        rows = mask.sum(dim=1)
        assert int(rows.max() - rows.min()) <= 1  # every output row its share, to within one weight
        for row, score in zip(mask, scores[name], strict=True):  # and inside a row, its highest scores
            kept = score[row]
            assert kept.numel() == 0 or kept.min() >= score[~row].max()


def test_global_layer_counts_are_the_global_top_k():
    scores = _scores()
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    threshold = flat.sort(descending=True).values[round(flat.numel() * 0.25) - 1]
    expected = {name: int((s >= threshold).sum()) for name, s in scores.items()}
    assert layer_counts(scores, 0.75, "global") == expected


def test_two_four_keeps_the_two_highest_of_every_four():
    scores = _scores()
    masks = masks_from_scores(scores, 0.5, "uniform", "2:4")
    for name, mask in masks.items():
        blocks = mask.reshape(mask.shape[0], -1, 4)
        assert torch.all(blocks.sum(dim=2) == 2)
        score_blocks = scores[name].reshape(mask.shape[0], -1, 4)
        expected = score_blocks.argsort(dim=2, descending=True)[..., :2]
        got = blocks.nonzero()[:, 2].reshape(expected.shape)
        assert torch.equal(got.sort(dim=2).values, expected.sort(dim=2).values)
