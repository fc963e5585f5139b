"""A catalog of named entries: the ones rdft ships (a YAML table) plus the user's own, each
registered by a small YAML file inside its own folder under FT_FILE_PATH. The dataset registry
and the benchmark table are two catalogs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import yaml
from pydantic import BaseModel

from rdft.settings import Settings

T = TypeVar("T", bound=BaseModel)


class Catalog(Generic[T]):
    def __init__(self, model: type[T], shipped: Callable[[], Path], folder: str, registration: str):
        """`shipped`: the YAML table rdft ships; `folder`: the user's entries' folder under
        FT_FILE_PATH; `registration`: the file inside an entry's folder that registers it."""
        self.model, self._shipped, self.folder, self.registration = model, shipped, folder, registration

    @functools.cached_property
    def shipped(self) -> dict[str, T]:
        raw = yaml.safe_load(self._shipped().read_text())
        return {name: self.model(name=name, **entry) for name, entry in raw.items()}

    def user_dir(self, settings: Settings | None = None) -> Path:
        if settings is None:  # the process's settings: what the CLI loaded
            from rdft.settings import get_settings

            settings = get_settings()
        return settings.ft_file_path.expanduser().resolve() / self.folder

    def entries(self, settings: Settings | None = None) -> dict[str, T]:
        """The shipped entries, then the user's (a shipped name is never shadowed)."""
        table = dict(self.shipped)
        folder = self.user_dir(settings)
        for path in sorted(folder.glob(f"*/{self.registration}")) if folder.is_dir() else []:
            try:
                table.setdefault(
                    path.parent.name, self.model(name=path.parent.name, **yaml.safe_load(path.read_text()))
                )
            except (yaml.YAMLError, TypeError, ValueError):
                continue  # a damaged registration is no entry; `rdft ... remove NAME` clears it
        return table
