"""The run's time budget (`--timeout`): durations as the user writes them, and the time spent."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rdft.errors import RdftError
from rdft.files import write_atomic

if TYPE_CHECKING:
    from rdft.loop.records import RunArgs


def parse_duration(text: str) -> float:
    """'12h', '90m', '3600s', '1d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value)
    except ValueError:
        raise RdftError(f"--timeout {text!r} is not a duration; use e.g. 12h, 90m or 3600") from None
    if seconds <= 0:
        raise RdftError(f"--timeout {text!r} must be positive")
    return seconds


BETWEEN_SESSIONS = ("report.html", "report.md", ".rdft-sync.json")  # written by rdft report and logs sync


def newest_work(folder: Path, since: float) -> float:
    """The newest mtime of a file the run's work wrote under `folder` (not the files written
    between sessions, the process records or the session lock), at least `since`."""
    latest = since
    for path in folder.rglob("*"):
        if path.is_file() and ".processes" not in path.parts and path.name not in BETWEEN_SESSIONS:
            if not path.name.startswith(".session."):
                latest = max(latest, path.stat().st_mtime)
    return latest


class StageClock:
    """A stage's seconds over every session that worked on it: a stage cut by the budget, a full
    disk or a kill -9 and finished by a later session is timed with the earlier sessions' part
    (the battery's F6: a killed training's minute was dropped from `running`).

    `<loop>/.<stage>.clock.json` holds the seconds carried from ended sessions and when the
    current one started; a session killed with -9 never updated it, so the next one counts its
    part up to the newest file the loop's work wrote."""

    def __init__(self, loop_dir: Path, name: str):
        self.path, self.loop_dir = loop_dir / f".{name}.clock.json", loop_dir
        self.carried = 0.0
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
                self.carried = float(saved["carried"])
                if saved.get("started") is not None:  # that session was killed: up to its last write
                    started = float(saved["started"])
                    self.carried += max(0.0, newest_work(loop_dir, started) - started)
            except (ValueError, KeyError, TypeError):  # a cut file: the earlier part is unknown
                self.carried = 0.0
        self.started = time.time()
        self._save(self.started)

    def _save(self, started: float | None) -> None:
        write_atomic(self.path, json.dumps({"carried": round(self.carried, 1), "started": started}))

    def seconds(self) -> float:
        return round(self.carried + time.time() - self.started, 1)

    def pause(self) -> None:
        """The session stops inside the stage (budget, full disk): its part is carried."""
        self.carried = self.seconds()
        with contextlib.suppress(OSError):  # a full disk may refuse even this: the mtimes still tell
            self._save(None)

    def done(self) -> float:
        seconds = self.seconds()
        self.path.unlink(missing_ok=True)
        return seconds


class Budget:
    """The time a run has spent, all its sessions together, and what is left of its --timeout.

    `spent_s` in run.json is the wall-clock time of work; a session adds its own on top. A run
    killed with -9 never recorded its last seconds, but the files its last step wrote carry the
    time it stopped: that much is added on resume.
    """

    def __init__(self, args: RunArgs, log_dir: Path):
        self.args, self.log_dir = args, log_dir
        self.started = time.monotonic()
        self.spent_before = args.spent_s + self._unrecorded_seconds()

    def _unrecorded_seconds(self) -> float:
        """The last step's files after run.json was last written: what a killed session did.
        Files written between sessions (the report, a sync's state, the session lock) are no
        work of the run, so idle time never counts (rdft report or logs sync after a stop wrote
        newer files and charged the wait)."""
        recorded = (self.log_dir / "run.json").stat().st_mtime
        return max(0.0, newest_work(self.log_dir, recorded) - recorded)

    def spent(self) -> float:
        return self.spent_before + (time.monotonic() - self.started)

    def remaining(self) -> float | None:
        """Seconds left of the --timeout budget (counted from when it was given), or None."""
        if self.args.timeout_s is None:
            return None
        return self.args.timeout_s - (self.spent() - self.args.budget_from_s)

    def deadline(self, seconds: float) -> float:
        """A step's own timeout, capped by what is left of the run's budget."""
        left = self.remaining()
        return seconds if left is None else max(1.0, min(seconds, left))

    def out_of_budget(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 1.0

    def persist(self) -> None:
        """The time spent so far into run.json (with any limits a resume changed)."""
        self.args.spent_s = round(self.spent(), 1)
        write_atomic(self.log_dir / "run.json", self.args.model_dump_json(indent=1))
