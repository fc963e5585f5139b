"""`rdft run` (the agent loop), `rdft prompt` (what a stage's LLM saw) and `rdft knowledge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rdft.cli.base import cli, settings_of, stop_on_ctrl_c_and_sigterm


@cli.command("run")
@click.option("--base-model", help="A Hub id, a local folder, or tiny:llama (default: FT_BASE_MODEL).")
@click.option("--benchmark", help="See `rdft benchmarks list` (default: FT_TARGET_BENCHMARK).")
@click.option("--benchmark-description", help="What the benchmark asks, for the LLM (default: built in).")
@click.option(
    "--target",
    help="What you want improved, in your words (default: FT_USER_TARGET_SCENARIO); the benchmark scores it.",
)
@click.option("--dataset", "datasets", multiple=True, help="Training dataset (repeatable; default: chosen).")
@click.option("--loop-n", type=click.IntRange(min=1), default=5, show_default=True, help="Experiments to run.")
@click.option("--step-n", type=click.IntRange(min=1), help="Stop after this many steps (resumable).")
@click.option("--timeout", help="Budget for the whole run, e.g. 12h, 90m, 3600.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue the run in this log folder.")
@click.option("--demo", is_flag=True, help="Two loops of the tiny model on the demo benchmark, on CPU.")
@click.option(
    "--rl",
    is_flag=True,
    help="Offline planner: GRPO right after the first SFT, from its weights, the benchmark's scorer as reward.",
)
@click.option("--eval-limit", type=click.IntRange(min=1), help="Score only the first N items of each split.")
@click.option(
    "--max-gen-toks",
    type=click.IntRange(min=1),
    help="Cap generation for every scoring call (non-standard scores; for CPU runs).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    help="Answers per validation/test item (default: enough that "
    "items x samples >= 100 on small splits, else 1; 1 = greedy).",
)
@click.option(
    "--regression",
    metavar="B1,B2",
    help="Forgetting check: also score the base model and every loop on a fixed slice of these benchmarks "
    "(default: FT_REGRESSION_BENCHMARKS; slice size FT_REGRESSION_ITEMS, limit FT_REGRESSION_TOLERANCE points).",
)
@click.option(
    "--track",
    type=click.Choice(["mlflow", "tensorboard"]),
    help="Mirror the run into a tracker: one parent run, one child per loop (default: FT_TRACK; "
    "MLFLOW_TRACKING_URI, else RUN/mlruns/mlflow.db; TensorBoard: RUN/tensorboard/).",
)
@click.option("--no-sync", is_flag=True, help="Do not sync the log to RDFT_REMOTE after each loop.")
@click.pass_context
def run_command(ctx: click.Context, resume_dir: Path | None, **options) -> None:
    """Raise a model's benchmark score, loop after loop: proposal, coding, running, feedback."""
    from rich.console import Console

    from rdft.evaluation.benchmarks import get_benchmark
    from rdft.knowledge import check_store
    from rdft.loop.records import RunArgs, resume_changes
    from rdft.loop.run import STOPPED_EXIT_CODE, result_lines, resume, start

    stop_on_ctrl_c_and_sigterm()
    settings = settings_of(ctx)
    console = Console(stderr=True, soft_wrap=True)
    asked = {name for name in options if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
    check_store(settings)  # the run writes it only after a loop's work: a bad one is said first
    if resume_dir is not None:
        run = resume(settings, resume_dir.expanduser().resolve(), console, resume_changes(options, asked))
    else:
        args = RunArgs.for_new_run(settings, options, asked)
        get_benchmark(args.benchmark)  # the instant refusals before the Hub is asked (start() asks it again)
        check_base_model(settings, args.base_model)
        run = start(settings, args, console)
    if run.finished:
        click.echo("rdft: run finished\n" + "\n".join(result_lines(run)))
        click.echo(f"log: {run.log_dir}\nreport: {run.log_dir / 'report.html'}")
        return
    # Stopped by its budget or --step-n: resumable, said so, and a distinct exit code.
    hint = " --timeout DURATION" if run.stopped and "budget" in run.stopped else ""
    click.echo(
        f"rdft: run stopped: {run.stopped}; resume with `rdft run --resume {run.log_dir}{hint}`\n"
        f"log: {run.log_dir}\nreport: {run.log_dir / 'report.html'}"
    )
    sys.exit(STOPPED_EXIT_CODE)


def check_base_model(settings, name: str) -> None:
    """--base-model, as far as it can be told before start() makes the log folder (a refused
    model must leave none): a tiny:<arch> it can build, a Hub id's spelling, and the Hub's answer
    for its config.json (fetched into the folder the run downloads the rest into). A local
    folder is start()'s to check."""
    from rdft.errors import RdftError
    from rdft.training.models import TINY_ARCHS

    if name.startswith("tiny:"):
        if name.removeprefix("tiny:") not in TINY_ARCHS:
            raise RdftError(f"--base-model {name} is unknown; use {' or '.join('tiny:' + a for a in TINY_ARCHS)}")
        return
    target = settings.ft_file_path.expanduser().resolve() / "models" / name
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or (target / "config.json").is_file():
        return
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        hf_hub_download(name, "config.json", local_dir=target, token=token, endpoint=settings.hf_endpoint)
    except HFValidationError:
        raise RdftError(f"--base-model {name!r} is neither a local folder nor a Hub id like Qwen/Qwen2.5-7B") from None
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: first
        raise RdftError(f"{name} is gated: accept its terms on the Hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise RdftError(
            f"--base-model {name} is not a model repo on the Hub (or it is private: set HF_TOKEN); check the id"
        ) from None
    except Exception as error:  # no answer, a server error, a repo without config.json
        if isinstance(error, OSError) and error.errno is not None and error.filename:
            raise  # this host's disk (full, read-only): the CLI's one line names the path
        raise RdftError(
            f"cannot get the base model {name} ({type(error).__name__}); check the name, HF_TOKEN and the network, "
            "or give a local folder"
        ) from None


@cli.command("prompt")
@click.argument("log_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(["proposal", "coding", "feedback"]), required=True)
@click.option("--loop", "loop", type=click.IntRange(min=0), help="The loop (default: the next one).")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def prompt_command(ctx: click.Context, log_dir: Path, stage: str, loop: int | None, as_json: bool) -> None:
    """The exact messages a stage's LLM call sent in a run (or would send next), offline runs too."""
    from rich.console import Console

    from rdft.loop.prompts import messages as stage_messages
    from rdft.loop.run import open_run

    run = open_run(settings_of(ctx), log_dir.expanduser().resolve(), Console(stderr=True))
    messages, state = stage_messages(run, stage, loop)
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
    for record in records:  # a record holds its kind's required keys (knowledge._read); the rest may be missing
        when = record.get("time", "?")
        if record["kind"] == "fix":
            click.echo(f"fix     {record['family']:<13} {record['signature'][:100]}  ({when})")
        else:
            click.echo(
                f"recipe  {record['family']:<13} {record.get('benchmark', '?')} +{record['gain']:.4g} with "
                f"{record.get('base_model', '?')}: {record.get('hypothesis', '')[:80]}  ({when})"
            )


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
