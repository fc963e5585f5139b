"""`rdft batch` on this host: each task its own `rdft run` process on its own GPUs, a live table."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from rdft.batch.tasks import beside, load_tasks, progress_of, report_link, slug, task_command
from rdft.loop.run import STOPPED_EXIT_CODE


def run_batch(path: Path, *, dry_run: bool, no_sync: bool, max_parallel: int | None, console: Console) -> int:
    tasks = load_tasks(path)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d_%H-%M-%S")
    root = (Path("log") / f"batch-{stamp}").resolve()
    plans = []
    for number, task in enumerate(tasks, 1):
        log_dir = root / f"{number}-{slug(task.model)}-{task.benchmark}"
        plans.append((number, task, log_dir, task_command(task, no_sync)))
    if dry_run:
        for number, task, log_dir, command in plans:
            console.print(
                f"task {number}: CUDA_VISIBLE_DEVICES={task.gpus!r} LOG_TRACE_PATH={log_dir}", highlight=False
            )
            console.print("  " + " ".join(command[1:]).replace("-m rdft", "rdft", 1), highlight=False, markup=False)
            console.print(f"  report: {log_dir / 'report.html'} (live while it runs)", highlight=False, markup=False)
        console.print(f"dry run: {len(plans)} task(s), nothing started")
        return 0
    limit = max_parallel or len(plans)
    waiting, running, finished = list(plans), {}, {}
    started: dict[int, float] = {}

    def launch(plan) -> None:
        number, task, log_dir, command = plan
        log_dir.parent.mkdir(parents=True, exist_ok=True)
        environ = {**os.environ, "CUDA_VISIBLE_DEVICES": task.gpus, "LOG_TRACE_PATH": str(log_dir)}
        output = open(beside(log_dir, ".out"), "w")  # the child writes it until it ends
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
        view.add_column("report", overflow="fold")  # each task's live report, a link where the terminal has them
        for number, task, log_dir, _ in plans:
            loop, stage, best = progress_of(log_dir)
            elapsed = f"{time.monotonic() - started[number]:.0f}s" if number in started else "-"
            state = "running" if number in running else f"exit {finished[number]}" if number in finished else "waiting"
            view.add_row(
                str(number), task.model, task.benchmark, task.gpus or "cpu", loop, stage, best, elapsed, state,
                report_link(log_dir),
            )  # fmt: skip
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
            state = f"FAILED (exit {code}; see {beside(log_dir, '.out')})"
        console.print(f"task {number}: {state}; log {log_dir}; report {log_dir / 'report.html'}", highlight=False)
    if failed:
        return 1
    return STOPPED_EXIT_CODE if STOPPED_EXIT_CODE in finished.values() else 0
