"""The ``bench`` command line: run a grid, list what is registered, write the leaderboard.

Heavy modules (torch, pandas, the registries) are imported inside the commands so that ``bench --help`` is fast.
Every error prints one line, with no traceback: bad input exits with status 2, a file that cannot be written (a full
disk) or a helper process that died with status 1, Ctrl-C with 130 and a line that says what was kept.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from prunebench import __version__
from prunebench.core.errors import Failed, UsageError, WriteError


def _experiment(args: argparse.Namespace):
    """The experiment of ``--config`` (if given) with the flags given beside it applied over it."""
    from prunebench.grid.experiment import Experiment, Text
    from prunebench.grid.grid_choices import parse_setting, parse_sparsities

    experiment = Experiment.from_toml(Path(args.config)) if args.config else Experiment()
    for key in _EXPERIMENT_FLAGS:
        value = getattr(args, key)
        if value is not None:
            setattr(experiment, key, value)
    if args.sparsity is not None:
        experiment.sparsity = parse_sparsities(args.sparsity)
    if args.epochs is not None:
        experiment.set("recipe", "epochs", [args.epochs])
    for text in args.set or []:
        owner, name, values = parse_setting(text)
        experiment.set(owner, name, [Text(v) for v in values])
    execution = experiment.execution
    for key in _EXECUTION_FLAGS:
        if getattr(args, key, None) is not None:
            setattr(execution, key, getattr(args, key))
    for key in ("compile", "force", "deterministic", "wait"):
        setattr(execution, key, getattr(execution, key) or getattr(args, key, False))
    slurm = {
        name: getattr(args, f"slurm_{name}")
        for name in _SLURM_FLAGS
        if getattr(args, f"slurm_{name}", None) is not None
    }
    if getattr(args, "slurm_extra", None):
        from prunebench.grid.slurm_executor import parse_extra

        slurm["extra"] = {**execution.slurm.get("extra", {}), **parse_extra(args.slurm_extra)}
    execution.slurm = {**execution.slurm, **slurm}
    return experiment


_EXECUTION_FLAGS = (
    "out",
    "device",
    "jobs",
    "loader",
    "data_root",
    "executor",
    "devices",
    "per_device",
    "checkpoint_every",
    "claim_timeout",
    "batch",
)
_SLURM_FLAGS = (
    "partition",
    "time",
    "gpus",
    "cpus",
    "mem_gb",
    "account",
    "qos",
    "tasks",
    "array_parallelism",
    "requeues",
    "cluster",
)
_EXPERIMENT_FLAGS = (
    "track",
    "target",
    "preset",
    "dataset",
    "model",
    "methods",
    "scopes",
    "groups",
    "seeds",
    "keep_first_dense",
    "keep_last_dense",
    "prune_embeddings",
    "controls",
)
"""The flags that set an experiment's field of the same name (over ``--config``)."""
_GRID_FLAGS = ("config", *_EXPERIMENT_FLAGS, "sparsity", "epochs", "set")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunebench.grid.grid_progress import RichGridReporter, summary_table
    from prunebench.grid.grid_run import run_grid
    from prunebench.grid.scheduler import set_deterministic
    from prunebench.run.fast_paths import plain_requested
    from prunebench.run.run_checkpoint import RunInterrupted

    plain_requested()  # a mistyped PRUNEBENCH_PLAIN would fail every run: refused here, in one line
    console = Console()
    experiment = _experiment(args)
    plan = _with_curve_options(experiment.plan(), args)
    store = plan.store
    if plan.executor == "slurm":
        return _submit(experiment, plan, console)
    set_deterministic(plan.settings.deterministic)

    first = plan.configs[0]
    console.print(
        f"[bold]prunebench[/] {first.dataset} / {first.model} (preset [cyan]{first.preset}[/], "
        f"{first.recipe.epochs}-epoch budget), {len(plan.configs)} runs on {plan.device}, results in {store.root}"
    )
    started = time.perf_counter()
    try:
        with RichGridReporter(console) as reporter:
            records = run_grid(
                plan.configs,
                store,
                plan.device,
                force=experiment.execution.force,
                reporter=reporter,
                options=plan.options,
                jobs=plan.jobs,
                devices=plan.devices,
                settings=plan.settings,
            )
    except RunInterrupted:
        from prunebench.run.run_checkpoint import STOP

        reason = STOP.reason or "a signal"
        print(
            f"bench: stopped by {reason}; finished runs are saved and the runs in progress checkpointed, "
            "a rerun resumes them",
            file=sys.stderr,
        )
        return 143 if reason == "SIGTERM" else 130
    elapsed = time.perf_counter() - started
    console.print(summary_table(records, elapsed))

    markdown = _write_leaderboard([store.root], store.root)
    from rich.markdown import Markdown

    console.print(Markdown(markdown))
    console.print(
        f"Leaderboard written to {store.root}: leaderboard.md, the CSVs (leaderboard*.csv), leaderboard.tex and plots/"
    )
    console.print(f"Total wall time: {elapsed:.1f} s")
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        console.print(
            f"[red]{len(failed)} run(s) failed[/]; their errors are in the records under {store.runs}"
        )
        return 1
    return 0


