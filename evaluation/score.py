"""Score saved responses with the benchmark scorers and print a summary JSON.

    python evaluation/score.py --benchmark NAME --docs DOCS --predictions PRED.jsonl
    python evaluation/score.py --benchmark chemcotbench_<family> --log AUTHORS_LOG.json

DOCS: JSONL, a JSON list, or a folder of JSON files, each doc in the benchmark's own schema.
PRED.jsonl rows: {"doc_id": <index into DOCS> or "id": <doc's id>, "response": "..."}; several
rows for one doc are its k samples. A doc without a prediction is scored as unreadable.
The primary metric's 95% interval is a percentile bootstrap over items (1000 resamples, seed 0).
Runs in the eval env (RDKit); imports nothing from rdft.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from prepare import check_schema, load_table, scored_fields  # noqa: E402  (beside this file)


def load_family(family: str):
    path = HERE / "tasks" / family / "utils.py"
    spec = importlib.util.spec_from_file_location(f"rdft_eval_{family}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_docs(path: Path) -> list[dict]:
    if path.is_dir():
        return [json.loads(p.read_text()) for p in sorted(path.glob("*.json"))]
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    value = json.loads(text)
    return value if isinstance(value, list) else [value]


def group_predictions(docs: list[dict], rows: list[dict]) -> list[list[str]]:
    by_id = {str(doc.get("id")): index for index, doc in enumerate(docs) if doc.get("id") is not None}
    grouped: list[list[str]] = [[] for _ in docs]
    for number, row in enumerate(rows, 1):
        if "doc_id" in row:
            index = int(row["doc_id"])
        elif str(row.get("id")) in by_id:
            index = by_id[str(row["id"])]
        else:
            raise SystemExit(
                f"score: prediction row {number} names no known doc (doc_id or id); fix the predictions file"
            )
        if not 0 <= index < len(docs):
            raise SystemExit(f"score: prediction row {number} has doc_id {index} outside 0..{len(docs) - 1}")
        grouped[index].append(row["response"])
    return [responses or [""] for responses in grouped]


class Family:
    """A benchmark's family module (evaluation/tasks/<family>/utils.py) behind the interface every
    family exposes: `score(entry, doc, responses, judge)`, `summarize(entry, items)`,
    `primary(entry, items)`, `full_marks(entry, item)`, `training_answer(entry, doc, force_think)`,
    `benchmark_docs(entry, rows)`, `benchmark_doc(entry, row)` (a row as the benchmark's docs hold
    it: what training prompts are rendered from) and lm-eval's `doc_to_text(doc)`. `entry` is the benchmark's row
    of benchmarks.yaml (with its name), so nothing here knows a family or a benchmark by name."""

    def __init__(self, benchmark: str, entry: dict, judge_model: str | None = None, judge_retry: int = 3):
        self.entry = {**entry, "name": benchmark}
        self.module = load_family(entry["family"])
        # An LLM judge where the table row asks for one (`judge: true`) and a judge model is set.
        self.judge = self.module.Judge(judge_model, judge_retry) if judge_model and entry.get("judge") else None

    def score(self, doc: dict, responses: list[str]) -> dict:
        """The item's scores over its k samples (a family that scores samples one by one keeps
        them under `per_sample`, with the first one's at the top, for the diagnostics)."""
        return self.module.score(self.entry, doc, responses, self.judge)

    @staticmethod
    def sample_sets(items: list[dict]) -> list[list[dict]]:
        """The split scored once per sample index: metrics such as macro-F1 are computed over a
        whole split, so avg@k is their mean over the k sets, not a mean of per-item means."""
        k = min(len(item.get("per_sample", [item])) for item in items)
        return [[item["per_sample"][j] if "per_sample" in item else item for item in items] for j in range(k)]

    def metrics(self, items: list[dict]) -> dict:
        return mean_tree([self.module.summarize(self.entry, group) for group in self.sample_sets(items)])

    def primary(self, items: list[dict]) -> float | None:
        values = [self.module.primary(self.entry, group) for group in self.sample_sets(items)]
        values = [value for value in values if value is not None]
        return sum(values) / len(values) if values else None


def mean_tree(trees: list):
    """Numbers averaged leaf by leaf over several metric dicts (None where every one is None);
    anything else (names, lists) taken from the first."""
    first = trees[0]
    if len(trees) == 1:
        return first
    if isinstance(first, dict):
        return {key: mean_tree([tree.get(key) for tree in trees]) for key in first}
    numbers = [t for t in trees if isinstance(t, (int, float)) and not isinstance(t, bool)]
    if isinstance(first, (int, float, type(None))) and not isinstance(first, bool) and numbers:
        return sum(numbers) / len(numbers)
    return first


def bootstrap_ci(family: Family, items: list[dict], resamples: int = 1000) -> list[float] | None:
    rng = random.Random(0)
    values = []
    for _ in range(resamples):
        sample = [items[rng.randrange(len(items))] for _ in items]
        value = family.primary(sample)
        if value is not None:
            values.append(value)
    if not values:
        return None
    values.sort()
    return [values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]]


SAME_ANSWER_SHARE = 0.9  # the same answer for this share of items: the model ignores the question
UNREADABLE_RATE = 0.5
COLLAPSED_SHARE = 0.9  # this share of (nearly) empty responses
MIN_ITEMS = 5  # fewer items say nothing about diversity


