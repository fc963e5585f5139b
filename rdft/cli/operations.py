"""Operations on runs: `rdft batch`, `rdft logs sync`, `rdft report`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rdft.cli.base import cli, settings_of, stop_on_ctrl_c_and_sigterm
from rdft.errors import RdftError


@cli.command("batch")
@click.argument("tasks_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan (with slurm: every sbatch script); start nothing.")
@click.option("--no-sync", is_flag=True, help="Do not sync the tasks' logs to RDFT_REMOTE.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Run at most N tasks at once (local; default: all).")
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="local: processes on this host; slurm: one sbatch job per task.",
)
@click.option("--partition", help="slurm: the partition (a task's own `partition` wins).")
@click.option("--account", help="slurm: the account to charge.")
@click.option("--qos", help="slurm: the QOS.")
@click.option(
    "--sbatch",
    "sbatch_lines",
    multiple=True,
    metavar="OPTION",
    help="slurm: an extra #SBATCH option for every job, e.g. --sbatch=--constraint=h100.",
)
@click.option(
    "--cpus",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="slurm: CPUs per GPU (per job for a CPU task).",
)
@click.option("--mem-per-gpu", help="slurm: memory per GPU, e.g. 120G.")
@click.option(
    "--time-margin",
    default="30m",
    show_default=True,
    help="slurm: added to a task's timeout for the job's --time (start-up, the last save).",
)
@click.option("--requeue", is_flag=True, help="slurm: a job that reaches its limit or is pre-empted requeues itself.")
@click.option("--cancel-on-exit", is_flag=True, help="slurm: Ctrl-C cancels the jobs without asking.")
@click.option("--shared-ok", is_flag=True, help="slurm: FT_FILE_PATH and ./log are on storage every node mounts.")
@click.pass_context
def batch_command(
    ctx,
    tasks_file: Path,
    dry_run: bool,
    no_sync: bool,
    max_parallel: int | None,
    executor: str,
    partition,
    account,
    qos,
    sbatch_lines,
    cpus,
    mem_per_gpu,
    time_margin,
    requeue,
    cancel_on_exit,
    shared_ok,
) -> None:
    """Run the tasks of TASKS_FILE side by side, each as its own `rdft run`: on this host's GPUs, or
    as Slurm jobs (--executor slurm)."""
    import signal

    settings_of(ctx)  # FT_FILE_PATH checked here, not in each task (or each node's job)

    from rich.console import Console

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops the batch, even from a background job

    from rdft.batch import SlurmOptions, run_batch, run_slurm_batch
    from rdft.batch.tasks import duration

    console = Console(soft_wrap=True)  # paths and commands stay whole in logs
    if executor == "slurm":
        options = SlurmOptions(
            partition=partition,
            account=account,
            qos=qos,
            sbatch=list(sbatch_lines),
            cpus=cpus,
            mem_per_gpu=mem_per_gpu,
            time_margin_s=duration(time_margin, "--time-margin"),
            requeue=requeue,
            cancel_on_exit=cancel_on_exit,
            shared_ok=shared_ok,
        )
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

    settings = settings_of(ctx)
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
@click.option(
    "--serve", is_flag=True, help="Serve the run folder over HTTP, read-only, for a browser elsewhere (Ctrl-C stops)."
)
@click.option("--port", type=click.IntRange(0, 65535), help="--serve: the port (default 8000; 0: any free one).")
@click.option("--bind", help="--serve: the address (default 127.0.0.1; one others can reach needs --allow-remote).")
@click.option("--allow-remote", is_flag=True, help="--serve: allow a --bind address other hosts reach (no password).")
@click.pass_context
def report_command(
    ctx, log_dir: Path, output: Path | None, serve: bool, port: int | None, bind: str | None, allow_remote: bool
) -> None:
    """One HTML page for a run (finished or still going): table, score plot, timeline, diffs, losses.
    With --serve, the run folder over HTTP on 127.0.0.1, for a browser that forwards the port."""
    from rdft.loop.report import serve as serve_folder
    from rdft.loop.report import write_report

    settings_of(ctx)
    if not serve:
        options = (("--port", port), ("--bind", bind), ("--allow-remote", allow_remote or None))
        given = [name for name, value in options if value is not None]
        if given:
            raise RdftError(f"{given[0]} goes with --serve; add --serve to serve the run folder")
        click.echo(str(write_report(log_dir, output)))
        return
    if output is not None:
        raise RdftError("--serve serves LOG_DIR/report.html; drop --output")
    stop_on_ctrl_c_and_sigterm()
    serve_folder(log_dir, port=8000 if port is None else port, bind=bind or "127.0.0.1", allow_remote=allow_remote,
                 echo=click.echo)  # fmt: skip
