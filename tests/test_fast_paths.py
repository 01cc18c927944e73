"""The switch of the opt-in speed-ups: ``PRUNEBENCH_PLAIN=1`` turns them off, a value other than 0 or 1 is refused
in one line before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunebench.cli import main
from prunebench.core.errors import UsageError
from prunebench.run import fast_paths


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("", True), ("0", True), ("1", False), (" 1 ", False)]
)
def test_plain_turns_every_speed_up_off(value: str | None, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_paths, "PAYS_ON", {"a": frozenset({"cpu"}), "b": frozenset({"cpu", "cuda"})})
    if value is None:
        monkeypatch.delenv(fast_paths.PLAIN_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, value)
    assert fast_paths.speedup_on("a", torch.device("cpu")) is on
    assert fast_paths.speedup_on("b", torch.device("cpu")) is on
    assert not fast_paths.speedup_on("a", torch.device("meta"))  # never where it was not measured to pay


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_a_plain_setting_other_than_0_or_1_is_a_usage_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, value)
    with pytest.raises(UsageError, match=rf"^PRUNEBENCH_PLAIN must be 0 or 1, got '{value}'$"):
        fast_paths.speedup_on("fused_step", torch.device("cpu"))


def test_bench_run_refuses_a_mistyped_plain_setting_before_any_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, "yes")
    out = tmp_path / "results"
    argv = ["run", "--preset", "synthetic-tiny", "--methods", "magnitude", "--seeds", "1", "--out", str(out)]
    assert main(argv) == 2
    assert capsys.readouterr().err == "bench: error: PRUNEBENCH_PLAIN must be 0 or 1, got 'yes'\n"
    assert not out.exists()
