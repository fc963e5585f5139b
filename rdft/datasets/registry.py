"""The dataset registry (`registry.yaml` beside this module), validated with pydantic, plus the
user's own datasets (`rdft datasets add`), registered inside their prepared copies."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from rdft.catalog import Catalog
from rdft.errors import RdftError, did_you_mean
from rdft.evaluation.benchmarks import benchmarks

REGISTRY = Path(__file__).with_name("registry.yaml")
USER_ENTRY = ".rdft-user-dataset.yaml"  # a user dataset's registration, inside its prepared copy


class DatasetEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    repo: str
    folder: str | None = None
    license: str
    benchmarks: list[str]
    description: str
    remove: list[str] = []
    post_download: Literal["normalise_rcr", "financeiq_train_split"] | None = None  # a step of rdft/datasets/prepare.py
    bundled: str | None = None  # shipped with rdft (rdft/datasets/data/): prepared from there
    fields: list[str] = []  # what every row holds (alternatives a|b): a --source copy is checked against it
    gold: bool = False  # rows hold the benchmark's gold fields: the data-quality gate checks answers against them
    user: bool = False  # added by the user (`rdft datasets add`)
    source_path: str | None = None  # a user dataset: the file or folder it was read from
    format: str | None = None  # a user dataset: chat, alpaca or columns
    columns: dict[str, str] = {}  # a user dataset: each column's type(s)
    rows: int | None = None  # a user dataset: how many rows

    @property
    def bundled_path(self) -> Path | None:
        return REGISTRY.parent / "data" / self.bundled if self.bundled else None

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(benchmarks()))
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}")
        return value

    @property
    def source(self) -> str:
        if self.user:
            return f"local: {self.source_path}"
        return f"{self.repo}/{self.folder}" if self.folder else self.repo

    def local_path(self, datasets_dir: Path) -> Path:
        """Where `prepare` puts this dataset: FT_FILE_PATH/datasets/<name>."""
        return datasets_dir / self.name


CATALOG = Catalog(DatasetEntry, lambda: REGISTRY, "datasets", USER_ENTRY)


def builtin() -> dict[str, DatasetEntry]:
    return CATALOG.shipped


@functools.cache
def registry() -> dict[str, DatasetEntry]:
    return CATALOG.entries()


def get_dataset(name: str) -> DatasetEntry:
    table = registry()
    if name not in table:
        raise RdftError(f"unknown dataset {name!r}; {did_you_mean(name, list(table))}see `rdft datasets list`")
    return table[name]
