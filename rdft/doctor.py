"""`rdft doctor`: what this host offers rdft, without ever printing a secret."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from rdft import __version__
from rdft.envs.conda import CONDA_BINARIES
from rdft.envs.manager import ADOPTED, MARKER
from rdft.hardware import NoGpus, query_gpus
from rdft.settings import IGNORED, SECRET_NAMES, Settings


def _version_of(binary: str) -> str:
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "?"


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpus() -> list[str] | str:
    """One line per GPU, or why there are none."""
    try:
        found = query_gpus()
    except NoGpus as why:
        return f"none ({why})"
    return [f"{g.index}, {g.name}, {g.memory_gib} GiB, driver {g.driver}" for g in found]


def free_disk(path: Path) -> tuple[Path, int]:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    probe = path.expanduser().resolve()
    while not probe.exists():
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free


def report(settings: Settings) -> list[tuple[str, str]]:
    """(label, value) rows for the doctor's report."""
    rows = [
        ("rdft", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", f"{platform.system()} {platform.machine()}"),
    ]
    for name in CONDA_BINARIES:
        found = shutil.which(name)
        rows.append((f"conda engine {name}", f"{found} ({_version_of(found)})" if found else "not found"))
    rattler = _package_version("py-rattler")
    rows.append(("conda engine py-rattler", rattler or "not installed"))
    rows.append(("conda-lock", _package_version("conda-lock") or "not installed"))
    rows.append(("uv (pip locks)", _package_version("uv") or "not installed"))
    found = gpus()
    if isinstance(found, str):
        rows.append(("gpus", found))
    else:
        rows += [(f"gpu {i}", line) for i, line in enumerate(found)]
    secrets = settings.secrets()
    for name in SECRET_NAMES:
        rows.append((f"key {name}", "set" if name in secrets else "not set"))
    where, free = free_disk(settings.ft_file_path)
    rows.append(("FT_FILE_PATH", str(settings.ft_file_path)))
    rows.append(("free disk", f"{free / 2**30:.1f} GiB under {where}"))
    rows.append(("envs dir", str(settings.envs_dir)))
    rows.append(("env backend", settings.ft_coder_costeer_env_type))
    rows.append(("torch variant", settings.rdft_torch_variant))
    rows += _adopted_envs(settings.envs_dir)
    for name in settings.ignored_in_use():
        rows.append((f"ignored {name}", IGNORED[name]))
    for key in settings.unknown_keys():
        rows.append(("unknown .env key", key))
    return rows


def _adopted_envs(envs_dir: Path) -> list[tuple[str, str]]:
    """Envs that are the user's own interpreters (`rdft env adopt`): named, so no one wonders
    why rdft never rebuilds them."""
    rows = []
    for marker in sorted(envs_dir.glob(f"*/{MARKER}")) if envs_dir.is_dir() else []:
        if marker.parent.is_symlink():  # envs/<name> points at envs/<name>-adopted: one row
            continue
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if record.get("backend") == ADOPTED and (envs_dir / record["name"]).resolve() == marker.parent.resolve():
            gone = "" if Path(record["python"]).is_file() else " (gone: adopt one again or `rdft env remove`)"
            rows.append((f"env {record['name']}", f"adopted: {record['python']}{gone}"))
    return rows
