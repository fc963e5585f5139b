"""Print this machine's training hardware as JSON: GPUs, CPU cores, RAM, free disk, versions.

Runs inside the `train` env (it asks torch what it sees, which is what training will get,
CUDA_VISIBLE_DEVICES included); imports nothing from rdft.

    python recipes/probe_hardware.py [--disk PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil


def ram_gib() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def probe(disk: str) -> dict:
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 2),
                    "compute_capability": f"{props.major}.{props.minor}",
                }
            )
    return {
        # The count sits next to the list it counts, so no reader can take it from the wrong level.
        "gpu_count": len(gpus),
        "gpus": gpus,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(ram_gib(), 2),
        "disk_free_gib": round(shutil.disk_usage(disk).free / 2**30, 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # Whether the recipe's `liger: auto` will find the kernels (the planner counts their memory).
        "liger": importlib.util.find_spec("liger_kernel") is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disk", default=".", help="Measure free disk here.")
    parser.add_argument("--out", help="Also write the JSON to this file (what rdft reads).")
    args = parser.parse_args()
    text = json.dumps(probe(args.disk))
    if args.out:
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, args.out)
    print(text)


if __name__ == "__main__":
    main()
