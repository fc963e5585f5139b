"""Env builds: uv against pip, from the same locks, side by side in one run.

For each installer (pip: the env's own `pip install --require-hashes`; uv: `uv venv` + `uv pip
install --require-hashes`) the envs are built with `rdft env create` into a fresh RDFT_ENVS_DIR
with an empty package cache (PIP_CACHE_DIR / UV_CACHE_DIR point at new folders), so both
download what they need; then the same envs are built concurrently, as a first `rdft run`
does. The installers alternate per round. Prints JSON and, with --results, appends a table to
bench/RESULTS.md.

    python bench/env_build.py [--envs train data eval] [--rounds 1] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uv

REPO = Path(__file__).resolve().parents[1]


def rdft_bin() -> str:
    return shutil.which("rdft", path=str(Path(sys.executable).parent)) or "rdft"


def build(name: str, installer: str, root: Path) -> float:
    """Seconds `rdft env create NAME` takes with `installer`, everything cold under `root`."""
    environ = {
        **os.environ,
        "RDFT_ENVS_DIR": str(root / "envs"),
        "FT_FILE_PATH": str(root / "ft"),
        "PIP_CACHE_DIR": str(root / "pip-cache"),
        "UV_CACHE_DIR": str(root / "uv-cache"),
        "RDFT_ENV_INSTALLER": "pip" if installer == "pip" else "auto",
        "FT_Coder_CoSTEER_env_type": "venv",
        "RDFT_TORCH_VARIANT": "cpu",
    }
    start = time.perf_counter()
    proc = subprocess.run([rdft_bin(), "env", "create", name], env=environ, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"env_build: {installer} build of {name} failed:\n{proc.stderr[-2000:]}")
    return seconds


def measure(envs: list[str], installer: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"rdft-bench-{installer}-") as tmp:
        sequential = {name: round(build(name, installer, Path(tmp) / "seq"), 1) for name in envs}
        start = time.perf_counter()
        with ThreadPoolExecutor(len(envs)) as pool:  # concurrent, each under its own file lock
            list(pool.map(lambda name: build(name, installer, Path(tmp) / "par"), envs))
        concurrent = round(time.perf_counter() - start, 1)
    return {
        "sequential_s": sequential,
        "sequential_total_s": round(sum(sequential.values()), 1),
        "concurrent_s": concurrent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["train", "data", "eval"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--results", type=Path, help="Append a table to this markdown file.")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"pip": [], "uv": []}
    for round_number in range(args.rounds):
        order = ("pip", "uv") if round_number % 2 == 0 else ("uv", "pip")
        for installer in order:
            runs[installer].append(measure(args.envs, installer))
    best = {k: min(v, key=lambda r: r["sequential_total_s"]) for k, v in runs.items()}
    report = {
        "envs": args.envs,
        "rounds": args.rounds,
        "pip": best["pip"],
        "uv": best["uv"],
        "speedup_sequential": round(best["pip"]["sequential_total_s"] / best["uv"]["sequential_total_s"], 2),
        "speedup_first_run": round(best["pip"]["sequential_total_s"] / best["uv"]["concurrent_s"], 2),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "uv": subprocess.run([uv.find_uv_bin(), "--version"], capture_output=True, text=True).stdout.strip()},
    }  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.results:
        rows = [
            f"| {name} | {best['pip']['sequential_s'][name]} | {best['uv']['sequential_s'][name]} | "
            f"{best['pip']['sequential_s'][name] / best['uv']['sequential_s'][name]:.1f}× |"
            for name in args.envs
        ]
        rows.append(
            f"| all, one after another | {best['pip']['sequential_total_s']} | "
            f"{best['uv']['sequential_total_s']} | {report['speedup_sequential']}× |"
        )
        rows.append(
            f"| all, concurrently (a first `rdft run`) | {best['pip']['concurrent_s']} | "
            f"{best['uv']['concurrent_s']} | {best['pip']['concurrent_s'] / best['uv']['concurrent_s']:.1f}× |"
        )
        table = "\n".join(["| env (cold caches) | pip s | uv s | pip / uv |", "|---|---|---|---|", *rows])
        with open(args.results, "a") as handle:
            handle.write(
                f"\n{table}\n\nHost: {report['host']}; command: `python bench/env_build.py "
                f"--envs {' '.join(args.envs)} --rounds {args.rounds}`.\n"
            )


if __name__ == "__main__":
    main()