def _with_curve_options(plan, args: argparse.Namespace):
    """``plan`` with ``--eval-every`` and ``--log`` in its run options (the trackers write in the results directory);
    a tracker whose package is missing is refused here, before any run."""
    import dataclasses

    from prunebench.run.tracking import check_installed, parse_backends

    if args.eval_every is not None and args.eval_every < 1:
        raise UsageError(f"--eval-every takes a number of epochs of at least 1, not {args.eval_every}")
    log = parse_backends(args.log) if args.log else ()
    check_installed(log)
    options = dataclasses.replace(plan.options, eval_every=args.eval_every, log=log, log_dir=plan.store.root)
    return dataclasses.replace(plan, options=options)


def _submit(experiment, plan, console) -> int:
    """``--executor slurm``: submit the grid's runs not finished yet as a job array; follow it with ``--wait``."""
    from prunebench.grid.grid_status import grid_status
    from prunebench.grid.scheduler import start_invocation, with_batch_order
    from prunebench.grid.slurm_executor import SlurmOptions, check_cluster, follow, submit

    slurm = SlurmOptions.from_mapping(experiment.execution.slurm)
    check_cluster(slurm)
    invocation = start_invocation(plan.configs, plan.store, experiment.execution.force)
    todo, finished = invocation.todo, invocation.finished
    if not todo:
        console.print(f"All {len(plan.configs)} runs are done in {plan.store.root}; nothing to submit")
        return 0
    settings = with_batch_order(plan.settings, plan.configs)
    jobs = submit(todo, plan.store.root, plan.options, settings, slurm, invocation.since)
    ids = ", ".join(job.job_id for job in jobs)
    console.print(
        f"Submitted {len(jobs)} task(s) for {len(todo)} runs ({len(finished)} already done): {ids}\n"
        f"Logs in {plan.store.root / 'slurm'}; watch with `bench status {plan.store.root}`"
    )
    if not experiment.execution.wait:
        return 0
    follow(jobs, plan.store.root, plan.configs, echo=console.print)
    states = ", ".join(sorted({str(job.state) for job in jobs}))
    status = grid_status(plan.store.root, plan.configs)
    left = len(plan.configs) - status.done
    if left:
        console.print(
            f"[red]{left} of {len(plan.configs)} runs are not done[/] ({status.statuses['failed']} failed) and "
            f"every task has ended ({states}); rerun the same command to resume them"
        )
        return 1
    console.print(f"Tasks ended: {states}; all {len(plan.configs)} runs are done")
    return 0


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunebench.grid.grid_status import grid_status, status_table

    console = Console()
    out = Path(args.dir)
    if not out.is_dir():
        raise UsageError(f"{out} is not a results directory")
    configs = None
    if any(getattr(args, key, None) for key in _GRID_FLAGS):
        configs = _experiment(args).configs()
    status = grid_status(out, configs, args.claim_timeout)
    console.print(f"{out}: {status.summary()}", soft_wrap=True)
    if status.running or status.stale or status.pretraining:
        console.print(status_table(status))
    if status.interrupted:
        console.print(
            f"{len(status.interrupted)} run(s) have a checkpoint and no runner: `bench run` resumes them"
        )
    if configs is None:
        console.print(
            "pending: give the grid (the flags or --config of `bench run`) to count the runs not started"
        )
    return 0


def _name_table(name: str, *columns: str):
    """A rich table whose first column (the registered name, which users type) never wraps or truncates."""
    from rich.table import Table

    table = Table()
    table.add_column(name, no_wrap=True)
    for column in columns:
        table.add_column(column)
    return table


