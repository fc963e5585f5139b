"""The tasks file of `rdft batch`: its schema, each task's `rdft run` command, and its progress
read from the run's own log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.style import Style
from rich.text import Text

from rdft.datasets.registry import get_dataset
from rdft.errors import RdftError, did_you_mean
from rdft.evaluation.benchmarks import get_benchmark
from rdft.loop.budget import parse_duration
from rdft.loop.layout import STAGES, RunLayout


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key (lop_n) must not be dropped silently

    model: str
    benchmark: str
    gpus: str = ""
    timeout: str | None = None
    benchmark_description: str | None = None
    datasets: list[str] = []  # training datasets (`rdft run --dataset`); default: the run chooses
    loop_n: int | None = Field(None, ge=1)
    # Scoring caps for a quick sweep (`rdft run --eval-limit/--samples/--max-gen-toks`): the scores
    # are marked non-standard, as the run's own flags mark them.
    eval_limit: int | None = Field(None, ge=1)
    samples: int | None = Field(None, ge=1, le=64)
    max_gen_toks: int | None = Field(None, ge=1)
    # Slurm only (`--executor slurm`): per-task overrides of the command-line options.
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # the job's time limit (default: timeout + the margin)
    sbatch: list[str] = []  # extra `#SBATCH` options, e.g. ["--constraint=h100"]

    @field_validator("datasets", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """One dataset as a string, several as a list (a user benchmark's own training data)."""
        return [value] if isinstance(value, str) else value

    @field_validator("gpus", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        """GPU indices as "0,1" or [0, 1]. A bare integer is refused: `4` read as index 4 gave a
        Slurm job one GPU where the user meant four."""
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f'{value} is ambiguous: give GPU indices, "{",".join(map(str, range(max(value, 1))))}" for {value} '
                f'GPU(s) or "{value}" for the GPU with that index (on Slurm a task gets as many GPUs as it lists)'
            )
        return ",".join(str(v) for v in value) if isinstance(value, list) else value

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


def duration(text: str, where: str) -> float:
    """parse_duration's seconds, its refusal naming `where` the value came from (a task's key,
    --time-margin): parse_duration's own names --timeout, which the user may not have given."""
    try:
        return parse_duration(text)
    except RdftError:
        raise RdftError(f"{where} {text!r} is not a positive duration; use e.g. 12h, 90m or 3600") from None


def load_tasks(path: Path, *, local: bool = True) -> list[Task]:
    try:
        raw = json.loads(path.read_text())
    except OSError:
        raise RdftError(f'cannot read {path}; give a tasks file like {{"tasks": [...]}}') from None
    except UnicodeDecodeError as error:  # a binary file given by mistake
        raise RdftError(f"{path} is not UTF-8 text (byte {error.start}); give a JSON tasks file") from None
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
        message = first["msg"].removeprefix("Value error, ")
        raise RdftError(f"{path}: {where}: {message}; see `rdft batch --help` for the format") from None
    available = gpu_count() if local else 0
    owner: dict[int, int] = {}
    for number, task in enumerate(tasks, 1):
        get_benchmark(task.benchmark)
        for dataset in task.datasets:
            get_dataset(dataset)
        if task.timeout:
            duration(task.timeout, f"{path}: task {number}: timeout")
        gpus = task.gpu_list()
        if task.time:
            duration(task.time, f"{path}: task {number}: time")
        for gpu in gpus:
            if gpus.count(gpu) > 1:
                raise RdftError(f'task {number}: GPU {gpu} is listed twice in gpus "{task.gpus}"; list each GPU once')
            if not local:  # under Slurm the indices only count the GPUs: each job gets its own
                continue
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
    for dataset in task.datasets:
        command += ["--dataset", dataset]
    if task.loop_n:
        command += ["--loop-n", str(task.loop_n)]
    for flag, value in (("--eval-limit", task.eval_limit), ("--samples", task.samples),
                        ("--max-gen-toks", task.max_gen_toks)):  # fmt: skip
        if value:
            command += [flag, str(value)]
    if task.timeout:
        command += ["--timeout", task.timeout]
    if no_sync:
        command.append("--no-sync")
    return command


def beside(log_dir: Path, suffix: str) -> Path:
    """A file next to a task's log folder (its output, its sbatch script). Not `with_suffix`: a
    folder named after Qwen2.5-7B has a dot that is not a suffix."""
    return log_dir.parent / f"{log_dir.name}{suffix}"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:60]


def progress_of(log_dir: Path) -> tuple[str, str, str]:
    """(loop, stage, best score) as the run's files tell them."""
    try:
        summary = json.loads((log_dir / "summary.json").read_text())
        run = json.loads((log_dir / "run.json").read_text())
    except (OSError, ValueError):
        return "-", "starting", "-"
    layout = RunLayout(log_dir)
    loops = layout.loops()
    stage = "baseline" if not loops else "-"
    if loops:
        stage = next((s for s in reversed(STAGES) if layout.stage(loops[-1], s).is_dir()), "-")
    best = summary.get("best") or {}
    score = best.get("validation", (summary.get("baseline") or {}).get("validation"))
    loop = f"{len(loops)}/{run.get('loop_n', '?')}"
    return loop, stage, "-" if score is None else f"{score:.4g}"


def report_link(log_dir: Path) -> Text | str:
    """A task's live report for the batch table: its path under the batch folder, a link a
    terminal opens (OSC 8), once the run has written it; "-" before."""
    page = log_dir / "report.html"
    if not page.is_file():
        return "-"
    return Text(f"{log_dir.name}/{page.name}", style=Style(link=page.resolve().as_uri()))
