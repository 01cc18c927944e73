"""Every registered method keeps the method contract (:mod:`prunebench.run.method_contract`), and the contract catches a
method that breaks it.

The cases are generated from the registry when the tests are collected: every criterion under every schedule it
declares, in every scope it declares, so that a method registered tomorrow (in ``methods/`` or through an entry
point) is covered without editing this file. The default run checks each method in its first scope, stopped in at
most three of its phases; the ``slow`` run adds every other scope, stopped in every phase.
"""

from __future__ import annotations

import pytest
import torch

from prunebench.catalog.hparams import HParam
from prunebench.methods.base import FinalMasks, ScoringMethod, TrainingMethod, TrainingSession
from prunebench.methods.method_registry import all_methods, combinations, get_method
from prunebench.pruning.allocation import masks_from_scores
from prunebench.run import method_contract as contract

CASES = contract.cases()
METHODS = [spec.name for spec in combinations()]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=() if c.first else pytest.mark.slow) for c in CASES]
)
def test_a_run_keeps_the_contract(case, tmp_path, one_thread):
    assert contract.run_problems(case.method, case.scope, tmp_path, every_phase=not case.first) == []


@pytest.mark.parametrize("method", METHODS)
def test_hyperparameters_round_trip_through_set_and_change_the_run_id(method):
    assert contract.hparam_problems(method) == []


@pytest.mark.parametrize("method", METHODS)
def test_bench_list_methods_details_names_every_hyperparameter(method):
    assert contract.listing_problems(method) == []


def test_the_cases_cover_every_registered_method_in_every_scope_once():
    keys = [(get_method(case.method).key, case.scope) for case in CASES]
    assert len(keys) == len(set(keys))  # no criterion, schedule and scope twice
    # every name a user can type (aliases included) is covered in each of its scopes
    for spec in all_methods():
        assert {(spec.key, scope) for scope in spec.scopes or ("none",)} <= set(keys), spec.name
    assert {case.method for case in CASES if case.first} == set(METHODS)


# A method registered later is covered -----------------------------------------------------------------------------
class _Magnitude(ScoringMethod):
    """Keep the largest |w| at initialization."""

    def __init__(self, power: float = 1.0) -> None:
        self.power = power

    def scores(self, model, weights, data):
        return {name: weight.detach().abs() ** self.power for name, weight in weights.items()}


class _OneShort(_Magnitude):
    """Keep the largest |w| at initialization, one weight fewer than the target."""

    def masks(self, model, weights, sparsity, scope, data, alive=None):
        masks = super().masks(model, weights, sparsity, scope, data, alive)
        first = next(iter(masks.values())).view(-1)
        first[first.nonzero()[0]] = False
        return masks


def test_a_method_registered_later_is_a_case_of_the_contract(method_registry):
    method_registry.register(
        "contract_magnitude", schedule="at_init", scopes=("global", "erk"), paper="test"
    )(_Magnitude)
    found = [(case.scope, case.first) for case in contract.cases() if case.method == "contract_magnitude"]
    assert found == [("global", True), ("erk", False)]


def test_a_method_that_keeps_the_contract_passes_all_of_it(method_registry, tmp_path, one_thread):
    method_registry.register("contract_magnitude", schedule="at_init", scopes=("global",), paper="test")(
        _Magnitude
    )
    assert contract.check_method("contract_magnitude", tmp_path) == []


def test_a_method_that_misses_the_target_by_one_weight_breaks_the_contract(
    method_registry, tmp_path, one_thread
):
    method_registry.register("contract_one_short", schedule="at_init", scopes=("global",), paper="test")(
        _OneShort
    )
    record = contract.run(contract.contract_config("contract_one_short", "global"), tmp_path / "run")
    total = sum(layer["size"] for layer in record["layers"])
    keep = round(total * (1 - contract.SPARSITY))
    # the harness's own check lets it through (one weight per layer); the contract's count does not
    assert contract.run_problems("contract_one_short", "global", tmp_path / "contract") == [
        f"{keep - 1} non-zero weights, the target keeps exactly {keep} of {total}"
    ]


