"""Write the docs of benchmark splits as JSONL: from the Hugging Face repo, or a local file.

    python evaluation/prepare.py --benchmark NAME --split validation|test|all|slice [...]
                                 --out DOCS.jsonl [...] [--data PATH] [--limit N] [--seed 0]

Splits: the benchmark's evaluation items are shuffled with a fixed seed; the validation split
is the first min(100, n // 2) of them, the hidden test split the next as many (disjoint).
`all` keeps every item in its original order; `slice` is every item in the seeded shuffle's order,
so `--limit N` cuts a fixed random slice of N (the forgetting check's). Several splits are written one after the other
into one file (the leakage guard reads validation and test together), or each into its own.
Rows are first narrowed to the benchmark's own (its family's `benchmark_docs`). Every item is checked
against the family's doc schema before anything is written. Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def load_table() -> dict:
    """The shipped benchmark table plus the user's own benchmarks (`rdft benchmarks add`), whose
    registrations rdft points to with RDFT_USER_BENCHMARKS."""
    table = yaml.safe_load((HERE / "benchmarks.yaml").read_text())
    user = os.environ.get("RDFT_USER_BENCHMARKS")
    if user:
        for path in sorted(Path(user).glob("*/benchmark.yaml")):
            table.setdefault(path.parent.name, yaml.safe_load(path.read_text()))
    return table


def doc_fields(entry: dict) -> list[str]:
    """The fields every doc of the benchmark holds (`a|b`: one of them): its table row's `fields`,
    or a user benchmark's prompt and answer fields."""
    return entry.get("fields") or (entry.get("custom") or {}).get("fields") or []


def scored_fields(entry: dict) -> list[str]:
    """The fields the benchmark's scorer reads from a doc (a user benchmark: its answer field)."""
    custom = entry.get("custom")
    return entry.get("scored_fields") or ([custom["answer_field"]] if custom else [])


def read_local(path: Path) -> list[dict]:
    if path.is_dir():
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(path.glob("*.json"))]
    if path.suffix == ".parquet":
        import pandas

        return json.loads(pandas.read_parquet(path).to_json(orient="records"))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    value = json.loads(text)
    return value if isinstance(value, list) else [value]


def check_schema(rows: list, benchmark: str, fields: list[str], what: str = "item") -> None:
    """Every row holds `fields` (alternatives separated by |); the first that does not stops with
    one line."""
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise SystemExit(f"prepare: {what} {number} is not a JSON object; give {benchmark}'s own docs")
        for options in fields:
            if not any(row.get(name) not in (None, "") for name in options.split("|")):
                shown = " or ".join(repr(name) for name in options.split("|"))
                raise SystemExit(
                    f"prepare: {what} {number} has no {shown}, which {benchmark} docs hold; give {benchmark}'s own docs"
                )


def read_hub(hub: dict) -> list[dict]:
    from datasets import load_dataset

    kwargs = {"data_dir": hub["data_dir"]} if hub.get("data_dir") else {}
    if hub.get("name"):  # a dataset config (BioProBench's PQA, ORD, ...)
        kwargs["name"] = hub["name"]
    if hub.get("data_files"):  # one file of the repo (TableBench's TableBench_TCoT.jsonl)
        kwargs["data_files"] = hub["data_files"]
    token = os.environ.get("HF_TOKEN") or None
    dataset = load_dataset(hub["path"], split=hub["split"], token=token, **kwargs)
    return json.loads(dataset.to_pandas().to_json(orient="records"))


def benchmark_docs(rows: list[dict], benchmark: str, entry: dict) -> list[dict]:
    """The benchmark's own items among the source's rows, as its family selects them."""
    import importlib.util

    path = HERE / "tasks" / entry["family"] / "utils.py"
    spec = importlib.util.spec_from_file_location(f"rdft_family_{entry['family']}", path)
    family = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(family)
    return family.benchmark_docs({**entry, "name": benchmark}, rows)


def split(rows: list[dict], which: str, seed: int) -> list[dict]:
    if which == "all":
        return rows
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if which == "slice":  # the shuffle's order: --limit N then takes a seeded random N
        return [rows[i] for i in order]
    size = min(100, len(rows) // 2)
    chosen = order[:size] if which == "validation" else order[size : 2 * size]
    return [rows[i] for i in sorted(chosen)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--split", choices=["validation", "test", "all", "slice"], nargs="+", default=["validation"])
    parser.add_argument("--data", type=Path, help="A local file or folder instead of the Hub repo.")
    parser.add_argument(
        "--out",
        type=Path,
        nargs="+",
        required=True,
        help="One file (the splits one after the other) or one file per split.",
    )
    parser.add_argument("--limit", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = load_table()
    if args.benchmark not in table:
        raise SystemExit(f"prepare: unknown benchmark {args.benchmark}; see `rdft benchmarks list`")
    entry = table[args.benchmark]
    if args.data:
        rows = read_local(args.data)
    elif entry.get("data"):
        rows = read_local(HERE / entry["data"])  # shipped with rdft (the demo benchmark)
    else:
        rows = read_hub(entry["hub"])
    if not rows:
        raise SystemExit(f"prepare: the data holds no items for {args.benchmark}")
    check_schema(rows, args.benchmark, doc_fields(entry))
    rows = benchmark_docs(rows, args.benchmark, entry)
    if len(args.out) not in (1, len(args.split)):
        raise SystemExit("prepare: give one --out file, or one per --split")
    parts = []
    for which in args.split:
        part = split(rows, which, args.seed)[: args.limit]
        if not part:
            raise SystemExit(f"prepare: no {which} items for {args.benchmark}; the data holds too few rows")
        parts.append(part)
    together = [row for part in parts for row in part]
    outputs = zip(args.out, parts, strict=True) if len(args.out) > 1 else [(args.out[0], together)]
    for out, chosen in outputs:
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen), encoding="utf-8")
        os.replace(tmp, out)


if __name__ == "__main__":
    try:
        main()
    except json.JSONDecodeError as error:
        raise SystemExit(f"prepare: not valid JSON ({error.msg}, line {error.lineno}); fix the file") from None
    except UnicodeDecodeError:
        raise SystemExit("prepare: the file is not UTF-8 text; give the benchmark's docs as UTF-8 JSON") from None
    except ValueError as error:  # e.g. a parquet file pandas cannot read
        raise SystemExit(f"prepare: cannot read the data ({error})") from None
