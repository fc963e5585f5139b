"""A benchmark family is its folder under evaluation/tasks/ and its rows of benchmarks.yaml: a
throwaway family, added to a copy of the evaluation tree (RDFT_EVALUATION_DIR), is listed,
scored by `rdft score` to a hand-computed value, has its docs checked against its row's fields,
and is covered by the leakage guard, with nothing else of the tree changed."""

import hashlib
import json
import shutil
from pathlib import Path

from conftest import one_line_error

from rdft.resources import evaluation_dir

UTILS = '''"""A throwaway family: the first vowel of a word, in the last \\\\boxed{}."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import last_boxed, per_sample


def doc_to_text(doc: dict) -> str:
    return doc["sentence"] + "\\nPut the vowel in \\\\boxed{}."


def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    def one(response: str) -> dict:
        boxed = last_boxed(response)
        answer = boxed.strip().lower() if boxed is not None else None
        return {"correct": int(answer == doc["vowel"]), "answer": answer}

    return per_sample([one(response) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    return {"vowel_accuracy": sum(item["correct"] for item in items) / len(items)}


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["correct"] == 1


def training_answer(entry: dict, doc: dict, force_think: bool):
    return ("", "\\\\boxed{" + doc["vowel"] + "}") if doc.get("vowel") else "no answer"


def benchmark_doc(entry: dict, row: dict) -> dict:
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    return rows
'''
TASK = """task: vowels_first
dataset_path: json
output_type: generate_until
doc_to_text: !function utils.doc_to_text
doc_to_target: vowel
"""
ROW = """
vowels_first:
  description: "The first vowel of a word, in the last \\\\boxed{}."
  family: vowels
  repo: a test's own
  n: 4
  fields: [sentence, vowel]
  scored_fields: [vowel]
  primary: {metric: vowel_accuracy, direction: higher, description: "the boxed vowel is the word's first"}
"""
WORDS = {"banana": "a", "orbit": "o", "crystal": "y", "under": "u"}
DOCS = [
    {"id": f"w{i}", "sentence": f"Which letter is the first vowel of the long word {word} here", "vowel": vowel}
    for i, (word, vowel) in enumerate(WORDS.items())
]


def tree_files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_new_family_needs_only_its_folder_and_its_rows(rdft, shared_dirs, data_env, eval_env, tmp_path):
    tree = tmp_path / "evaluation"
    shutil.copytree(evaluation_dir(), tree, ignore=shutil.ignore_patterns("__pycache__"))
    before = tree_files(tree)
    family = tree / "tasks" / "vowels"
    family.mkdir()
    (family / "utils.py").write_text(UTILS)
    (family / "vowels_first.yaml").write_text(TASK)
    with open(tree / "benchmarks.yaml", "a", encoding="utf-8") as table:
        table.write(ROW)
    after = tree_files(tree)
    changed = {path for path in after if after[path] != before.get(path)}
    assert changed == {"benchmarks.yaml", "tasks/vowels/utils.py", "tasks/vowels/vowels_first.yaml"}
    assert set(before) <= set(after)  # nothing removed either
    env = {**shared_dirs, "RDFT_EVALUATION_DIR": str(tree)}

    listed = rdft("benchmarks", "list", env=env)
    assert listed.returncode == 0 and "vowels_first" in listed.stdout, listed.output

    # Scored by the family's own functions: 2 of 4 right (w2 answers the wrong vowel, w3 has no
    # prediction and counts as unreadable) = 0.5.
    docs = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    answers = [{"doc_id": 0, "response": "It is \\boxed{a}."}, {"doc_id": 1, "response": "\\boxed{O}"},
               {"doc_id": 2, "response": "\\boxed{a}"}]  # fmt: skip
    predictions = write_jsonl(tmp_path / "predictions.jsonl", answers)
    scored = rdft("score", "--benchmark", "vowels_first", "--docs", docs, "--predictions", predictions, env=env)
    assert scored.returncode == 0, scored.output
    summary = json.loads(scored.stdout)
    assert summary["primary"]["name"] == "vowel_accuracy" and summary["primary"]["value"] == 0.5
    assert summary["metrics"] == {"vowel_accuracy": 0.5}

    # The row's scored_fields are checked before scoring: a doc without `vowel` is one line.
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"sentence": "no gold here"}])
    refused = rdft("score", "--benchmark", "vowels_first", "--docs", broken, "--predictions", predictions, env=env)
    assert "doc 1 has no 'vowel', which vowels_first docs hold" in one_line_error(refused)

    # The leakage guard keys a family it has no rule for by every text field: a planted copy of
    # an item's sentence is dropped, the other rows are kept.
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Spell the word number {i} backwards for me please"},
                {"role": "assistant", "content": "done"},
            ]
        }
        for i in range(5)
    ]
    rows.append({"messages": [{"role": "user", "content": DOCS[1]["sentence"]}, {"role": "assistant", "content": "o"}]})
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    checked = rdft(
        "datasets", "check-leakage", "--benchmark", "vowels_first", train, "--eval-docs", docs, "--json", env=env
    )
    assert checked.returncode == 0, checked.output
    dropped = {"exact": 1, "identifier": 0, "molecule": 0, "ngram": 0}
    assert json.loads(checked.stdout) == {"rows": 6, "kept": 5, "dropped": dropped}
