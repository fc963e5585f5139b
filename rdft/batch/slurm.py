"""`rdft batch --executor slurm`: each task one sbatch job, the envs built by one job first."""

from __future__ import annotations

import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rdft import slurm
from rdft.batch.tasks import Task, beside, load_tasks, progress_of, report_link, slug, task_command
from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.loop.budget import parse_duration
from rdft.loop.run import RUN_ENVS, STOPPED_EXIT_CODE


class SlurmOptions(BaseModel):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: list[str] = []  # extra `#SBATCH` options for every task
    cpus: int = 8  # per GPU (per task when it has none)
    mem_per_gpu: str | None = None
    time_margin_s: float = 1800.0  # beyond a task's timeout: start-up, the last save
    requeue: bool = False
    cancel_on_exit: bool = False
    shared_ok: bool = False


def signal_lead(limit_s: float) -> int:
    """Seconds before the time limit at which Slurm sends TERM, so rdft run stops resumably
    (a step in flight is redone on resume): 5 minutes, a tenth of a short job."""
    return int(max(30, min(300, limit_s / 10)))


def sbatch_script(
    number: int, task: Task, log_dir: Path, command: list[str], options: SlurmOptions, variant: str
) -> str:
    """The job script of one task: plain sbatch, readable and resubmittable by hand."""
    gpus = len(task.gpu_list())
    limit = (
        parse_duration(task.time)
        if task.time
        else (parse_duration(task.timeout) + options.time_margin_s if task.timeout else None)
    )
    header = [
        f"--job-name=rdft-{number}-{task.benchmark}",
        f"--output={beside(log_dir, '.out')}",
        "--open-mode=append",  # a resubmitted job adds to the same output
        f"--chdir={Path.cwd()}",  # the .env a run reads sits where the batch was started
        "--nodes=1",
        "--ntasks=1",
    ]
    if gpus:
        header += [f"--gpus={gpus}", f"--cpus-per-gpu={options.cpus}"]
        if options.mem_per_gpu:
            header.append(f"--mem-per-gpu={options.mem_per_gpu}")
    else:
        header.append(f"--cpus-per-task={options.cpus}")
    if limit is not None:
        header += [f"--time={slurm.slurm_time(limit)}", f"--signal=B:TERM@{signal_lead(limit)}"]
    for key in ("partition", "account", "qos"):
        value = getattr(task, key) or getattr(options, key)
        if value:
            header.append(f"--{key}={value}")
    if options.requeue:
        header.append("--requeue")
    header += [line if line.startswith("--") else f"--{line}" for line in (*options.sbatch, *task.sbatch)]
    rdft = slurm.rdft_command()
    fresh = " ".join(shlex.quote(part) for part in command[3:])  # after `python -m rdft`
    extra = " --no-sync" if "--no-sync" in command else ""
    requeue = (
        '    scontrol requeue "$SLURM_JOB_ID"  # --requeue: back in the queue; the run resumes\n'
        if options.requeue
        else ""
    )
    return (
        "#!/bin/bash\n"
        f"# Written by `rdft batch --executor slurm` (task {number}).\n"
        f"# Resubmit with `sbatch {beside(log_dir, '.sbatch')}`: it resumes the run when its log holds one.\n"
        + "".join(f"#SBATCH {line}\n" for line in header)
        + "set -uo pipefail\n"
        + "".join(f"{line}\n" for line in slurm.environment_lines(variant))
        + f"export LOG_TRACE_PATH={shlex.quote(str(log_dir))}\n"
        + f"if [ -f {shlex.quote(str(log_dir / 'run.json'))} ]; then\n"
        + f"    set -- {rdft} run --resume {shlex.quote(str(log_dir))}{extra}\n"
        + "else\n"
        + f"    set -- {rdft} {fresh}\n"
        + "fi\n"
        + 'echo "rdft batch: job $SLURM_JOB_ID on $(hostname): $*"\n'
        + '"$@" &\nchild=$!\n'
        + "on_term() {  # Slurm's TERM before the limit (or a pre-emption): the run stops resumably\n"
        + '    kill -TERM "$child" 2>/dev/null\n    wait "$child"\n'
        + requeue
        + "    exit 143\n}\n"
        + "trap on_term TERM\n"
        + 'wait "$child"\n'
    )


ENV_JOB_TIME_S = 3600.0  # building the three envs from their locks: minutes with uv, an hour is ample


