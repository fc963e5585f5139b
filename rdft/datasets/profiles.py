"""Dataset profiles for the agent: computed by the toolkit's profiler in the `data` env (which
reads parquet and the base model's tokenizer), cached beside the prepared copy.

    FT_FILE_PATH/datasets/<name>/.rdft/profile-<key>.{json,txt}

A re-prepared dataset is a new folder, so its old profiles go with the old copy; the key covers
the tokenizer (and, for a local tokenizer, its file's size and time)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rdft.datasets.prepare import datasets_dir, read_manifest
from rdft.datasets.registry import DatasetEntry
from rdft.datasets.toolkit import data_env_variables
from rdft.errors import RdftError
from rdft.settings import Settings


def _key(tokenizer: str | None) -> str:
    identity = tokenizer or "words"
    if tokenizer:
        file = Path(tokenizer) / "tokenizer.json"
        if file.exists():
            stat = file.stat()
            identity = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def profile(entry: DatasetEntry, settings: Settings, tokenizer: str | None = None, *, refresh: bool = False) -> dict:
    """The profile of a prepared dataset (JSON as written by rdft_data.profile, plus `text`)."""
    from rdft.envs import EnvManager

    root = entry.local_path(datasets_dir(settings))
    if read_manifest(root) is None:
        raise RdftError(f"{entry.name} is not prepared; run `rdft datasets prepare {entry.name}` first")
    if tokenizer and Path(tokenizer).expanduser().exists():
        tokenizer = str(Path(tokenizer).expanduser().resolve())
    out = root / ".rdft" / f"profile-{_key(tokenizer)}.json"
    if refresh or not out.exists():
        env = EnvManager(settings).ensure("data")
        argv = ["python", "-m", "rdft_data.profile", str(root), "--out", str(out), "--name", entry.name]
        result = env.run(
            [*argv, *(["--tokenizer", tokenizer] if tokenizer else [])],
            extra_env=data_env_variables(settings.envs_dir),
            echo=False,
        )
        if not result.ok:
            last = result.tail.strip().splitlines()[-1:] or ["no output"]
            raise RdftError(f"profiling {entry.name} failed: {last[0]}")
    value = json.loads(out.read_text())
    value["text"] = out.with_suffix(".txt").read_text()
    return value
