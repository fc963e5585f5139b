"""Rows of a user's file or folder: JSONL, JSON (a list, or one object), CSV, parquet.

Parquet is read in the `data` env (pandas and pyarrow live there, not in rdft's own install).
Every failure is one line naming the file, the row and the fix.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

from rdft.errors import RdftError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
PARQUET_TO_JSONL = (
    "import sys, pandas\n"
    "pandas.read_parquet(sys.argv[1]).to_json(sys.argv[2], orient='records', lines=True, force_ascii=False)\n"
)


def files_of(path: Path, what: str) -> list[Path]:
    if not path.exists():
        raise RdftError(f"{what} {path} does not exist; give a JSONL, JSON, CSV or parquet file, or a folder of them")
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise RdftError(f"{what} {path} is not {', '.join(SUFFIXES)}; convert it to JSONL")
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise RdftError(f"{what} {path} holds no {', '.join(SUFFIXES)} files")
    return found


def read_rows(path: Path, what: str, settings=None) -> list[dict]:
    """Every row of `path` (a file, or a folder of files) as a dict."""
    rows: list[dict] = []
    for file in files_of(Path(path).expanduser(), what):
        rows += _read_file(file, what, settings)
    return rows


def _read_file(file: Path, what: str, settings) -> list[dict]:
    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            return _read_parquet(file, what, settings)
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RdftError(f"{what} {file} is not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise RdftError(f"cannot read {what} {file} ({error.strerror}); check its permissions") from None
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        rows = []
        for row in reader:  # a ragged row would shift its values into the wrong columns, or lose them
            if None in row or None in row.values():
                many = "more" if None in row else "fewer"
                raise RdftError(
                    f"{what} {file}:{reader.line_num} has {many} fields than its header's "
                    f"{len(reader.fieldnames or [])}; fix that line"
                )
            rows.append(row)
    elif suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise RdftError(f"{what} {file}:{number} is not valid JSON ({error.msg}); fix that line") from None
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise RdftError(
                f"{what} {file} is not valid JSON ({error.msg}, line {error.lineno}); fix the file"
            ) from None
        rows = value if isinstance(value, list) else [value]
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise RdftError(f"{what} {file}: row {number} is not an object with fields; give one object per row")
    return rows


def _read_parquet(file: Path, what: str, settings) -> list[dict]:
    if settings is None:
        raise RdftError(f"{what} {file} is parquet, which is read in the data env; convert it to JSONL here")
    from rdft.envs import EnvManager

    env = EnvManager(settings).ensure("data")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.jsonl"
        result = env.run(["python", "-c", PARQUET_TO_JSONL, str(file), str(out)], echo=False)
        if not result.ok or not out.is_file():
            last = (result.tail.strip().splitlines() or ["no output"])[-1]
            raise RdftError(
                f"cannot read {what} {file} as parquet ({last[:160]}); check the file or convert it to JSONL"
            )
        return _read_file(out, what, settings)
