"""FinanceIQ scorer, as RD-Agent scores it (`FinanceIQ_gen`): OpenCompass's FinanceIQ_gen_e0e6b5
config in RD-Agent's fork (Jensen246/opencompass) — five-shot, the answer letter read by
`last_capital_postprocess`, AccEvaluator's exact match — on RD-Agent's split of the test files.

Items: Duxiaoman-DI/FinanceIQ's data/test/<subject>.csv, ten subjects (the file names). RD-Agent
(rdagent/scenarios/finetune/datasets/financeiq/split.py) scores the last min(ceil(n/2), 100) rows
of each file and trains on the rest, so the benchmark holds 944 items and a row is one of them
exactly when its index in its file (the CSV's first, unnamed column) is at or past the file's cut.
The Hub's CSV loader drops the file names: `benchmark_docs` tells the files apart by where the
index restarts at 0 and names each by its row count (the ten files' counts differ), then writes
the subject into each doc (`subject`); docs that already name theirs are kept as they are.

Prompt: the config's five dev examples of the item's subject (data/dev, bundled here as dev.json),
each its question followed by `答案是: <letter>`, then the item's question. OpenCompass sends
them as five user/assistant turns and a sixth user turn; an lm-eval prompt is one user message,
so rdft sends the same texts in one message, separated by blank lines.

Answer: the last uppercase character of the response (after any <think> block), right when it
equals the gold letter; a response without one is unreadable and wrong. The primary metric is the
mean over subjects of their accuracy — RD-Agent's "accuracy (average)" over the config's ten
per-subject datasets, and the authors' 平均分; the item accuracy is beside it. Runs in the eval
env; imports nothing from rdft.
"""

from __future__ import annotations

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import per_sample, responses_of, strip_think

HERE = os.path.dirname(os.path.abspath(__file__))
# Rows of each data/test/<subject>.csv of Duxiaoman-DI/FinanceIQ (7,123 in all).
TEST_ROWS = {
    "保险从业资格CICE": 696, "基金从业资格": 872, "期货从业资格": 433, "注册会计师（CPA）": 1311, "理财规划师": 295,
    "税务师": 488, "精算师-金融数学": 88, "经济师": 520, "证券从业资格": 1176, "银行从业资格": 1244,
}  # fmt: skip
SUBJECT_OF_SIZE = {rows: subject for subject, rows in TEST_ROWS.items()}


def test_count(rows: int) -> int:
    """RD-Agent's get_split_indices: the test part is the last min(ceil(n * 0.5), 100) rows."""
    return min(math.ceil(rows * 0.5), 100)


CUT = {subject: rows - test_count(rows) for subject, rows in TEST_ROWS.items()}  # first benchmark index
with open(os.path.join(HERE, "dev.json"), encoding="utf-8") as _handle:
    DEV = json.load(_handle)  # the config's few-shot examples: FixKRetriever ids 0-4 of data/dev/<subject>.csv


def subject_of(doc: dict) -> str | None:
    """The doc's subject in the config's spelling (a full-width （CPA）, as in its subject map)."""
    subject = doc.get("subject")
    if not isinstance(subject, str):
        return None
    subject = subject.strip().replace("(CPA)", "（CPA）")
    return subject if subject in TEST_ROWS else None


def index_of(doc: dict) -> int | None:
    """The row's index in its file: the unnamed first column (`Unnamed: 0` from the Hub's loader,
    `` from a CSV reader)."""
    value = doc.get("Unnamed: 0", doc.get(""))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def question(subject: str, doc: dict) -> str:
    return (
        f"以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n题目：{doc['Question']}\n"
        f"A. {doc['A']}\nB. {doc['B']}\nC. {doc['C']}\nD. {doc['D']}"
    )


def doc_to_text(doc: dict) -> str:
    """The exact user prompt a FinanceIQ doc is scored with: its subject's five dev examples with
    their answers, then the doc's question (the offline data recipe builds its training prompts
    with it too)."""
    subject = subject_of(doc)
    if subject is None:
        raise KeyError(f"a FinanceIQ doc names its subject, one of {', '.join(TEST_ROWS)}")
    shots = [f"{question(subject, shot)}\n答案是: {shot['Answer']}" for shot in DEV[subject]]
    return "\n\n".join([*shots, question(subject, doc)])


