"""The `rdft` command group, the settings it hands its commands, and `rdft doctor`."""

from __future__ import annotations

import os

import click

from rdft import __version__
from rdft.settings import Settings, check_file_path, get_settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings, with FT_FILE_PATH checked (and created) the first time a command asks for
    them: `--help` and `doctor`, which reports on it, create nothing."""
    root = ctx.find_root()
    if not root.meta.get("rdft.ft_file_path_checked") and root.invoked_subcommand != "doctor":
        root.meta["rdft.ft_file_path_checked"] = True
        created = check_file_path(root.obj)
        if created:
            click.echo(f"rdft: {created}", err=True)
    return root.obj


def stop_on_ctrl_c_and_sigterm() -> None:
    """Ctrl-C and SIGTERM (`rdft batch`, service managers, `kill`) both raise KeyboardInterrupt,
    so the command stops cleanly. Ctrl-C works even when it was started from a shell's background
    job, which starts its children with SIGINT ignored (Python then keeps ignoring it)."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def manager_of(ctx: click.Context):
    from rdft.envs import EnvManager

    return EnvManager(settings_of(ctx), log=lambda message: click.echo(f"rdft: {message}", err=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rdft")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rdft: an agentic LLM fine-tuning workbench for GPU hosts without Docker.

    Settings come from the environment and a .env file in the working directory
    (RD-Agent's fine-tuning template loads unchanged).
    """
    settings = get_settings()
    ctx.obj = settings
    # The eval env's scripts (prepare, score, compare) find the user's own benchmarks here.
    os.environ["RDFT_USER_BENCHMARKS"] = str(settings.ft_file_path.expanduser().resolve() / "benchmarks")
    ignored = settings.ignored_in_use()
    if ignored:
        click.echo(
            f"rdft: note: ignoring RD-Agent-only settings {', '.join(ignored)} (`rdft doctor` says why)",
            err=True,
        )
    for key in settings.unknown_keys():
        click.echo(f"rdft: warning: unknown setting {key} in .env is not used", err=True)


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Report Python, conda engines, GPUs, which keys are set (never their values), free disk."""
    from rdft.doctor import report

    rows = report(settings_of(ctx))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")


def first_line(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())
