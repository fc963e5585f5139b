"""`rdft benchmarks ...`: the benchmark table, your own benchmarks, their items."""

from __future__ import annotations

from pathlib import Path

import click

from rdft.cli.base import cli, settings_of
from rdft.errors import RdftError


@cli.group()
def benchmarks() -> None:
    """The benchmarks rdft scores (evaluation/benchmarks.yaml, and yours under FT_FILE_PATH)."""


@benchmarks.command("list")
@click.pass_context
def benchmarks_list(ctx) -> None:
    """Name, dataset repo, split sizes, primary metric and its direction; then yours."""
    settings_of(ctx)  # checks FT_FILE_PATH, where yours are
    from rdft.evaluation.benchmarks import benchmarks as table
    from rdft.evaluation.benchmarks import groups

    def line(entry) -> str:
        size = f"{entry.split_size}/{entry.split_size}" if entry.split_size else "-"
        upstream = f" (RD-Agent: {entry.upstream})" if entry.upstream else ""
        return (
            f"{entry.name:<32} {size:>8}  {entry.primary.metric:<20} {entry.primary.direction:<7} {entry.repo}"
            f"{upstream}"
        )

    click.echo(f"{'benchmark':<32} {'val/test':>8}  {'primary metric':<20} {'better':<7} dataset")
    for entry in table().values():
        if not entry.custom:
            click.echo(line(entry))
    click.echo("\ngroups (RD-Agent's aggregate names; run one member, watch the others with --regression)")
    for group in groups().values():
        click.echo(f"{group.name:<32} {', '.join(group.members)}")
    mine = [entry for entry in table().values() if entry.custom]
    click.echo(f"\nyour benchmarks ({len(mine)}; `rdft benchmarks add NAME --docs FILE ...`)")
    for entry in mine:
        click.echo(line(entry))


@benchmarks.command("add")
@click.argument("name")
@click.option("--docs", required=True, type=click.Path(path_type=Path),
              help="Your evaluation items: JSONL, JSON, CSV or parquet (a file or a folder).")  # fmt: skip
@click.option("--prompt-field", help="The item field that is the prompt.")
@click.option(
    "--prompt-template",
    help="The prompt as a template of item fields, e.g. $'Review: {text}\\nPositive or negative?' (bash's $'' "
    "makes \\n a newline).",
)
@click.option("--answer-field", required=True, help="The item field that holds the gold answer.")
@click.option("--metric", help="exact_match, accuracy, f1, numeric_tolerance or json_field_match.")
@click.option("--answer-key", help="Read the answer from the last JSON object with this key (default: last \\boxed{}).")
@click.option(
    "--tolerance", type=float, help="numeric_tolerance: allowed |answer - gold| as a share of max(1, |gold|)."
)
@click.option(
    "--scorer",
    type=click.Path(path_type=Path),
    help="A Python file with score(doc, response) -> dict, replacing --metric.",
)
@click.option("--scorer-key", default="score", show_default=True, help="The key of the scorer's dict that is averaged.")
@click.option("--description", help="What the benchmark asks, for the agent.")
@click.pass_context
def benchmarks_add(
    ctx: click.Context,
    name: str,
    docs: Path,
    prompt_field: str | None,
    prompt_template: str | None,
    answer_field: str,
    metric: str | None,
    answer_key: str | None,
    tolerance: float | None,
    scorer: Path | None,
    scorer_key: str,
    description: str | None,
) -> None:
    """Register your own evaluation file as benchmark NAME (seeded validation and hidden test splits)."""
    from rdft.evaluation.custom import add_benchmark

    if prompt_template and "\\n" in prompt_template:  # "...\n..." in double quotes reaches us as two characters
        click.echo(
            "warning: --prompt-template holds a backslash and an n, not a newline; for a newline write "
            "$'...\\n...' in bash or a real line break (`rdft benchmarks show NAME` prints the prompt)",
            err=True,
        )

    entry = add_benchmark(
        settings_of(ctx),
        name,
        docs=docs,
        prompt_field=prompt_field,
        prompt_template=prompt_template,
        answer_field=answer_field,
        metric=metric,
        answer_key=answer_key,
        tolerance=tolerance,
        scorer=scorer,
        scorer_key=scorer_key,
        description=description,
    )
    click.echo(
        f"{entry.name}: {entry.n} items, {entry.split_size} validation / {entry.split_size} test; "
        f"primary {entry.primary.metric}: {entry.primary.description}"
    )


@benchmarks.command("show")
@click.argument("name")
@click.pass_context
def benchmarks_show(ctx: click.Context, name: str) -> None:
    """What benchmark NAME asks and how it scores, and its first validation item's prompt as the
    model sees it (rendered by the family's doc_to_text in the eval env)."""
    from rdft.evaluation.benchmarks import get_benchmark
    from rdft.evaluation.items import first_prompt

    settings = settings_of(ctx)
    entry = get_benchmark(name)
    size = f"{entry.split_size} validation / {entry.split_size} test" if entry.split_size else "splits unknown"
    click.echo(f"{entry.name} ({entry.family}{', yours' if entry.custom else ''}): {entry.n or '?'} items, {size}")
    if entry.description:
        click.echo(f"asks: {entry.description}")
    click.echo(f"primary: {entry.primary.metric} ({entry.primary.direction} is better): {entry.primary.description}")
    click.echo(f"items from: {entry.repo}")
    click.echo("prompt of the first validation item:")
    click.echo(first_prompt(settings, name))


@benchmarks.command("remove")
@click.argument("name")
@click.pass_context
def benchmarks_remove(ctx, name: str) -> None:
    """Remove benchmark NAME that you added."""
    from rdft.evaluation.custom import remove_benchmark

    settings_of(ctx)

    click.echo(f"{name}: removed ({remove_benchmark(name)})")


@benchmarks.command("prepare")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    help="A local copy of the items (JSONL, JSON, parquet, or a folder of JSON files).",
)
@click.option("--force", is_flag=True, help="Prepare again even when a prepared copy exists.")
@click.pass_context
def benchmarks_prepare(ctx: click.Context, names: tuple[str, ...], source: Path | None, force: bool) -> None:
    """Fetch NAMES' evaluation items (or read --source) into FT_FILE_PATH/benchmarks: scoring and
    the leakage guard read them from there, with no Hub access."""
    from rdft.evaluation.benchmarks import get_benchmark
    from rdft.evaluation.items import prepare_items, read_manifest

    for name in names:
        get_benchmark(name)  # every name checked before any work
    if source is not None and len(names) > 1:
        raise RdftError("--source stands for one benchmark; prepare one name at a time with it")
    for name in names:
        path = prepare_items(settings_of(ctx), name, source=source, force=force)
        manifest = read_manifest(settings_of(ctx), name)
        click.echo(f"{name}: {manifest.n} items from {manifest.source} at {path}")
