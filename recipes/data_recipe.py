"""The offline planner's data script: turn prepared datasets into chat SFT rows for one benchmark.

Runs in the `data` env from an experiment's workspace, as `process_data.py`, configured by
`data_recipe.json` beside it (configs are data):

    {"datasets": ["deepscaler"], "benchmark": "aime25", "benchmark_family": "aime",
     "max_samples": 512, "seed": 0, "tasks_dir": "/…/evaluation/tasks",
     "tokenizer": "/…/base-model", "max_tokens": 2048, "force_think": false}

Every row's user turn is the benchmark's own prompt (`doc_to_text` of
evaluation/tasks/<family>/utils.py, the function lm-eval scores with), and its assistant turn
ends with the answer exactly as the benchmark's scorer reads it; each row is scored with that
scorer before it is kept, so a row whose answer would not score is never trained on:

- demo: the question → `\\boxed{answer}`;
- aime (deepscaler `problem/answer/solution`): the solution, which must be there (a row without
  reasoning teaches answering without it), ending with `\\boxed{answer}` (appended when the
  solution has no box; a box that disagrees with the answer drops the row);
- panorama (the task's own files, benchmark schema): `{"answer": [gold letters]}` (PAR4PC),
  `{"answer": <gold paragraph>}` (PI4PC), the examiner's reasoning then `{"code": …}` (NOC4PC);
- chemcotbench (ChemCoT's per-subtask files: `query`, `raw_cot`/`struct_cot`, gold in `meta`):
  the chain-of-thought, ending with the subtask's answer JSON (appended from the gold when the
  chain-of-thought lacks it);
- custom (a user's benchmark, `rdft benchmarks add`; rows in its schema): the answer as its
  rule reads it, `{"<answer_key>": answer}` or `\\boxed{answer}`; chat rows (`messages`) of a
  user's dataset are kept as they are.

With `"rows": "prompts"` (a GRPO or DPO experiment) each kept doc becomes a prompt row instead,
`{"prompt": doc_to_text(doc), "doc": doc}`: the same docs (their gold must score, as above), no
answer; the reward scores the model's own answers against the doc.

With `force_think` (FT_FORCE_THINK_TOKEN) the reasoning sits in <think>…</think> and the answer
follows it. Rows over `max_tokens` (the base model's tokenizer) are dropped. Every drop is counted by reason
and written to `data_stats.json`. `--debug` keeps the first 100 rows.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from rdft_data import (
    TokenCounter,
    benchmark_entry,
    debug_sample,
    filter_by_tokens,
    scorer,
    write_chat_jsonl,
    write_prompt_jsonl,
)
from rdft_data.profile import data_files, read_rows
from rdft_data.records import write_atomically

DEBUG_ROWS = 100


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


class Builder:
    """Builds the rows of one benchmark through its family's interface (`training_answer`,
    `score`, `full_marks` of evaluation/tasks/<family>/utils.py); `drops` counts what was left
    out and why. With `force_think` (FT_FORCE_THINK_TOKEN) the reasoning is wrapped in
    <think>…</think> and the final answer follows it, where the scorers read it."""

    def __init__(self, recipe: dict, family, entry: dict):
        self.recipe, self.family, self.entry, self.drops = recipe, family, entry, {}
        self.force_think = bool(recipe.get("force_think"))

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def row(self, doc: dict) -> dict | None:
        if self.entry.get("custom") and isinstance(doc.get("messages"), list):
            return {"messages": doc["messages"]}  # a user benchmark's own chat rows, kept as they are
        try:
            prompt = self.family.doc_to_text(self.family.benchmark_doc(self.entry, doc))
        except (KeyError, TypeError, ValueError, AttributeError):
            self.drop("not the benchmark's schema")
            return None
        parts = self.family.training_answer(self.entry, doc, self.force_think)
        if isinstance(parts, str):  # why the doc makes no row
            self.drop(parts)
            return None
        reasoning, final = parts
        if self.force_think:
            answer = f"<think>\n{reasoning}\n</think>\n\n{final}"
        else:
            answer = f"{reasoning}\n\n{final}".strip() if final not in reasoning else reasoning
        try:  # a doc the scorer cannot read is dropped, and counted under the scorer's own error
            scores = self.family.full_marks(self.entry, self.family.score(self.entry, doc, [answer]))
        except (ValueError, KeyError, TypeError) as error:
            self.drop(f"the scorer failed on it ({type(error).__name__})")
            return None
        if not scores:  # the answer must earn full marks under the benchmark's own scorer
            self.drop("answer does not score")
            return None
        return chat(prompt, answer)


def read_datasets(root: Path, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        files = data_files(root / name)
        if not files:
            raise SystemExit(f"data_recipe: {root / name} holds no data files; run `rdft datasets prepare {name}`")
        rows += [row for path in files for row in read_rows(path)]
    return rows


def main() -> None:
    recipe = json.loads(Path("data_recipe.json").read_text())
    debug = "--debug" in sys.argv[1:]
    family = scorer(recipe["benchmark_family"], recipe["tasks_dir"])
    entry = benchmark_entry(recipe["benchmark"], recipe["tasks_dir"])
    rows = read_datasets(Path(os.environ["RDFT_DATASETS_DIR"]), recipe["datasets"])
    random.Random(recipe.get("seed", 0)).shuffle(rows)
    builder = Builder(recipe, family, entry)
    prompts = recipe.get("rows") == "prompts"
    limit = DEBUG_ROWS if debug else recipe["max_samples"]
    samples = []
    for doc in rows:  # build until the limit: reading stays cheap, scoring stops early
        sample = builder.row(doc)
        if sample is not None and prompts and "messages" in doc:  # a chat row holds no doc to score against
            builder.drop("a chat row: no doc for the reward")
        elif sample is not None:
            samples.append({"prompt": sample["messages"][0]["content"], "doc": doc} if prompts else sample)
            if len(samples) >= limit:
                break
    samples = debug_sample(samples, DEBUG_ROWS)
    too_long = 0
    if recipe.get("tokenizer") and recipe.get("max_tokens"):
        samples, too_long = filter_by_tokens(samples, TokenCounter(recipe["tokenizer"]), recipe["max_tokens"])
    if too_long:
        builder.drops["longer than max_tokens"] = too_long
    stats = {"rows_read": len(rows), "samples": len(samples), "dropped": builder.drops}
    write_atomically(Path("data_stats.json"), lambda handle: json.dump(stats, handle, indent=1))
    if not samples:
        raise SystemExit(f"data_recipe: no samples left ({stats}); check the datasets against the benchmark")
    (write_prompt_jsonl if prompts else write_chat_jsonl)(samples, "data.jsonl")
    print(f"SUMMARY: {json.dumps(stats)}")


if __name__ == "__main__":
    main()
