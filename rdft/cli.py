"""The `rdft` command: parse, call one function, print. The work lives elsewhere."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from rdft import __version__
from rdft.errors import EnvBuildError, RdftError
from rdft.settings import Settings, check_file_path, get_settings


def _settings(ctx: click.Context) -> Settings:
    """The settings, with FT_FILE_PATH checked (and created) the first time a command asks for
    them: `--help` and `doctor`, which reports on it, create nothing."""
    root = ctx.find_root()
    if not root.meta.get("rdft.ft_file_path_checked") and root.invoked_subcommand != "doctor":
        root.meta["rdft.ft_file_path_checked"] = True
        created = check_file_path(root.obj)
        if created:
            click.echo(f"rdft: {created}", err=True)
    return root.obj


def _manager(ctx: click.Context):
    from rdft.envs import EnvManager

    return EnvManager(_settings(ctx), log=lambda message: click.echo(f"rdft: {message}", err=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rdft")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rdft: an agentic LLM fine-tuning workbench for GPU hosts without Docker.

    Settings come from the environment and a .env file in the working directory
    (RD-Agent's fine-tuning template loads unchanged).
    """
    settings = get_settings()
    ctx.obj = settings
    # The eval env's scripts (prepare, score, compare) find the user's own benchmarks here.
    os.environ["RDFT_USER_BENCHMARKS"] = str(settings.ft_file_path.expanduser().resolve() / "benchmarks")
    ignored = settings.ignored_in_use()
    if ignored:
        click.echo(
            f"rdft: note: ignoring RD-Agent-only settings {', '.join(ignored)} (`rdft doctor` says why)",
            err=True,
        )
    for key in settings.unknown_keys():
        click.echo(f"rdft: warning: unknown setting {key} in .env is not used", err=True)


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Report Python, conda engines, GPUs, which keys are set (never their values), free disk."""
    from rdft.doctor import report

    rows = report(_settings(ctx))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--schema", is_flag=True, help="Print every config key with its type, default and meaning; run nothing.")
@click.option("--gpus", help="Comma-separated GPU indices, e.g. 0,1 (default: all; empty: CPU).")
@click.option(
    "--workspace", type=click.Path(file_okay=False, path_type=Path), help="Folder for launch files and output."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and the launch script; run nothing.")
@click.option("--assume-gpus", metavar="NxMEM", help="With --dry-run: plan for N GPUs of MEM GiB each, e.g. 8x80GiB.")
@click.option("--slurm-nodes", type=click.IntRange(min=1), metavar="N",
              help="Run on N Slurm nodes: write train.sbatch (srun launch.sh per node) and submit it "
              "(with --dry-run: print it). Give the nodes' GPUs with --assume-gpus.")  # fmt: skip
@click.option("--verbose", "-v", is_flag=True, help="Stream the training output instead of a progress bar.")
@click.pass_context
def train(
    ctx: click.Context,
    config: Path | None,
    schema: bool,
    gpus: str | None,
    workspace: Path | None,
    dry_run: bool,
    assume_gpus: str | None,
    slurm_nodes: int | None,
    verbose: bool,
):
    """Fine-tune with a recipe config (see recipes/configs/): LoRA, QLoRA or full, on CPU or GPUs."""
    if schema:
        from rdft.training.config import schema_reference

        click.echo(schema_reference())
        return
    if config is None:
        raise click.UsageError("give a train YAML (see recipes/configs/), or --schema to see its keys")
    from rdft.training.run import parse_gpus
    from rdft.training.run import train as run_training

    run_training(_settings(ctx), config, gpus=parse_gpus(gpus), workspace=workspace, dry_run=dry_run, verbose=verbose,
                 assume_gpus=assume_gpus, slurm_nodes=slurm_nodes)  # fmt: skip


@cli.group()
def datasets() -> None:
    """Training datasets the agent can draw on."""


@datasets.command("list")
@click.pass_context
def datasets_list(ctx) -> None:
    """Name, Hugging Face repo (and folder), license, and the benchmarks each serves; then yours."""
    from rdft.datasets.registry import registry

    _settings(ctx)  # yours are under FT_FILE_PATH

    click.echo(f"{'dataset':<18} {'license':<13} {'source':<50} benchmarks")
    for entry in registry().values():
        if not entry.user:
            click.echo(f"{entry.name:<18} {entry.license:<13} {entry.source:<50} {', '.join(entry.benchmarks)}")
    mine = [entry for entry in registry().values() if entry.user]
    click.echo(f"\nyour datasets ({len(mine)}; `rdft datasets add NAME --source PATH`)")
    for entry in mine:
        click.echo(f"{entry.name:<18} {entry.format:<8} {entry.rows:>7} rows  {entry.source}")


@datasets.command("add")
@click.argument("name")
@click.option("--source", required=True, type=click.Path(path_type=Path),
              help="A JSONL, JSON, CSV or parquet file, or a folder of them.")  # fmt: skip
@click.option("--description", help="What the rows are, for the agent (default: a summary).")
@click.option("--license", "license_", help="The data's license, shown with it.")
@click.pass_context
def datasets_add(ctx: click.Context, name: str, source: Path, description: str | None, license_: str | None) -> None:
    """Register your own files as dataset NAME, usable as `rdft run --dataset NAME`."""
    from rdft.datasets.user import add_dataset

    entry = add_dataset(_settings(ctx), name, source, description=description, license=license_)
    columns = ", ".join(f"{k} ({v})" for k, v in entry.columns.items())
    click.echo(f"{entry.name}: {entry.rows} rows ({entry.format}); columns {columns}")


@datasets.command("remove")
@click.argument("name")
@click.pass_context
def datasets_remove(ctx: click.Context, name: str) -> None:
    """Remove dataset NAME that you added (its copy under FT_FILE_PATH goes with it)."""
    from rdft.datasets.user import remove_dataset

    click.echo(f"{name}: removed ({remove_dataset(_settings(ctx), name)})")


@datasets.command("info")
@click.argument("name")
@click.pass_context
def datasets_info(ctx: click.Context, name: str) -> None:
    """What dataset NAME holds, where it comes from, and how leakage is guarded."""
    from rdft.datasets.leakage import RULES
    from rdft.datasets.prepare import POST_DOWNLOAD, datasets_dir, read_manifest
    from rdft.datasets.registry import get_dataset
    from rdft.evaluation.benchmarks import get_benchmark

    entry = get_dataset(name)
    local = entry.local_path(datasets_dir(_settings(ctx)))
    manifest = read_manifest(local)
    hub = f"https://huggingface.co/datasets/{entry.repo}" + (f" (folder {entry.folder})" if entry.folder else "")
    rows = [
        ("dataset", entry.name),
        ("source", entry.source if entry.user else hub),
        *(
            (
                ("format", f"{entry.format}, {entry.rows} rows"),
                ("columns", ", ".join(f"{k} ({v})" for k, v in entry.columns.items())),
            )
            if entry.user
            else ()
        ),
        ("license", entry.license),
        ("serves", ", ".join(entry.benchmarks)),
        ("about", entry.description),
        ("after download", _first_line(POST_DOWNLOAD[entry.post_download].__doc__) if entry.post_download else "-"),
        ("removed files", ", ".join(entry.remove) or "none"),
        *(
            (f"guard ({family})", f"drops training rows holding a validation or test item of it: {RULES[family]}")
            for family in dict.fromkeys(get_benchmark(b).family for b in entry.benchmarks)
        ),
        (
            "local copy",
            f"{local} ({len(manifest.files)} files, {manifest.prepared:%Y-%m-%d})"
            if manifest
            else f"not downloaded ({local})",
        ),
    ]
    for label, value in rows:
        click.echo(f"{label:<15} {value}")


@datasets.command("prepare")
@click.argument("names", nargs=-1, required=True)
@click.option("--source", type=click.Path(path_type=Path), help="A local copy of the repo, its folder, or a file.")
@click.option("--force", is_flag=True, help="Prepare again even when a prepared copy exists.")
@click.pass_context
def datasets_prepare(ctx: click.Context, names: tuple[str, ...], source: Path | None, force: bool) -> None:
    """Download NAMES (only what they need) into FT_FILE_PATH/datasets, minus evaluation files."""
    from rdft.datasets.guard import dataset_overlap
    from rdft.datasets.prepare import prepare
    from rdft.datasets.registry import get_dataset

    entries = [get_dataset(name) for name in names]  # every name checked before any download
    if source is not None and len(entries) > 1:
        raise RdftError("--source stands for one dataset; prepare one name at a time with it")
    for entry in entries:
        path, done = prepare(entry, _settings(ctx), source=source, force=force)
        click.echo(f"{entry.name}: {'prepared' if done else 'already prepared'} at {path}")
        for benchmark, report in dataset_overlap(_settings(ctx), entry):
            if report is None:
                click.echo(f"  overlap with {benchmark}: not checked (its items are not here; "
                           f"`rdft benchmarks prepare {benchmark}`)")  # fmt: skip
            else:
                reasons = ", ".join(f"{reason} {n}" for reason, n in report["dropped"].items())
                click.echo(f"  overlap with {benchmark}: {report['rows'] - report['kept']} of {report['rows']} rows "
                           f"hold its validation or test items ({reasons})")  # fmt: skip


@datasets.command("check-leakage")
@click.argument("train_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--benchmark", required=True, help="See `rdft benchmarks list`.")
@click.option("--eval-docs", "eval_docs", multiple=True, type=click.Path(path_type=Path),
              help="Evaluation docs in the benchmark's schema (JSONL, JSON, parquet, folder); default: its own "
              "validation and test items, as `rdft eval` loads them.")  # fmt: skip
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the kept rows here.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def datasets_check_leakage(ctx, train_files, benchmark, eval_docs, output, as_json) -> None:
    """Drop (and count, by reason) the rows of TRAIN_FILES that hold an evaluation item of a benchmark.

    TRAIN_FILES are chat JSONL (`messages`) or alpaca JSON/JSONL; every field of every row is read."""
    from rdft.datasets.guard import check_files

    report = check_files(_settings(ctx), benchmark, list(train_files), eval_docs=list(eval_docs) or None,
                         output=output)  # fmt: skip
    counts = {"rows": report["rows"], "kept": report["kept"], "dropped": report["dropped"]}
    if as_json:
        click.echo(json.dumps(counts))
        return
    reasons = ", ".join(f"{reason} {n}" for reason, n in report["dropped"].items())
    click.echo(f"{report['rows']} rows: {report['kept']} kept, {report['rows'] - report['kept']} dropped ({reasons}); "
               f"{report['evaluation_items_hit']} evaluation item(s) hit")  # fmt: skip
    if output is not None:
        click.echo(f"kept rows: {output}")


@datasets.command("profile")
@click.argument("name")
@click.option("--tokenizer", help="Count tokens with this model's tokenizer (a folder or Hub id); default: words.")
@click.option("--refresh", is_flag=True, help="Compute again even when a cached profile exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.pass_context
def datasets_profile(ctx: click.Context, name: str, tokenizer: str | None, refresh: bool, as_json: bool) -> None:
    """Item counts, per-field token lengths and samples of a prepared dataset, per task folder."""

    from rdft.datasets.profiles import profile
    from rdft.datasets.registry import get_dataset

    value = profile(get_dataset(name), _settings(ctx), tokenizer, refresh=refresh)
    click.echo(json.dumps({k: v for k, v in value.items() if k != "text"}, indent=1) if as_json else value["text"])


@cli.command("run")
@click.option("--base-model", help="A Hub id, a local folder, or tiny:llama (default: FT_BASE_MODEL).")
@click.option("--benchmark", help="See `rdft benchmarks list` (default: FT_TARGET_BENCHMARK).")
@click.option("--benchmark-description", help="What the benchmark asks, for the LLM (default: built in).")
@click.option("--target", help="What you want improved, in your words (default: FT_USER_TARGET_SCENARIO); the "
              "benchmark scores it.")  # fmt: skip
@click.option("--dataset", "datasets", multiple=True, help="Training dataset (repeatable; default: chosen).")
@click.option("--loop-n", type=click.IntRange(min=1), default=5, show_default=True, help="Experiments to run.")
@click.option("--step-n", type=click.IntRange(min=1), help="Stop after this many steps (resumable).")
@click.option("--timeout", help="Budget for the whole run, e.g. 12h, 90m, 3600.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue the run in this log folder.")
@click.option("--demo", is_flag=True, help="Two loops of the tiny model on the demo benchmark, on CPU.")
@click.option("--eval-limit", type=click.IntRange(min=1), help="Score only the first N items of each split.")
@click.option("--max-gen-toks", type=click.IntRange(min=1),
              help="Cap generation for every scoring call (non-standard scores; for CPU runs).")  # fmt: skip
@click.option("--samples", type=click.IntRange(min=1), help="Answers per validation/test item (default: enough that "
              "items x samples >= 100 on small splits, else 1; 1 = greedy).")  # fmt: skip
@click.option("--no-sync", is_flag=True, help="Do not sync the log to RDFT_REMOTE after each loop.")
@click.pass_context
def run_command(ctx, base_model, benchmark, benchmark_description, target, datasets, loop_n, step_n, timeout,
                resume_dir, demo, eval_limit, max_gen_toks, samples, no_sync) -> None:  # fmt: skip
    """Raise a model's benchmark score, loop after loop: proposal, coding, running, feedback."""
    import signal

    from rich.console import Console

    from rdft.loop.records import RunArgs
    from rdft.loop.run import DEMO, STOPPED_EXIT_CODE, parse_duration, resume, start

    def stop(signum, frame):  # `rdft batch` and service managers stop runs with SIGTERM
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C stops the run even when it was started from a shell's background job, which starts
    # its children with SIGINT ignored (Python then keeps ignoring it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = _settings(ctx)
    console = Console(stderr=True, soft_wrap=True)
    given = {name for name in ("base_model", "benchmark", "benchmark_description", "target", "datasets", "loop_n",
                               "step_n", "timeout", "demo", "eval_limit", "max_gen_toks", "samples", "no_sync")
             if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}  # fmt: skip
    if resume_dir is not None:
        fixed = sorted(given - {"loop_n", "step_n", "timeout", "no_sync"})
        if fixed:
            option = "--" + fixed[0].replace("_", "-")
            raise RdftError(
                f"{option} cannot change when resuming (it would make another run); resume with --timeout, --loop-n, "
                f"--step-n or --no-sync only, or start a new run"
            )
        changes = {"timeout_s": parse_duration(timeout) if "timeout" in given else None, "loop_n": loop_n,
                   "step_n": step_n, "no_sync": no_sync}  # fmt: skip
        changes = {key: value for key, value in changes.items() if key.removesuffix("_s") in given}
        run = resume(settings, resume_dir.expanduser().resolve(), console, changes)
    else:
        options = {"loop_n": loop_n, "step_n": step_n, "eval_limit": eval_limit, "no_sync": no_sync,
                   "max_gen_toks": max_gen_toks, "samples": samples,
                   "timeout_s": parse_duration(timeout) if timeout else None}  # fmt: skip
        if demo:
            clash = sorted(given & {"base_model", "benchmark", "datasets", "target", "benchmark_description"})
            if clash:
                raise RdftError(f"--demo runs the tiny model on demo_letter: drop --{clash[0].replace('_', '-')}, or "
                                "drop --demo to run your own")  # fmt: skip
            options.update(DEMO, demo=True)
            options["loop_n"] = loop_n if "loop_n" in given else DEMO["loop_n"]
        else:
            base_model = base_model or settings.ft_base_model
            benchmark = benchmark or settings.ft_target_benchmark
            target = target or settings.ft_user_target_scenario
            if not base_model:
                raise RdftError("no base model: give --base-model (a Hub id or a local folder) or set FT_BASE_MODEL")
            if not benchmark and target:
                raise RdftError(
                    "a target needs a benchmark that scores it: give --benchmark (see `rdft benchmarks list`), "
                    "set FT_TARGET_BENCHMARK, or add your own with `rdft benchmarks add NAME --docs FILE "
                    "--prompt-field F --answer-field A --metric M`"
                )
            if not benchmark:
                raise RdftError(
                    "no benchmark: give --benchmark (see `rdft benchmarks list`) or set FT_TARGET_BENCHMARK"
                )
            options["target"] = target
            chosen = list(datasets) or ([settings.ft_dataset] if settings.ft_dataset else [])
            options.update(base_model=base_model, benchmark=benchmark, datasets=chosen)
        options["description"] = benchmark_description or settings.ft_benchmark_description
        run = start(settings, RunArgs(**options), console)
    if run.finished:
        click.echo(f"rdft: run finished\nlog: {run.log_dir}\nreport: {run.log_dir / 'report.html'}")
        return
    # Stopped by its budget or --step-n: resumable, said so, and a distinct exit code.
    hint = " --timeout DURATION" if run.stopped and "budget" in run.stopped else ""
    click.echo(f"rdft: run stopped: {run.stopped}; resume with `rdft run --resume {run.log_dir}{hint}`\n"
               f"log: {run.log_dir}\nreport: {run.log_dir / 'report.html'}")  # fmt: skip
    sys.exit(STOPPED_EXIT_CODE)


