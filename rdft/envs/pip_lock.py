"""Pip locks with hashes (`envs/<name>.<variant>.txt`), generated with `uv pip compile`.

Two variants per env: `cuda` takes torch from PyPI (CUDA builds on Linux), `cpu` takes the
CPU build from PyTorch's CPU index. Both are resolved for one target (Python of the spec,
manylinux x86_64) so a lock made on a laptop installs on the GPU host.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from rdft.envs.spec import EnvSpec
from rdft.errors import RdftError

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PLATFORM_LINE = "# target: "


def target_platform() -> str:
    machine = platform.machine()
    arch = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[machine]
    return f"{arch}-manylinux_2_28"


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens: unreachable indexes are left out
    rather than retried by pip for minutes per package."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def extra_indexes(variant: str) -> list[str]:
    """Index URLs a variant needs beyond PyPI, where they can be reached from here."""
    if variant == "cpu" and reachable(TORCH_CPU_INDEX):
        return [TORCH_CPU_INDEX]
    return []


def find_links(variant: str) -> list[str]:
    # pip's own PIP_FIND_LINKS (a local wheel folder) is honoured for the CPU variant, where a
    # local CPU torch wheel can stand in for PyTorch's index; never for CUDA, whose torch
    # must not resolve to a local CPU build.
    if variant != "cpu":
        return []
    return [p for p in os.environ.get("PIP_FIND_LINKS", "").split() if p]


def compile_lock(spec: EnvSpec, variant: str) -> Path:
    """Resolve the pip part of `spec` for `variant` with uv and write its lock atomically."""
    import uv

    if not spec.pip_for(variant):
        raise RdftError(f"env {spec.name!r} has no `pip:` dependencies to lock")
    python = spec.python_version
    if python is None:
        raise RdftError(f"{spec.path}: pin python (e.g. `python=3.11`) so the pip lock has a target")
    target = target_platform()
    out = spec.pip_lock_path(variant)
    tmp = out.with_suffix(".txt.tmp")
    requirements = out.with_suffix(".in.tmp")
    requirements.write_text("\n".join(spec.pip_for(variant)) + "\n")
    if out.is_file():  # uv keeps the pins of an existing output file where they still fit: small diffs
        shutil.copyfile(out, tmp)
    command = [
        uv.find_uv_bin(),
        "pip",
        "compile",
        str(requirements),
        "--generate-hashes",
        "--no-header",
        "--python-version",
        python,
        "--python-platform",
        target,
        "--output-file",
        str(tmp),
        "--quiet",
        "--index-strategy",
        "unsafe-best-match",
    ]
    for option, url in spec.pip_indexes():  # the spec's pip-repositories (conda-lock's key)
        command += [option, url]
    for index in extra_indexes(variant):
        command += ["--extra-index-url", index]
    for link in find_links(variant):
        command += ["--find-links", link]
    try:
        proc = subprocess.run(command, capture_output=True, text=True)
    finally:
        requirements.unlink(missing_ok=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        reason = next((line.strip() for line in proc.stderr.splitlines() if line.strip()), "uv failed")
        raise RdftError(f"cannot lock the pip part of env {spec.name!r} ({variant}): {reason}")
    body = tmp.read_text().replace(str(requirements), f"{spec.path.name}")
    header = (
        f"# Pip lock of env `{spec.name}`, variant `{variant}`; made by `rdft env lock {spec.name}`"
        " with uv. Do not edit.\n"
        f"# rdft-spec-sha256: {spec.pip_hash(variant)}\n"
        f"{PLATFORM_LINE}python {python}, {target}\n"
    )
    tmp.write_text(header + body)
    os.replace(tmp, out)
    return out


def package_count(path: Path) -> int:
    """How many packages a pip lock pins."""
    return sum(1 for line in path.read_text().splitlines() if re.match(r"^[A-Za-z0-9][\w.-]*==", line))


def lock_target(path: Path) -> str | None:
    for line in path.read_text().splitlines()[:5]:
        if line.startswith(PLATFORM_LINE):
            return line.removeprefix(PLATFORM_LINE).split(", ")[-1]
    return None
