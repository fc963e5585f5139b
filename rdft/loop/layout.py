"""The run folder's layout: the one owner of every path in a run's log, and the readers of its
records. run.py writes through it; memory.py, report.py, prompts.py and `rdft batch` read
through it, so a change of layout is made here once.

    log/<UTC timestamp>/
        run.json, settings.json (secrets redacted), scenario.json, scenario.md
        baseline/evaluation_items.jsonl      the validation and test items, whole: what the leakage guard reads
        baseline/{validation,test}.json      the base model's scores; baseline/{validation,test}/ what scoring wrote
        baseline/regression_<B>.json, …/     the forgetting check's slice of benchmark B (--regression)
        Loop_<i>/direct_exp_gen/             proposal.json, proposal.md, chat.jsonl
        Loop_<i>/coding/                     round_<k>/ (the files + evaluation.json), result.json
        Loop_<i>/running/                    data.json, train.json, validation.json, test.json, result.json,
                                             validation/ and test/ (what scoring wrote), regression_<B>…
        Loop_<i>/feedback/                   feedback.json, feedback.md
        Loop_<i>/workspace/                  the experiment: files, data, output/
        trace.json, summary.json, report.md, report.html
        live.json                            the session: its process, the stage under way and since when
        mlruns/mlflow.db, tensorboard/       the run mirrored into a tracker (--track)
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

STAGES = ("direct_exp_gen", "coding", "running", "feedback")
FAILING_STAGES = STAGES[:3]  # feedback never fails a loop: it records the others' failures


class ScoreRecord(BaseModel):
    """A split's score (baseline/<split>.json, Loop_<i>/running/<split>.json)."""

    model_config = ConfigDict(extra="allow")
    value: float | None = None
    ci95: list[float] | None = None
    items: str | None = None  # the per-item scores' file, for the paired bootstrap
    diagnostics: dict = {}


class FailureRecord(BaseModel):
    """A stage that failed (Loop_<i>/<stage>/failure.json): the loop goes on to feedback."""

    stage: str
    type: str
    error: str


def read_json(path: Path) -> dict | None:
    """A record, or None when it is missing or cut off (a killed writer leaves no half file, but
    a user's copy may)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class RunLayout:
    def __init__(self, log_dir: Path):
        self.root = log_dir
        self.run_json, self.trace_json = log_dir / "run.json", log_dir / "trace.json"
        self.summary_json, self.scenario_json = log_dir / "summary.json", log_dir / "scenario.json"
        self.processes = log_dir / ".processes"  # the process groups a run started (killed on resume)
        self.lock, self.owner = log_dir / ".session.lock", log_dir / ".session.owner"  # who runs it now
        self.baseline = log_dir / "baseline"  # the base model's scores
        self.evaluation_items = self.baseline / "evaluation_items.jsonl"  # what the leakage guard reads

    # --- the loops -------------------------------------------------------------------------------
    def loop(self, index: int) -> Path:
        return self.root / f"Loop_{index}"

    def stage(self, index: int, name: str) -> Path:
        return self.loop(index) / name

    def workspace(self, index: int | None) -> Path | None:
        """A loop's workspace; None for the base model (a loop without a parent)."""
        return None if index is None else self.loop(index) / "workspace"

    def proposal(self, index: int) -> Path:
        return self.stage(index, "direct_exp_gen") / "proposal.json"

    def running(self, index: int, record: str) -> Path:
        """Loop_<i>/running/<record>.json: data, train, validation, test, result."""
        return self.stage(index, "running") / f"{record}.json"

    def feedback(self, index: int) -> Path:
        return self.stage(index, "feedback") / "feedback.json"

    def loops(self) -> list[int]:
        """The loops that have a folder, in order."""
        found = [p.name.removeprefix("Loop_") for p in self.root.glob("Loop_*")]
        return sorted(int(name) for name in found if name.isdigit())

    # --- readers ---------------------------------------------------------------------------------
    def score(self, index: int | None, split: str) -> ScoreRecord | None:
        """A split's score of a loop, or of the base model (index None)."""
        path = self.baseline / f"{split}.json" if index is None else self.running(index, split)
        record = read_json(path)
        return ScoreRecord.model_validate(record) if record is not None else None

    def failure(self, index: int) -> FailureRecord | None:
        """The first stage of a loop that failed, if one did."""
        for name in FAILING_STAGES:
            record = read_json(self.stage(index, name) / "failure.json")
            if record is not None:
                return FailureRecord.model_validate({"stage": name, **record})
        return None

    def set_aside_damaged(self, index: int) -> list[str]:
        """A record cut in half (a full disk, a bad copy) is trusted neither by its own stage nor
        by the stages built on it: from the first stage holding one, each stage's folder is kept
        aside as `<stage>.damaged` (never deleted) and the run does them again. Returns them."""
        folders = [self.stage(index, name) for name in STAGES]
        damaged = next(
            (i for i, folder in enumerate(folders) if any(read_json(path) is None for path in folder.glob("*.json"))),
            None,
        )
        moved = []
        for folder in folders[damaged:] if damaged is not None else []:
            if folder.is_dir():
                aside = folder.with_name(folder.name + ".damaged")
                number = 1
                while aside.exists():
                    number += 1
                    aside = folder.with_name(f"{folder.name}.damaged-{number}")
                folder.rename(aside)
                moved.append(aside.name)
        return moved

    def failed(self, index: int) -> tuple[str, str] | None:
        """(type, error) of the loop's first failed stage, if one failed."""
        found = self.failure(index)
        return (found.type, found.error) if found else None

    def measured(self) -> dict | None:
        """What the newest debug run of this run measured (rows, seconds, API cost, tokens/s)."""
        latest, found = -1.0, None
        for path in self.root.glob("Loop_*/coding/round_*/evaluation.json"):
            record = read_json(path) or {}
            if record.get("measured") and path.stat().st_mtime > latest:
                latest, found = path.stat().st_mtime, record["measured"]
        return found
