"""`rdft run` (the agent loop), `rdft prompt` (what a stage's LLM saw) and `rdft knowledge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rdft.cli.base import cli, settings_of
from rdft.errors import RdftError


@cli.command("run")
@click.option("--base-model", help="A Hub id, a local folder, or tiny:llama (default: FT_BASE_MODEL).")
@click.option("--benchmark", help="See `rdft benchmarks list` (default: FT_TARGET_BENCHMARK).")
@click.option("--benchmark-description", help="What the benchmark asks, for the LLM (default: built in).")
@click.option("--target", help="What you want improved, in your words (default: FT_USER_TARGET_SCENARIO); the "
              "benchmark scores it.")  # fmt: skip
@click.option("--dataset", "datasets", multiple=True, help="Training dataset (repeatable; default: chosen).")
@click.option("--loop-n", type=click.IntRange(min=1), default=5, show_default=True, help="Experiments to run.")
@click.option("--step-n", type=click.IntRange(min=1), help="Stop after this many steps (resumable).")
@click.option("--timeout", help="Budget for the whole run, e.g. 12h, 90m, 3600.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue the run in this log folder.")
@click.option("--demo", is_flag=True, help="Two loops of the tiny model on the demo benchmark, on CPU.")
@click.option("--eval-limit", type=click.IntRange(min=1), help="Score only the first N items of each split.")
@click.option("--max-gen-toks", type=click.IntRange(min=1),
              help="Cap generation for every scoring call (non-standard scores; for CPU runs).")  # fmt: skip
@click.option("--samples", type=click.IntRange(min=1), help="Answers per validation/test item (default: enough that "
              "items x samples >= 100 on small splits, else 1; 1 = greedy).")  # fmt: skip
@click.option("--no-sync", is_flag=True, help="Do not sync the log to RDFT_REMOTE after each loop.")
@click.pass_context
def run_command(ctx, base_model, benchmark, benchmark_description, target, datasets, loop_n, step_n, timeout,
                resume_dir, demo, eval_limit, max_gen_toks, samples, no_sync) -> None:  # fmt: skip
    """Raise a model's benchmark score, loop after loop: proposal, coding, running, feedback."""
    import signal

    from rich.console import Console

    from rdft.loop.records import RunArgs
    from rdft.loop.run import DEMO, STOPPED_EXIT_CODE, parse_duration, resume, start

    def stop(signum, frame):  # `rdft batch` and service managers stop runs with SIGTERM
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C stops the run even when it was started from a shell's background job, which starts
    # its children with SIGINT ignored (Python then keeps ignoring it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = settings_of(ctx)
    console = Console(stderr=True, soft_wrap=True)
    given = {name for name in ("base_model", "benchmark", "benchmark_description", "target", "datasets", "loop_n",
                               "step_n", "timeout", "demo", "eval_limit", "max_gen_toks", "samples", "no_sync")
             if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}  # fmt: skip
    if resume_dir is not None:
        fixed = sorted(given - {"loop_n", "step_n", "timeout", "no_sync"})
        if fixed:
            option = "--" + fixed[0].replace("_", "-")
            raise RdftError(
                f"{option} cannot change when resuming (it would make another run); resume with --timeout, --loop-n, "
                f"--step-n or --no-sync only, or start a new run"
            )
        changes = {"timeout_s": parse_duration(timeout) if "timeout" in given else None, "loop_n": loop_n,
                   "step_n": step_n, "no_sync": no_sync}  # fmt: skip
        changes = {key: value for key, value in changes.items() if key.removesuffix("_s") in given}
        run = resume(settings, resume_dir.expanduser().resolve(), console, changes)
    else:
        options = {"loop_n": loop_n, "step_n": step_n, "eval_limit": eval_limit, "no_sync": no_sync,
                   "max_gen_toks": max_gen_toks, "samples": samples,
                   "timeout_s": parse_duration(timeout) if timeout else None}  # fmt: skip
        if demo:
            clash = sorted(given & {"base_model", "benchmark", "datasets", "target", "benchmark_description"})
            if clash:
                raise RdftError(f"--demo runs the tiny model on demo_letter: drop --{clash[0].replace('_', '-')}, or "
                                "drop --demo to run your own")  # fmt: skip
            options.update(DEMO, demo=True)
            options["loop_n"] = loop_n if "loop_n" in given else DEMO["loop_n"]
        else:
            base_model = base_model or settings.ft_base_model
            benchmark = benchmark or settings.ft_target_benchmark
            target = target or settings.ft_user_target_scenario
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
            options["target"] = target
            chosen = list(datasets) or ([settings.ft_dataset] if settings.ft_dataset else [])
            options.update(base_model=base_model, benchmark=benchmark, datasets=chosen)
        options["description"] = benchmark_description or settings.ft_benchmark_description
        run = start(settings, RunArgs(**options), console)
    if run.finished:
        click.echo(f"rdft: run finished\nlog: {run.log_dir}\nreport: {run.log_dir / 'report.html'}")
        return
    # Stopped by its budget or --step-n: resumable, said so, and a distinct exit code.
    hint = " --timeout DURATION" if run.stopped and "budget" in run.stopped else ""
    click.echo(f"rdft: run stopped: {run.stopped}; resume with `rdft run --resume {run.log_dir}{hint}`\n"
               f"log: {run.log_dir}\nreport: {run.log_dir / 'report.html'}")  # fmt: skip
    sys.exit(STOPPED_EXIT_CODE)