@cli.command("batch")
@click.argument("tasks_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan (with slurm: every sbatch script); start nothing.")
@click.option("--no-sync", is_flag=True, help="Do not sync the tasks' logs to RDFT_REMOTE.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Run at most N tasks at once (local; default: all).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: processes on this host; slurm: one sbatch job per task.")  # fmt: skip
@click.option("--partition", help="slurm: the partition (a task's own `partition` wins).")
@click.option("--account", help="slurm: the account to charge.")
@click.option("--qos", help="slurm: the QOS.")
@click.option("--sbatch", "sbatch_lines", multiple=True, metavar="OPTION",
              help="slurm: an extra #SBATCH option for every job, e.g. --sbatch=--constraint=h100.")  # fmt: skip
@click.option("--cpus", type=click.IntRange(min=1), default=8, show_default=True,
              help="slurm: CPUs per GPU (per job for a CPU task).")  # fmt: skip
@click.option("--mem-per-gpu", help="slurm: memory per GPU, e.g. 120G.")
@click.option("--time-margin", default="30m", show_default=True,
              help="slurm: added to a task's timeout for the job's --time (start-up, the last save).")  # fmt: skip
@click.option("--requeue", is_flag=True, help="slurm: a job that reaches its limit or is pre-empted requeues itself.")
@click.option("--cancel-on-exit", is_flag=True, help="slurm: Ctrl-C cancels the jobs without asking.")
@click.option("--shared-ok", is_flag=True, help="slurm: FT_FILE_PATH and ./log are on storage every node mounts.")
@click.pass_context
def batch_command(ctx, tasks_file: Path, dry_run: bool, no_sync: bool, max_parallel: int | None, executor: str,
                  partition, account, qos, sbatch_lines, cpus, mem_per_gpu, time_margin, requeue, cancel_on_exit,
                  shared_ok) -> None:  # fmt: skip
    """Run the tasks of TASKS_FILE side by side, each as its own `rdft run`: on this host's GPUs, or
    as Slurm jobs (--executor slurm)."""
    import signal

    _settings(ctx)  # FT_FILE_PATH checked here, not in each task (or each node's job)

    from rich.console import Console

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops the batch, even from a background job

    from rdft.batch import SlurmOptions, run_batch, run_slurm_batch
    from rdft.loop.run import parse_duration

    console = Console(soft_wrap=True)  # paths and commands stay whole in logs
    if executor == "slurm":
        options = SlurmOptions(partition=partition, account=account, qos=qos, sbatch=list(sbatch_lines), cpus=cpus,
                               mem_per_gpu=mem_per_gpu, time_margin_s=parse_duration(time_margin), requeue=requeue,
                               cancel_on_exit=cancel_on_exit, shared_ok=shared_ok)  # fmt: skip
        code = run_slurm_batch(tasks_file, dry_run=dry_run, no_sync=no_sync, options=options, console=console)
    else:
        code = run_batch(tasks_file, dry_run=dry_run, no_sync=no_sync, max_parallel=max_parallel, console=console)
    sys.exit(code)