def envs_script(root: Path, names: list[str], tasks: list[Task], options: SlurmOptions, variant: str) -> str:
    """The env job: builds the envs a run needs, once, before any task starts. Task jobs on
    several nodes would otherwise build a missing env side by side, and whether the env
    manager's file lock holds between nodes depends on the shared file system (NFS: yes,
    Lustre: only mounted with `flock`); one job first holds on any of them."""
    header = [
        "--job-name=rdft-envs",
        f"--output={root / 'envs.out'}",
        "--open-mode=append",
        f"--chdir={Path.cwd()}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={options.cpus}",  # uv unpacks in parallel; no GPU needed to install CUDA wheels
        f"--time={slurm.slurm_time(ENV_JOB_TIME_S)}",
    ]
    for key in ("partition", "account", "qos"):  # where the tasks run: the same file systems and modules
        value = getattr(options, key) or next((getattr(t, key) for t in tasks if getattr(t, key)), None)
        if value:
            header.append(f"--{key}={value}")
    header += [line if line.startswith("--") else f"--{line}" for line in options.sbatch]
    return (
        "#!/bin/bash\n"
        "# Written by `rdft batch --executor slurm`: builds the envs the tasks need; every task job\n"
        "# waits for it (sbatch --dependency=afterok:<this job>).\n"
        + "".join(f"#SBATCH {line}\n" for line in header)
        + "set -euo pipefail\n"
        + "".join(f"{line}\n" for line in slurm.environment_lines(variant))
        + 'echo "rdft batch: env job $SLURM_JOB_ID on $(hostname)"\n'
        + f"exec {slurm.rdft_command()} env create {' '.join(names)}\n"
    )


def envs_to_build(settings, variant: str) -> list[str]:
    """The envs a run needs that are not ready for the jobs' variant (adopted ones count as ready)."""
    from rdft.envs import EnvManager

    manager = EnvManager(settings.model_copy(update={"rdft_torch_variant": variant}))
    return [name for name in RUN_ENVS if not manager.ready(name)]


