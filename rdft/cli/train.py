"""`rdft train`: validate a train YAML, plan, launch (rdft/training/run.py does the work)."""

from __future__ import annotations

from pathlib import Path

import click

from rdft.cli.base import cli, settings_of


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--schema", is_flag=True, help="Print every config key with its type, default and meaning; run nothing.")
@click.option("--gpus", help="Comma-separated GPU indices, e.g. 0,1 (default: all; empty: CPU).")
@click.option(
    "--workspace", type=click.Path(file_okay=False, path_type=Path), help="Folder for launch files and output."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and the launch script; run nothing.")
@click.option("--assume-gpus", metavar="NxMEM", help="With --dry-run: plan for N GPUs of MEM GiB each, e.g. 8x80GiB.")
@click.option(
    "--slurm-nodes",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run on N Slurm nodes: write train.sbatch (srun launch.sh per node) and submit it "
    "(with --dry-run: print it). Give the nodes' GPUs with --assume-gpus.",
)
@click.option("--verbose", "-v", is_flag=True, help="Stream the training output instead of a progress bar.")
@click.pass_context
def train(
    ctx: click.Context,
    config: Path | None,
    schema: bool,
    gpus: str | None,
    workspace: Path | None,
    dry_run: bool,
    assume_gpus: str | None,
    slurm_nodes: int | None,
    verbose: bool,
):
    """Fine-tune with a recipe config (see recipes/configs/): LoRA, QLoRA, full or GRPO, on CPU or GPUs."""
    if schema:
        from rdft.training.config import schema_reference

        click.echo(schema_reference())
        return
    if config is None:
        raise click.UsageError("give a train YAML (see recipes/configs/), or --schema to see its keys")
    from rdft.evaluation.benchmarks import table_row
    from rdft.training.run import parse_gpus
    from rdft.training.run import train as run_training

    run_training(
        settings_of(ctx),
        config,
        gpus=parse_gpus(gpus),
        workspace=workspace,
        dry_run=dry_run,
        verbose=verbose,
        assume_gpus=assume_gpus,
        slurm_nodes=slurm_nodes,
        benchmark_entry=table_row,
    )