@cli.group()
def logs() -> None:
    """Run logs: sync them with a remote."""


@logs.command("sync")
@click.argument("direction", type=click.Choice(["up", "down"]))
@click.argument("log_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--remote", help="fsspec URL: file://, s3://, gs://, az:// (default: RDFT_REMOTE).")
@click.option("--include-weights", is_flag=True, help="Upload model weights too (default: they stay local).")
@click.option("--force", is_flag=True, help="down: replace local files that differ from the remote.")
@click.pass_context
def logs_sync(ctx, direction: str, log_dir: Path | None, remote: str | None, include_weights: bool, force: bool):
    """Copy a run's log folder to (up) or from (down) a remote; only what changed is sent."""
    from rdft.sync import sync_down, sync_up

    settings = _settings(ctx)
    remote = remote or settings.rdft_remote
    if not remote:
        raise RdftError("no remote: give --remote URL (file://, s3://, gs://, az://) or set RDFT_REMOTE")
    if log_dir is None:
        if direction == "down":
            raise RdftError("give the local folder to download into; its name is the run's name on the remote")
        runs = sorted(p for p in Path("log").glob("*") if (p / "run.json").is_file())
        if not runs:
            raise RdftError("no run under ./log; give the log folder to sync")
        log_dir = runs[-1]
    if direction == "up":
        stats = sync_up(log_dir, remote, settings, include_weights=include_weights)
    else:
        stats = sync_down(log_dir, remote, settings, force=force)
    verb = "sent" if direction == "up" else "fetched"
    click.echo(f"{log_dir.name}: {stats.sent} file(s) {verb} ({stats.bytes:,} bytes), {stats.skipped} unchanged")


