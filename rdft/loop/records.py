"""The run's records: its arguments (`run.json`) and the step records that make a run
resumable — a step is done exactly when its record exists, and records are written atomically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from rdft.files import write_atomic


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
    target: str | None = None  # the user's words for the goal; the benchmark scores it
    spent_s: float = 0.0  # wall-clock seconds of work so far, all sessions together
    budget_from_s: float = 0.0  # spent_s when the current --timeout budget began (a resume may set a new one)


def write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value, indent=1, default=str))


def step(stage_dir: Path, name: str, work: Callable[[], dict]) -> dict:
    """`work()`'s record, computed once: a finished step is read back on resume."""
    return steps(stage_dir, [name], lambda missing: {name: work()})[name]


def steps(stage_dir: Path, names: list[str], work: Callable[[list[str]], dict[str, dict]]) -> dict[str, dict]:
    """Several steps done by one piece of work (scoring two splits in one lm-eval run): only the
    ones without a record are asked for, and each record is written as soon as it is known."""
    missing = [name for name in names if not (stage_dir / f"{name}.json").exists()]
    if missing:
        for name, record in work(missing).items():
            write_json(stage_dir / f"{name}.json", record)
    return {name: json.loads((stage_dir / f"{name}.json").read_text()) for name in names}
