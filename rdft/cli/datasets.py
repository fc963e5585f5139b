"""`rdft datasets ...`: the dataset registry, your own datasets, prepare, leakage checks, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rdft.cli.base import cli, first_line, settings_of
from rdft.errors import RdftError


@cli.group()
def datasets() -> None:
    """Training datasets the agent can draw on."""


@datasets.command("list")
@click.pass_context
def datasets_list(ctx) -> None:
    """Name, Hugging Face repo (and folder), license, and the benchmarks each serves; then yours."""
    from rdft.datasets.registry import registry

    settings_of(ctx)  # yours are under FT_FILE_PATH

    click.echo(f"{'dataset':<18} {'license':<13} {'source':<50} benchmarks")
    for entry in registry().values():
        if not entry.user:
            click.echo(f"{entry.name:<18} {entry.license:<13} {entry.source:<50} {', '.join(entry.benchmarks)}")
    mine = [entry for entry in registry().values() if entry.user]
    click.echo(f"\nyour datasets ({len(mine)}; `rdft datasets add NAME --source PATH`)")
    for entry in mine:
        click.echo(f"{entry.name:<18} {entry.format:<8} {entry.rows:>7} rows  {entry.source}")


@datasets.command("add")
@click.argument("name")
@click.option("--source", required=True, type=click.Path(path_type=Path),
              help="A JSONL, JSON, CSV or parquet file, or a folder of them.")  # fmt: skip
@click.option("--description", help="What the rows are, for the agent (default: a summary).")
@click.option("--license", "license_", help="The data's license, shown with it.")
@click.pass_context
def datasets_add(ctx: click.Context, name: str, source: Path, description: str | None, license_: str | None) -> None:
    """Register your own files as dataset NAME, usable as `rdft run --dataset NAME`."""
    from rdft.datasets.user import add_dataset

    entry = add_dataset(settings_of(ctx), name, source, description=description, license=license_)
    columns = ", ".join(f"{k} ({v})" for k, v in entry.columns.items())
    click.echo(f"{entry.name}: {entry.rows} rows ({entry.format}); columns {columns}")


@datasets.command("remove")
@click.argument("name")
@click.pass_context
def datasets_remove(ctx: click.Context, name: str) -> None:
    """Remove dataset NAME that you added (its copy under FT_FILE_PATH goes with it)."""
    from rdft.datasets.user import remove_dataset

    click.echo(f"{name}: removed ({remove_dataset(settings_of(ctx), name)})")


@datasets.command("info")
@click.argument("name")
@click.pass_context
def datasets_info(ctx: click.Context, name: str) -> None:
    """What dataset NAME holds, where it comes from, and how leakage is guarded."""
    from rdft.datasets.leakage import ANY_FAMILY, RULES
    from rdft.datasets.prepare import POST_DOWNLOAD, datasets_dir, read_manifest
    from rdft.datasets.registry import get_dataset
    from rdft.evaluation.benchmarks import get_benchmark

    entry = get_dataset(name)
    local = entry.local_path(datasets_dir(settings_of(ctx)))
    manifest = read_manifest(local)
    hub = f"https://huggingface.co/datasets/{entry.repo}" + (f" (folder {entry.folder})" if entry.folder else "")
    rows = [
        ("dataset", entry.name),
        ("source", entry.source if entry.user else hub),
        *(
            (
                ("format", f"{entry.format}, {entry.rows} rows"),
                ("columns", ", ".join(f"{k} ({v})" for k, v in entry.columns.items())),
            )
            if entry.user
            else ()
        ),
        ("license", entry.license),
        ("serves", ", ".join(entry.benchmarks)),
        ("about", entry.description),
        ("after download", first_line(POST_DOWNLOAD[entry.post_download].__doc__) if entry.post_download else "-"),
        ("removed files", ", ".join(entry.remove) or "none"),
        *(
            (
                f"guard ({family})",
                f"drops training rows holding a validation or test item of it: {RULES.get(family, ANY_FAMILY)}",
            )
            for family in dict.fromkeys(get_benchmark(b).family for b in entry.benchmarks)
        ),
        (
            "local copy",
            f"{local} ({len(manifest.files)} files, {manifest.prepared:%Y-%m-%d})"
            if manifest
            else f"not downloaded ({local})",
        ),
    ]
    for label, value in rows:
        click.echo(f"{label:<15} {value}")


@datasets.command("prepare")
@click.argument("names", nargs=-1, required=True)
@click.option("--source", type=click.Path(path_type=Path), help="A local copy of the repo, its folder, or a file.")
@click.option("--force", is_flag=True, help="Prepare again even when a prepared copy exists.")
@click.pass_context
def datasets_prepare(ctx: click.Context, names: tuple[str, ...], source: Path | None, force: bool) -> None:
    """Download NAMES (only what they need) into FT_FILE_PATH/datasets, minus evaluation files."""
    from rdft.datasets.guard import dataset_overlap
    from rdft.datasets.prepare import prepare
    from rdft.datasets.registry import get_dataset

    entries = [get_dataset(name) for name in names]  # every name checked before any download
    if source is not None and len(entries) > 1:
        raise RdftError("--source stands for one dataset; prepare one name at a time with it")
    for entry in entries:
        path, done = prepare(entry, settings_of(ctx), source=source, force=force)
        click.echo(f"{entry.name}: {'prepared' if done else 'already prepared'} at {path}")
        for benchmark, report in dataset_overlap(settings_of(ctx), entry):
            if report is None:
                click.echo(
                    f"  overlap with {benchmark}: not checked (its items are not here; "
                    f"`rdft benchmarks prepare {benchmark}`)"
                )
            else:
                reasons = ", ".join(f"{reason} {n}" for reason, n in report["dropped"].items())
                click.echo(
                    f"  overlap with {benchmark}: {report['rows'] - report['kept']} of {report['rows']} rows "
                    f"hold its validation or test items ({reasons})"
                )


@datasets.command("check-leakage")
@click.argument("train_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--benchmark", required=True, help="See `rdft benchmarks list`.")
@click.option(
    "--eval-docs",
    "eval_docs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Evaluation docs in the benchmark's schema (JSONL, JSON, parquet, folder); default: its own "
    "validation and test items, as `rdft eval` loads them.",
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the kept rows here.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def datasets_check_leakage(ctx, train_files, benchmark, eval_docs, output, as_json) -> None:
    """Drop (and count, by reason) the rows of TRAIN_FILES that hold an evaluation item of a benchmark.

    TRAIN_FILES are chat JSONL (`messages`) or alpaca JSON/JSONL; every field of every row is read."""
    from rdft.datasets.guard import check_files

    report = check_files(
        settings_of(ctx), benchmark, list(train_files), eval_docs=list(eval_docs) or None, output=output
    )
    counts = {"rows": report["rows"], "kept": report["kept"], "dropped": report["dropped"]}
    if as_json:
        click.echo(json.dumps(counts))
        return
    reasons = ", ".join(f"{reason} {n}" for reason, n in report["dropped"].items())
    click.echo(
        f"{report['rows']} rows: {report['kept']} kept, {report['rows'] - report['kept']} dropped ({reasons}); "
        f"{report['evaluation_items_hit']} evaluation item(s) hit"
    )
    if output is not None:
        click.echo(f"kept rows: {output}")


@datasets.command("profile")
@click.argument("name")
@click.option("--tokenizer", help="Count tokens with this model's tokenizer (a folder or Hub id); default: words.")
@click.option("--refresh", is_flag=True, help="Compute again even when a cached profile exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.pass_context
def datasets_profile(ctx: click.Context, name: str, tokenizer: str | None, refresh: bool, as_json: bool) -> None:
    """Item counts, per-field token lengths and samples of a prepared dataset, per task folder."""

    from rdft.datasets.profiles import profile
    from rdft.datasets.registry import get_dataset

    value = profile(get_dataset(name), settings_of(ctx), tokenizer, refresh=refresh)
    click.echo(json.dumps({k: v for k, v in value.items() if k != "text"}, indent=1) if as_json else value["text"])
