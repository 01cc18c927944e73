"""The batched engine against the runs trained alone: the same weights, masks and losses (float64, so that only the
mathematics count, not the rounding of stacked products), and the grid's scheduling of batches."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunebench.core.errors import UsageError
from prunebench.datasets.embedded import _synthetic_splits
from prunebench.grid.experiment import Experiment, parse_batch
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import (
    GridReporter,
    Runner,
    RunnerSettings,
    batch_id,
    batch_order,
    with_batch_order,
)
from prunebench.pruning.saved_masks import MASK_KEY
from prunebench.run.batched_engine import Batch, batchable, stacks_passes, stacks_steps
from prunebench.run.run_context import RunContext
from prunebench.run.runner import _train_run
from prunebench.run.trainer import Trainer, TrainHook

CPU = torch.device("cpu")
TOLERANCE = 1e-9


@pytest.fixture
def float64():
    """Float64 weights and data; the synthetic data (made once per process in the default dtype) is made again
    before and after, so that no other test sees it in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    _synthetic_splits.cache_clear()
    yield
    torch.set_default_dtype(previous)
    _synthetic_splits.cache_clear()


def _configs(
    method: str,
    model: str = "lenet5",
    epochs: int = 13,
    seeds: int = 3,
    scopes: str = "global",
    keep_dense: bool = False,
    **experiment,
):
    """Three seeds of ``method`` on the synthetic data, ``epochs`` of fine-tuning in a budget of twice that (8 steps
    an epoch: 13 epochs are 104 steps a phase)."""
    grid = Experiment(
        preset="synthetic-tiny",
        model=model,
        methods=method,
        scopes=scopes,
        sparsity=[0.9],
        seeds=seeds,
        **experiment,
    )
    grid.set("recipe", "epochs", [2 * epochs])
    grid.set("recipe", "finetune_epochs", [epochs])
    names = {name.split("@")[0] for name in method.split(",")}
    return [c for c in grid.configs() if c.method in names or keep_dense]


def _trained(config, cache_dir):
    """The run's final model and loss, and the phases the batched engine trained (when in a batch)."""
    ctx = RunContext(config, CPU, cache_dir)
    outcome, _ = _train_run(ctx)
    return outcome.model.state_dict(), outcome.train_loss, ctx.batched_phases()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _assert_agree(alone, batched):
    (state_a, loss_a, phases_a), (state_b, loss_b, phases_b) = alone, batched
    assert phases_a == []
    assert abs(loss_a - loss_b) <= TOLERANCE * abs(loss_a)
    for name, tensor in state_a.items():
        if tensor.is_floating_point():
            assert _relative(state_b[name], tensor) <= TOLERANCE, name
            if name.endswith("weight"):
                assert torch.equal(state_b[name] != 0, tensor != 0), f"{name}: masks differ"
        else:
            assert torch.equal(state_b[name], tensor), name
    return phases_b


@pytest.mark.parametrize(
    ("method", "model", "phases"),
    [
        ("dense", "lenet5", {"train"}),
        ("magnitude", "cnn_bn", {"pretrain", "finetune"}),  # after training, BatchNorm's statistics stacked
        ("snip", "lenet5", {"train"}),  # at initialization: the scores per run, the training stacked
        ("gmp", "lenet5", {"train"}),  # gradual: the pruner's steps on each run's own model
    ],
)
def test_k3_batched_runs_equal_the_runs_alone_after_100_steps(tmp_path, float64, method, model, phases):
    configs = _configs(method, model)
    alone = [_trained(c, tmp_path / "alone") for c in configs]
    jobs = [lambda c=c: _trained(c, tmp_path / "batched") for c in configs]
    batched = Batch(jobs).run()
    for one, together in zip(alone, batched, strict=True):
        assert not isinstance(together, BaseException), together
        stacked = _assert_agree(one, together)
        assert set(stacked) == phases


def test_iterative_rounds_with_rewinding_batch_every_round(tmp_path, float64):
    configs = _configs("imp", epochs=2)
    alone = [_trained(c, tmp_path / "alone") for c in configs]
    batched = Batch([lambda c=c: _trained(c, tmp_path / "batched") for c in configs]).run()
    for one, together in zip(alone, batched, strict=True):
        stacked = _assert_agree(one, together)
        assert len(stacked) > 3 and all(name.startswith("round") for name in stacked)


