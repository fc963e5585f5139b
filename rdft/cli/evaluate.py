"""`rdft eval` (score a model with lm-eval) and `rdft score` (score saved answers)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rdft.cli.base import cli, settings_of

# A bound on --samples: each is a full generation of the split (1e8 samples would run for ever).
MAX_SAMPLES = 64


@cli.command("eval")
@click.option("--model", required=True, help="Base or merged model: a local folder or a Hub id.")
@click.option("--adapter", type=click.Path(path_type=Path), help="A PEFT (LoRA) adapter folder for --model.")
@click.option("--benchmark", required=True, help="See `rdft benchmarks list`.")
@click.option("--split", type=click.Choice(["validation", "test", "all"]), default="validation", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Score only the first N items of the split.")
@click.option("--samples", type=click.IntRange(min=1, max=MAX_SAMPLES), default=1, show_default=True,
              help=f"Samples per item (avg@K), at most {MAX_SAMPLES}.")  # fmt: skip
@click.option("--backend", type=click.Choice(["auto", "hf", "vllm"]), default="auto", show_default=True)
@click.option("--data", type=click.Path(path_type=Path), help="Local docs (file or folder) instead of the Hub repo.")
@click.option("--max-gen-toks", type=click.IntRange(min=1), help="Override the task's generation budget.")
@click.option(
    "--batch-size", help="lm-eval batch size: N, auto or auto:N (default: planned from GPU memory; 4 on CPU)."
)
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="Stream lm-eval's output.")
@click.pass_context
def eval_command(ctx: click.Context, **options) -> None:
    """Score a checkpoint on a benchmark split with lm-evaluation-harness; writes OUTPUT/summary.json."""
    import signal

    from rdft.evaluation.run import evaluate

    def stop(signum, frame):  # SIGTERM stops lm-eval and its children as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)

    summary = evaluate(settings_of(ctx), **options)
    benchmark, split, output = options["benchmark"], options["split"], options["output"]
    primary = summary["primary"]
    ci = primary["ci95"]
    interval = f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""
    value = "unavailable" if primary["value"] is None else f"{primary['value']:.4f}"
    click.echo(f"{benchmark} {split}: {primary['name']} = {value}{interval} over {summary['n']} items")
    click.echo(f"summary: {output / 'summary.json'}")


@cli.command()
@click.option("--benchmark", required=True, help="See `rdft benchmarks list`.")
@click.option(
    "--docs", type=click.Path(path_type=Path), help="Docs in the benchmark's schema: JSONL, JSON, or a folder."
)
@click.option("--predictions", type=click.Path(path_type=Path), help='JSONL rows {"doc_id" or "id", "response"}.')
@click.option(
    "--log", type=click.Path(path_type=Path), help="A ChemCoTBench authors' log (inputs, gold, json_results)."
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the summary JSON here.")
@click.pass_context
def score(ctx, benchmark, docs, predictions, log, output) -> None:
    """Score saved responses with the benchmark's scorer; prints the summary JSON."""
    from rdft.evaluation.score import score as run_score

    summary = run_score(settings_of(ctx), benchmark, docs=docs, predictions=predictions, log=log, output=output)
    click.echo(json.dumps(summary, indent=2))
