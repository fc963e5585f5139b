"""Experience across runs, under RDFT_KNOWLEDGE_DIR (default FT_FILE_PATH/knowledge/):

    fixes.jsonl     an error signature (the stage and the error's last line, with paths and
                    numbers masked) with the change of files that made the next round pass
    recipes.jsonl   the train.yaml and data script of an experiment that beat the base model,
                    per benchmark family, with its gain

The coder reads the fixes whose signature matches the error it has to fix and, in its first
round, the best recipes of the benchmark's family. Appends hold a file lock (runs of a batch
share the store); each line is one whole JSON record, so a crash never leaves half a record
that a reader trusts. `rdft knowledge list|clear` shows and empties the store.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import json
import os
import re
from pathlib import Path

from filelock import FileLock

from rdft.errors import RdftError
from rdft.settings import Settings

FIX_CHARS = 3000  # a fix's diff, at most: enough for the lines that changed
SCRIPT_LINES = 120  # a remembered data script, at most (its head: imports, loading, formatting)
MASKS = [
    (re.compile(r"(/[\w.@+-]+)+"), "<path>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def store_dir(settings: Settings) -> Path:
    if settings.rdft_knowledge_dir is not None:
        return settings.rdft_knowledge_dir.expanduser().resolve()
    return settings.ft_file_path.expanduser().resolve() / "knowledge"


def signature(stage: str, error: str) -> str:
    """What identifies an error across runs: the stage and the last meaningful line (a
    traceback's exception line), with paths, addresses and numbers masked."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if not line.startswith(("File ", "^", "~"))), "")
    for pattern, mask in MASKS:
        last = pattern.sub(mask, last)
    return f"{stage}: {last.strip()[:300]}"


def files_diff(before: dict[str, str], after: dict[str, str]) -> str:
    parts = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, "").splitlines(), after.get(name, "").splitlines()
        if old != new:
            parts += difflib.unified_diff(old, new, f"a/{name}", f"b/{name}", lineterm="", n=1)
    return "\n".join(parts)[:FIX_CHARS]


def _append(settings: Settings, name: str, record: dict) -> None:
    folder = store_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **record}
    with FileLock(str(folder / f".{name}.lock")):
        with open(folder / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


# What a record of each file holds: a line of another shape (`{}`, `5`, a gain that is a word,
# a hand edit) is skipped like a cut one, so no reader formats or compares a value it cannot.
NUMBER = (int, float)
SHAPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "fixes.jsonl": {"family": str, "signature": str, "fix": str, "error": str, "source": str, "time": str},
    "recipes.jsonl": {"family": str, "benchmark": str, "base_model": str, "gain": NUMBER, "validation": NUMBER,
                      "hypothesis": str, "train_yaml": str, "process_data_py": str, "source": str, "time": str},
}  # fmt: skip
REQUIRED = {"fixes.jsonl": ("family", "signature", "fix"), "recipes.jsonl": ("family", "gain")}


def _well_formed(name: str, record: object) -> bool:
    if not isinstance(record, dict) or not all(key in record for key in REQUIRED[name]):
        return False
    for key, kind in SHAPES[name].items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return False
    return True


def _read(settings: Settings, name: str) -> list[dict]:
    path = store_dir(settings) / name
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):  # a line cut by a crash (mid-character too) is skipped
            continue
        if _well_formed(name, record):  # and one of another shape, never trusted
            records.append(record)
    return records