def _model_input(args: argparse.Namespace) -> tuple[tuple[int, ...], int, str]:
    """The input shape and class count to build ``args.model`` with, and where they come from."""
    from prunebench.datasets import get_dataset
    from prunebench.zoo.presets import all_presets

    if args.input_shape:
        try:
            shape = tuple(int(part) for part in args.input_shape.split(","))
        except ValueError:
            raise UsageError(
                f"--input-shape takes comma-separated integers, got {args.input_shape!r}"
            ) from None
        return shape, args.classes, f"input {'x'.join(map(str, shape))}, {args.classes} classes"
    name = args.dataset or next((p.dataset for p in all_presets() if p.model == args.model), None)
    if name is None:
        raise UsageError(
            f"no preset uses {args.model!r}: give --dataset NAME or --input-shape (e.g. 3,32,32)"
        )
    data = get_dataset(name)
    return data.input_shape, data.num_classes, f"on {name}"


def _list_prunable(args: argparse.Namespace, console) -> None:
    """The prunable set of a model, built on the meta device (shapes only, no memory), and what is left out."""
    from prunebench.pruning.prunable import prunable_set
    from prunebench.zoo.model_zoo import build_model_shapes

    if not args.model:
        raise UsageError("`bench list prunable MODEL`: name a model (`bench list models`) or hf:<config>")
    input_shape, classes, source = _model_input(args)
    model = build_model_shapes(args.model, input_shape, classes)
    entries = prunable_set(model, prune_embeddings=args.prune_embeddings)
    table = _name_table("weight", "shape", "size", "kind", "pruned")
    for entry in entries:
        if entry.pruned or len(entry.shape) > 1:
            also = f" (also {', '.join(entry.aliases)})" if entry.aliases else ""
            table.add_row(
                entry.name + also,
                "x".join(map(str, entry.shape)),
                f"{entry.size:,}",
                entry.kind,
                "yes" if entry.pruned else f"no: {entry.reason}",
            )
    pruned = [e for e in entries if e.pruned]
    rest = [e for e in entries if not e.pruned and len(e.shape) <= 1]
    console.print(table)
    console.print(
        f"{args.model} {source}: {sum(e.size for e in pruned):,} prunable weights in {len(pruned)} tensors; "
        f"{len(rest)} biases and normalization parameters ({sum(e.size for e in rest):,}) are never pruned",
        soft_wrap=True,
    )


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if args.what == "prunable":
        _list_prunable(args, console)
        return 0
    if args.what == "methods":
        from prunebench.methods.method_registry import all_methods

        if args.details is not None:
            _method_details(console, args.details)
            return 0
        table = _name_table("method", "schedule", "scopes", "paper")
        for spec in all_methods():
            schedule = (
                spec.schedule if spec.track == "unstructured" else f"{spec.schedule} ({spec.track} track)"
            )
            table.add_row(spec.name, schedule, ", ".join(spec.scopes) or "-", spec.paper)
    elif args.what == "datasets":
        from prunebench.datasets import all_datasets

        table = _name_table("dataset", "classes", "input", "description")
        for data in all_datasets():
            table.add_row(
                data.name, str(data.num_classes), "x".join(map(str, data.input_shape)), data.summary
            )
    elif args.what == "models":
        from prunebench.catalog.model_registry import all_models

        table = _name_table("model", "description", "source")
        for model in all_models():
            table.add_row(model.name, model.summary, model.source)
    else:
        from prunebench.zoo.presets import DEFAULT_PRESET, all_presets

        table = _name_table("preset", "dataset", "model", "budget", "description")
        for preset in all_presets():
            name = preset.name + (" *" if preset.name == DEFAULT_PRESET else "")
            budget = f"{preset.recipe.epochs} epochs ({preset.recipe.finetune_epochs} fine-tune)"
            table.add_row(name, preset.dataset, preset.model, budget, preset.summary)
        table.caption = "* the default preset"
    console.print(table)
    return 0


