"""The `rdft` command: parse, call one function, print. The work lives elsewhere.

One module per command group; each registers its commands on the group in base.py.
"""

from __future__ import annotations

import os
import sys

import click

from rdft.cli import benchmarks, datasets, env, evaluate, operations, run, train  # noqa: F401  (registers the commands)
from rdft.cli.base import cli
from rdft.errors import EnvBuildError, RdftError

__all__ = ["cli", "main"]


def _exit(code: int) -> None:
    """Flush and leave without interpreter finalisation: py-rattler's background (tokio) threads
    can abort a finalising interpreter (seen as SIGABRT after a successful `env lock` under load)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    try:
        returned = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rdft: aborted", err=True)
        _exit(130)
    except click.exceptions.NoArgsIsHelpError as error:  # a bare `rdft` or `rdft env`: the help, as click shows it
        error.show()
        _exit(error.exit_code)
    except click.UsageError as error:  # click's own three lines, as one that names the help
        where = error.ctx.command_path if error.ctx else "rdft"
        click.echo(f"rdft: error: {error.format_message().rstrip('.')}; see `{where} --help`", err=True)
        _exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"rdft: error: {error.format_message()}", err=True)
        _exit(error.exit_code)
    except EnvBuildError as error:
        if error.tail:
            click.echo(error.tail.rstrip(), err=True)
        click.echo(f"rdft: error: {error}", err=True)
        _exit(error.exit_code)
    except RdftError as error:
        click.echo(f"rdft: error: {error}", err=True)
        _exit(error.exit_code)
    except (
        OSError
    ) as error:  # a full disk, a read-only folder, a file where a folder belongs: the path, not a traceback
        where = f"{error.filename}: " if error.filename else ""
        click.echo(
            f"rdft: error: {where}{error.strerror or error}; free space or fix that path, then run it again", err=True
        )
        _exit(1)
    except KeyboardInterrupt:
        click.echo("rdft: interrupted", err=True)
        _exit(130)
    except SystemExit as done:  # `rdft env run` passes its command's exit code this way
        _exit(done.code if isinstance(done.code, int) else 0 if done.code is None else 1)
    _exit(returned if isinstance(returned, int) else 0)