# A session that keeps state of its own -----------------------------------------------------------------------------
class _Saliency(TrainingSession):
    """Accumulates |w * dL/dw| over the steps; the final mask keeps the highest sums. Its sums are its own state,
    saved in checkpoints only when ``remembers``."""

    def __init__(self, weights, sparsity: float, scope: str, remembers: bool) -> None:
        self.weights, self.sparsity, self.scope, self.remembers = weights, sparsity, scope, remembers
        self.sums = {name: torch.zeros_like(weight) for name, weight in weights.items()}

    def before_step(self, trainer) -> None:
        for name, weight in self.weights.items():
            self.sums[name] += (weight.detach() * weight.grad).abs()

    def finish(self, trainer) -> FinalMasks:
        return FinalMasks(masks_from_scores(self.sums, self.sparsity, self.scope), self.sparsity)

    def state_dict(self) -> dict:
        return {"sums": self.sums} if self.remembers else {}

    def load_state_dict(self, state: dict) -> None:
        if self.remembers:
            self.sums = {name: state["sums"][name].clone() for name in self.sums}


class _Remembering(TrainingMethod):
    """Keep the highest |w * dL/dw| summed over training; its sums go into checkpoints."""

    remembers = True

    def attach(self, model, weights, sparsity, scope, context):
        return _Saliency(weights, sparsity, scope, self.remembers)


class _Forgetful(_Remembering):
    """Keep the highest |w * dL/dw| summed over training; a resumed run starts its sums from zero."""

    remembers = False


def test_a_method_that_does_not_restore_its_state_on_resume_breaks_the_contract(
    method_registry, tmp_path, one_thread
):
    for name, cls in (("contract_remembering", _Remembering), ("contract_forgetful", _Forgetful)):
        method_registry.register(name, schedule="during_training", scopes=("global",), paper="test")(cls)
    assert contract.run_problems("contract_remembering", "global", tmp_path / "remembering") == []
    problems = contract.run_problems("contract_forgetful", "global", tmp_path / "forgetful")
    assert problems and all("and resumed, the record differs in" in p for p in problems), problems
    assert any("the mask" in p for p in problems), problems


# The parts of the checks ------------------------------------------------------------------------------------------
def test_stop_points_fall_in_the_middle_of_each_phase():
    phases = ["pretrain"] * 4 + ["finetune"] * 3
    assert contract.stop_points(phases) == [2, 6]
    rounds = [f"round {r}" for r in range(5) for _ in range(2)]
    assert contract.stop_points(rounds) == [1, 3, 5, 7, 9]
    assert contract.stop_points(rounds, every_phase=False) == [1, 5, 9]


def test_another_value_is_the_first_valid_one_near_the_default(method_registry):
    spec = get_method("gmp")
    assert contract.another_value(spec, spec.hparams["end"]) == ("0.4", 0.4)  # 1.6 lies outside the window
    assert contract.another_value(spec, HParam("flag", bool, False)) is None  # gmp has no hyperparameter flag
    method_registry.register("contract_magnitude", schedule="at_init", scopes=("global",), paper="test")(
        _Magnitude
    )
    magnitude = get_method("contract_magnitude")
    assert contract.another_value(magnitude, magnitude.hparams["power"]) == ("2", 2.0)


class _Fixed(_Magnitude):
    """Keep the largest |w|; refuses any power but 1."""

    def __init__(self, power: float = 1.0) -> None:
        if power != 1.0:
            raise ValueError("power must be 1")
        super().__init__(power)


def test_a_hyperparameter_without_another_valid_value_is_reported(method_registry):
    method_registry.register("contract_fixed", schedule="at_init", scopes=("global",), paper="test")(_Fixed)
    assert contract.hparam_problems("contract_fixed") == [
        "power: no value other than the default 1.0 was accepted"
    ]
