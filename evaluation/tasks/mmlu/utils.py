"""MMLU (Hendrycks et al., 2021) scored as RD-Agent scores it: OpenCompass's `mmlu_gen`, the
config RD-Agent's benchmark map names for `mmlu`, which is `mmlu_openai_simple_evals_gen_b618ea`.

Items: the 14,042 test questions of the 57 subjects, from cais/mmlu's `all` config (`all/`
folder), `test` split: question, subject, choices (4 strings), answer (int 0-3, A-D). OpenCompass
reads the same questions from the authors' CSV files (its ModelScope loader maps cais/mmlu's
schema the same way: `'ABCD'[answer]`).

Zero-shot, not five-shot: the config's retriever is ZeroRetriever (the `dev` split it names as
train_split is never used for examples), and its prompt is OpenAI simple-evals' chain-of-thought
template, which asks the model to think step by step and end with "ANSWER: $LETTER":

    Answer the following multiple choice question. The last line of your response should be of
    the following format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of ABCD. Think
    step by step before answering.

    {question}

    A) {A}
    B) {B}
    C) {C}
    D) {D}

The answer: OpenCompass's `match_answer_pattern` with `(?i)ANSWER\\s*:\\s*([A-D])`, i.e. the FIRST
match (`re.search`), "answer" in any case, and the letter as written; AccEvaluator then compares
it with the gold letter as a string. So "Answer: b" is read as `b` and is wrong, and "Answer:
definitely C" reads `d` (from "definitely"): rdft keeps both quirks, as RD-Agent's numbers have
them. No match is an unreadable, wrong answer. `<think>…</think>` is dropped first (OpenCompass's
`extract-non-reasoning-content`, which RD-Agent applies to reasoning models).

Metrics: accuracy over items (avg@k over samples), the primary. With n > 1 replicas OpenCompass
reports only the last replica's accuracy (AccEvaluator returns no per-item details for
BaseEvaluator.evaluate to average); RD-Agent runs n = 1, where the two agree, and rdft takes the
mean of the k samples. RD-Agent scores each subject as a dataset of its own (a slice of each) and
its report averages the subjects' accuracies; rdft's splits are seeded slices of all items (about
100, for the forgetting check too), where a subject holds a few items at most, so the macro
average over the subjects present is reported beside the accuracy (`subject_macro_accuracy`),
not instead. Training rows: cais/mmlu's auxiliary_train, whose parquet nests each row under a
`train` key; every function here reads such a row as its inner record.

Runs in the eval env, pure Python; imports nothing from rdft.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import responses_of, strip_think

LETTERS = "ABCD"
QUERY_TEMPLATE = """
Answer the following multiple choice question. The last line of your response should be of the following format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.

{input}

A) {A}
B) {B}
C) {C}
D) {D}
""".strip()  # noqa: E501  (OpenCompass's template, verbatim)
ANSWER_PATTERN = re.compile(r"(?i)ANSWER\s*:\s*([A-D])")


def record(doc: dict) -> dict:
    """The question's own fields: auxiliary_train's rows hold them under `train`."""
    inner = doc.get("train")
    return inner if isinstance(inner, dict) and "question" in inner else doc


def choices(doc: dict) -> list[str]:
    options = list(record(doc).get("choices") or [])
    if len(options) != len(LETTERS):
        raise ValueError(f"an MMLU question has 4 choices, this one {len(options)}; give cais/mmlu's rows")
    return [str(option) for option in options]


def gold(doc: dict) -> str:
    """The gold letter: cais/mmlu's `answer` is an int 0-3 (a letter A-D is taken too)."""
    answer = record(doc).get("answer")
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
        return answer.strip().upper()
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(LETTERS):
        return LETTERS[answer]
    raise ValueError(f"MMLU answer {answer!r} is not 0-3 (or A-D); give cais/mmlu's rows")


def doc_to_text(doc: dict) -> str:
    row = record(doc)
    return QUERY_TEMPLATE.format(input=row["question"], **dict(zip(LETTERS, choices(doc), strict=True)))


def doc_to_target(doc: dict) -> str:
    return gold(doc)


def parse_answer(response: str) -> str | None:
    """The letter after the first "ANSWER:" (OpenCompass's rule, case kept), or None."""
    match = ANSWER_PATTERN.search(strip_think(response or ""))
    return match.group(1) if match else None


def score_item(doc: dict, responses: list[str]) -> dict:
    letter = gold(doc)
    answers = [parse_answer(r) for r in responses]
    correct = [int(a == letter) for a in answers]
    return {
        "accuracy": sum(correct) / len(correct),
        "pass_at_k": int(any(correct)),
        "unreadable": sum(a is None for a in answers),
        "samples": len(answers),
        "answer": answers[0],
        "subject": str(record(doc).get("subject") or ""),
    }


def summarize(entry: dict, items: list[dict]) -> dict:
    n = len(items)
    by_subject: dict[str, list[float]] = {}
    for item in items:
        by_subject.setdefault(item["subject"], []).append(item["accuracy"])
    return {
        "accuracy": sum(i["accuracy"] for i in items) / n,
        "subject_macro_accuracy": sum(sum(v) / len(v) for v in by_subject.values()) / len(by_subject),
        "pass_at_k": sum(i["pass_at_k"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
        "subjects": len(by_subject),
        "samples_per_item": items[0]["samples"],
    }


def process_results(doc: dict, results: list) -> dict:
    item = score_item(doc, responses_of(results))
    return {"accuracy": item["accuracy"]}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    """MMLU scores its k samples together (avg@k)."""
    return score_item(doc, responses)


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["accuracy"] == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (auxiliary_train's nested
    rows or cais/mmlu's flat ones): no reasoning (the data has none), and the gold letter as the
    scorer reads it, "ANSWER: C"."""
    if len(record(doc).get("choices") or []) != len(LETTERS):
        return "not 4 choices"
    try:
        return "", f"ANSWER: {gold(doc)}"
    except ValueError:
        return "no gold letter"


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows (all of them here)."""
    return rows
