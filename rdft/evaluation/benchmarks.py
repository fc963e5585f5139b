"""The benchmark table (`evaluation/benchmarks.yaml`): one place for names, data, primary metrics."""

from __future__ import annotations

import functools

import yaml
from pydantic import BaseModel

from rdft.errors import RdftError, did_you_mean
from rdft.resources import evaluation_dir


class Primary(BaseModel):
    metric: str
    direction: str
    description: str


class Hub(BaseModel):
    path: str
    split: str
    data_dir: str | None = None


class Benchmark(BaseModel):
    name: str
    family: str
    repo: str
    hub: Hub | None = None
    data: str | None = None  # items shipped with rdft, relative to evaluation/ (the demo benchmark)
    n: int | None
    primary: Primary
    reasoning: bool = False  # scored after reasoning: training rows must carry it (the data-quality gate)

    @property
    def split_size(self) -> int | None:
        """Items in each of the validation and hidden test splits: min(100, n // 2)."""
        return min(100, self.n // 2) if self.n else None


@functools.cache
def benchmarks() -> dict[str, Benchmark]:
    raw = yaml.safe_load((evaluation_dir() / "benchmarks.yaml").read_text())
    return {name: Benchmark(name=name, **entry) for name, entry in raw.items()}


def get_benchmark(name: str) -> Benchmark:
    table = benchmarks()
    if name not in table:
        raise RdftError(f"unknown benchmark {name!r}; {did_you_mean(name, list(table))}valid: {', '.join(table)}")
    return table[name]
