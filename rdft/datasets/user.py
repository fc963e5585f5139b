"""`rdft datasets add`: the user's own files as a training dataset the agent can draw on.

    FT_FILE_PATH/datasets/<name>/data.jsonl                 every row, as JSONL
    FT_FILE_PATH/datasets/<name>/.rdft-dataset.json         the manifest of a prepared copy
    FT_FILE_PATH/datasets/<name>/.rdft-user-dataset.yaml    the registration: source, license,
                                                            format, columns and their types, rows

The copy is read and checked before anything is written, staged, and renamed into place; the
profile the agent reads is computed right after (in the data env), and a dataset that cannot be
profiled is removed again, so nothing half-registered stays behind.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from pathlib import Path

import yaml

from rdft.datasets.prepare import MANIFEST, PreparedDataset, datasets_dir
from rdft.datasets.registry import USER_ENTRY, DatasetEntry, builtin, registry
from rdft.errors import RdftError, did_you_mean
from rdft.files import clear_leftovers, removal_name, staging_dir
from rdft.tables import read_rows

NAME = re.compile(r"^[a-z][a-z0-9_-]{1,40}$")
TYPES = {str: "string", bool: "bool", int: "int", float: "float", list: "list", dict: "object", type(None): "null"}


def infer_format(rows: list[dict]) -> str:
    """chat (every row has `messages`), alpaca (`instruction` and `output`), else columns."""
    if all(isinstance(row.get("messages"), list) for row in rows):
        return "chat"
    if all("instruction" in row and "output" in row for row in rows):
        return "alpaca"
    return "columns"


def infer_columns(rows: list[dict]) -> dict[str, str]:
    """Each column's type(s) over all rows, e.g. {"text": "string", "score": "float|null"}."""
    seen: dict[str, list[str]] = {}
    for row in rows:
        for key, value in row.items():
            kind = TYPES.get(type(value), type(value).__name__)
            kinds = seen.setdefault(str(key), [])
            if kind not in kinds:
                kinds.append(kind)
    return {key: "|".join(kinds) for key, kinds in seen.items()}


ROLES = ("system", "user", "assistant", "tool")  # what chat templates render


def check_chat(rows: list[dict]) -> None:
    """Rows with `messages` are chat rows, every one of them: a list of {role, content} messages
    with a role a chat template knows (a row of another shape would be registered as columns and
    train on nothing)."""
    for number, row in enumerate(rows, 1):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RdftError(f"row {number}: messages is not a list of {{role, content}} messages; fix the chat rows")
        for message in messages:
            if not isinstance(message, dict) or not {"role", "content"} <= set(message):
                raise RdftError(f"row {number}: every message needs a role and a content; fix the chat rows")
            if message["role"] not in ROLES:
                raise RdftError(f"row {number}: unknown role {message['role']!r}; use {', '.join(ROLES)}")


def add_dataset(
    settings, name: str, source: Path, *, description: str | None = None, license: str | None = None
) -> DatasetEntry:
    from rdft.datasets.profiles import profile

    if not NAME.match(name):
        raise RdftError(
            f"dataset name {name!r} must be 2-41 lower-case letters, digits, - or _ (starting with a letter)"
        )
    if name in builtin():
        raise RdftError(f"{name} is a built-in dataset; choose another name")
    root = datasets_dir(settings)
    clear_leftovers(root)  # what a killed add or remove left (D17)
    final = root / name
    if (final / USER_ENTRY).is_file():
        raise RdftError(f"dataset {name} exists; remove it first (`rdft datasets remove {name}`)")
    if final.exists():
        raise RdftError(f"{final} exists and is not a dataset of yours; choose another name")
    source = Path(source).expanduser()
    rows = read_rows(source, "--source", settings)
    if not rows:
        raise RdftError(f"--source {source} holds no rows; give a file with at least one row")
    kind = infer_format(rows)
    if any("messages" in row for row in rows):
        check_chat(rows)
    entry = {
        "repo": "local",
        "license": license or "yours (not stated)",
        "benchmarks": [],
        "description": description or f"{name}: {len(rows)} {kind} rows from {source.resolve()}",
        "user": True,
        "source_path": str(source.resolve()),
        "format": kind,
        "columns": infer_columns(rows),
        "rows": len(rows),
    }
    root.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(root, name)
    try:
        with open(staging / "data.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        manifest = PreparedDataset(
            name=name,
            repo="local",
            folder=None,
            source=str(source.resolve()),
            revision=None,
            files=["data.jsonl"],
            removed=[],
            normalised=[],
            prepared=datetime.datetime.now(datetime.UTC),
        )
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=1))
        (staging / USER_ENTRY).write_text(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True))
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    registry.cache_clear()
    added = registry()[name]
    try:
        profile(added, settings)  # what the agent reads about it, computed once now
    except BaseException:
        remove_dataset(settings, name)
        raise
    return added


def remove_dataset(settings, name: str) -> Path:
    if name in builtin():
        raise RdftError(f"{name} is a built-in dataset; only datasets you added can be removed")
    final = datasets_dir(settings) / name
    clear_leftovers(final.parent)  # what a killed add or remove left (D17)
    if not (final / USER_ENTRY).is_file():
        mine = [n for n, e in registry().items() if e.user]
        raise RdftError(f"no dataset {name!r} of yours; {did_you_mean(name, mine)}see `rdft datasets list`")
    doomed = removal_name(final)
    os.rename(final, doomed)  # gone from the registry at once, even if the delete is interrupted
    shutil.rmtree(doomed, ignore_errors=True)
    registry.cache_clear()
    return final
