"""py-rattler's solves and installs, each in a short-lived child process.

Why a child: py-rattler runs its async work on tokio worker threads that enter the Python
interpreter (to hand results back to asyncio) and stay alive afterwards. When the interpreter
that hosts them finalises, those threads' interpreter state is torn down under them: the process
aborts with `Fatal Python error: PyGILState_Release … finalizing`, or segfaults — about one exit
in ten after a solve on a loaded 2-core machine, also after objects were deleted. No rdft
process that lives on (the CLI, a test runner, a user's own Python importing rdft) may host
those threads, so the work runs here and this process leaves with `os._exit`, skipping the
finalisation that crashes.

    python -m rdft.envs.rattler_worker solve REQUEST.json   → JSON records on stdout
    python -m rdft.envs.rattler_worker install REQUEST.json

Errors are printed as one JSON object `{"error": "...", "kind": "..."}` with exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _solve(request: dict) -> dict:
    import rattler

    gateway = rattler.Gateway(cache_dir=Path(request["cache_dir"]))
    here = str(rattler.Platform.current())
    virtual = rattler.VirtualPackage.detect() if request["platform"] == here else []
    records = asyncio.run(
        rattler.solve(
            [rattler.Channel(c) for c in request["channels"]],
            request["specs"],
            gateway=gateway,
            platforms=[request["platform"], "noarch"],
            virtual_packages=virtual,
        )
    )
    return {
        "records": [
            {
                "name": record.name.normalized,
                "version": str(record.version),
                "build": str(record.build),
                "depends": list(record.depends),
                "url": record.url,
                "md5": record.md5.hex() if record.md5 else None,
                "sha256": record.sha256.hex() if record.sha256 else None,
            }
            for record in records
        ]
    }


def _install(request: dict) -> dict:
    import rattler

    lock = rattler.LockFile.from_path(Path(request["lock"]))
    environment = lock.default_environment()
    # Take the platform object from the lock: constructing one ourselves crashed py-rattler.
    matches = [p for p in environment.platforms() if p.name == request["platform"]]
    if not matches:
        return {"error": f"no packages for {request['platform']}", "kind": "platform"}
    records = environment.conda_repodata_records_for_platform(matches[0])
    asyncio.run(
        rattler.install(records, Path(request["prefix"]), cache_dir=Path(request["cache_dir"]), show_progress=False)
    )
    return {"installed": len(records)}


def main() -> None:
    operation, path = sys.argv[1], Path(sys.argv[2])
    try:
        request = json.loads(path.read_text())
        result = {"solve": _solve, "install": _install}[operation](request)
        code = 1 if "error" in result else 0
    except Exception as error:  # rattler raises its own exception types per cause
        result, code = {"error": str(error).strip() or type(error).__name__, "kind": type(error).__name__}, 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(code)  # never finalise with tokio threads alive (see the module docstring)


def call(operation: str, request: dict) -> dict:
    """Run one operation in a child process; its JSON result (with `error` on failure)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(request, handle)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rdft.envs.rattler_worker", operation, handle.name],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(handle.name)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return {"error": f"py-rattler's worker ended with exit {proc.returncode}: {' '.join(tail)}", "kind": "crash"}


if __name__ == "__main__":
    main()
