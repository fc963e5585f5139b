"""The demo benchmark (find the letter): a task the tiny CPU model really learns in a minute, so
`rdft run --demo` shows scores move through the same stages, envs and lm-eval scoring as a real
run. Each item lists 3-6 characters, all digits but one letter (a-k); the answer is that
letter, so a model that always gives the same letter scores about 1/10 and only one that reads
the question scores high.

The answer is the last \\boxed{} of the response, one letter; unreadable counts as wrong.
Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import last_boxed, per_sample, responses_of

PROMPT_SUFFIX = "\nPut the letter in \\boxed{}."


def doc_to_text(doc: dict) -> str:
    return doc["question"] + PROMPT_SUFFIX


def doc_to_target(doc: dict) -> str:
    return doc["answer"]


def score_item(doc: dict, response: str) -> dict:
    boxed = last_boxed(response)
    answer = boxed.strip().lower() if boxed is not None else None
    readable = answer is not None and len(answer) == 1 and answer.isalpha()
    return {
        "accuracy": int(readable and answer == doc["answer"]),
        "unreadable": int(not readable),
        "answer": answer if readable else None,
    }


def summarize(entry: dict, items: list[dict]) -> dict:
    """The split's metrics (the family interface's `summarize`)."""
    return {
        "accuracy": sum(i["accuracy"] for i in items) / len(items),
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


def process_results(doc: dict, results: list) -> dict:
    values = [score_item(doc, r)["accuracy"] for r in responses_of(results)]  # mean over k samples
    return {"accuracy": sum(values) / len(values)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    return per_sample([score_item(doc, response) for response in responses])


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["accuracy"] == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc`, or why it has none."""
    if doc.get("answer") in (None, ""):
        return "no answer"
    return "", f"\\boxed{{{doc['answer']}}}"


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows (all of them here)."""
    return rows