def check_store(settings: Settings) -> None:
    """The store can be written: a run learns into it only after a loop's whole work, so a file
    where its folder belongs is said before the run starts, not as that loop's error."""
    folder = store_dir(settings)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    where = "RDFT_KNOWLEDGE_DIR" if settings.rdft_knowledge_dir is not None else "the knowledge store"
    where += f" {folder}" + ("" if existing == folder else f": {existing}")
    if not existing.is_dir():
        raise RdftError(f"{where} is a file, not a folder; point RDFT_KNOWLEDGE_DIR at a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RdftError(f"{where} is not writable; fix its permissions or point RDFT_KNOWLEDGE_DIR elsewhere")


def remember_fix(settings: Settings, *, family: str, stage: str, error: str, fix: str, source: str) -> None:
    _append(
        settings,
        "fixes.jsonl",
        {"family": family, "signature": signature(stage, error), "error": error[-800:], "fix": fix, "source": source},
    )


def remember_recipe(
    settings: Settings,
    *,
    family: str,
    benchmark: str,
    base_model: str,
    gain: float,
    validation: float,
    files: dict[str, str],
    hypothesis: str,
    source: str,
) -> None:
    script = "\n".join(files.get("process_data.py", "").splitlines()[:SCRIPT_LINES])
    _append(
        settings,
        "recipes.jsonl",
        {
            "family": family,
            "benchmark": benchmark,
            "base_model": base_model,
            "gain": round(gain, 6),
            "validation": validation,
            "hypothesis": hypothesis,
            "train_yaml": files.get("train.yaml", ""),
            "process_data_py": script,
            "source": source,
        },
    )


def remembered(settings: Settings, source: str) -> bool:
    """Whether the recipe of `source` (a run folder's loop) is in the store already."""
    return any(record.get("source") == source for record in _read(settings, "recipes.jsonl"))


def fixes_for(settings: Settings, stage: str, error: str, limit: int = 3) -> list[dict]:
    """Remembered fixes of the same error signature, newest first."""
    wanted = signature(stage, error)
    matches = [r for r in _read(settings, "fixes.jsonl") if r.get("signature") == wanted and r.get("fix")]
    return list(reversed(matches))[:limit]


def recipes_for(settings: Settings, family: str, limit: int = 2) -> list[dict]:
    """The recipes of the family with the largest gains over their base models."""
    matches = [r for r in _read(settings, "recipes.jsonl") if r["family"] == family]  # each with a numeric gain
    return sorted(matches, key=lambda r: -r["gain"])[:limit]


def render_fixes(fixes: list[dict]) -> str:
    if not fixes:
        return ""
    parts = ["Fixes that resolved this same error before (from earlier runs):"]
    for fix in fixes:
        parts.append(f"- {fix['signature']} (run {fix.get('source', '?')}):\n{fix['fix']}")
    return "\n".join(parts)


def render_recipes(recipes: list[dict]) -> str:
    if not recipes:
        return ""
    parts = ["Recipes that beat the base model in earlier runs on this benchmark family:"]
    for recipe in recipes:  # gain and family are there (_read); the rest may be missing
        validation = recipe.get("validation")
        scored = f" (validation {validation:.4g})" if validation is not None else ""
        parts.append(
            f"- {recipe.get('benchmark', '?')} with {recipe.get('base_model', '?')}: +{recipe['gain']:.4g}{scored}; "
            f"{recipe.get('hypothesis', '')}\n  train.yaml:\n{_indent(recipe.get('train_yaml') or '')}\n"
            f"  process_data.py (first lines):\n{_indent(recipe.get('process_data_py') or '')}"
        )
    return "\n".join(parts)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def listing(settings: Settings) -> list[dict]:
    """Every record, fixes then recipes, as `rdft knowledge list` shows them."""
    return [{"kind": "fix", **r} for r in _read(settings, "fixes.jsonl")] + [
        {"kind": "recipe", **r} for r in _read(settings, "recipes.jsonl")
    ]


def clear(settings: Settings) -> int:
    """Remove the store's records; how many there were."""
    count = len(listing(settings))
    folder = store_dir(settings)
    for name in ("fixes.jsonl", "recipes.jsonl"):
        with FileLock(str(folder / f".{name}.lock")) if folder.is_dir() else contextlib.nullcontext():
            (folder / name).unlink(missing_ok=True)
    return count
