"""Profiles of a prepared dataset: what the agent reads before it proposes a data recipe.

Per task folder (the folder of each data file, relative to the dataset): item count, and per
top-level field its empty ratio and the token lengths of its non-empty values (min, p50, p99,
max; nearest-rank percentiles) — counted with the base model's tokenizer when given, else in
whitespace-separated words — plus a few truncated samples.

    python -m rdft_data.profile DATASET_DIR --out profile.json [--tokenizer MODEL_DIR] [--name NAME]

writes the profile as JSON and, beside it (`profile.txt`), as the text the agent reads.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from .records import TokenCounter, write_atomically

DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")
SAMPLES = 3
SAMPLE_CHARS = 240


def data_files(root: Path) -> list[Path]:
    """The dataset's data files, hidden folders (.cache, .rdft) left out."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and path.suffix in DATA_SUFFIXES and not any(p.startswith(".") for p in relative.parts):
            found.append(path)
    return found


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix == ".json":
        value = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(value, dict):  # {"data": [...]} or one record
            lists = [v for v in value.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
            return lists[0] if len(lists) == 1 else [value]
        return [row for row in value if isinstance(row, dict)]
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)) and not value:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def field_stats(rows: list[dict], counter: TokenCounter) -> dict:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    stats = {}
    for field in fields:
        texts = [_text(row.get(field)) for row in rows]
        non_empty = [text for text in texts if text.strip()]
        lengths = sorted(counter.count_many(non_empty))
        entry = {"empty_ratio": round(1 - len(non_empty) / len(rows), 4)}
        if lengths:
            entry.update(min=lengths[0], p50=percentile(lengths, 50), p99=percentile(lengths, 99), max=lengths[-1])
        stats[field] = entry
    return stats


def truncated(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        text = _text(value)
        out[key] = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + f"… [{len(text)} chars]"
    return out


def profile_folder(root: Path, tokenizer: str | None = None, name: str | None = None) -> dict:
    counter = TokenCounter(tokenizer)
    groups: dict[str, list[Path]] = {}
    for path in data_files(root):
        groups.setdefault(str(path.parent.relative_to(root)), []).append(path)
    tasks = {}
    for folder, files in groups.items():
        rows = [row for path in files for row in read_rows(path)]
        tasks[folder] = {
            "files": [str(path.relative_to(root)) for path in files],
            "items": len(rows),
            "fields": field_stats(rows, counter) if rows else {},
            "samples": [truncated(row) for row in rows[:SAMPLES]],
        }
    return {
        "name": name or root.name,
        "unit": counter.unit,
        "tokenizer": tokenizer,
        "items": sum(task["items"] for task in tasks.values()),
        "tasks": tasks,
    }


def render(profile: dict) -> str:
    """The profile as the agent reads it."""
    unit = profile["unit"] + (f" of {profile['tokenizer']}" if profile.get("tokenizer") else "")
    lines = [f"Dataset {profile['name']}: {profile['items']} items; lengths in {unit}."]
    for folder, task in profile["tasks"].items():
        lines.append(f"\n## {folder}  ({task['items']} items; files: {', '.join(task['files'])})")
        lines.append(f"{'field':<28} {'empty':>6} {'min':>7} {'p50':>7} {'p99':>7} {'max':>7}")
        for field, stats in task["fields"].items():
            numbers = [stats.get(k) for k in ("min", "p50", "p99", "max")]
            cells = " ".join(f"{'-' if n is None else n:>7}" for n in numbers)
            lines.append(f"{field[:28]:<28} {stats['empty_ratio']:>6.0%} {cells}")
        for number, sample in enumerate(task["samples"], 1):
            lines.append(f"sample {number}: " + json.dumps(sample, ensure_ascii=False))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile a prepared dataset folder.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokenizer", help="A model folder or Hub id whose tokenizer counts the tokens.")
    parser.add_argument("--name")
    args = parser.parse_args()
    profile = profile_folder(args.folder, args.tokenizer, args.name)
    write_atomically(args.out.with_suffix(".txt"), lambda handle: handle.write(render(profile) + "\n"))
    write_atomically(
        args.out, lambda handle: json.dump(profile, handle, ensure_ascii=False, indent=1)
    )  # last: the mark


if __name__ == "__main__":
    main()