@pytest.mark.parametrize(
    ("method", "scope", "model", "phases"),
    [
        (
            "str",
            "learned",
            "lenet5",
            {"learn", "finetune"},
        ),  # thresholds shared by the layers' parametrizations
        ("probmask", "learned", "lenet5", {"learn", "finetune"}),  # two passes a step, each run's own draws
        ("movement", "global", "lenet5", {"pretrain", "learn"}),
        ("soft_movement", "learned", "lenet5", {"pretrain", "learn", "finetune"}),  # a penalty in the loss
        ("asl", "global", "lenet5", {"learn", "finetune"}),  # a budget loss, the weights re-centred each step
        ("asl", "global", "cnn_bn", {"learn", "finetune"}),  # BatchNorm's statistics written back each pass
        ("rigl", "global", "lenet5", {"learn"}),  # regrowth from each run's dense gradient
        ("set", "global", "lenet5", {"learn"}),
    ],
)
def test_k3_learned_masks_batched_equal_the_runs_alone_after_100_steps(
    tmp_path, float64, method, scope, model, phases
):
    """Learned-mask and dynamic sparse phases: the passes stacked, each run's step its own (StackedPasses)."""
    configs = _configs(method, model, scopes=scope)
    assert len(configs) == 3
    alone = [_trained(c, tmp_path / "alone") for c in configs]
    batched = Batch([lambda c=c: _trained(c, tmp_path / "batched") for c in configs]).run()
    for one, together in zip(alone, batched, strict=True):
        assert not isinstance(together, BaseException), together
        assert set(_assert_agree(one, together)) == phases


def test_runs_with_different_recipes_are_not_stacked_together(tmp_path, monkeypatch):
    from prunebench.run import batched_engine

    groups = []
    train = batched_engine.train_stacked
    monkeypatch.setattr(
        batched_engine, "train_stacked", lambda members: groups.append(len(members)) or train(members)
    )
    short, longer = _configs("snip", epochs=2, seeds=2), _configs("snip", epochs=3, seeds=1)
    results = Batch([lambda c=c: _trained(c, tmp_path) for c in (*short, *longer)]).run()
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sorted(groups) == [1, 2] and [phases for _, _, phases in results] == [["train"]] * 3


def test_a_run_that_raises_leaves_the_batch_and_the_others_finish(tmp_path):
    configs = _configs("snip", epochs=2)[:3]

    def failing():
        raise RuntimeError("boom")

    jobs = [lambda c=c: _trained(c, tmp_path) for c in configs[:2]] + [failing]
    results = Batch(jobs).run()
    assert isinstance(results[2], RuntimeError)
    assert all(phases == ["train"] for _, _, phases in results[:2])


def test_what_the_engine_stacks_whole_steps_passes_only_or_not_at_all(small_convnet):
    from prunebench.run.recipe import OptimConfig

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    def trainer(model=small_convnet, hooks=(), **optim):
        loader = Loader([(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))])
        return Trainer(model, loader, OptimConfig(lr=0.1, **optim), 1, hooks=hooks)

    class OwnLoss(TrainHook):
        def compute_loss(self, trainer, inputs, targets):
            return trainer.model(inputs).sum()

    class OwnLossAsPasses(OwnLoss):
        def loss_passes(self, trainer, inputs, targets):
            return (yield).sum()

    assert stacks_steps(trainer())
    clipped = trainer(grad_clip=1.0)  # a norm per run: each run clips its own gradients in its own step
    assert not stacks_steps(clipped) and stacks_passes(clipped)
    assert not stacks_steps(trainer(hooks=[TrainHook()])) and stacks_passes(trainer(hooks=[TrainHook()]))
    assert not batchable(trainer(hooks=[OwnLoss()]))  # a loss the engine cannot see the passes of
    assert stacks_passes(trainer(hooks=[OwnLossAsPasses()]))
    assert not batchable(trainer(torch.nn.Sequential(small_convnet, torch.nn.Dropout(0.5))))
    hooked = torch.nn.Sequential(small_convnet)
    hooked.register_forward_hook(lambda module, inputs, output: None)
    assert not batchable(trainer(hooked))


