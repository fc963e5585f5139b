"""`rdft batch tasks.json`: several `rdft run`s side by side on one host, each on its own GPUs.

The tasks file is the user's guide's format:

    {"tasks": [{"model": "Qwen/Qwen2.5-7B-Instruct", "benchmark": "aime25", "gpus": "0,1",
                "timeout": "12h", "benchmark_description": "...", "loop_n": 10}]}

Each task is its own `rdft run` process (own CUDA_VISIBLE_DEVICES, own log folder under the
batch folder, output in `<log>.out`). No sleeps: envs shared by the tasks are built once, by
whichever task gets the env manager's file lock first. A live table shows each task's loop,
stage, best score and elapsed time. Ctrl-C stops every task (each stops its children) and
prints how to resume them.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rdft.errors import RdftError, did_you_mean
from rdft.evaluation.benchmarks import get_benchmark
from rdft.loop.run import STOPPED_EXIT_CODE, parse_duration


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key (lop_n) must not be dropped silently

    model: str
    benchmark: str
    gpus: str = ""
    timeout: str | None = None
    benchmark_description: str | None = None
    loop_n: int | None = Field(None, ge=1)

    @field_validator("gpus", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return (
            ",".join(str(v) for v in value)
            if isinstance(value, list)
            else str(value)
            if isinstance(value, int)
            else value
        )

    def gpu_list(self) -> list[int]:
        parts = [p.strip() for p in self.gpus.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise RdftError(f'task {self.model}/{self.benchmark}: gpus {self.gpus!r} must be indices like "0,1"')
        return [int(p) for p in parts]


class TasksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[Task] = Field(min_length=1)


def gpu_count() -> int:
    """GPUs this host has, as nvidia-smi lists them (0 without it)."""
    from rdft.hardware import host_hardware

    return host_hardware()["gpu_count"]


def load_tasks(path: Path) -> list[Task]:
    try:
        raw = json.loads(path.read_text())
    except OSError:
        raise RdftError(f'cannot read {path}; give a tasks file like {{"tasks": [...]}}') from None
    except json.JSONDecodeError as error:
        raise RdftError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    try:
        tasks = TasksFile.model_validate(raw).tasks
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            key = str(first["loc"][-1])
            known = list(Task.model_fields) if len(first["loc"]) > 1 else list(TasksFile.model_fields)
            raise RdftError(
                f"{path}: {where}: unknown key {key!r}; {did_you_mean(key, known)}a task has {', '.join(known)}"
            ) from None
        raise RdftError(f"{path}: {where}: {first['msg']}; see `rdft batch --help` for the format") from None
    available = gpu_count()
    owner: dict[int, int] = {}
    for number, task in enumerate(tasks, 1):
        get_benchmark(task.benchmark)
        if task.timeout:
            parse_duration(task.timeout)
        gpus = task.gpu_list()
        for gpu in gpus:
            if gpus.count(gpu) > 1:
                raise RdftError(f'task {number}: GPU {gpu} is listed twice in gpus "{task.gpus}"; list each GPU once')
            if gpu in owner:
                raise RdftError(f"tasks {owner[gpu]} and {number} both use GPU {gpu}; give each task its own GPUs")
            owner[gpu] = number
    for gpu, number in sorted(owner.items()):
        if gpu >= available:
            raise RdftError(f"task {number}: GPU {gpu} does not exist; this host has {available} GPU(s)")
    return tasks


def task_command(task: Task, no_sync: bool) -> list[str]:
    command = [sys.executable, "-m", "rdft", "run", "--base-model", task.model, "--benchmark", task.benchmark]
    if task.benchmark_description:
        command += ["--benchmark-description", task.benchmark_description]
    if task.loop_n:
        command += ["--loop-n", str(task.loop_n)]
    if task.timeout:
        command += ["--timeout", task.timeout]
    if no_sync:
        command.append("--no-sync")
    return command


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:60]


def progress_of(log_dir: Path) -> tuple[str, str, str]:
    """(loop, stage, best score) as the run's files tell them."""
    try:
        summary = json.loads((log_dir / "summary.json").read_text())
        run = json.loads((log_dir / "run.json").read_text())
    except (OSError, ValueError):
        return "-", "starting", "-"
    loops = sorted(log_dir.glob("Loop_*"), key=lambda p: int(p.name.split("_")[1]))
    stage = "baseline" if not loops else "-"
    if loops:
        current = loops[-1]
        stage = next((s for s in ("feedback", "running", "coding", "direct_exp_gen") if (current / s).is_dir()), "-")
    best = summary.get("best") or {}
    score = best.get("validation", (summary.get("baseline") or {}).get("validation"))
    loop = f"{len(loops)}/{run.get('loop_n', '?')}"
    return loop, stage, "-" if score is None else f"{score:.4g}"


