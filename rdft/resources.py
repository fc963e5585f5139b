"""Folders of the source tree that ship inside the package: `envs/` as `rdft.env_specs`,
`recipes/` as `rdft.recipes`, `evaluation/` as `rdft.evaluation_files` (data-only namespace
packages, mapped in setup.cfg)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path


def _shipped(package: str, tree_folder: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError:  # an editable install does not map them: use the source tree
        return Path(__file__).resolve().parents[1] / tree_folder
    return Path(next(iter(module.__path__)))


def env_specs_dir() -> Path:
    return _shipped("rdft.env_specs", "envs")


def recipes_dir() -> Path:
    return _shipped("rdft.recipes", "recipes")


def evaluation_dir() -> Path:
    """The benchmark table and the families' task folders. RDFT_EVALUATION_DIR points at a copy
    laid out the same way (benchmarks.yaml, tasks/<family>/, …) to score a benchmark family of
    one's own without changing the install: a family is its folder and its rows of the table."""
    override = os.environ.get("RDFT_EVALUATION_DIR")
    return Path(override).expanduser().resolve() if override else _shipped("rdft.evaluation_files", "evaluation")