def _records(store: ResultStore) -> dict[str, dict]:
    found = {}
    for path in (store.root / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        found[record["run_id"]] = record
    return found


def _masks(store: ResultStore, run_id: str) -> dict[str, np.ndarray]:
    with np.load(store.root / "runs" / f"{run_id}.mask.npz") as saved:
        return {key: saved[key] for key in saved.files}


def test_a_batched_grid_writes_each_record_as_the_grid_alone_does(tmp_path, float64, monkeypatch):
    from prunebench.run import batched_engine

    configs = _configs("magnitude,random", epochs=2, controls="shuffle", keep_dense=True)
    alone, batched = ResultStore(tmp_path / "alone"), ResultStore(tmp_path / "batched")
    run_grid(configs, alone, CPU, settings=RunnerSettings(batch=1))
    groups = []
    train = batched_engine.train_stacked
    monkeypatch.setattr(
        batched_engine, "train_stacked", lambda members: groups.append(len(members)) or train(members)
    )
    run_grid(configs, batched, CPU, settings=RunnerSettings(batch=4))
    # Each schedule's runs, four at a time: the pre-trainings (3 seeds), dense (3), after training (magnitude's 3
    # seeds with random's first, then random's other 2), random at initialization (3), the controls (3).
    assert sorted(groups) == [2, 3, 3, 3, 3, 4]
    one, together = _records(alone), _records(batched)
    assert one.keys() == together.keys() == {c.run_id for c in configs}
    stacked = 0
    for run_id, record in one.items():
        other = together[run_id]
        assert record["status"] == other["status"] == "ok"
        assert "engine" not in record
        stacked += "engine" in other
        for key in ("loss", "train_loss", "top1"):
            assert abs(record[key] - other[key]) <= TOLERANCE * max(abs(record[key]), 1e-12), key
        assert record["layers"] == other["layers"]
        if record["method"] != "dense":
            assert MASK_KEY not in record
            saved_alone, saved_batched = _masks(alone, run_id), _masks(batched, run_id)
            assert saved_alone.keys() == saved_batched.keys()
            assert all(np.array_equal(saved_alone[k], saved_batched[k]) for k in saved_alone)
    assert stacked == len(configs)  # the pre-trainings, the pruned runs' fine-tuning, the controls' training
    assert {c["engine"]["name"] for c in together.values()} == {"vmap"}


def test_batches_are_cut_from_the_whole_grid_whatever_its_order_or_what_is_pending(tmp_path):
    # After training: magnitude's 3 scopes and LAMP's one, 3 seeds each.
    configs = _configs("magnitude,lamp", epochs=2, scopes="global,uniform,erk")
    order = batch_order(configs)
    assert batch_order(list(reversed(configs))) == order
    batches: dict[tuple, list] = {}
    for config in sorted(configs, key=lambda c: order[c.run_id]):
        batches.setdefault(batch_id(order[config.run_id], 4), []).append(config)
    cells = [[(c.method, c.scope, c.seed) for c in batch] for batch in batches.values()]
    assert [len(batch) for batch in cells] == [4, 4, 4]
    flat = [run for batch in cells for run in batch]
    assert [seed for _, _, seed in flat] == [0, 1, 2] * 4  # each cell's seeds in order, cell after cell
    assert [method for method, _, _ in flat] == ["lamp"] * 3 + ["magnitude"] * 9
    settings = with_batch_order(RunnerSettings(batch=4), configs)
    late = Runner(configs[5:], ResultStore(tmp_path), CPU, settings=settings)  # a runner that starts late
    assert all(late._batch_id(c) == batch_id(order[c.run_id], 4) for c in configs[5:])
    assert with_batch_order(RunnerSettings(batch=1), configs).batch_order == {}


def test_a_batch_shows_the_start_and_epochs_of_its_first_run_only(tmp_path):
    class Seen(GridReporter):
        def __init__(self):
            self.started, self.epochs = [], []

        def run_started(self, config):
            self.started.append(config.seed)

        def epoch_done(self, phase, epoch, epochs, loss):
            self.epochs.append((phase, epoch))

    seen = Seen()
    records = run_grid(
        _configs("snip", epochs=2),
        ResultStore(tmp_path),
        CPU,
        reporter=seen,
        settings=RunnerSettings(batch=4),
    )
    assert len(records) == 3 and seen.started == [0]
    assert seen.epochs == [("train", epoch) for epoch in range(4)]


def test_a_stop_that_comes_between_two_runs_epoch_ends_stops_the_batch_at_one_step(tmp_path):
    from prunebench.run.run_checkpoint import RunCheckpoint, RunInterrupted
    from prunebench.run.runner import run_or_record_failure

    configs = _configs("magnitude_init", epochs=2, seeds=2)
    stop = []
    checkpoints = [RunCheckpoint(tmp_path / f"{c.run_id}.pt", stop=lambda: bool(stop)) for c in configs]

    def second_run_ends_an_epoch(phase, epoch, epochs, loss):  # after the first run asked its checkpoint
        if epoch == 1:
            stop.append(True)

    reporters = [None, second_run_ends_an_epoch]
    jobs = [
        functools.partial(run_or_record_failure, c, CPU, tmp_path / "cache", on_epoch, None, checkpoint)
        for c, on_epoch, checkpoint in zip(configs, reporters, checkpoints, strict=True)
    ]
    results = Batch(jobs).run()
    assert all(isinstance(result, RunInterrupted) for result in results)
    steps = [torch.load(cp.path, weights_only=True)["current"]["step"] for cp in checkpoints]
    assert steps[0] == steps[1] == 2 * len(_trained_loader(configs[0]))


def test_a_batch_saves_its_runs_together_and_commits_their_checkpoints_together(tmp_path, monkeypatch):
    from prunebench.run.run_checkpoint import CheckpointPolicy, RunCheckpoint
    from prunebench.run.runner import run_or_record_failure

    configs = _configs("magnitude_init", epochs=2, seeds=2)
    policies = [
        CheckpointPolicy(every_epochs=1),
        CheckpointPolicy(every_epochs=0),
    ]  # the second never saves alone
    checkpoints = [
        RunCheckpoint(tmp_path / f"{c.run_id}.pt", p) for c, p in zip(configs, policies, strict=True)
    ]

    def held(checkpoint):
        if not checkpoint.path.exists():
            return None
        current = torch.load(checkpoint.path, weights_only=True)["current"]
        return current and current["step"]

    committed = []  # what each run's checkpoint file held whenever one of them had written a save
    write = RunCheckpoint._write

    def recording(self, snapshot):
        write(self, snapshot)
        committed.append([held(checkpoint) for checkpoint in checkpoints])

    monkeypatch.setattr(RunCheckpoint, "_write", recording)
    jobs = [
        functools.partial(run_or_record_failure, c, CPU, tmp_path / "cache", None, None, checkpoint)
        for c, checkpoint in zip(configs, checkpoints, strict=True)
    ]
    results = Batch(jobs).run()
    assert all(result["status"] == "ok" for result in results)
    assert checkpoints[0].saves == checkpoints[1].saves == 4  # every epoch end of the 4-epoch training
    assert len(committed) == 8 and all(first == second for first, second in committed)
    assert {steps[0] for steps in committed} == {None, 8, 16, 24}  # each save staged until both were written
    assert not any(checkpoint.staging.exists() for checkpoint in checkpoints)


def test_a_staged_save_that_was_never_committed_is_ignored(tmp_path):
    from prunebench.run.run_checkpoint import RunCheckpoint

    path = tmp_path / "run.pt"
    checkpoint = RunCheckpoint(path)
    checkpoint.values["kept"] = 1
    checkpoint.staged = True
    checkpoint.save(_idle_trainer(), "train")
    checkpoint.wait()
    assert checkpoint.staging.exists() and not path.exists()
    fresh = RunCheckpoint(path)  # a batch killed before its commit: the run starts from what was committed
    assert not fresh.resumed and not fresh.staging.exists()
    checkpoint.save(_idle_trainer(), "train")
    checkpoint.commit()
    assert RunCheckpoint(path).values == {"kept": 1}


def _idle_trainer():
    from prunebench.run.recipe import OptimConfig

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    model = torch.nn.Linear(2, 2)
    return Trainer(
        model, Loader([(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))]), OptimConfig(lr=0.1), 1
    )


