"""Progress of env builds, one line per env: packages ready out of the lock's, and bytes fetched.

The installers' own output is read as it streams (uv: `Resolved N packages`, `Downloading X
(12.3MiB)`, ` Downloaded X`, `Installed N packages`; pip: `Collecting X`, `Installing collected
packages`). On a terminal the lines are a live rich display shared by builds running at the
same time; elsewhere (CI logs, `rdft batch` files) each build prints a plain line when it
moves on by a quarter and when it ends.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
UV_DOWNLOADING = re.compile(r"^Downloading (\S+) \(([\d.]+)(B|KiB|MiB|GiB)\)")
UV_DOWNLOADED = re.compile(r"^\s*Downloaded (\S+)")
UV_INSTALLED = re.compile(r"^Installed (\d+) packages?")
PIP_COLLECTING = re.compile(r"^Collecting (\S+)")
PIP_INSTALLING = re.compile(r"^Installing collected packages: (.*)")


class Build:
    """One env's build: fed the installer's lines, it knows how far it got."""

    def __init__(self, name: str, total: int, report: Callable[[Build], None]):
        self.name, self.total, self.report = name, total, report
        self.ready = 0  # packages fetched (or found in the cache)
        self.bytes = 0
        self.pending: dict[str, int] = {}  # uv: announced downloads and their sizes
        self.done = False
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        if match := UV_DOWNLOADING.match(text):
            self.pending[match.group(1)] = int(float(match.group(2)) * UNITS[match.group(3)])
        elif match := UV_DOWNLOADED.match(text):
            self.bytes += self.pending.pop(match.group(1), 0)
            self.ready += 1
        elif match := UV_INSTALLED.match(text):
            self.ready = self.total = max(self.total, int(match.group(1)))
        elif PIP_COLLECTING.match(text):
            self.ready += 1
        elif match := PIP_INSTALLING.match(text):
            self.ready = self.total = max(self.total, len(match.group(1).split(",")))
        else:
            return
        self.report(self)

    def describe(self) -> str:
        size = f", {self.bytes / 2**20:.0f} MiB fetched" if self.bytes else ""
        return f"{min(self.ready, self.total)}/{self.total} packages{size}"


class BuildDisplay:
    """Shows every build of this process: a live table on a terminal, plain lines elsewhere."""

    def __init__(self, log: Callable[[str], None], live: bool | None = None):
        self.log = log
        self.live = sys.stderr.isatty() if live is None else live
        self.lock = threading.Lock()
        self.progress = None
        self.tasks: dict[str, int] = {}
        self.quarters: dict[str, int] = {}

    def start(self, name: str, total: int) -> Build:
        with self.lock:
            if self.live:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                if self.progress is None:
                    self.progress = Progress(
                        TextColumn("env {task.description}"),
                        BarColumn(),
                        TextColumn("{task.fields[state]}"),
                        TimeElapsedColumn(),
                        transient=False,
                    )
                    self.progress.start()
                self.tasks[name] = self.progress.add_task(name, total=total, state=f"0/{total} packages")
            self.quarters[name] = 0
        return Build(name, total, self.update)

    def update(self, build: Build) -> None:
        with self.lock:
            if self.progress is not None and build.name in self.tasks:
                self.progress.update(
                    self.tasks[build.name], completed=build.ready, total=build.total, state=build.describe()
                )
                return
            quarter = 4 * build.ready // max(build.total, 1)
            if quarter > self.quarters.get(build.name, 0) and quarter < 4:
                self.quarters[build.name] = quarter
                self.log(f"env {build.name}: {build.describe()}")

    def finish(self, build: Build, ok: bool) -> None:
        with self.lock:
            seconds = time.monotonic() - build.started
            if self.progress is not None and build.name in self.tasks:
                state = f"{build.describe()}, {'done' if ok else 'failed'}"
                self.progress.update(self.tasks.pop(build.name), state=state)
                if not self.tasks:
                    self.progress.stop()
                    self.progress = None
            elif ok:
                self.log(f"env {build.name}: {build.total} packages installed in {seconds:.0f} s")
