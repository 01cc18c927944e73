"""Parsing a grid's choices as the command line writes them: sparsities, methods, scopes, groups, seeds and settings; and
the checks of a planned grid that need its models (:func:`check_models`).

Every parser refuses bad input with a one-line :class:`~prunebench.core.errors.UsageError` that says what is accepted,
before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prunebench.core.errors import UsageError, unknown
from prunebench.methods.method_registry import SCOPES, MethodSpec, all_methods, get_method

if TYPE_CHECKING:
    from prunebench.run.run_config import RunConfig

MAX_SEEDS = 1000
"""More seeds than this in one grid is a typo, not an experiment."""
MAX_SEED = 2**32 - 1
"""The largest seed (NumPy's and every loader's generators take 32-bit seeds)."""


def parse_sparsities(text: str) -> list[float | str]:
    """``"0.9,0.95,2:4"`` -> ``[0.9, 0.95, "2:4"]``: numbers strictly between 0 and 1, and N:M patterns."""
    values: list[float | str] = []
    for item in text.split(","):
        item = item.strip()
        if ":" in item:
            values.append(item)
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise UsageError(
                "--sparsity takes comma-separated numbers in (0, 1) or N:M patterns, e.g. 0.9,0.95,2:4; "
                f"got {text!r}"
            ) from None
    return check_sparsities(values)


def check_sparsities(values: Iterable[float | str]) -> list[float | str]:
    """The distinct sparsities in increasing order, then the distinct N:M patterns (``2:4``: at most 2 kept of every
    4 consecutive input weights, sparsity 0.5; :mod:`prunebench.pruning.comparison_groups`)."""
    from prunebench.pruning.comparison_groups import nm_pattern, parse_group

    values = list(values)
    if not values:
        raise UsageError(
            "no sparsity given; give numbers in (0, 1), e.g. 0.9,0.95, or N:M patterns such as 2:4"
        )
    numbers, patterns = set(), {}
    for value in values:
        if isinstance(value, str):
            pattern = parse_group(value)
            if nm_pattern(pattern) is None:
                raise UsageError(
                    f"a sparsity is a number in (0, 1) or an N:M pattern such as 2:4; got {value!r}"
                )
            patterns.setdefault(pattern, None)
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
            raise UsageError(f"sparsity must lie in (0, 1) (fraction of weights removed); got {value}")
        else:
            numbers.add(float(value))
    return [*sorted(numbers), *patterns]


def parse_groups(names: str | Iterable[str]) -> list[str]:
    """``all`` or comparison groups inside a layer (a comma-separated string or a list): ``per_layer``,
    ``per_output``. N:M patterns are sparsities (``--sparsity 2:4``), not groups."""
    from prunebench.pruning.comparison_groups import COMPARISON_GROUPS, nm_pattern, parse_group

    if isinstance(names, str):
        if names.strip() == "all":
            return list(COMPARISON_GROUPS)
        names = [name.strip() for name in names.split(",") if name.strip()]
    groups = list(dict.fromkeys(parse_group(name) for name in names))
    if not groups:
        raise UsageError(f"no comparison group given; give `all` or some of {', '.join(COMPARISON_GROUPS)}")
    for group in groups:
        if nm_pattern(group) is not None:
            raise UsageError(f"{group} is a sparsity pattern: give it as a sparsity (--sparsity {group})")
    return groups


def parse_methods(names: str | Iterable[str], track: str = "unstructured") -> list[MethodSpec]:
    """``all`` or method names (a comma-separated string or a list); the dense baseline is always run.

    ``all`` is every named method of ``track`` at the shared budget: iterative pruning (which retrains once per
    round, so it spends a multiple of the budget) and one-shot post-training pruning (``one_shot``, a setting of its
    own) are run only when named. A method named twice is run once; a method of the other track is a usage error.
    """
    if isinstance(names, str):
        if names.strip() == "all":
            return [
                spec
                for spec in all_methods()
                if spec.schedule not in ("dense", "iterative", "one_shot") and spec.track == track
            ]
        names = [name.strip() for name in names.split(",") if name.strip()]
    names = list(names)
    if not names:
        raise UsageError("no method given; give `all` or method names (see `bench list methods`)")
    chosen: dict[str, MethodSpec] = {}
    for name in names:
        if name == "all":
            for spec in parse_methods("all", track):
                chosen.setdefault(spec.key, spec)
        elif name != "dense":
            spec = get_method(name)
            if spec.track != track:
                flag = (
                    "--track structured" if spec.track == "structured" else "the default --track unstructured"
                )
                raise UsageError(
                    f"{spec.name} belongs to the {spec.track} track, this grid to the {track} track; run it with {flag}"
                )
            chosen.setdefault(spec.key, spec)
    return list(chosen.values())


def parse_target(text: str) -> tuple[str, list[float]]:
    """``--target channels:0.3,0.5`` or ``flops:0.5``: the structured track's unit and fractions, each in (0, 1)."""
    from prunebench.structured.channels import UNITS

    unit, colon, values = text.partition(":")
    unit = unit.strip()
    if not colon or unit not in UNITS:
        raise UsageError(
            f"--target takes UNIT:FRACTIONS with UNIT one of {', '.join(UNITS)} (e.g. flops:0.3,0.5); got {text!r}"
        )
    try:
        fractions = [float(v) for v in values.split(",")]
    except ValueError:
        raise UsageError(f"--target fractions are comma-separated numbers in (0, 1); got {text!r}") from None
    if not fractions or any(not 0.0 < f < 1.0 for f in fractions):
        raise UsageError(f"--target fractions (of {unit} removed) must lie in (0, 1); got {text!r}")
    return unit, sorted(set(fractions))