def run_batch(path: Path, *, dry_run: bool, no_sync: bool, max_parallel: int | None, console: Console) -> int:
    tasks = load_tasks(path)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d_%H-%M-%S")
    root = (Path("log") / f"batch-{stamp}").resolve()
    plans = []
    for number, task in enumerate(tasks, 1):
        log_dir = root / f"{number}-{_slug(task.model)}-{task.benchmark}"
        plans.append((number, task, log_dir, task_command(task, no_sync)))
    if dry_run:
        for number, task, log_dir, command in plans:
            console.print(
                f"task {number}: CUDA_VISIBLE_DEVICES={task.gpus!r} LOG_TRACE_PATH={log_dir}", highlight=False
            )
            console.print("  " + " ".join(command[1:]).replace("-m rdft", "rdft", 1), highlight=False, markup=False)
        console.print(f"dry run: {len(plans)} task(s), nothing started")
        return 0
    limit = max_parallel or len(plans)
    waiting, running, finished = list(plans), {}, {}
    started: dict[int, float] = {}

    def launch(plan) -> None:
        number, task, log_dir, command = plan
        log_dir.parent.mkdir(parents=True, exist_ok=True)
        environ = {**os.environ, "CUDA_VISIBLE_DEVICES": task.gpus, "LOG_TRACE_PATH": str(log_dir)}
        output = open(log_dir.with_suffix(".out"), "w")  # the child writes it until it ends
        running[number] = (
            subprocess.Popen(
                command,
                env=environ,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            ),
            output,
            plan,
        )
        started[number] = time.monotonic()

    def table() -> Table:
        view = Table(title=f"rdft batch ({root})")
        for column in ("task", "model", "benchmark", "gpus", "loop", "stage", "best", "elapsed", "state"):
            view.add_column(column)
        for number, task, log_dir, _ in plans:
            loop, stage, best = progress_of(log_dir)
            elapsed = f"{time.monotonic() - started[number]:.0f}s" if number in started else "-"
            state = "running" if number in running else f"exit {finished[number]}" if number in finished else "waiting"
            view.add_row(str(number), task.model, task.benchmark, task.gpus or "cpu", loop, stage, best, elapsed, state)
        return view

    try:
        with Live(table(), console=console, refresh_per_second=2, transient=False) as live:
            while waiting or running:
                while waiting and len(running) < limit:
                    launch(waiting.pop(0))
                for number, (proc, output, _plan) in list(running.items()):
                    if proc.poll() is not None:
                        output.close()
                        finished[number] = proc.returncode
                        del running[number]
                live.update(table())
                time.sleep(0.5)
            live.update(table())
    except KeyboardInterrupt:
        console.print("rdft: stopping every task (each stops its own children)")
        for proc, _output, _plan in running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for number, (proc, output, plan) in running.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            output.close()
            console.print(f"  task {number}: resume with `rdft run --resume {plan[2]}`", highlight=False)
        return 130
    failed = [n for n, code in finished.items() if code not in (0, STOPPED_EXIT_CODE)]
    for number, _task, log_dir, _ in plans:
        code = finished[number]
        if code == 0:
            state = "ok"
        elif code == STOPPED_EXIT_CODE:  # its timeout ran out: a pause, not a failure
            state = f"stopped at its timeout (resume with `rdft run --resume {log_dir} --timeout DURATION`)"
        else:
            state = f"FAILED (exit {code}; see {log_dir.with_suffix('.out')})"
        console.print(f"task {number}: {state}; log {log_dir}", highlight=False)
    if failed:
        return 1
    return STOPPED_EXIT_CODE if STOPPED_EXIT_CODE in finished.values() else 0
