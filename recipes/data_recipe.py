"""The offline planner's data script: turn prepared datasets into chat SFT samples.

Runs in the `data` env from an experiment's workspace, as `process_data.py`, configured by
`data_recipe.json` beside it (configs are data):

    {"datasets": ["demo-parity"], "format": "demo", "max_samples": 512, "seed": 0,
     "benchmark_family": "demo", "evaluation_dir": "/…/evaluation",
     "tokenizer": "/…/base-model", "max_tokens": 2048}

Prompts are the benchmark's own (`doc_to_text` of evaluation/tasks/<family>/utils.py), so the
model trains on exactly the questions' form it is scored on. Formats: `demo` (question/answer →
\\boxed{answer}), `math` (problem/solution/answer → solution and \\boxed{answer}), `chemcot`
(query → the chain-of-thought), `chat` (rows that already hold `messages`). Writes
`data.jsonl`; `--debug` keeps the first 100 samples. Datasets are read from RDFT_DATASETS_DIR.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from pathlib import Path

from rdft_data import TokenCounter, debug_sample, filter_by_tokens, write_chat_jsonl
from rdft_data.profile import data_files, read_rows


def load_prompter(evaluation_dir: Path, family: str):
    sys.path.insert(0, str(evaluation_dir / "tasks"))  # the scorers import `answers`
    spec = importlib.util.spec_from_file_location(f"prompts_{family}", evaluation_dir / "tasks" / family / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.doc_to_text


def to_sample(row: dict, form: str, prompt) -> dict | None:
    if form == "chat":
        return {"messages": row["messages"]} if row.get("messages") else None
    if form == "demo":
        question, answer = row.get("question"), row.get("answer")
        return None if not question or not answer else _chat(prompt(row), f"\\boxed{{{answer}}}")
    if form == "math":
        problem, answer = row.get("problem") or row.get("Problem"), row.get("answer") or row.get("Answer")
        if not problem or answer in (None, ""):
            return None
        solution = (row.get("solution") or "").strip()
        return _chat(prompt({"problem": problem}), f"{solution}\n\nThe answer is \\boxed{{{answer}}}.".strip())
    if form == "chemcot":
        cot = row.get("raw_cot") or row.get("struct_cot")
        return (
            _chat(row["query"], cot if isinstance(cot, str) else json.dumps(cot)) if row.get("query") and cot else None
        )
    raise SystemExit(f"data_recipe: unknown format {form!r}; use demo, math, chemcot or chat")


def _chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def main() -> None:
    recipe = json.loads(Path("data_recipe.json").read_text())
    root = Path(os.environ["RDFT_DATASETS_DIR"])
    prompt = load_prompter(Path(recipe["evaluation_dir"]), recipe["benchmark_family"])
    rows = []
    for name in recipe["datasets"]:
        files = data_files(root / name)
        if not files:
            raise SystemExit(f"data_recipe: {root / name} holds no data files; run `rdft datasets prepare {name}`")
        rows += [row for path in files for row in read_rows(path)]
    random.Random(recipe.get("seed", 0)).shuffle(rows)
    samples = [s for s in (to_sample(row, recipe["format"], prompt) for row in rows) if s is not None]
    samples = debug_sample(samples[: recipe["max_samples"]])
    dropped = 0
    if recipe.get("tokenizer") and recipe.get("max_tokens"):
        samples, dropped = filter_by_tokens(samples, TokenCounter(recipe["tokenizer"]), recipe["max_tokens"])
    if not samples:
        raise SystemExit("data_recipe: no samples left; check the datasets' fields against the format")
    write_chat_jsonl(samples, "data.jsonl")
    print(f"SUMMARY: {len(rows)} rows read, {len(samples)} samples written, {dropped} dropped as too long")


if __name__ == "__main__":
    main()
