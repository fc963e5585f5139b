"""`rdft env ...`: the isolated environments built from lock files (rdft/envs/manager.py does the work)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rdft.cli.base import cli, manager_of, settings_of
from rdft.errors import RdftError


@cli.group()
def env() -> None:
    """Isolated environments (train, eval, data, or your own) built from lock files."""


@env.command("list")
@click.pass_context
def env_list(ctx: click.Context) -> None:
    """List env specs and the locks that exist for them."""
    manager = manager_of(ctx)
    click.echo(f"specs: {manager.specs_dir}")
    for spec in manager.specs():
        locks = []
        if spec.conda_lock_path.is_file():
            locks.append(spec.conda_lock_path.name)
        locks += [spec.pip_lock_path(v).name for v in spec.variants if spec.pip_lock_path(v).is_file()]
        click.echo(f"{spec.name:<12} {manager.backend(spec):<6} locks: {', '.join(locks) or 'none'}")


@env.command("status")
@click.pass_context
def env_status(ctx: click.Context) -> None:
    """Show each env's backend, path, lock match, size and creation time."""
    for row in manager_of(ctx).status():
        size = f"{row.size_bytes / 2**20:.0f} MiB" if row.size_bytes is not None else "-"
        created = row.created.strftime("%Y-%m-%d %H:%M UTC") if row.created else "-"
        click.echo(
            f"{row.name:<12} {row.backend:<6} {row.variant:<5} {size:>10}  {created:<20} {row.state}  {row.path}"
        )


@env.command("create")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.pass_context
def env_create(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Create each env NAME from its locks (nothing to do when it exists and its lock is unchanged)."""
    for handle in manager_of(ctx).ensure_all(list(names)):
        click.echo(str(handle.link))


@env.command("adopt")
@click.argument("name")
@click.option(
    "--python",
    "python",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The interpreter to use as env NAME, e.g. /opt/cluster/py311/bin/python.",
)
@click.option(
    "--allow-missing",
    multiple=True,
    metavar="PACKAGE",
    help="A package of the spec the runs will not use (repeatable), e.g. deepspeed on one GPU.",
)
@click.pass_context
def env_adopt(ctx: click.Context, name: str, python: Path, allow_missing: tuple[str, ...]) -> None:
    """Use a prebuilt interpreter as env NAME (checked against the spec; never rebuilt)."""
    env, notes = manager_of(ctx).adopt(name, python, allow_missing=allow_missing)
    for note in notes:
        click.echo(f"rdft: note: {note}", err=True)
    click.echo(f"{env.name}: adopted {env.python}")


@env.command("rebuild")
@click.argument("name", required=False)
@click.option("--all", "all_envs", is_flag=True, help="Rebuild every env that exists.")
@click.pass_context
def env_rebuild(ctx: click.Context, name: str | None, all_envs: bool) -> None:
    """Build env NAME (or all existing envs) again from its locks."""
    manager = manager_of(ctx)
    if bool(name) == all_envs:
        raise RdftError("give an env NAME or --all (not both); see `rdft env list`")
    names = [name] if name else [s.name for s in manager.specs() if manager.current(s.name)]
    if not names:
        click.echo("rdft: no envs exist yet; nothing to rebuild", err=True)
    for each in names:
        click.echo(str(manager.rebuild(each).link))


@env.command("lock")
@click.argument("name")
@click.option("--conda-only", is_flag=True, help="Solve only the conda lock.")
@click.option("--pip-only", is_flag=True, help="Resolve only the pip locks (cpu and cuda).")
@click.pass_context
def env_lock(ctx: click.Context, name: str, conda_only: bool, pip_only: bool) -> None:
    """Solve env NAME's conda lock (py-rattler) and pip locks (uv) and write them next to its spec."""
    if conda_only and pip_only:
        raise RdftError("--conda-only and --pip-only exclude each other; give at most one")
    for path in manager_of(ctx).lock(name, conda_part=not pip_only, pip_part=not conda_only):
        click.echo(f"wrote {path}")


@env.command("remove")
@click.argument("name")
@click.pass_context
def env_remove(ctx: click.Context, name: str) -> None:
    """Delete env NAME."""
    manager = manager_of(ctx)
    manager.spec(name)  # a typo gets the "did you mean" error, not a silent no-op
    if manager.remove(name):
        click.echo(f"removed env {name}")
    else:
        click.echo(f"rdft: env {name} does not exist; nothing removed", err=True)


@env.command("run")
@click.argument("name")
@click.argument("command", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Kill after this many seconds (exit 124).")
@click.option("--cwd", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Working directory.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the output here.")
@click.option("--with-secrets", is_flag=True, help="Pass OPENAI_API_KEY and HF_TOKEN to the command.")
@click.pass_context
def env_run(ctx, name, command, timeout, cwd, log_path, with_secrets) -> None:
    """Run COMMAND inside env NAME (what `conda run` does): rdft env run train -- python -V"""

    handle = manager_of(ctx).ensure(name)
    settings = settings_of(ctx)
    extra = settings.secrets() if with_secrets else {}
    if name == "data":  # data scripts get the toolkit (import rdft_data) and the model pools
        from rdft.datasets.toolkit import data_script_environment

        extra.update(data_script_environment(settings, with_secrets=with_secrets))
    result = handle.run(list(command), extra_env=extra, timeout=timeout, cwd=cwd, log_path=log_path)
    if result.timed_out:
        click.echo(f"rdft: timed out after {timeout:g} s; killed the command and its children", err=True)
    if result.oom:
        click.echo("rdft: the command ran out of GPU memory (CUDA OOM)", err=True)
    sys.exit(result.returncode)