def _method_details(console, name: str) -> None:
    """Each hyperparameter of ``name`` (``all``: of every method) with its type, default and meaning."""
    from prunebench.catalog.hparams import format_value
    from prunebench.methods.method_registry import all_methods, combinations, get_method

    specs = all_methods() if name == "all" else [get_method(name)]
    for spec in specs:
        others = [s for s in combinations() if s.criterion == spec.criterion and s.key != spec.key]
        console.print(f"[bold]{spec.name}[/]: {spec.summary}")
        console.print(f"  {spec.paper}")
        console.print(
            f"  criterion {spec.criterion} (version {spec.version}), schedule {spec.schedule}, "
            f"scopes {', '.join(spec.scopes) or '-'}"
        )
        if others:
            console.print("  also runs as: " + ", ".join(s.name for s in others))
        table = _name_table("hyperparameter", "type", "default", "meaning")
        hparams = spec.listed_hparams()
        for hparam in hparams.values():
            table.add_row(hparam.name, hparam.type_name, format_value(hparam.default), hparam.help or "-")
        if hparams:
            console.print(table)
        else:
            console.print("  no hyperparameters")


def _write_leaderboard(*args, **kwargs) -> str:
    """``write_leaderboard`` with each warning (a skipped record, pooled budgets) printed as one line."""
    import warnings

    from prunebench.leaderboard import write_leaderboard

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return write_leaderboard(*args, **kwargs)
        finally:
            for warning in caught:
                print(f"bench: warning: {warning.message}", file=sys.stderr)


