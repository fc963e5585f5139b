"""The run's time budget (`--timeout`): durations as the user writes them, and the time spent."""

from __future__ import annotations

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
        latest = recorded
        for path in self.log_dir.rglob("*"):
            if path.is_file() and ".processes" not in path.parts and path.name not in BETWEEN_SESSIONS:
                if not path.name.startswith(".session."):
                    latest = max(latest, path.stat().st_mtime)
        return max(0.0, latest - recorded)

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