def doc_to_target(doc: dict) -> str:
    return str(doc["Answer"]).strip()


def last_capital(response: str) -> str | None:
    """OpenCompass's last_capital_postprocess: the last character that is uppercase (None, where
    it returns '', for a response without one)."""
    for char in reversed(strip_think(response)):
        if char.isupper():
            return char
    return None


def score_one(doc: dict, response: str) -> dict:
    answer = last_capital(response)
    return {"correct": int(answer == doc_to_target(doc)), "readable": int(answer is not None), "answer": answer,
            "subject": subject_of(doc) or str(doc.get("subject"))}  # fmt: skip


def summarize(entry: dict, items: list[dict]) -> dict:
    """Accuracy per subject, their mean (primary), the item accuracy, and the unreadable count."""
    subjects: dict[str, list[int]] = {}
    for item in items:
        subjects.setdefault(item["subject"], []).append(item["correct"])
    per_subject = {subject: sum(marks) / len(marks) for subject, marks in sorted(subjects.items())}
    return {
        "subject_mean_accuracy": sum(per_subject.values()) / len(per_subject),
        "accuracy": sum(i["correct"] for i in items) / len(items),
        "n_unreadable": sum(1 - i["readable"] for i in items),
        "subjects": per_subject,
    }


def process_results(doc: dict, results: list) -> dict:
    values = [score_one(doc, r)["correct"] for r in responses_of(results)]
    return {"correct": sum(values) / len(values)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    if subject_of(doc) is None:
        raise ValueError(
            f"FinanceIQ doc {index_of(doc)} names no known subject; give docs `rdft benchmarks prepare` wrote"
        )
    return per_sample([score_one(doc, response) for response in responses])


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["correct"] == 1


def is_benchmark_item(subject: str, index: int) -> bool:
    return index >= CUT[subject]


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (a row of RD-Agent's training
    part of the test files, its subject named by the dataset's post-download step), or why it has
    none. The prompt asks for the letter alone: the answer is the few-shot examples' `答案是: X`."""
    subject, index = subject_of(doc), index_of(doc)
    if subject is None or index is None:
        return "no subject or row index (prepare the dataset with its post-download step)"
    if is_benchmark_item(subject, index):
        return "a FinanceIQ benchmark item (the last rows of its test file)"
    letter = str(doc.get("Answer", "")).strip()
    if letter not in ("A", "B", "C", "D"):
        return "no answer letter"
    return "", f"答案是: {letter}"


def _named(rows: list[dict]) -> list[dict]:
    """Rows of the Hub's test split, which holds no file names: each file is a run of rows whose
    index counts up from 0, named by its length."""
    named, start = [], 0
    for end in range(1, len(rows) + 1):
        if end < len(rows) and index_of(rows[end]) != 0:
            continue
        block = rows[start:end]
        if [index_of(row) for row in block] != list(range(len(block))) or len(block) not in SUBJECT_OF_SIZE:
            raise SystemExit(
                f"prepare: rows {start + 1}-{end} are not one whole test file of Duxiaoman-DI/FinanceIQ "
                f"({', '.join(f'{s}: {n}' for s, n in TEST_ROWS.items())} rows); give the whole test split, or "
                "docs that name their subject"
            )
        named += [{**row, "subject": SUBJECT_OF_SIZE[len(block)]} for row in block]
        start = end
    return named


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's items among its source's rows: those past their file's cut (RD-Agent's
    test part), each naming its subject."""
    if any("subject" not in row for row in rows):
        rows = _named(rows)
    docs = []
    for number, row in enumerate(rows, 1):
        subject, index = subject_of(row), index_of(row)
        if subject is None or index is None:
            raise SystemExit(
                f"prepare: row {number} has no known subject or no row index (`Unnamed: 0`); give FinanceIQ's test rows"
            )
        if is_benchmark_item(subject, index):
            docs.append({**row, "subject": subject})
    return docs
