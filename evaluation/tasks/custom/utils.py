"""A user's own benchmark (`rdft benchmarks add`): prompt, answer rule and metric from a spec.

The spec (spec.json beside this file in a task folder rdft writes, the file RDFT_BENCHMARK_SPEC
names in a data script, or set by score.py from the benchmark's registration) holds:
    prompt_field | prompt_template   the doc field that is the prompt, or a str.format template
    answer_field                     the doc field that holds the gold answer
    answer_key                       read the answer from the last JSON object with this key;
                                     without it, from the last \\boxed{}
    metric                           exact_match | accuracy | f1 | numeric_tolerance | json_field_match
    tolerance                        numeric_tolerance: |pred − gold| ≤ tolerance · max(1, |gold|)
    scorer, scorer_key               a Python file whose score(doc, response) -> dict replaces the
                                     metric, and the key of that dict the benchmark averages

Metrics (per item, in [0, 1]; the benchmark's value is their mean over items):
- exact_match: the answer equals the gold one after trimming whitespace (case kept);
- accuracy: equal after Unicode NFKC, case folding and collapsing whitespace (labels);
- f1: word-level F1 between the answer and the gold one (SQuAD's: lower case, punctuation and
  articles removed);
- numeric_tolerance: both read as numbers and within the tolerance;
- json_field_match: the gold answer is a JSON object; the item scores the share of its fields
  the answer object matches (values compared as for accuracy), `correct` when all match.
Unreadable answers are wrong and kept (the item scores 0). Runs in the eval env; imports nothing
from rdft.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import string
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import json_objects, last_boxed, last_json_value, per_sample, responses_of, strip_think

METRICS = ("exact_match", "accuracy", "f1", "numeric_tolerance", "json_field_match")
# The spec: beside this file in a task folder rdft writes; in a data script, where
# RDFT_BENCHMARK_SPEC points (rdft sets it); score.py sets SPEC itself.
_SPEC_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spec.json")
if not os.path.exists(_SPEC_FILE):
    _SPEC_FILE = os.environ.get("RDFT_BENCHMARK_SPEC", "")
SPEC: dict = json.load(open(_SPEC_FILE, encoding="utf-8")) if _SPEC_FILE and os.path.exists(_SPEC_FILE) else {}
_SCORER = None


def prompt(doc: dict, spec: dict | None = None) -> str:
    spec = spec or SPEC
    if spec.get("prompt_template"):
        return spec["prompt_template"].format(**doc)
    return str(doc[spec["prompt_field"]])


def instruction(spec: dict | None = None) -> str:
    spec = spec or SPEC
    if spec["metric"] == "json_field_match":
        return "\nEnd your answer with a JSON object holding the answer's fields."
    if spec.get("answer_key"):
        return f'\nEnd your answer with a JSON object {{"{spec["answer_key"]}": <your answer>}}.'
    return "\nPut the final answer in \\boxed{}."


def doc_to_text(doc: dict) -> str:
    return prompt(doc) + instruction()


def gold(doc: dict, spec: dict | None = None):
    spec = spec or SPEC
    return doc[spec["answer_field"]]


def doc_to_target(doc: dict, spec: dict | None = None) -> str:
    spec = spec or SPEC
    value = gold(doc, spec)
    if spec["metric"] == "json_field_match":
        return json.dumps(_as_object(value))
    if spec.get("answer_key"):
        return json.dumps({spec["answer_key"]: value})
    return f"\\boxed{{{value}}}"


def _as_object(value) -> dict:
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _label(value) -> str:
    return " ".join(unicodedata.normalize("NFKC", str(value)).casefold().split())


def _squad_words(value) -> list[str]:
    text = str(value).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*([-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*%?\s*", str(value))
    return float(match.group(1).replace(",", "")) if match else None


def answer_of(response: str, spec: dict | None = None):
    """What the response answers: the last JSON object's key, the last such object whole (JSON
    field match), or the last \\boxed{} — None when there is none."""
    spec = spec or SPEC
    if spec["metric"] == "json_field_match":
        keys = set(_as_object(spec.get("_gold_keys_from")) or {})
        for obj in reversed(json_objects(strip_think(response))):
            if spec.get("answer_key"):
                if spec["answer_key"] in obj and isinstance(obj[spec["answer_key"]], dict):
                    return obj[spec["answer_key"]]
            elif not keys or keys & set(obj):
                return obj
        return None
    if spec.get("answer_key"):
        value = last_json_value(response, spec["answer_key"])
        return None if value is None or isinstance(value, (dict, list)) else value
    return last_boxed(response)


def score_item(doc: dict, response: str, spec: dict | None = None) -> dict:
    spec = spec or SPEC
    if spec.get("scorer"):
        return dict(_user_scorer(spec["scorer"])(doc, response))
    metric, expected = spec["metric"], gold(doc, spec)
    if metric == "json_field_match":
        expected = _as_object(expected)
        answer = answer_of(response, {**spec, "_gold_keys_from": expected})
    else:
        answer = answer_of(response, spec)
    out = {"unreadable": int(answer is None), "answer": None if answer is None else str(answer)[:200]}
    if answer is None:
        out.update(score=0.0, correct=0)
        return out
    if metric == "exact_match":
        value = float(str(answer).strip() == str(expected).strip())
    elif metric == "accuracy":
        value = float(_label(answer) == _label(expected))
    elif metric == "f1":
        predicted, wanted = _squad_words(answer), _squad_words(expected)
        common = sum(min(predicted.count(w), wanted.count(w)) for w in set(predicted))
        if not predicted or not wanted:
            value = float(predicted == wanted)
        elif common == 0:
            value = 0.0
        else:
            precision, recall = common / len(predicted), common / len(wanted)
            value = 2 * precision * recall / (precision + recall)
    elif metric == "numeric_tolerance":
        p, g = _number(answer), _number(expected)
        if p is None:
            out.update(unreadable=1, score=0.0, correct=0)
            return out
        value = float(g is not None and abs(p - g) <= float(spec.get("tolerance", 0.0)) * max(1.0, abs(g)))
    else:  # json_field_match
        fields = list(expected)
        matched = sum(1 for k in fields if k in answer and _label(answer[k]) == _label(expected[k]))
        value = matched / len(fields) if fields else 0.0
        out["correct"] = int(bool(fields) and matched == len(fields))
    out["score"] = value
    out.setdefault("correct", int(value == 1.0))
    return out


def _user_scorer(path: str):
    global _SCORER
    if _SCORER is None:
        spec = importlib.util.spec_from_file_location("rdft_user_scorer", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCORER = module.score
    return _SCORER


def value_key(spec: dict | None = None) -> str:
    """The item field the benchmark averages: `score`, or the user scorer's key."""
    spec = spec or SPEC
    return spec.get("scorer_key") or "score" if spec.get("scorer") else "score"


