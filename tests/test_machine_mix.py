"""The machine under a run: what ``machine`` records, how the record declaration checks it, and the leaderboard's
warning for cells whose seeds ran on different machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from prunebench.core.environment import cpu_model, machine
from prunebench.leaderboard.machine_mix import mixed_cells
from prunebench.leaderboard.provenance import hardware
from prunebench.run.run_record import problem


def test_machine_names_the_cpu_its_capability_and_the_threads_now():
    found = machine(torch.device("cpu"))
    assert found["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert found["threads"] == torch.get_num_threads()
    assert not any(key.startswith("cuda") for key in found)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine(torch.device("cpu"))["threads"] == 1  # read at each call, not cached
    finally:
        torch.set_num_threads(threads)
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        if names:
            assert cpu_model() == names[0] == found["cpu"]


def test_the_capability_follows_aten_cpu_capability():
    code = "import torch; from prunebench.core.environment import machine; print(machine(torch.device('cpu'))['cpu_capability'])"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "DEFAULT"


def _record(seed: int, machine_: dict | None, method: str = "magnitude", sparsity: float = 0.9) -> dict:
    record = {
        "status": "ok",
        "dataset": "toy",
        "model": "net",
        "method": method,
        "variant": "",
        "scope": "global",
        "sparsity": sparsity,
        "seed": seed,
        "device": "cpu: x86_64, 2 threads",
    }
    if machine_ is not None:
        record["machine"] = machine_
    return record


AVX512 = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "arch": "x86_64", "threads": 2}
AVX2 = {**AVX512, "cpu_capability": "AVX2"}


def test_a_cell_is_mixed_only_by_two_known_machines_that_differ():
    assert (
        mixed_cells([_record(0, AVX512), _record(1, None), _record(2, AVX512)]) == []
    )  # unknown does not mix
    assert (
        mixed_cells([_record(0, AVX512), _record(0, AVX2, sparsity=0.5)]) == []
    )  # two cells, one machine each
    mixed = mixed_cells([_record(0, AVX512), _record(1, AVX2), _record(2, None), _record(0, AVX2, "snip")])
    assert [(c.method, c.label, c.differences) for c in mixed] == [
        ("magnitude", "magnitude (global) 0.9", (("CPU capability", ("AVX2", "AVX512")),))
    ]
    gpus = [
        _record(0, {**AVX512, "cuda_device": "NVIDIA H100"}),
        _record(1, {**AVX512, "cuda_device": "NVIDIA A100"}),
    ]
    assert mixed_cells(gpus)[0].differences == (("CUDA device", ("NVIDIA A100", "NVIDIA H100")),)


def test_provenance_is_unchanged_without_machines_and_warns_for_mixed_cells():
    plain = [_record(0, None), _record(1, None)]
    assert hardware(plain) == "cpu: x86_64, 2 threads"
    same = [_record(0, AVX512), _record(1, AVX512)]
    assert hardware(same) == "cpu: x86_64, 2 threads (AMD EPYC, AVX512)"
    text = hardware([_record(0, AVX512), _record(1, AVX2)])
    assert text.startswith("cpu: x86_64, 2 threads (AMD EPYC, AVX2; AMD EPYC, AVX512). Warning: 1 cell mixes")
    assert "CPU capability AVX2 / AVX512" in text and text.endswith(": magnitude (global) 0.9")


def test_the_record_declaration_checks_machine_where_present():
    from prunebench.run.run_record import RECORD_VERSION

    head = {
        "version": RECORD_VERSION,
        "run_id": "x",
        "status": "failed",
        "config": {},
        "dataset": "d",
        "model": "m",
        "preset": "p",
        "method": "magnitude",
        "variant": "",
        "criterion": "magnitude",
        "schedule": "at_init",
        "scope": "global",
        "sparsity": 0.9,
        "seed": 0,
        "hparams": {},
        "device": "cpu",
        "versions": {},
        "wall_time_s": 1.0,
        "finished_at": "now",
    }
    assert problem(head) is None  # older records have no machine
    assert problem(json.loads(json.dumps({**head, "machine": machine(torch.device("cpu"))}))) is None
    assert "machine.threads (not int)" in problem({**head, "machine": {**AVX512, "threads": "2"}})
    assert "machine (not an object)" in problem({**head, "machine": "AMD EPYC"})


def test_a_mixed_dense_cell_is_named_the_dense_baseline():
    dense = [{**_record(s, m, "dense", 0.0), "scope": "none"} for s, m in ((0, AVX512), (1, AVX2))]
    assert [c.label for c in mixed_cells(dense)] == ["dense baseline"]


def test_a_cell_is_mixed_by_runs_of_different_engines():
    alone = _record(0, AVX512)
    batched = {**_record(1, AVX512), "engine": {"name": "vmap", "phases": ["pretrain", "finetune"]}}
    mixed = mixed_cells([alone, batched])
    assert [cell.differences for cell in mixed] == [(("engine", ("alone", "vmap (pretrain, finetune)")),)]
    assert mixed_cells([batched, {**batched, "seed": 2}]) == []
