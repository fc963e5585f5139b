"""The run's records: its arguments (`run.json`) and the step records that make a run
resumable — a step is done exactly when its record exists, and records are written atomically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.loop.budget import parse_duration
from rdft.settings import Settings

DEMO = {"base_model": "tiny:llama", "benchmark": "demo_letter", "datasets": ["demo-letter"], "loop_n": 2}
# What a resumed run may change: its budget and its length. Anything else would make another run.
RESUMABLE = ("loop_n", "step_n", "timeout", "no_sync", "rl", "track")  # --rl: GRPO may follow the SFT loops done


class RunArgs(BaseModel):
    """What `rdft run` was asked (run.json), plus the time the run has spent across its sessions."""

    base_model: str
    benchmark: str
    description: str | None = None
    datasets: list[str] = []
    loop_n: int = Field(5, ge=1)
    step_n: int | None = Field(None, ge=1)
    timeout_s: float | None = None
    demo: bool = False
    eval_limit: int | None = None
    max_gen_toks: int | None = Field(None, ge=1)  # caps every scoring call: non-standard scores, said so
    samples: int | None = Field(None, ge=1)  # per item; None: chosen from the split's size (evaluation.run)
    no_sync: bool = False
    rl: bool = False  # the offline planner tries GRPO right after the first SFT (rdft run --rl)
    target: str | None = None  # the user's words for the goal; the benchmark scores it
    regression: list[str] = []  # the forgetting check's benchmarks (--regression, FT_REGRESSION_BENCHMARKS)
    regression_items: int = 100  # items in each one's slice (FT_REGRESSION_ITEMS)
    regression_tolerance: float | None = None  # points; beyond it a loop is not confirmed (FT_REGRESSION_TOLERANCE)
    track: Literal["mlflow", "tensorboard"] | None = None  # loop-level tracking (--track, FT_TRACK)
    spent_s: float = 0.0  # wall-clock seconds of work so far, all sessions together
    budget_from_s: float = 0.0  # spent_s when the current --timeout budget began (a resume may set a new one)

    @classmethod
    def for_new_run(cls, settings: Settings, options: dict, asked: set[str]) -> RunArgs:
        """`rdft run`'s options for a new run: `options` holds every option's value (its default
        when not given), `asked` the names given on the command line. The demo fixes the model,
        benchmark and datasets; otherwise the settings fill what was not given."""
        chosen = {"loop_n": options["loop_n"], "step_n": options.get("step_n"),
                  "eval_limit": options.get("eval_limit"), "no_sync": options.get("no_sync", False),
                  "max_gen_toks": options.get("max_gen_toks"), "samples": options.get("samples"),
                  "rl": options.get("rl", False), "track": options.get("track") or settings.ft_track,
                  "timeout_s": parse_duration(options["timeout"]) if options.get("timeout") else None}  # fmt: skip
        if options.get("demo"):
            clash = sorted(asked & {"base_model", "benchmark", "datasets", "target", "benchmark_description"})
            if clash:
                raise RdftError(
                    f"--demo runs the tiny model on demo_letter: drop --{clash[0].replace('_', '-')}, or "
                    "drop --demo to run your own"
                )
            chosen.update(DEMO, demo=True)
            chosen["loop_n"] = options["loop_n"] if "loop_n" in asked else DEMO["loop_n"]
        else:
            base_model = options.get("base_model") or settings.ft_base_model
            benchmark = options.get("benchmark") or settings.ft_target_benchmark
            target = options.get("target") or settings.ft_user_target_scenario
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
            datasets = list(options.get("datasets") or ()) or ([settings.ft_dataset] if settings.ft_dataset else [])
            chosen.update(base_model=base_model, benchmark=benchmark, datasets=datasets, target=target)
        chosen["description"] = options.get("benchmark_description") or settings.ft_benchmark_description
        chosen.update(regression_options(settings, options.get("regression"), chosen["benchmark"]))
        return cls(**chosen)


def regression_options(settings: Settings, asked: str | None, benchmark: str) -> dict:
    """The forgetting check's benchmarks (--regression, else FT_REGRESSION_BENCHMARKS), each
    known and none the target, with the slice size and the tolerance from the settings."""
    from rdft.evaluation.benchmarks import get_benchmark

    names = [part.strip() for part in asked.split(",") if part.strip()] if asked else settings.ft_regression_benchmarks
    names = list(dict.fromkeys(names))
    for name in names:
        get_benchmark(name)
    if benchmark in names:
        raise RdftError(
            f"--regression {benchmark}: the target benchmark is what the run raises; name other benchmarks to watch"
        )
    return {"regression": names, "regression_items": settings.ft_regression_items,
            "regression_tolerance": settings.ft_regression_tolerance}  # fmt: skip


def resume_changes(options: dict, asked: set[str]) -> dict:
    """What `rdft run --resume` changes in run.json: only the options in RESUMABLE that were
    given; any other option is refused in one line (it would make another run)."""
    fixed = sorted(asked - set(RESUMABLE))
    if fixed:
        option = "--" + fixed[0].replace("_", "-")
        raise RdftError(
            f"{option} cannot change when resuming (it would make another run); resume with --timeout, --loop-n, "
            f"--step-n, --no-sync, --rl or --track only, or start a new run"
        )
    changes = {"timeout_s": parse_duration(options["timeout"]) if "timeout" in asked else None,
               "loop_n": options.get("loop_n"), "step_n": options.get("step_n"),
               "no_sync": options.get("no_sync"), "rl": options.get("rl"), "track": options.get("track")}  # fmt: skip
    return {key: value for key, value in changes.items() if key.removesuffix("_s") in asked}


def write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value, indent=1, default=str))


def intact(path: Path) -> bool:
    """Whether a record exists and reads as one. A damaged one (cut by a full disk or a copy, or
    overwritten by hand) is moved aside as `<name>.damaged`, never deleted, and its step is done
    again: a resume must not stop on a traceback, nor trust half a record."""
    if not path.exists():
        return False
    try:
        if isinstance(json.loads(path.read_bytes().decode("utf-8")), dict):
            return True
    except (UnicodeDecodeError, ValueError):
        pass
    path.replace(path.with_name(path.name + ".damaged"))
    return False


def step(stage_dir: Path, name: str, work: Callable[[], dict]) -> dict:
    """`work()`'s record, computed once: a finished step is read back on resume."""
    return steps(stage_dir, [name], lambda missing: {name: work()})[name]


def steps(stage_dir: Path, names: list[str], work: Callable[[list[str]], dict[str, dict]]) -> dict[str, dict]:
    """Several steps done by one piece of work (scoring two splits in one lm-eval run): only the
    ones without a record are asked for, and each record is written as soon as it is known."""
    missing = [name for name in names if not intact(stage_dir / f"{name}.json")]
    if missing:
        for name, record in work(missing).items():
            write_json(stage_dir / f"{name}.json", record)
    return {name: json.loads((stage_dir / f"{name}.json").read_text()) for name in names}