def metric_name(spec: dict | None = None) -> str:
    spec = spec or SPEC
    return value_key(spec) if spec.get("scorer") else spec["metric"]


def split_metrics(items: list[dict], spec: dict | None = None) -> dict:
    spec = spec or SPEC
    n = len(items)
    key = value_key(spec)
    out = {metric_name(spec): sum(float(i.get(key) or 0.0) for i in items) / n if n else 0.0}
    out["n_unreadable"] = sum(int(i.get("unreadable", 0)) for i in items)
    if "correct" in (items[0] if items else {}):
        out["correct_rate"] = sum(int(i.get("correct", 0)) for i in items) / n
    return out


def process_results(doc: dict, results: list) -> dict:
    values = [float(score_item(doc, r).get(value_key()) or 0.0) for r in responses_of(results)]
    return {"score": sum(values) / len(values)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
# A user benchmark's table row carries its spec (prompt, answer rule, metric) under `custom`.
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    return per_sample([score_item(doc, response, entry["custom"]) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    return split_metrics(items, entry["custom"])


def primary(entry: dict, items: list[dict]) -> float | None:
    return split_metrics(items, entry["custom"])[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return float(item.get(value_key(entry["custom"])) or 0) == 1.0


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """The answer as the benchmark's rule reads it (`{"<answer_key>": answer}` or \\boxed{}), or
    why a row has none."""
    spec = entry["custom"]
    if doc.get(spec["answer_field"]) in (None, ""):
        return "no answer"
    return "", doc_to_target(doc, spec)


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows (all of them here)."""
    return rows