@cli.command("report")
@click.argument("log_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: LOG_DIR/report.html.")
@click.pass_context
def report_command(ctx, log_dir: Path, output: Path | None) -> None:
    """One static HTML page for a run (finished or still going): table, score plot, diffs, losses."""
    from rdft.loop.report import write_report

    _settings(ctx)

    click.echo(str(write_report(log_dir, output)))


@cli.command("prompt")
@click.argument("log_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(["proposal", "coding", "feedback"]), required=True)
@click.option("--loop", "loop", type=click.IntRange(min=0), help="The loop (default: the next one).")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def prompt_command(ctx: click.Context, log_dir: Path, stage: str, loop: int | None, as_json: bool) -> None:
    """The exact messages a stage's LLM call sent in a run (or would send next), offline runs too."""
    from rich.console import Console

    from rdft.loop.run import open_run

    run = open_run(_settings(ctx), log_dir.expanduser().resolve(), Console(stderr=True))
    messages, state = run.messages(stage, loop)
    if as_json:
        click.echo(json.dumps({"state": state, "messages": messages}, indent=1, ensure_ascii=False))
        return
    shown = loop if loop is not None else len(run.trace.nodes)
    click.echo(f"# {stage} of loop {shown}: the messages it {'sent' if state == 'sent' else 'would send'}")
    for message in messages:
        click.echo(f"\n===== {message['role']} =====\n{message['content']}")


@cli.group()
def knowledge() -> None:
    """Experience across runs: error fixes and recipes that worked (FT_FILE_PATH/knowledge)."""


@knowledge.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
@click.pass_context
def knowledge_list(ctx: click.Context, as_json: bool) -> None:
    """Every remembered fix and recipe."""
    from rdft.knowledge import listing, store_dir

    settings = _settings(ctx)
    records = listing(settings)
    if as_json:
        for record in records:
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    if not records:
        click.echo(f"the knowledge store ({store_dir(settings)}) is empty")
        return
    for record in records:
        if record["kind"] == "fix":
            click.echo(f"fix     {record['family']:<13} {record['signature'][:100]}  ({record['time']})")
        else:
            click.echo(f"recipe  {record['family']:<13} {record['benchmark']} +{record['gain']:.4g} with "
                       f"{record['base_model']}: {record['hypothesis'][:80]}  ({record['time']})")  # fmt: skip


@knowledge.command("clear")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def knowledge_clear(ctx: click.Context, yes: bool) -> None:
    """Forget every remembered fix and recipe."""
    from rdft.knowledge import clear, listing, store_dir

    settings = _settings(ctx)
    count = len(listing(settings))
    if count and not yes:
        click.confirm(f"remove {count} record(s) from {store_dir(settings)}?", abort=True)
    clear(settings)
    click.echo(f"removed {count} record(s)")


@cli.group()
def benchmarks() -> None:
    """The benchmarks rdft scores."""


@benchmarks.command("list")
@click.pass_context
def benchmarks_list(ctx) -> None:
    """Name, dataset repo, split sizes, primary metric and its direction; then yours."""
    from rdft.evaluation.benchmarks import benchmarks as table

    _settings(ctx)  # yours are under FT_FILE_PATH

    def line(entry) -> str:
        size = f"{entry.split_size}/{entry.split_size}" if entry.split_size else "-"
        return f"{entry.name:<24} {size:>8}  {entry.primary.metric:<20} {entry.primary.direction:<7} {entry.repo}"

    click.echo(f"{'benchmark':<24} {'val/test':>8}  {'primary metric':<20} {'better':<7} dataset")
    for entry in table().values():
        if not entry.custom:
            click.echo(line(entry))
    mine = [entry for entry in table().values() if entry.custom]
    click.echo(f"\nyour benchmarks ({len(mine)}; `rdft benchmarks add NAME --docs FILE ...`)")
    for entry in mine:
        click.echo(line(entry))


@benchmarks.command("add")
@click.argument("name")
@click.option("--docs", required=True, type=click.Path(path_type=Path),
              help="Your evaluation items: JSONL, JSON, CSV or parquet (a file or a folder).")  # fmt: skip
@click.option("--prompt-field", help="The item field that is the prompt.")
@click.option("--prompt-template", help="The prompt as a template of item fields, e.g. 'Review: {text}'.")
@click.option("--answer-field", required=True, help="The item field that holds the gold answer.")
@click.option("--metric", help="exact_match, accuracy, f1, numeric_tolerance or json_field_match.")
@click.option("--answer-key", help="Read the answer from the last JSON object with this key (default: last \\boxed{}).")
@click.option(
    "--tolerance", type=float, help="numeric_tolerance: allowed |answer - gold| as a share of max(1, |gold|)."
)
@click.option("--scorer", type=click.Path(path_type=Path),
              help="A Python file with score(doc, response) -> dict, replacing --metric.")  # fmt: skip
@click.option("--scorer-key", default="score", show_default=True, help="The key of the scorer's dict that is averaged.")
@click.option("--description", help="What the benchmark asks, for the agent.")
@click.pass_context
def benchmarks_add(ctx: click.Context, name: str, docs: Path, prompt_field: str | None, prompt_template: str | None,
                   answer_field: str, metric: str | None, answer_key: str | None, tolerance: float | None,
                   scorer: Path | None, scorer_key: str, description: str | None) -> None:  # fmt: skip
    """Register your own evaluation file as benchmark NAME (seeded validation and hidden test splits)."""
    from rdft.evaluation.custom import add_benchmark

    entry = add_benchmark(
        _settings(ctx), name, docs=docs, prompt_field=prompt_field, prompt_template=prompt_template,
        answer_field=answer_field, metric=metric, answer_key=answer_key, tolerance=tolerance, scorer=scorer,
        scorer_key=scorer_key, description=description,
    )  # fmt: skip
    click.echo(f"{entry.name}: {entry.n} items, {entry.split_size} validation / {entry.split_size} test; "
               f"primary {entry.primary.metric}: {entry.primary.description}")  # fmt: skip


@benchmarks.command("remove")
@click.argument("name")
@click.pass_context
def benchmarks_remove(ctx, name: str) -> None:
    """Remove benchmark NAME that you added."""
    from rdft.evaluation.custom import remove_benchmark

    _settings(ctx)

    click.echo(f"{name}: removed ({remove_benchmark(name)})")


@benchmarks.command("prepare")
@click.argument("names", nargs=-1, required=True)
@click.option("--source", type=click.Path(path_type=Path),
              help="A local copy of the items (JSONL, JSON, parquet, or a folder of JSON files).")  # fmt: skip
@click.option("--force", is_flag=True, help="Prepare again even when a prepared copy exists.")
@click.pass_context
def benchmarks_prepare(ctx: click.Context, names: tuple[str, ...], source: Path | None, force: bool) -> None:
    """Fetch NAMES' evaluation items (or read --source) into FT_FILE_PATH/benchmarks: scoring and
    the leakage guard read them from there, with no Hub access."""
    from rdft.evaluation.benchmarks import get_benchmark
    from rdft.evaluation.items import prepare_items, read_manifest

    for name in names:
        get_benchmark(name)  # every name checked before any work
    if source is not None and len(names) > 1:
        raise RdftError("--source stands for one benchmark; prepare one name at a time with it")
    for name in names:
        path = prepare_items(_settings(ctx), name, source=source, force=force)
        manifest = read_manifest(_settings(ctx), name)
        click.echo(f"{name}: {manifest.n} items from {manifest.source} at {path}")


@cli.command("eval")
@click.option("--model", required=True, help="Base or merged model: a local folder or a Hub id.")
@click.option("--adapter", type=click.Path(path_type=Path), help="A PEFT (LoRA) adapter folder for --model.")
@click.option("--benchmark", required=True, help="See `rdft benchmarks list`.")
@click.option("--split", type=click.Choice(["validation", "test", "all"]), default="validation", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Score only the first N items of the split.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per item (avg@K).")
@click.option("--backend", type=click.Choice(["auto", "hf", "vllm"]), default="auto", show_default=True)
@click.option("--data", type=click.Path(path_type=Path), help="Local docs (file or folder) instead of the Hub repo.")
@click.option("--max-gen-toks", type=click.IntRange(min=1), help="Override the task's generation budget.")
@click.option(
    "--batch-size", help="lm-eval batch size: N, auto or auto:N (default: planned from GPU memory; 4 on CPU)."
)
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="Stream lm-eval's output.")
@click.pass_context
def eval_command(
    ctx, model, adapter, benchmark, split, limit, samples, backend, data, max_gen_toks, batch_size, output, verbose
):
    """Score a checkpoint on a benchmark split with lm-evaluation-harness; writes OUTPUT/summary.json."""
    from rdft.evaluation.run import evaluate

    summary = evaluate(
        _settings(ctx), model=model, adapter=adapter, benchmark=benchmark, output=output, split=split, limit=limit,
        samples=samples, backend=backend, data=data, max_gen_toks=max_gen_toks, batch_size=batch_size, verbose=verbose,
    )  # fmt: skip
    primary = summary["primary"]
    ci = primary["ci95"]
    interval = f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""
    value = "unavailable" if primary["value"] is None else f"{primary['value']:.4f}"
    click.echo(f"{benchmark} {split}: {primary['name']} = {value}{interval} over {summary['n']} items")
    click.echo(f"summary: {output / 'summary.json'}")


@cli.command()
@click.option("--benchmark", required=True, help="See `rdft benchmarks list`.")
@click.option(
    "--docs", type=click.Path(path_type=Path), help="Docs in the benchmark's schema: JSONL, JSON, or a folder."
)
@click.option("--predictions", type=click.Path(path_type=Path), help='JSONL rows {"doc_id" or "id", "response"}.')
@click.option(
    "--log", type=click.Path(path_type=Path), help="A ChemCoTBench authors' log (inputs, gold, json_results)."
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the summary JSON here.")
@click.pass_context
def score(ctx, benchmark, docs, predictions, log, output) -> None:
    """Score saved responses with the benchmark's scorer; prints the summary JSON."""
    from rdft.evaluation.score import score as run_score

    summary = run_score(_settings(ctx), benchmark, docs=docs, predictions=predictions, log=log, output=output)
    click.echo(json.dumps(summary, indent=2))


@cli.group()
def env() -> None:
    """Isolated environments (train, eval, data, or your own) built from lock files."""


@env.command("list")
@click.pass_context
def env_list(ctx: click.Context) -> None:
    """List env specs and the locks that exist for them."""
    manager = _manager(ctx)
    click.echo(f"specs: {manager.specs_dir}")
    for spec in manager.specs():
        locks = []
        if spec.conda_lock_path.is_file():
            locks.append(spec.conda_lock_path.name)
        locks += [spec.pip_lock_path(v).name for v in spec.variants if spec.pip_lock_path(v).is_file()]
        click.echo(f"{spec.name:<12} {manager.backend(spec):<6} locks: {', '.join(locks) or 'none'}")


@env.command("status")
@click.pass_context
def env_status(ctx: click.Context) -> None:
    """Show each env's backend, path, lock match, size and creation time."""
    for row in _manager(ctx).status():
        size = f"{row.size_bytes / 2**20:.0f} MiB" if row.size_bytes is not None else "-"
        created = row.created.strftime("%Y-%m-%d %H:%M UTC") if row.created else "-"
        click.echo(
            f"{row.name:<12} {row.backend:<6} {row.variant:<5} {size:>10}  {created:<20} {row.state}  {row.path}"
        )


@env.command("create")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.pass_context
def env_create(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Create each env NAME from its locks (nothing to do when it exists and its lock is unchanged)."""
    for handle in _manager(ctx).ensure_all(list(names)):
        click.echo(str(handle.link))


@env.command("adopt")
@click.argument("name")
@click.option("--python", "python", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The interpreter to use as env NAME, e.g. /opt/cluster/py311/bin/python.")  # fmt: skip
@click.option("--allow-missing", multiple=True, metavar="PACKAGE",
              help="A package of the spec the runs will not use (repeatable), e.g. deepspeed on one GPU.")  # fmt: skip
@click.pass_context
def env_adopt(ctx: click.Context, name: str, python: Path, allow_missing: tuple[str, ...]) -> None:
    """Use a prebuilt interpreter as env NAME (checked against the spec; never rebuilt)."""
    env, notes = _manager(ctx).adopt(name, python, allow_missing=allow_missing)
    for note in notes:
        click.echo(f"rdft: note: {note}", err=True)
    click.echo(f"{env.name}: adopted {env.python}")


@env.command("rebuild")
@click.argument("name", required=False)
@click.option("--all", "all_envs", is_flag=True, help="Rebuild every env that exists.")
@click.pass_context
def env_rebuild(ctx: click.Context, name: str | None, all_envs: bool) -> None:
    """Build env NAME (or all existing envs) again from its locks."""
    manager = _manager(ctx)
    if bool(name) == all_envs:
        raise RdftError("give an env NAME or --all (not both); see `rdft env list`")
    names = [name] if name else [s.name for s in manager.specs() if manager.current(s.name)]
    if not names:
        click.echo("rdft: no envs exist yet; nothing to rebuild", err=True)
    for each in names:
        click.echo(str(manager.rebuild(each).link))


@env.command("lock")
@click.argument("name")
@click.option("--conda-only", is_flag=True, help="Solve only the conda lock.")
@click.option("--pip-only", is_flag=True, help="Resolve only the pip locks (cpu and cuda).")
@click.pass_context
def env_lock(ctx: click.Context, name: str, conda_only: bool, pip_only: bool) -> None:
    """Solve env NAME's conda lock (py-rattler) and pip locks (uv) and write them next to its spec."""
    if conda_only and pip_only:
        raise RdftError("--conda-only and --pip-only exclude each other; give at most one")
    for path in _manager(ctx).lock(name, conda_part=not pip_only, pip_part=not conda_only):
        click.echo(f"wrote {path}")


@env.command("remove")
@click.argument("name")
@click.pass_context
def env_remove(ctx: click.Context, name: str) -> None:
    """Delete env NAME."""
    manager = _manager(ctx)
    manager.spec(name)  # a typo gets the "did you mean" error, not a silent no-op
    if manager.remove(name):
        click.echo(f"removed env {name}")
    else:
        click.echo(f"rdft: env {name} does not exist; nothing removed", err=True)


@env.command("run")
@click.argument("name")
@click.argument("command", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Kill after this many seconds (exit 124).")
@click.option("--cwd", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Working directory.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the output here.")
@click.option("--with-secrets", is_flag=True, help="Pass OPENAI_API_KEY and HF_TOKEN to the command.")
@click.pass_context
def env_run(ctx, name, command, timeout, cwd, log_path, with_secrets) -> None:
    """Run COMMAND inside env NAME (what `conda run` does): rdft env run train -- python -V"""

    handle = _manager(ctx).ensure(name)
    settings = _settings(ctx)
    extra = settings.secrets() if with_secrets else {}
    if name == "data":  # data scripts get the toolkit (import rdft_data) and the model pools
        from rdft.datasets.toolkit import data_script_environment

        extra.update(data_script_environment(settings, with_secrets=with_secrets))
    result = handle.run(list(command), extra_env=extra, timeout=timeout, cwd=cwd, log_path=log_path)
    if result.timed_out:
        click.echo(f"rdft: timed out after {timeout:g} s; killed the command and its children", err=True)
    if result.oom:
        click.echo("rdft: the command ran out of GPU memory (CUDA OOM)", err=True)
    sys.exit(result.returncode)


def _first_line(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


def _exit(code: int) -> None:
    """Flush and leave without interpreter finalisation: py-rattler's background (tokio) threads
    can abort a finalising interpreter (seen as SIGABRT after a successful `env lock` under load)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    try:
        returned = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rdft: aborted", err=True)
        _exit(130)
    except click.exceptions.NoArgsIsHelpError as error:  # a bare `rdft` or `rdft env`: the help, as click shows it
        error.show()
        _exit(error.exit_code)
    except click.UsageError as error:  # click's own three lines, as one that names the help
        where = error.ctx.command_path if error.ctx else "rdft"
        click.echo(f"rdft: error: {error.format_message().rstrip('.')}; see `{where} --help`", err=True)
        _exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"rdft: error: {error.format_message()}", err=True)
        _exit(error.exit_code)
    except EnvBuildError as error:
        if error.tail:
            click.echo(error.tail.rstrip(), err=True)
        click.echo(f"rdft: error: {error}", err=True)
        _exit(error.exit_code)
    except RdftError as error:
        click.echo(f"rdft: error: {error}", err=True)
        _exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("rdft: interrupted", err=True)
        _exit(130)
    except SystemExit as done:  # `rdft env run` passes its command's exit code this way
        _exit(done.code if isinstance(done.code, int) else 0 if done.code is None else 1)
    _exit(returned if isinstance(returned, int) else 0)