def diagnostics(items: list[dict], responses: list[list[str]]) -> dict:
    """How degenerate the answers are, in any family: the share of the most common answer, the
    unreadable rate, and (nearly) empty responses; `flags` says which crossed its line."""
    n = len(items)
    answers = [item.get("answer") for item in items]
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[str(answer)] = counts.get(str(answer), 0) + 1
    common, top = max(counts.items(), key=lambda kv: kv[1]) if counts else (None, 0)
    texts = [r if isinstance(r, str) else json.dumps(r) for group in responses for r in group]  # logs hold dicts
    empty = sum(1 for text in texts if len((text or "").strip()) < 4)
    out = {
        "most_common_answer": common,
        "most_common_share": top / n if n else 0.0,
        "unreadable_rate": sum(a is None for a in answers) / n if n else 0.0,
        "empty_response_share": empty / len(texts) if texts else 0.0,
        "median_response_chars": sorted(len(t or "") for t in texts)[len(texts) // 2] if texts else 0,
    }
    flags = []
    if n >= MIN_ITEMS and out["most_common_share"] >= SAME_ANSWER_SHARE:
        flags.append(f"the same answer ({common}) for {out['most_common_share']:.0%} of items")
    if n >= MIN_ITEMS and out["unreadable_rate"] >= UNREADABLE_RATE:
        flags.append(f"{out['unreadable_rate']:.0%} of answers unreadable")
    if texts and len(texts) >= MIN_ITEMS and out["empty_response_share"] >= COLLAPSED_SHARE:
        flags.append(f"collapsed length: {out['empty_response_share']:.0%} of responses (nearly) empty")
    out["flags"] = flags
    return out


def summarize(
    benchmark: str,
    docs: list[dict],
    responses: list[list[str]],
    judge_model: str | None = None,
    judge_retry: int = 3,
    items_path: Path | None = None,
) -> dict:
    entry = load_table()[benchmark]
    family = Family(benchmark, entry, judge_model, judge_retry)
    # Items scored side by side where the table row says so (`concurrency`: code that runs model
    # programs, each item waiting on its own sandboxed processes); else one after the other.
    with ThreadPoolExecutor(int(entry.get("concurrency") or 1)) as pool:
        items = list(pool.map(family.score, docs, responses))
    for item in items:  # what "wrong" means is the family's: the feedback shows items without full marks
        item["full_marks"] = bool(family.module.full_marks(family.entry, item))
    if items_path is not None:  # per-item scores: the paired comparison of two runs reads them
        items_path.write_text("".join(json.dumps(item) + "\n" for item in items))
    metric = entry["primary"]["metric"]
    metrics = family.metrics(items)
    value = family.primary(items)
    summary = {
        "benchmark": benchmark,
        "n": len(items),
        "primary": {
            "name": metric,
            "value": value,
            "direction": entry["primary"]["direction"],
            "ci95": bootstrap_ci(family, items) if value is not None else None,
        },
        "metrics": metrics.get("subtasks", metrics),
        "unavailable": metrics.get("unavailable", []),
        "diagnostics": diagnostics(items, responses),
    }
    if family.judge is not None:
        judge = family.judge
        summary["metrics"]["judge"] = {
            "model": judge.model, "calls": judge.calls, "flipped_to_correct": judge.flips, "failures": judge.failures,
        }  # fmt: skip
    if summary["unavailable"]:
        covered = sorted(set(summary["metrics"]) - set(summary["unavailable"]))
        summary["primary"]["covers"] = covered
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--docs", type=Path, action="append", help="Repeat with --predictions to score several splits.")
    parser.add_argument("--predictions", type=Path, action="append")
    parser.add_argument("--log", type=Path, help="ChemCoTBench authors' log: inputs, gold and json_results per row")
    parser.add_argument("--output", type=Path, action="append", help="Also write the summary here (one per --docs).")
    parser.add_argument("--items", type=Path, action="append", help="Also write each item's scores here (JSONL).")
    parser.add_argument("--judge-model", help="aime25: an LLM (litellm model name) decides what the rule rejects.")
    parser.add_argument("--judge-retry", type=int, default=3)
    args = parser.parse_args()
    if args.log:
        rows = read_docs(args.log)
        summaries = [summarize(args.benchmark, rows, [[row.get("json_results", "")] for row in rows])]
    else:
        if not args.docs or len(args.docs) != len(args.predictions or []):
            raise SystemExit("score: give --docs and --predictions in pairs")
        summaries = []
        for number, (docs_path, predictions_path) in enumerate(zip(args.docs, args.predictions, strict=True)):
            docs = read_docs(docs_path)
            try:
                check_schema(docs, args.benchmark, scored_fields(load_table()[args.benchmark]), "doc")
            except SystemExit as error:
                raise SystemExit(str(error).replace("prepare: ", "score: ", 1)) from None
            predictions = [json.loads(line) for line in predictions_path.read_text().splitlines() if line.strip()]
            if not predictions:
                raise SystemExit(f"score: {predictions_path} holds no predictions; give JSONL rows with a response")
            items = args.items[number] if args.items else None
            responses = group_predictions(docs, predictions)
            summaries.append(summarize(args.benchmark, docs, responses, args.judge_model, args.judge_retry, items))
    for number, summary in enumerate(summaries):
        text = json.dumps(summary, indent=2)
        if args.output:
            tmp = args.output[number].with_name(f".{args.output[number].name}.tmp")
            tmp.write_text(text + "\n")
            tmp.replace(args.output[number])
        print(text)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        print(f"score: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
