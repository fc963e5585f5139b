"""Run a command, inside an env or not: stream its output live to the console and a log file,
enforce a timeout on the whole process group, keep secrets out, flag CUDA out-of-memory.

A command inside an env runs through `Env.run` (rdft/envs/manager.py), which adds the env's
activation and calls `run` here; this module knows nothing of envs.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

TIMEOUT_EXIT_CODE = 124  # what coreutils' `timeout` returns
KILL_GRACE_S = 5.0
OOM_PATTERN = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|CUDA error: out of memory")
# Variables never inherited by a child unless the caller passes them explicitly.
SECRET_VAR_PATTERN = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$|^OPENAI_|^AZURE_.*KEY", re.I)
REDACTED = "***"


@dataclass
class RunResult:
    returncode: int
    duration_s: float
    tail: str
    log_path: Path | None
    timed_out: bool = False
    oom: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without secrets, plus `extra` (which may hold secrets the
    caller chose to pass on)."""
    env = {k: v for k, v in os.environ.items() if not SECRET_VAR_PATTERN.search(k)}
    env.update(extra or {})
    return env


class _Redactor:
    def __init__(self, secrets: Sequence[str]):
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def _secret_values(env: Mapping[str, str]) -> list[str]:
    """Every secret this process knows of: secret-named variables here and in the child's
    environment, and the secrets of rdft's settings (which may come from a .env file)."""
    from rdft.errors import RdftError
    from rdft.settings import get_settings

    values = [v for source in (os.environ, env) for k, v in source.items() if SECRET_VAR_PATTERN.search(k)]
    try:
        values += get_settings().secrets().values()
    except RdftError:  # invalid settings are reported by the CLI; redact what is known
        pass
    return values


# Where the process groups of running children are recorded (None: nowhere). `rdft run` sets
# it to its log folder, so a resumed run can stop what a killed one left behind: children run
# in their own process groups (for clean timeouts), so they outlive a `kill -9` of rdft itself.
_GROUPS_DIR: Path | None = None


def track_process_groups(folder: Path | None) -> None:
    global _GROUPS_DIR
    _GROUPS_DIR = folder
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), which tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_recorded_groups(folder: Path) -> int:
    """SIGKILL the recorded process groups that still run (same pid and start time); how many."""
    killed = 0
    for record in sorted(folder.glob("*.pid")) if folder.is_dir() else []:
        pid, _, started = record.read_text().partition(" ")
        if pid.isdigit() and started and _start_time(int(pid)) == started.strip():
            try:
                os.killpg(int(pid), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        record.unlink(missing_ok=True)
    return killed


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is left after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def run(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    log_path: str | Path | None = None,
    echo: bool = True,
    console: TextIO | None = None,
    redact: Sequence[str] = (),
    tail_chars: int = 4000,
    on_line: Callable[[str], None] | None = None,
) -> RunResult:
    """Run `argv` with exactly `env` (default: `base_environment()`), stream its merged
    stdout/stderr line by line to `console` (when `echo`) and `log_path`, and return
    exit code, duration and the output's tail. On timeout the whole process group is
    killed and the exit code is 124. `on_line` sees every (redacted) line, e.g. to show progress."""
    console = console or sys.stdout
    env = dict(env) if env is not None else base_environment()
    redactor = _Redactor([*redact, *_secret_values(env)])
    log_file = None
    if log_path is not None:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "a", encoding="utf-8")
    tail: collections.deque[str] = collections.deque()
    tail_size = 0
    oom = False
    timed_out = threading.Event()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so a timeout kills grandchildren too
        )
    except FileNotFoundError:
        message = f"command not found: {argv[0]}\n"
        if echo:
            console.write(message)
        if log_file:
            log_file.write(message)
            log_file.close()
        return RunResult(127, 0.0, message, log_path)

    record = None
    if _GROUPS_DIR is not None:
        record = _GROUPS_DIR / f"{proc.pid}.pid"
        record.write_text(f"{proc.pid} {_start_time(proc.pid) or ''}")

    def on_timeout() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout, on_timeout) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = redactor(raw.decode("utf-8", errors="replace"))
            if echo:
                console.write(line)
                console.flush()
            if log_file:
                log_file.write(line)
                log_file.flush()
            if not oom and OOM_PATTERN.search(line):
                oom = True
            if on_line is not None:
                on_line(line)
            tail.append(line)
            tail_size += len(line)
            while tail_size > tail_chars and len(tail) > 1:
                tail_size -= len(tail.popleft())
        returncode = proc.wait()
    except BaseException:  # Ctrl-C in the host: leave no orphaned training behind
        _kill_group(proc)
        raise
    finally:
        if timer:
            timer.cancel()
        if log_file:
            log_file.close()
        if record is not None:
            record.unlink(missing_ok=True)
    if timed_out.is_set():
        # The group is already dead; make sure stragglers are too before reporting.
        _kill_group(proc)
        returncode = TIMEOUT_EXIT_CODE
    return RunResult(
        returncode=returncode,
        duration_s=time.monotonic() - start,
        tail="".join(tail)[-tail_chars:],
        log_path=log_path,
        timed_out=timed_out.is_set(),
        oom=oom,
    )