@cli.command("prompt")
@click.argument("log_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(["proposal", "coding", "feedback"]), required=True)
@click.option("--loop", "loop", type=click.IntRange(min=0), help="The loop (default: the next one).")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def prompt_command(ctx: click.Context, log_dir: Path, stage: str, loop: int | None, as_json: bool) -> None:
    """The exact messages a stage's LLM call sent in a run (or would send next), offline runs too."""
    from rich.console import Console

    from rdft.loop.run import open_run

    run = open_run(settings_of(ctx), log_dir.expanduser().resolve(), Console(stderr=True))
    messages, state = run.messages(stage, loop)
    if as_json:
        click.echo(json.dumps({"state": state, "messages": messages}, indent=1, ensure_ascii=False))
        return
    shown = loop if loop is not None else len(run.trace.nodes)
    click.echo(f"# {stage} of loop {shown}: the messages it {'sent' if state == 'sent' else 'would send'}")
    for message in messages:
        click.echo(f"\n===== {message['role']} =====\n{message['content']}")


@cli.group()
def knowledge() -> None:
    """Experience across runs: error fixes and recipes that worked (FT_FILE_PATH/knowledge)."""


@knowledge.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
@click.pass_context
def knowledge_list(ctx: click.Context, as_json: bool) -> None:
    """Every remembered fix and recipe."""
    from rdft.knowledge import listing, store_dir

    settings = settings_of(ctx)
    records = listing(settings)
    if as_json:
        for record in records:
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    if not records:
        click.echo(f"the knowledge store ({store_dir(settings)}) is empty")
        return
    for record in records:
        if record["kind"] == "fix":
            click.echo(f"fix     {record['family']:<13} {record['signature'][:100]}  ({record['time']})")
        else:
            click.echo(f"recipe  {record['family']:<13} {record['benchmark']} +{record['gain']:.4g} with "
                       f"{record['base_model']}: {record['hypothesis'][:80]}  ({record['time']})")  # fmt: skip


@knowledge.command("clear")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def knowledge_clear(ctx: click.Context, yes: bool) -> None:
    """Forget every remembered fix and recipe."""
    from rdft.knowledge import clear, listing, store_dir

    settings = settings_of(ctx)
    count = len(listing(settings))
    if count and not yes:
        click.confirm(f"remove {count} record(s) from {store_dir(settings)}?", abort=True)
    clear(settings)
    click.echo(f"removed {count} record(s)")
