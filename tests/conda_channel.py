"""A tiny local conda channel for tests: real noarch packages made with conda-package-handling
and indexed with py-rattler, so the conda backend runs end to end without any network."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conda_package_handling import api
from rattler.index import index_fs

ACTIVATE_VALUE = "hello-from-activate.d"


def make_package(channel: Path, name: str, version: str, depends=(), files: dict[str, str] | None = None) -> Path:
    files = files or {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if rel.startswith("bin/"):
                path.chmod(0o755)
        (root / "info").mkdir()
        index = {
            "name": name,
            "version": version,
            "build": "0",
            "build_number": 0,
            "depends": list(depends),
            "noarch": "generic",
            "subdir": "noarch",
            "timestamp": int(time.time() * 1000),
            "license": "MIT",
        }
        (root / "info" / "index.json").write_text(json.dumps(index))
        paths = [
            {
                "_path": rel,
                "path_type": "hardlink",
                "sha256": hashlib.sha256((root / rel).read_bytes()).hexdigest(),
                "size_in_bytes": (root / rel).stat().st_size,
            }
            for rel in files
        ]
        (root / "info" / "paths.json").write_text(json.dumps({"paths_version": 1, "paths": paths}))
        (root / "info" / "files").write_text("".join(f"{rel}\n" for rel in files))
        out = channel / "noarch"
        out.mkdir(parents=True, exist_ok=True)
        filename = f"{name}-{version}-0.conda"
        api.create(
            str(root), [*files, "info/index.json", "info/paths.json", "info/files"], filename, out_folder=str(out)
        )
        return out / filename


def build_channel(channel: Path) -> Path:
    """`greet` (a bin script and an activate.d hook) depends on `hellolib >=1`; an older
    hellolib 0.5 is there too, so the solver has a choice to make."""
    make_package(
        channel,
        "greet",
        "1.0",
        ["hellolib >=1"],
        {
            "etc/conda/activate.d/greet.sh": f"export GREETING={ACTIVATE_VALUE}\n",
            "bin/greet": '#!/bin/sh\necho "greet says $GREETING"\n',
        },
    )
    make_package(channel, "hellolib", "1.2", [], {"share/hellolib/VERSION": "1.2\n"})
    make_package(channel, "hellolib", "0.5", [], {"share/hellolib/VERSION": "0.5\n"})
    index(channel)
    return channel


def index(channel: Path) -> None:
    """py-rattler's indexer, in a child that leaves with os._exit: its tokio threads would abort
    the test process at exit (see rdft/envs/rattler_worker.py)."""
    subprocess.run([sys.executable, __file__, str(channel)], check=True)


if __name__ == "__main__":
    asyncio.run(index_fs(Path(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)