def _leaderboard(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunebench.leaderboard import FORMATS

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats:
        raise UsageError(f"--format: no format given; choose from {', '.join(FORMATS)}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    out = Path(args.out) if args.out else Path(args.dirs[0])
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give the directory to write the leaderboard into")
    markdown = _write_leaderboard(
        [Path(d) for d in args.dirs],
        out,
        formats,
        ci=args.ci,
        dataset=args.dataset,
        model=args.model,
        methods=methods,
        density_sparsity=args.density_at,
        top5=args.top5,
    )
    console = Console()
    if console.is_terminal:
        from rich.markdown import Markdown

        console.print(Markdown(markdown))
    else:  # piped or redirected: the Markdown itself, not a rendering of it for a terminal
        print(markdown)
    console.print(f"Leaderboard ({', '.join(formats)}) written to {out}")
    if args.curves:
        from prunebench.leaderboard.curve_plots import write_curve_plots

        written = write_curve_plots([Path(d) for d in args.dirs], out, formats)
        console.print(f"Training curves of {len(written)} cell figure(s) written to {out / 'curves'}")
    return 0


def _masks(args: argparse.Namespace) -> int:
    import warnings

    from rich.console import Console

    from prunebench.leaderboard.overlap import write_overlaps

    formats = [f.strip() for f in args.format.split(",") if f.strip() and f.strip() != "none"]
    bad = [f for f in formats if f not in ("png", "svg")]
    if bad:
        raise UsageError(f"--format: unknown figure format {bad[0]!r}; choose png, svg or none")
    out = Path(args.out) if args.out else Path(args.dirs[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = write_overlaps([Path(d) for d in args.dirs], out, args.sparsity, formats)
    for warning in caught:
        print(f"bench: warning: {warning.message}", file=sys.stderr)
    Console().print("Mask overlaps written: " + ", ".join(str(p) for p in paths), soft_wrap=True)
    return 0


def _power(args: argparse.Namespace) -> int:
    from prunebench.leaderboard.power import format_report, power_report

    found, columns = power_report(Path(args.results), args.difference, args.power, args.alpha)
    print(format_report(found, columns, args.difference, args.power))
    return 0


def _data_prepare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunebench.datasets.prepare import ImageOptions, prepare

    options = ImageOptions(
        write_mode=args.write_mode, max_resolution=args.max_resolution or None, jpeg_quality=args.jpeg_quality
    )

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)  # so that the writer stops its workers and cleans up
    try:
        paths = prepare(
            args.dataset,
            Path(args.data_root) if args.data_root else None,
            Path(args.out) if args.out else None,
            options,
            args.workers,
        )
    except _Terminated:
        print("bench: stopped by SIGTERM; no FFCV file was written", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    Console().print("FFCV files written: " + ", ".join(str(p) for p in paths))
    return 0


class _Terminated(BaseException):
    """SIGTERM during ``bench data prepare``: unwinds like Ctrl-C, through the writer's clean-up."""


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a grid (``bench run`` and ``bench status``)."""
    parser.add_argument(
        "--config", metavar="FILE", help="an experiment file (TOML); flags given beside it override it"
    )
    parser.add_argument(
        "--preset",
        help="dataset, model and recipe to start from (default: mnist5k-lenet300; `bench list presets`)",
    )
    parser.add_argument(
        "--dataset",
        help="replace the preset's dataset: a registered name, imagefolder:PATH[:SIZE], text:PATH[:CONTEXT], "
        "hf-text:NAME[@CONFIG][:CONTEXT] or package.module:factory",
    )
    parser.add_argument(
        "--model",
        help="replace the preset's model: a registered name, torchvision:NAME or package.module:factory",
    )
    parser.add_argument(
        "--track",
        choices=["unstructured", "structured"],
        help="what is pruned: single weights (default) or whole channels, removed physically and timed",
    )
    parser.add_argument(
        "--target",
        help="structured track: UNIT:FRACTIONS removed, UNIT channels or flops (default: channels:0.3,0.5)",
    )
    parser.add_argument("--methods", help="`all` or comma-separated method names (default: all)")
    parser.add_argument(
        "--scopes",
        help="`all` or comma-separated scopes: global,uniform,uniform_plus,erk,learned (default: all)",
    )
    parser.add_argument(
        "--groups",
        help="`all` or comma-separated comparison groups inside each layer: per_layer,per_output "
        "(default: per_layer)",
    )
    parser.add_argument(
        "--sparsity",
        help="comma-separated target sparsities in (0, 1) and N:M patterns such as 2:4 (default: 0.9,0.95,0.99)",
    )
    parser.add_argument("--seeds", help="N (seeds 0..N-1), a range A-B, or a list such as 0,2,5 (default: 3)")
    parser.add_argument("--epochs", type=int, help="weight-update budget in epochs (default: the preset's)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a method's hyperparameter (probmask.samples=4) or a recipe field (recipe.optim.lr=0.1); "
        "a comma list sweeps (gmp.end=0.5,0.8); repeatable",
    )
    parser.add_argument(
        "--keep-first-dense",
        action=argparse.BooleanOptionalAction,
        help="leave the first prunable layer out of the prunable set, for every method",
    )
    parser.add_argument(
        "--keep-last-dense",
        action=argparse.BooleanOptionalAction,
        help="leave the last prunable layer out of the prunable set, for every method",
    )
    parser.add_argument(
        "--prune-embeddings",
        action=argparse.BooleanOptionalAction,
        help="add the nn.Embedding weights to the prunable set, for every method (off by default, as in movement pruning)",
    )
    parser.add_argument(
        "--controls",
        help="allocation controls added for every pruned run: shuffle,reinit (the layer's kept positions re-drawn; "
        "the mask on re-drawn weights), with the random-pruning baselines they are measured against (default: none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="prunebench: compare pruning methods on one harness, at fixed sparsities, over seeds.",
    )
    parser.add_argument("--version", action="version", version=f"prunebench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run a grid of methods x scopes x sparsities x seeds, then the leaderboard"
    )
    _grid_arguments(run)
    run.add_argument("--out", help="results directory (default: results/)")
    run.add_argument("--device", help="auto, cpu or cuda (default: auto)")
    run.add_argument("--force", action="store_true", help="rerun runs that already finished")
    run.add_argument(
        "--jobs",
        help="runs in parallel worker processes, at most one per CPU; auto: one per core (at most 8) on the CPU, "
        "1 on a GPU (default: auto)",
    )
    run.add_argument(
        "--loader",
        choices=["auto", "ffcv", "torch"],
        help="data loader for on-disk datasets: auto (FFCV when its files exist and it is installed), ffcv, torch",
    )
    run.add_argument(
        "--data-root", help="dataset root (default: $PRUNEBENCH_DATA or ./data); FFCV files in ROOT/ffcv"
    )
    run.add_argument("--compile", action="store_true", help="wrap models with torch.compile (opt-in)")
    run.add_argument(
        "--devices",
        help="one worker per device: auto (every visible GPU, else the CPU) or a list, cuda:0,cuda:1 or cpu,cpu "
        "(instead of --jobs)",
    )
    run.add_argument(
        "--per-device",
        type=int,
        help="with --devices: K concurrent runs (workers) on each device (default: 1)",
    )
    run.add_argument(
        "--checkpoint-every",
        help="checkpoint each run every N epochs, every Nm minutes, or off (only when stopped) (default: 1)",
    )
    run.add_argument(
        "--claim-timeout",
        type=float,
        help="seconds without a heartbeat after which another runner takes a run over (default: 600)",
    )
    run.add_argument(
        "--batch",
        help="runs trained together as one stacked computation (K consecutive runs of one schedule: a cell's "
        "seeds, then the next cell's); "
        "1: each alone; auto (default): by the device and the model's size (docs/batched.md)",
    )
    run.add_argument(
        "--deterministic",
        action="store_true",
        help="PyTorch's deterministic algorithms and cuDNN flags (GPU runs repeat bit for bit; slower), recorded",
    )
    run.add_argument(
        "--executor",
        choices=["local", "slurm"],
        help="local: this machine (--jobs, --devices); slurm: a job array through submitit (default: local)",
    )
    run.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        help="evaluate the test top-1 every N epochs for the curves (for watching a run, never for selecting one; "
        "default: only the final evaluation)",
    )
    run.add_argument(
        "--log",
        metavar="TRACKERS",
        help='stream the curves to tensorboard, wandb or mlflow (comma-separated; pip install "prunebench[log]"; '
        "W&B offline unless WANDB_MODE is set, MLflow in OUT/mlruns unless MLFLOW_TRACKING_URI is set)",
    )
    slurm = run.add_argument_group("Slurm (with --executor slurm)")
    slurm.add_argument("--slurm-partition", help="partition (sbatch --partition)")
    slurm.add_argument(
        "--slurm-time", help="time limit of each task: minutes or [D-]HH:MM:SS (default: 24:00:00)"
    )
    slurm.add_argument("--slurm-gpus", type=int, help="GPUs per task (default: 1)")
    slurm.add_argument("--slurm-cpus", type=int, help="CPUs per task (default: 8)")
    slurm.add_argument("--slurm-mem-gb", type=float, dest="slurm_mem_gb", help="memory per task, GB")
    slurm.add_argument("--slurm-account", help="account to charge (sbatch --account)")
    slurm.add_argument("--slurm-qos", help="quality of service (sbatch --qos)")
    slurm.add_argument(
        "--slurm-tasks", type=int, help="array tasks, each a runner claiming runs (default: 8)"
    )
    slurm.add_argument(
        "--slurm-array-parallelism", type=int, help="tasks running at once (default: all of them)"
    )
    slurm.add_argument(
        "--slurm-extra",
        action="append",
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. constraint=a100 or exclude=node7; repeatable",
    )
    slurm.add_argument(
        "--slurm-requeues",
        type=int,
        help="times a task may be requeued after its time limit, each resuming where it stopped (default: 20)",
    )
    slurm.add_argument(
        "--slurm-cluster",
        choices=["slurm", "local"],
        help="slurm: submit with sbatch (refused where it is missing); local: run the tasks as processes of this "
        "machine through submitit, to try a setup without Slurm (default: slurm)",
    )
    slurm.add_argument("--wait", action="store_true", help="follow the tasks' progress until they end")
    run.set_defaults(handler=_run, interrupted="finished runs are saved and a rerun resumes")

    status = commands.add_parser(
        "status", help="where a results directory stands: done, running (where, since when), failed, pending"
    )
    status.add_argument("dir", metavar="DIR", help="results directory")
    _grid_arguments(status)
    status.add_argument(
        "--claim-timeout",
        type=float,
        default=600.0,
        help="seconds without a heartbeat after which a claim counts as stale (default: 600)",
    )
    status.set_defaults(handler=_status, interrupted=None)

    data = commands.add_parser("data", help="prepare datasets on disk")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    prep = data_commands.add_parser("prepare", help="write FFCV files (train and test) for a dataset")
    prep.add_argument("dataset", help="cifar10, cifar100, imagenet, mnist5k or synthetic")
    prep.add_argument(
        "--data-root",
        help="where the dataset lies in its standard layout (default: $PRUNEBENCH_DATA or ./data)",
    )
    prep.add_argument("--out", help="directory of the FFCV files (default: DATA_ROOT/ffcv)")
    prep.add_argument(
        "--write-mode",
        choices=["raw", "jpg", "smart"],
        default="jpg",
        help="ImageNet image storage (default: jpg)",
    )
    prep.add_argument(
        "--max-resolution",
        type=int,
        default=512,
        help="ImageNet: cap the longer side (0: keep; default: 512)",
    )
    prep.add_argument("--jpeg-quality", type=int, default=90, help="ImageNet JPEG quality (default: 90)")
    prep.add_argument("--workers", type=int, help="writer processes (default: the CPUs available, at most 8)")
    prep.set_defaults(handler=_data_prepare, interrupted="no FFCV file was written")

    listing = commands.add_parser(
        "list", help="list registered methods, datasets, models or presets, or a model's prunable set"
    )
    listing.add_argument("what", choices=["methods", "datasets", "models", "presets", "prunable"])
    listing.add_argument(
        "model",
        nargs="?",
        help="prunable: a registered model or hf:<config> (e.g. hf:bert,num_hidden_layers=2)",
    )
    listing.add_argument(
        "--dataset", help="prunable: build the model for this dataset (default: that of a preset using it)"
    )
    listing.add_argument(
        "--input-shape",
        help="prunable: build the model for this input shape instead, e.g. 3,32,32 or 128 (tokens)",
    )
    listing.add_argument(
        "--classes", type=int, default=10, help="prunable: classes with --input-shape (default: 10)"
    )
    listing.add_argument(
        "--prune-embeddings", action="store_true", help="prunable: embeddings are pruned too"
    )
    listing.add_argument(
        "--details",
        nargs="?",
        const="all",
        metavar="METHOD",
        help="methods: each hyperparameter with its type, default and meaning (of METHOD, or of every method)",
    )
    listing.set_defaults(handler=_list, interrupted=None)

    board = commands.add_parser("leaderboard", help="aggregate results directories into the leaderboard")
    board.add_argument("dirs", nargs="+", metavar="DIR", help="results directories (merged)")
    board.add_argument("--out", help="where to write (default: the first DIR)")
    board.add_argument(
        "--format",
        default="md,csv,tex,png",
        help="comma-separated: md,csv,tex,png,svg (default: md,csv,tex,png)",
    )
    board.add_argument("--dataset", help="only this dataset")
    board.add_argument("--model", help="only this model")
    board.add_argument("--methods", help="only these comma-separated methods (the dense baseline stays)")
    board.add_argument(
        "--ci",
        choices=["t", "bootstrap"],
        default="t",
        help="95%% interval of the mean: Student t or bootstrap (default: t)",
    )
    board.add_argument(
        "--density-at",
        type=float,
        help="sparsity of the per-layer density plot and table; the grid must have it (default: its median)",
    )
    board.add_argument("--top5", action="store_true", help="add the top-5 accuracy table")
    board.add_argument(
        "--curves",
        action="store_true",
        help="also draw each cell's training curves (mean and min-max band over seeds) into OUT/curves/",
    )
    masks = commands.add_parser(
        "masks", help="the overlap (Jaccard) of the saved masks of every two methods at one sparsity"
    )
    masks.add_argument("dirs", nargs="+", metavar="DIR", help="results directories (merged)")
    masks.add_argument("--sparsity", type=float, required=True, help="the sparsity to compare at, e.g. 0.95")
    masks.add_argument("--out", help="where to write (default: the first DIR)")
    masks.add_argument("--format", default="png", help="heat map formats: png, svg, or none (default: png)")
    masks.set_defaults(handler=_masks, interrupted="each file is written whole or not at all")
    power = commands.add_parser(
        "power",
        help="the seeds each scope comparison needs to resolve a difference, and what the seeds resolve",
    )
    power.add_argument("results", metavar="RESULTS", help="results directory")
    power.add_argument(
        "--difference", type=float, default=1.0, help="top-1 difference to resolve, in points (default: 1.0)"
    )
    power.add_argument("--power", type=float, default=0.8, help="probability of resolving it (default: 0.8)")
    power.add_argument(
        "--alpha", type=float, default=0.05, help="level before Holm's correction (default: 0.05)"
    )
    power.set_defaults(handler=_power, interrupted=None)
    board.set_defaults(handler=_leaderboard, interrupted="each file is written whole or not at all")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings meant for the user (a plugin that failed to import, a skipped record) as one line each."""
    print(f"bench: warning: {message}", file=sys.stderr)


def _describe(error: BaseException) -> str:
    """``error`` as one line: an ``OSError`` with the file it is about, first."""
    if isinstance(error, OSError) and not isinstance(error, WriteError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv``. Exit status: 0 done, 1 a run failed or a file could not be written (a full
    disk), 2 bad input, 130 interrupted; every error is one line (``bench: error: ...``), with no traceback."""
    import warnings

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return args.handler(args)
    except UsageError as error:
        print(f"bench: error: {_describe(error)}", file=sys.stderr)
        return 2
    except (OSError, Failed) as error:
        print(f"bench: error: {_describe(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        said = f"; {args.interrupted}" if args.interrupted else ""
        print(f"bench: interrupted{said}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
