"""AIME 2024/2025 scorer: the last \\boxed{} of each response against the gold answer.

Integers compare as integers (025 = 25). A gold answer that is not an integer (\\frac{1}{2},
0.5, 1/2, \\dfrac12) compares by value when both sides read as exact rationals, else as
normalised LaTeX (spaces, `$`, \\left/\\right, \\dfrac/\\tfrac, \\text{} dropped).

Used by the task YAMLs (`process_results`) and by `rdft score`. With `repeats: k` and the
`take_first_k` filter, `results[0]` holds k responses: accuracy is avg@k, pass_at_k is "any".
Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import os
import re
import sys
import time
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import last_boxed, strip_think

PROMPT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def doc_to_text(doc: dict) -> str:
    return (doc.get("problem") or doc.get("Problem")) + PROMPT_SUFFIX


def gold(doc: dict) -> str:
    return str(doc.get("answer", doc.get("Answer"))).strip()


def normalise(text: str) -> str:
    """LaTeX spelling aside: $, spaces, \\left/\\right, \\!, \\text{}, \\dfrac/\\tfrac, {,} commas,
    and \\frac12 written without braces."""
    text = re.sub(r"\\(?:text|mathrm|textbf)\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:left|right|!|,|;|:)", "", text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = text.replace("$", "").replace(" ", "").replace("{,}", "").replace(",", "")
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    return text.strip().rstrip(".")


FRACTION = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def value_of(text: str) -> Fraction | None:
    """An exact rational from a normalised answer (25, 025, -3, 0.5, 1/2, \\frac{1}{2}), or None."""
    try:
        if NUMBER.match(text):
            return Fraction(text)
        if re.match(r"^-?\d+/-?\d+$", text):
            return Fraction(text)
        match = FRACTION.match(text)
        if match:
            value = Fraction(int(match.group(2)), int(match.group(3)))
            return -value if match.group(1) else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def parse_answer(boxed: str | None) -> str | None:
    """The normalised boxed answer, or None when there is none (or it is empty)."""
    if boxed is None:
        return None
    text = normalise(boxed)
    return text or None


def equal(answer: str, gold_answer: str) -> bool:
    a, b = value_of(answer), value_of(normalise(gold_answer))
    if a is not None and b is not None:
        return a == b
    return answer == normalise(gold_answer)


JUDGE_PROMPT = (
    "You are grading an answer to a math competition problem. The reference answer is {gold}.\n"
    "Here is the end of a model's response:\n---\n{response}\n---\n"
    "Is the response's final answer equal to the reference answer? Reply with one letter: "
    "A (CORRECT) or B (INCORRECT)."
)


class Judge:
    """The cascade's second stage: an LLM (through litellm) decides responses the rule rejected."""

    def __init__(self, model: str, retries: int):
        self.model, self.retries = model, retries
        self.calls = self.flips = self.failures = 0

    def correct(self, doc: dict, response: str) -> bool:
        import litellm

        self.calls += 1
        prompt = JUDGE_PROMPT.format(gold=gold(doc), response=strip_think(response)[-2000:])
        for attempt in range(self.retries + 1):
            try:
                reply = litellm.completion(
                    model=self.model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=0,
                    max_tokens=4,
                    api_base=os.environ.get("OPENAI_API_BASE") or None,
                    drop_params=True,
                )
                verdict = (reply.choices[0].message.content or "").strip().upper()[:1]
                if verdict in ("A", "B"):
                    self.flips += verdict == "A"
                    return verdict == "A"
            except Exception:  # rate limits, timeouts, server errors: retry with backoff
                time.sleep(min(2**attempt, 30))
        self.failures += 1  # an undecided response stays wrong, and is counted
        return False


def score_one(doc: dict, response: str, judge: Judge | None = None) -> dict:
    """The strict rule's verdict; with a judge, also the cascade's (the rule, then the LLM on
    what the rule rejected). The judge never changes `correct`: its prompt holds the reference,
    and it may accept an answer the rule cannot read, so it is a second metric, named as such."""
    answer = parse_answer(last_boxed(response))
    correct = answer is not None and equal(answer, gold(doc))
    out = {"correct": int(correct), "readable": int(answer is not None), "answer": answer}
    if judge is not None:
        out["judged"] = int(correct or (bool(strip_think(response).strip()) and judge.correct(doc, response)))
    return out


def score_item(doc: dict, responses: list[str], judge: Judge | None = None) -> dict:
    scores = [score_one(doc, r, judge) for r in responses]
    item = {
        "accuracy": sum(s["correct"] for s in scores) / len(scores),
        "pass_at_k": int(any(s["correct"] for s in scores)),
        "unreadable": sum(1 - s["readable"] for s in scores),
        "samples": len(scores),
        "answer": scores[0]["answer"],
    }
    if judge is not None:
        item["judge_cascade_accuracy"] = sum(s["judged"] for s in scores) / len(scores)
    return item


def summarize(entry: dict, items: list[dict]) -> dict:
    """The split's metrics (the family interface's `summarize`); the judge's cascade beside the
    strict accuracy when a judge scored, never in its place."""
    n = len(items)
    out = {
        "accuracy": sum(i["accuracy"] for i in items) / n,
        "pass_at_k": sum(i["pass_at_k"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
        "samples_per_item": items[0]["samples"],
    }
    if all("judge_cascade_accuracy" in i for i in items):
        out["judge_cascade_accuracy"] = sum(i["judge_cascade_accuracy"] for i in items) / n
    return out


def process_results(doc: dict, results: list) -> dict:
    responses = results[0] if isinstance(results[0], list) else results
    item = score_item(doc, responses)
    return {"accuracy": item["accuracy"], "pass_at_k": item["pass_at_k"]}


def doc_to_target(doc: dict) -> str:
    return gold(doc)


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge: Judge | None = None) -> dict:
    """AIME scores its k samples together (avg@k, pass@k); `judge` where the benchmark's table
    row has `judge: true` and a judge model is configured (a second metric; see score_one)."""
    return score_item(doc, responses, judge)


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["accuracy"] == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (deepscaler's
    problem/answer/solution), or why it has none: the solution must be there (a row without
    reasoning teaches answering without it) and agree with the answer; its box is appended when
    it has none (and after the reasoning with force_think)."""
    answer = doc.get("answer", doc.get("Answer"))
    if answer in (None, ""):
        return "no answer"
    solution = str(doc.get("solution") or doc.get("Solution") or "").strip()
    if not solution:
        return "no reasoning"
    boxed = parse_answer(last_boxed(solution))
    if boxed is not None and not equal(boxed, str(answer)):
        return "solution disagrees with the answer"
    if boxed is not None and not force_think:
        return solution, ""  # the solution already ends in its box
    return solution, f"The final answer is \\boxed{{{answer}}}."


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows (all of them here)."""
    return rows
