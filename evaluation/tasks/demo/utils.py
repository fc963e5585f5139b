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
from answers import last_boxed, responses_of

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


def summarize(items: list[dict]) -> dict:
    return {
        "accuracy": sum(i["accuracy"] for i in items) / len(items),
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


def process_results(doc: dict, results: list) -> dict:
    values = [score_item(doc, r)["accuracy"] for r in responses_of(results)]  # mean over k samples
    return {"accuracy": sum(values) / len(values)}
