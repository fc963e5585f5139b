"""Statistics of a data script's rows for the coder's data-quality gate (run in the data env).

    python -m rdft_data.quality --data .debug/data.jsonl --tokenizer MODEL --family aime \
        [--dataset-dir DIR ...] [--gold-dataset-dir DIR ...]

Prints one JSON object: rows; rows with reasoning and its mean length in words; token lengths
(the sample's text with the model's tokenizer; the exact count over data.max_length comes from
the debug training, which applies the chat template); duplicate rows; and, for
rows whose user turn is exactly the benchmark's prompt (`doc_to_text`) of a row of the training
datasets: how many match the scoring prompt and — for the datasets given with `--gold-dataset-dir`, whose
rows carry the benchmark's gold fields — how many answers the benchmark's own scorer marks
correct.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from .answers import strip_think
from .benchmark import benchmark_entry, scorer
from .profile import data_files, read_rows
from .records import TokenCounter, sample_text

REASONING_WORDS = 5  # fewer words beside the final answer: a bare answer, which teaches answering without reasoning
FINAL_ANSWER = re.compile(r"(\\boxed\{.*\}|\{[^{}]*\}|`{3}.*`{3})\s*$", re.DOTALL)


def _key(text: str) -> str:
    return hashlib.sha1(" ".join(str(text).split()).encode()).hexdigest()


def turns(row: dict) -> tuple[str, str]:
    """(the last user turn, the final assistant turn) of a chat or alpaca row; of a GRPO prompt
    row, (its prompt, its doc): it has no answer, the doc makes two rows on one prompt differ."""
    if "prompt" in row and "messages" not in row:
        return sample_text(row), json.dumps(row.get("doc"), sort_keys=True, ensure_ascii=False)
    if "messages" in row:
        user = next((m.get("content") or "" for m in reversed(row["messages"]) if m.get("role") == "user"), "")
        return str(user), str(row["messages"][-1].get("content") or "")
    user = "\n\n".join(str(row.get(k)) for k in ("instruction", "input") if row.get(k))
    return user, str(row.get("output") or "")


def reasoning_words(answer: str) -> int:
    """Words of reasoning in an assistant turn: inside <think>…</think>, or before the final
    answer (a trailing \\boxed{…}, JSON object or code block)."""
    if "</think>" in answer:
        return len(answer.split("</think>")[0].replace("<think>", "").split())
    return len(FINAL_ANSWER.sub("", strip_think(answer)).split())


def statistics(rows: list[dict], *, counter: TokenCounter, family: str, dataset_dirs: list[tuple[Path, bool]]) -> dict:
    """The statistics of `rows`; `dataset_dirs`: (folder, whether its rows hold the gold)."""
    pairs = [turns(row) for row in rows]
    lengths = counter.count_many([sample_text(row) for row in rows])
    words = [reasoning_words(answer) for _, answer in pairs]
    with_reasoning = [w for w in words if w >= REASONING_WORDS]
    unique = {(_key(user), _key(answer)) for user, answer in pairs}
    stats = {
        "rows": len(rows),
        "with_reasoning": len(with_reasoning),
        "reasoning_words_mean": round(sum(words) / len(words), 1) if words else 0,
        "tokens_mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "tokens_max": max(lengths, default=0),
        "duplicates": len(rows) - len(unique),
        "prompt_matched": 0,
        "gold_checked": 0,
        "gold_correct": 0,
    }
    module = scorer(family)
    entry = benchmark_entry()  # RDFT_BENCHMARK: the gate runs for the run's benchmark
    wanted = {_key(user): index for index, (user, _) in enumerate(pairs)}
    sources: dict[int, tuple[dict, bool]] = {}
    for folder, gold in dataset_dirs:  # stream the training datasets, keep only the rows the script used
        for path in data_files(folder):
            for source in read_rows(path):
                try:
                    key = _key(module.doc_to_text(module.benchmark_doc(entry, source)))
                except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                    continue
                if key in wanted:
                    sources.setdefault(wanted[key], (source, gold))
    stats["prompt_matched"] = len(sources)
    prompts_only = bool(rows) and all("prompt" in row and "messages" not in row for row in rows)
    for index, (source, gold) in sources.items():
        if not gold or prompts_only:  # GRPO rows hold no answer to check: their docs are scored in training
            continue
        try:
            scores = module.process_results(source, [pairs[index][1]])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            continue
        value = next((v for v in scores.values() if isinstance(v, (int, float))), None)
        if value is not None:
            stats["gold_checked"] += 1
            stats["gold_correct"] += int(value >= 1)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tokenizer")
    parser.add_argument("--family", required=True)
    parser.add_argument("--dataset-dir", type=Path, action="append", default=[])
    parser.add_argument(
        "--gold-dataset-dir",
        type=Path,
        action="append",
        default=[],
        help="A dataset whose rows hold the benchmark's gold fields.",
    )
    args = parser.parse_args()
    text = args.data.read_text(encoding="utf-8")
    rows = json.loads(text) if args.data.suffix == ".json" else [json.loads(x) for x in text.splitlines() if x.strip()]
    folders = [(path, False) for path in args.dataset_dir] + [(path, True) for path in args.gold_dataset_dir]
    stats = statistics(rows, counter=TokenCounter(args.tokenizer), family=args.family, dataset_dirs=folders)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