def _trained_loader(config):
    return RunContext(config, CPU, Path("unused")).loaders().train


def test_a_resumed_run_keeps_the_batched_phases_of_its_earlier_invocation():
    from prunebench.run.run_checkpoint import RunCheckpoint
    from prunebench.run.run_context import BATCHED_KEY

    checkpoint = RunCheckpoint(None)
    checkpoint.values[BATCHED_KEY] = ["round 0", "round 1"]  # read back from the interrupted run's checkpoint
    ctx = RunContext(_configs("imp", seeds=1)[0], CPU, Path("unused"), checkpoint=checkpoint)
    ctx.note_batched("round 2")
    assert ctx.batched_phases() == ["round 0", "round 1", "round 2"]
    # what a second resume reads back keeps them too
    assert checkpoint.values[BATCHED_KEY] == ["round 0", "round 1", "round 2"]


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_batch_takes_a_positive_count_or_auto(text):
    assert parse_batch("auto") is None and parse_batch(4) == 4
    with pytest.raises(UsageError, match="--batch takes a positive number of runs or auto"):
        parse_batch(text)


def test_auto_batch_trains_alone_on_the_cpu_and_stacks_small_models_on_a_gpu():
    from prunebench.run.batch_size import CUDA_BATCHES, auto_batch

    small = _configs("magnitude", seeds=1)[0]  # lenet5: far below the smallest bound
    assert auto_batch(small, CPU) == 1
    assert auto_batch(small, torch.device("cuda")) == CUDA_BATCHES[0][1]


@pytest.mark.slow
def test_the_gpu_check_prints_every_figure_in_its_dry_run():
    import subprocess
    import sys

    script = Path(__file__).parent.parent / "scripts" / "gpu_check.py"
    out = subprocess.run(
        [sys.executable, str(script), "--dry-run"], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    for k in (1, 2):
        assert any(line.startswith(f"epoch time K={k}: ") for line in lines)
        assert any(line.startswith(f"runs per GPU-hour K={k}: ") for line in lines)
    assert any(line.startswith("loader torch: ") and "images/s" in line for line in lines)
    assert not any("failed" in line for line in lines), out.stdout
