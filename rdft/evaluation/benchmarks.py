"""The benchmark table (`evaluation/benchmarks.yaml`): one place for names, data, primary metrics;
plus the user's own benchmarks (`rdft benchmarks add`), registered under FT_FILE_PATH/benchmarks."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel

from rdft.catalog import Catalog
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
    name: str | None = None  # the dataset's config name, where it has several
    data_files: str | None = None  # one file of the repo, where the repo's splits do not name the items


class Benchmark(BaseModel):
    name: str
    family: str
    repo: str
    hub: Hub | None = None
    data: str | None = None  # items shipped with rdft, relative to evaluation/ (the demo benchmark)
    n: int | None
    primary: Primary
    reasoning: bool = False  # scored after reasoning: training rows must carry it (the data-quality gate)
    custom: dict | None = None  # a user benchmark's spec (prompt, answer rule, metric): family `custom`
    description: str | None = None  # what the benchmark asks, for the LLM (a user benchmark: its own words)
    fields: list[str] = []  # what every doc holds (`a|b`: one of them); evaluation/prepare.py checks it
    scored_fields: list[str] = []  # what the scorer reads from a doc; evaluation/score.py checks it
    judge: bool = False  # the scorer takes FT_JUDGE_MODEL's LLM judge when it is set
    oracle: bool = False  # the scorer takes the chemistry oracles in RDFT_CHEM_ORACLE_DIR when it is set
    concurrency: int = 1  # items evaluation/score.py scores side by side (code benchmarks wait on programs)
    upstream: str | None = None  # RD-Agent's name for it, where that differs (FinanceIQ_gen)

    @property
    def task_template(self) -> Path:
        """The lm-eval task YAML it is scored with (a user benchmark: the generic `custom` one)."""
        folder = evaluation_dir() / "tasks" / self.family
        return folder / ("custom.yaml" if self.custom else f"{self.name}.yaml")

    @property
    def split_size(self) -> int | None:
        """Items in each of the validation and hidden test splits: min(100, n // 2)."""
        return min(100, self.n // 2) if self.n else None


class Group(BaseModel):
    """An aggregate name of RD-Agent's (evaluation/groups.yaml): several benchmarks under one name."""

    name: str
    description: str
    members: list[str]


@functools.cache
def groups() -> dict[str, Group]:
    import yaml

    raw = yaml.safe_load((evaluation_dir() / "groups.yaml").read_text())
    return {name: Group(name=name, **entry) for name, entry in raw.items()}


USER_SPEC = "benchmark.yaml"  # a user benchmark's registration, beside its items
CATALOG = Catalog(Benchmark, lambda: evaluation_dir() / "benchmarks.yaml", "benchmarks", USER_SPEC)


def user_benchmarks_dir() -> Path:
    return CATALOG.user_dir()


def shipped() -> dict[str, Benchmark]:
    return CATALOG.shipped


@functools.cache
def benchmarks() -> dict[str, Benchmark]:
    return CATALOG.entries()


def get_benchmark(name: str) -> Benchmark:
    table = benchmarks()
    if name in groups() and name not in table:
        members = ", ".join(groups()[name].members)
        raise RdftError(
            f"{name} is a group of benchmarks ({members}); name one of them, and watch the others with --regression"
        )
    if name not in table:
        raise RdftError(f"unknown benchmark {name!r}; {did_you_mean(name, list(table))}valid: {', '.join(table)}")
    return table[name]


def table_row(name: str) -> dict:
    """Benchmark `name`'s row as evaluation/benchmarks.yaml holds it (the user's spec included):
    the `entry` every family function takes (GRPO's reward is the family's `score`)."""
    return get_benchmark(name).model_dump(mode="json")