def parse_scopes(names: str | Iterable[str]) -> list[str]:
    """``all`` or scopes (a comma-separated string or a list)."""
    if isinstance(names, str):
        if names.strip() == "all":
            return list(SCOPES)
        names = [scope.strip() for scope in names.split(",") if scope.strip()]
    scopes = list(dict.fromkeys(names))
    if not scopes:
        raise UsageError(f"no scope given; give `all` or some of {', '.join(SCOPES)}")
    for scope in scopes:
        if scope not in SCOPES:
            raise unknown("scope", scope, SCOPES)
    return scopes


def parse_seeds(value: str | int | Iterable[int]) -> list[int]:
    """Seeds: ``N`` (0..N-1), a range ``A-B`` (inclusive), a list ``0,2,5`` or a mix (``0-2,7``); or a list of ints.

    At most :data:`MAX_SEEDS` seeds, each in [0, :data:`MAX_SEED`].
    """
    if isinstance(value, bool):
        raise UsageError(f"--seeds takes N, A-B or a list such as 0,2,5; got {value!r}")
    if isinstance(value, int):
        return _count(value)
    if not isinstance(value, str):
        items = list(value)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise UsageError(f"seeds must be whole numbers, got {items!r}")
        return _checked(items)
    text = value.strip()
    if text.isdigit():
        return _count(int(text))
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UsageError(f"--seeds takes N, A-B or a list such as 0,2,5; got {text!r}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise UsageError(f"seed range {part.strip()} is empty; write it low-high")
        if last - first >= MAX_SEEDS:
            raise UsageError(f"at most {MAX_SEEDS} seeds per grid; {part.strip()} has {last - first + 1}")
        seeds.extend(range(first, last + 1))
    return _checked(seeds)


def _count(count: int) -> list[int]:
    if count < 1:
        raise UsageError(f"--seeds must be at least 1, got {count}")
    if count > MAX_SEEDS:
        raise UsageError(f"at most {MAX_SEEDS} seeds per grid, got {count}")
    return list(range(count))


def _checked(seeds: list[int]) -> list[int]:
    unique = list(dict.fromkeys(seeds))
    if not unique:
        raise UsageError("no seed given")
    if len(unique) > MAX_SEEDS:
        raise UsageError(f"at most {MAX_SEEDS} seeds per grid, got {len(unique)}")
    bad = [s for s in unique if not 0 <= s <= MAX_SEED]
    if bad:
        raise UsageError(f"seeds must lie in [0, {MAX_SEED}], got {bad[0]}")
    return unique


def split_values(text: str) -> list[str]:
    """A ``--set`` value split at the commas that are not inside brackets: ``0.5,0.8`` -> two values (a sweep),
    ``(1,28,28)`` -> one value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    if any(not v.strip() for v in values):
        raise UsageError(f"empty value in {text!r}; a comma list sweeps, e.g. gmp.end=0.5,0.8")
    return values


def parse_setting(text: str) -> tuple[str, str, list[str]]:
    """``--set KEY=VALUE``: ``probmask.samples=4`` -> ``("probmask", "samples", ["4"])``.

    The key is ``METHOD.HYPERPARAMETER`` or ``recipe.FIELD`` (``recipe.epochs``, ``recipe.optim.lr``); a comma list
    of values sweeps.
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or "." not in key:
        raise UsageError(
            f"--set takes METHOD.HYPERPARAMETER=VALUE or recipe.FIELD=VALUE (e.g. probmask.samples=4), got {text!r}"
        )
    if key.startswith("recipe."):
        return "recipe", key[len("recipe.") :], split_values(value)
    owner, _, name = key.rpartition(".")
    return owner, name, split_values(value)


def check_models(configs: Iterable[RunConfig]) -> None:
    """Refuse, before any run, what would fail (or silently mislead) every run of a (dataset, model): a model that
    cannot take the dataset's inputs or does not return one logit per class (one dry forward on the ``meta``
    device, :func:`prunebench.zoo.model_zoo.check_model_fits`), and on the structured track a model it cannot prune with
    the grid's methods (:func:`prunebench.structured.structured_run.check_structured_model`). Once per distinct (dataset, model)."""
    from prunebench.datasets import get_dataset
    from prunebench.zoo.model_zoo import check_model_fits

    pairs: dict[tuple[str, str], dict[str, MethodSpec]] = {}
    for config in configs:
        methods = pairs.setdefault((config.dataset, config.model), {})
        if config.track.name == "structured" and config.method != "dense":
            methods.setdefault(config.method, config.spec)
    for (dataset, model), methods in pairs.items():
        data = get_dataset(dataset)
        network, example = check_model_fits(model, data.input_shape, data.num_classes, dataset)
        if methods:
            from prunebench.structured.structured_run import check_structured_model

            check_structured_model(network, example, model, methods.values())
