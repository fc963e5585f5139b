"""Writing files so that a crash never leaves half of one: write a sibling, then rename; and the
staging folders of a killed process cleared by the next."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """`text` at `path`, all or nothing. The temporary name is unique, so processes writing the
    same file concurrently never share one; a rename leaves hard links to the old file untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None:
            # a full disk, a read-only folder: said of the file meant, not of its temporary sibling
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


# Folders a command builds in before renaming them into place (`.staging-<name>-…`), and ones it
# renamed away to delete (`.removed-<name>-…`), carry the host and process that made them: what a
# killed process (kill -9, a lost node) left is told from a live one's and cleared by the next call.
HOST = socket.gethostname()
MINE = re.compile(rf"-{re.escape(HOST)}-(\d+)-[a-z0-9_]*$")  # this host's, with its process id
OWNED = re.compile(r"-\d+-[a-z0-9_]*$")  # any host's (another one's is never judged here)
UNOWNED_AGE_S = 86400  # a leftover of an rdft that did not name its owner: cleared after a day


def staging_dir(root: Path, name: str) -> Path:
    """A new hidden folder under `root` to build `name` in (rename it into place when complete)."""
    return Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{name}-{HOST}-{os.getpid()}-"))


def removal_name(folder: Path) -> Path:
    """Where `folder` is renamed before its delete, so it is gone at once even if the delete is cut."""
    return folder.with_name(f".removed-{folder.name}-{HOST}-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_leftovers(root: Path) -> list[Path]:
    """Remove the staging and removal folders under `root` that no live process owns: its owner
    ended on this host, or (no owner named) it was untouched for a day. Another host's are kept:
    on shared storage its owner may be alive there. Returns what was removed."""
    if not root.is_dir():
        return []
    removed = []
    for folder in root.iterdir():
        if not folder.name.startswith((".staging-", ".removed-")) or not folder.is_dir():
            continue
        mine = MINE.search(folder.name)
        if mine:
            stale = not _alive(int(mine[1]))
        elif OWNED.search(folder.name):
            continue
        else:
            stale = time.time() - folder.stat().st_mtime > UNOWNED_AGE_S
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def publish(staging: Path, final: Path) -> None:
    """Swap a staged folder into place: the old copy (if any) is moved aside first, then deleted.
    Callers hold the name's lock: two swaps at once would rename onto each other's new copy."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
