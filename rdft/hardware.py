"""The host's hardware, in one place: GPUs as nvidia-smi lists them (no torch needed on the host),
RAM, and the probe that asks torch inside the train env."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rdft.errors import RdftError


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_gib: float
    driver: str = ""


class NoGpus(Exception):
    """nvidia-smi is missing or failed; the message says which."""


def query_gpus() -> list[Gpu]:
    """Every GPU nvidia-smi lists; NoGpus (with the reason) when there is no working driver."""
    binary = shutil.which("nvidia-smi")
    if not binary:
        raise NoGpus("nvidia-smi not found")
    query = ["--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"]
    try:
        proc = subprocess.run([binary, *query], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NoGpus(f"nvidia-smi failed: {error}") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        raise NoGpus(f"nvidia-smi: {lines[0]}")
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            gpus.append(
                Gpu(int(parts[0]), parts[1], round(float(parts[2]) / 1024, 2), parts[3] if len(parts) > 3 else "")
            )
    return gpus


def gpus() -> list[Gpu]:
    """The GPUs, or [] when there are none (or no driver)."""
    try:
        return query_gpus()
    except NoGpus:
        return []


def ram_gib() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 2)
    return 0.0


def host_hardware() -> dict:
    """GPUs and RAM as the host sees them (no env needed): for --dry-run and `rdft batch`."""
    found = gpus()
    return {
        "gpu_count": len(found),
        "gpus": [{"index": g.index, "name": g.name, "memory_gib": g.memory_gib} for g in found],
        "ram_gib": ram_gib(),
    }


# torch's view of the train env, per process: (its interpreter, its folder, CUDA_VISIBLE_DEVICES) →
# the probe's answer. A loop asks three times (the scenario, the debug run, the full run) and each
# ask starts torch in a new process: ~2 s of a CPU, more with CUDA's start-up. What torch sees
# does not change while this process lives; the free disk does, and is read again each time.
_TORCH_VIEW: dict[tuple[str, str, str | None], dict] = {}


def probe_in_env(env, workspace: Path) -> dict:
    """What torch in the train env sees (devices, memory, bf16, CPU count), and the free disk of
    `workspace` now; written to workspace/hardware.json too."""
    from rdft.files import write_atomic
    from rdft.resources import recipes_dir

    out = workspace / "hardware.json"
    key = (str(env.python), str(env.prefix), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if key in _TORCH_VIEW:
        found = {**_TORCH_VIEW[key], "disk_free_gib": round(shutil.disk_usage(workspace).free / 2**30, 2)}
        write_atomic(out, json.dumps(found))
        return found
    result = env.run(
        ["python", str(recipes_dir() / "probe_hardware.py"), "--disk", str(workspace), "--out", str(out)],
        echo=False,
        cwd=workspace,
    )
    if not result.ok or not out.is_file():
        raise RdftError(f"the hardware probe failed in the train env: {result.tail.strip().splitlines()[-1:]}")
    found = json.loads(out.read_text())
    _TORCH_VIEW[key] = found
    return found
