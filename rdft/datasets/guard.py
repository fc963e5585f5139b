"""Running the leakage guard (`rdft/datasets/leakage.py`, `rdft_data.leakage` in the data env,
where RDKit canonicalises molecules): on a data script's output in the loop, and for
`rdft datasets check-leakage` and `rdft datasets prepare`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rdft.datasets.prepare import datasets_dir
from rdft.datasets.registry import DatasetEntry
from rdft.datasets.toolkit import data_env_variables
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.evaluation.custom import spec_path
from rdft.evaluation.items import prepared_items, write_docs
from rdft.settings import Settings


def evaluation_docs(settings: Settings, benchmark: str, out: Path, data: Path | None = None) -> Path:
    """The benchmark's validation and hidden test items, whole (no --eval-limit), at `out`:
    what the guard compares training rows with."""
    write_docs(settings, benchmark, ["validation", "test"], out, data=data)
    return out


def run_guard(
    settings: Settings,
    benchmark: str,
    eval_docs: list[Path],
    train: list[Path],
    *,
    output: Path | None = None,
    log_path: Path | None = None,
    timeout: float | None = None,
) -> dict:
    """The guard in the data env: {"rows", "kept", "dropped": {reason: n}, "evaluation_items_hit",
    "dropped_rows"}; the kept rows are written to `output` when given."""
    family = get_benchmark(benchmark).family
    env = EnvManager(settings).ensure("data")
    with tempfile.TemporaryDirectory(prefix="rdft-guard-") as tmp:
        report = Path(tmp) / "report.json"
        command = ["python", "-m", "rdft_data.leakage", "--family", family, "--eval-docs", *map(str, eval_docs),
                   "--train", *map(str, train), "--report", str(report)]  # fmt: skip
        if output is not None:
            command += ["--output", str(output)]
        spec = spec_path(benchmark)
        if spec is not None:  # a user benchmark: its prompt fields and template make keys too
            command += ["--spec", str(spec)]
        result = env.run(
            command, extra_env=data_env_variables(settings.envs_dir), echo=False, log_path=log_path, timeout=timeout
        )
        if result.timed_out:
            raise RdftError(f"the leakage guard timed out after {timeout:g} s")
        if not result.ok or not report.is_file():
            lines = [line for line in result.tail.strip().splitlines() if line.strip()] or ["no output"]
            raise RdftError(f"the leakage guard failed: {lines[-1].removeprefix('leakage: ')}")
        return json.loads(report.read_text())


def check_files(
    settings: Settings, benchmark: str, train: list[Path], *, eval_docs: list[Path] | None, output: Path | None
) -> dict:
    """`rdft datasets check-leakage`: the training files against the benchmark's items (its own,
    as `rdft eval` loads them, unless `eval_docs` are given)."""
    get_benchmark(benchmark)
    for path in [*train, *(eval_docs or [])]:
        if not path.exists():
            raise RdftError(f"{path} does not exist; give the path of a training file or of evaluation docs")
    with tempfile.TemporaryDirectory(prefix="rdft-guard-") as tmp:
        if eval_docs is None:
            docs = [evaluation_docs(settings, benchmark, Path(tmp) / "evaluation.jsonl")]
        else:  # the user's docs, read and checked against the benchmark's schema as `rdft eval` would
            docs = [Path(tmp) / f"docs-{i}.jsonl" for i in range(len(eval_docs))]
            for path, out in zip(eval_docs, docs, strict=True):
                write_docs(settings, benchmark, ["all"], out, data=path)
        return run_guard(
            settings, benchmark, docs, [p.resolve() for p in train], output=output.resolve() if output else None
        )


def dataset_overlap(settings: Settings, entry: DatasetEntry) -> list[tuple[str, dict | None]]:
    """For `rdft datasets prepare`: per benchmark the prepared dataset serves, the guard's counts
    over all its rows, or None when that benchmark's items are not at hand offline (never
    prepared, not shipped with rdft)."""
    path = entry.local_path(datasets_dir(settings))
    out = []
    for benchmark in entry.benchmarks:
        if prepared_items(settings, benchmark) is None and not get_benchmark(benchmark).data:
            out.append((benchmark, None))
            continue
        with tempfile.TemporaryDirectory(prefix="rdft-overlap-") as tmp:
            docs = evaluation_docs(settings, benchmark, Path(tmp) / "evaluation.jsonl")
            out.append((benchmark, run_guard(settings, benchmark, [docs], [path])))
    return out