def run_slurm_batch(path: Path, *, dry_run: bool, no_sync: bool, options: SlurmOptions, console: Console) -> int:
    from rdft.settings import get_settings

    tasks = load_tasks(path, local=False)
    settings = get_settings()
    variant = slurm.jobs_variant(settings.rdft_torch_variant, sum(len(task.gpu_list()) for task in tasks))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d_%H-%M-%S")
    root = (Path("log") / f"batch-{stamp}").resolve()
    plans = []
    for number, task in enumerate(tasks, 1):
        log_dir = root / f"{number}-{slug(task.model)}-{task.benchmark}"
        script = sbatch_script(number, task, log_dir, task_command(task, no_sync), options, variant)
        plans.append((number, task, log_dir, script))
    missing = envs_to_build(settings, variant)
    envs = envs_script(root, missing, tasks, options, variant) if missing else None
    if dry_run:
        if envs is None:
            console.print(
                f"# envs {', '.join(RUN_ENVS)}: ready ({variant}) in {settings.envs_dir}; no env job",
                highlight=False,
                markup=False,
            )
        else:
            console.print(
                f"# envs: {root / 'envs.sbatch'} (every task job waits for it: --dependency=afterok)",
                highlight=False,
                markup=False,
            )
            console.print(envs, highlight=False, markup=False)
        for number, _task, log_dir, script in plans:
            console.print(f"# task {number}: {beside(log_dir, '.sbatch')}", highlight=False, markup=False)
            console.print(script, highlight=False, markup=False)
        console.print(
            f"dry run: {len(plans) + (envs is not None)} sbatch script(s), nothing submitted", highlight=False
        )
        return 0
    slurm.require_slurm()
    if any(c.isspace() for c in str(root)):  # #SBATCH --output=/--chdir= values end at a space
        raise RdftError(
            f"{root.parent} has a space in its path, which #SBATCH lines cannot hold; "
            "start the batch from a folder whose path has none"
        )
    for note in slurm.check_shared(
        {"FT_FILE_PATH": settings.ft_file_path.expanduser(), "the log folder": root.parent}, shared_ok=options.shared_ok
    ):
        console.print(f"rdft: note: {note}", highlight=False)
    root.mkdir(parents=True, exist_ok=True)
    env_job, after, submitted = None, [], []
    jobs: dict[int, str] = {}
    try:
        if envs is not None:
            write_atomic(root / "envs.sbatch", envs)
            # Held until every task is queued behind it: sbatch refuses `afterok` on a job that has
            # already failed, which a quick failure would otherwise race with.
            env_job = slurm.submit(root / "envs.sbatch", ["--hold"])
            submitted.append(env_job)
            # Not in the task scripts: resubmitted by hand, they must not wait for a job long gone.
            # An env job that fails cancels the tasks instead of leaving them pending for ever.
            after = [f"--dependency=afterok:{env_job}", "--kill-on-invalid-dep=yes"]
        for number, _task, log_dir, script in plans:
            script_path = beside(log_dir, ".sbatch")
            write_atomic(script_path, script)
            jobs[number] = slurm.submit(script_path, after)
            submitted.append(jobs[number])
        if env_job:
            slurm.release(env_job)
    except (RdftError, OSError, subprocess.SubprocessError):
        slurm.cancel(submitted)  # all or nothing: no half a batch left in the queue
        raise
    if env_job:
        console.print(
            f"rdft: env job {env_job} builds {', '.join(missing)} ({variant}); the tasks wait for it", highlight=False
        )
    listed = {"envs": env_job} if env_job else {}
    write_atomic(root / "jobs.json", json.dumps({**listed, **{str(n): j for n, j in jobs.items()}}) + "\n")
    every_job = [*([env_job] if env_job else []), *jobs.values()]
    started = time.monotonic()
    seen: dict[str, slurm.JobState] = {}

    def where(job: str) -> str:
        state = seen.get(job, slurm.JobState("PENDING"))
        text = f"{state.state} ({state.reason})" if state.reason else state.state
        return text + (f" on {state.node}" if state.node and state.state == "RUNNING" else "")

    def table() -> Table:
        view = Table(title=f"rdft batch on Slurm ({root})")
        for column in ("task", "job", "benchmark", "gpus", "slurm", "loop", "stage", "best", "elapsed"):
            view.add_column(column)
        view.add_column("report", overflow="fold")  # each task's live report, a link where the terminal has them
        if env_job:
            view.add_row(
                "envs",
                env_job,
                "-",
                "-",
                where(env_job),
                "-",
                f"building {', '.join(missing)}",
                "-",
                f"{time.monotonic() - started:.0f}s",
                "-",
            )
        for number, task, log_dir, _ in plans:
            loop, stage, best = progress_of(log_dir)
            view.add_row(
                str(number),
                jobs[number],
                task.benchmark,
                str(len(task.gpu_list()) or "cpu"),
                where(jobs[number]),
                loop,
                stage,
                best,
                f"{time.monotonic() - started:.0f}s",
                report_link(log_dir),
            )
        return view

    try:
        with Live(table(), console=console, refresh_per_second=1, transient=False) as live:
            while True:
                # Only jobs not yet seen final: without accounting, Slurm forgets a finished job
                # after MinJobAge (5 min), and its state would turn UNKNOWN.
                seen.update(slurm.states([job for job in every_job if job not in seen or not seen[job].final]))
                live.update(table())
                if all(state.final for state in seen.values()) and len(seen) == len(every_job):
                    break
                time.sleep(2)
    except KeyboardInterrupt:
        active = [job for job in every_job if not seen.get(job, slurm.JobState("PENDING")).final]
        question = f"cancel the {len(active)} job(s) still queued or running?"
        cancel = options.cancel_on_exit or (sys.stdin.isatty() and click_confirm(question))
        if cancel:
            slurm.cancel(active)
            wait_until_gone(active)
            console.print(f"rdft: cancelled job(s) {', '.join(active)}", highlight=False)
        else:
            console.print(
                f"rdft: the jobs go on; follow them with `squeue -j {','.join(active)}`, "
                f"cancel them with `scancel {' '.join(active)}`",
                highlight=False,
            )
        if cancel and env_job in active:  # resubmitted tasks would each build the envs: the env job first
            console.print(
                f"  envs: not built; `sbatch --parsable {root / 'envs.sbatch'}` first, then each task "
                "with `sbatch --dependency=afterok:<that job>`",
                highlight=False,
            )
        for number, _task, log_dir, _ in plans:
            console.print(f"  task {number}: resume with `sbatch {beside(log_dir, '.sbatch')}`", highlight=False)
        return 130
    failed = False
    console.print()
    envs_failed = env_job is not None and not (seen[env_job].state == "COMPLETED" and seen[env_job].exit_code == 0)
    if envs_failed:
        console.print(
            f"env job {env_job}: {seen[env_job].state} (exit {seen[env_job].exit_code}); see {root / 'envs.out'}",
            highlight=False,
        )
    for number, _task, log_dir, _ in plans:
        state = seen[jobs[number]]
        if envs_failed and not (log_dir / "run.json").is_file():  # Slurm cancelled it: its dependency failed
            verdict = (
                f"not run: env job {env_job} ended {seen[env_job].state} (fix it, then "
                f"`rdft batch {path} --executor slurm` again)"
            )
            failed = True
        elif state.state == "COMPLETED" and state.exit_code in (0, None):
            verdict = "ok"
        elif state.exit_code == STOPPED_EXIT_CODE:
            verdict = f"stopped at its timeout (resume with `rdft run --resume {log_dir} --timeout DURATION`)"
        elif state.state in ("TIMEOUT", "PREEMPTED", "CANCELLED") or state.exit_code == 143:
            verdict = f"{state.state.lower()} (resume: `sbatch --time=HH:MM:SS {beside(log_dir, '.sbatch')}`)"
            failed = True
        else:
            verdict = f"FAILED ({state.state}, exit {state.exit_code}; see {beside(log_dir, '.out')})"
            failed = True
        console.print(
            f"task {number}: job {jobs[number]} {verdict}; log {log_dir}; report {log_dir / 'report.html'}",
            highlight=False,
        )
    return 1 if failed else 0


def click_confirm(question: str) -> bool:
    import click

    return click.confirm(question, default=False)


def wait_until_gone(job_ids: list[str], timeout: float = 120.0) -> None:
    """After scancel: until squeue no longer lists the jobs (their runs have stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i"], capture_output=True, text=True)
        if not set(listed.stdout.split()) & set(job_ids):
            return
        time.sleep(1)
