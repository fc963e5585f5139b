"""AIME 2024/2025 scorer: the last \\boxed{} of each response, compared as an integer (025 = 25).

Used by the task YAMLs (`process_results`) and by `rdft score`. With `repeats: k` and the
`take_first_k` filter, `results[0]` holds k responses: accuracy is avg@k, pass_at_k is "any".
Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import last_boxed

INTEGER = re.compile(r"^[+]?0*(\d+)$")
PROMPT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def doc_to_text(doc: dict) -> str:
    return (doc.get("problem") or doc.get("Problem")) + PROMPT_SUFFIX


def gold(doc: dict) -> int:
    value = doc.get("answer", doc.get("Answer"))
    return int(str(value).strip())


def parse_answer(boxed: str | None) -> int | None:
    """An integer from a boxed answer, tolerating $…$, spaces, thousands commas and \\text{}."""
    if boxed is None:
        return None
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", boxed)
    text = text.replace("$", "").replace(" ", "").replace("{,}", "").replace(",", "").strip()
    match = INTEGER.match(text)
    return int(match.group(1)) if match else None


def score_one(doc: dict, response: str) -> dict:
    answer = parse_answer(last_boxed(response))
    return {"correct": int(answer is not None and answer == gold(doc)), "readable": int(answer is not None)}


def score_item(doc: dict, responses: list[str]) -> dict:
    scores = [score_one(doc, r) for r in responses]
    return {
        "accuracy": sum(s["correct"] for s in scores) / len(scores),
        "pass_at_k": int(any(s["correct"] for s in scores)),
        "unreadable": sum(1 - s["readable"] for s in scores),
        "samples": len(scores),
    }


def summarize(items: list[dict]) -> dict:
    n = len(items)
    return {
        "accuracy": sum(i["accuracy"] for i in items) / n,
        "pass_at_k": sum(i["pass_at_k"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
        "samples_per_item": items[0]["samples"],
    }


def process_results(doc: dict, results: list) -> dict:
    responses = results[0] if isinstance(results[0], list) else results
    item = score_item(doc, responses)
    return {"accuracy": item["accuracy"], "pass_at_k": item["pass_at_k"]}


def doc_to_target(doc: dict) -> str:
    return str(gold(doc))
