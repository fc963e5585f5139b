"""PANORAMA scorers (PAR4PC, PI4PC, NOC4PC): strict JSON answers, unreadable answers count as wrong.

PAR4PC: `{"answer": "A"}` or `{"answer": ["A", "C"]}` with letters among the options; per item
exact match, the authors' custom score and F1 (primary: F1 averaged over items).
PI4PC: `{"answer": 17}` with one of the option keys (a list such as `[17]` is invalid, as in the
authors' code); gold hit (primary), custom score, accuracy.
NOC4PC: `{"code": "ALLOW" | "102" | "103"}`; accuracy and macro-F1 over all items (primary).
Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import last_json_value, per_sample, responses_of

NOC_LABELS = ("102", "103", "ALLOW")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] if value is not None else []


def _option_items(doc: dict) -> list[tuple[str, object]]:
    """The doc's options; parquet stores the options of all rows as one struct, so keys another
    row uses come back as None and are not options of this one."""
    return [(str(key), value) for key, value in (doc.get("options") or {}).items() if value is not None]


def _options(doc: dict) -> list[str]:
    return [key for key, _ in _option_items(doc)]


# --- PAR4PC -----------------------------------------------------------------------------------
def par4pc_answer(doc: dict, response: str) -> set[str] | None:
    value = last_json_value(response, "answer")
    letters = _as_list(value)
    if not letters or not all(isinstance(x, str) for x in letters):
        return None
    letters = {x.strip().upper() for x in letters}
    return letters if letters <= set(_options(doc) or "ABCDEFGH") else None


def par4pc_item(doc: dict, response: str) -> dict:
    gold = {str(x) for x in _as_list(doc["gold_answers"])}
    silver = {str(x) for x in _as_list(doc.get("silver_answers"))}
    pred = par4pc_answer(doc, response)
    if pred is None:
        return {"exact_match": 0, "custom_score": 0.0, "f1": 0.0, "unreadable": 1, "answer": None}
    hits = len(pred & gold)
    wrong = len(pred - gold - silver)
    missed = len(gold - pred)
    custom = max(0, 2 * hits - wrong - missed) / (2 * len(gold))
    precision = hits / len(pred) if pred else 0.0
    recall = hits / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {
        "exact_match": int(pred == gold),
        "custom_score": custom,
        "f1": f1,
        "unreadable": 0,
        "answer": ",".join(sorted(pred)),
    }


def par4pc_summary(items: list[dict]) -> dict:
    n = len(items)
    return {
        "f1": sum(i["f1"] for i in items) / n,
        "exact_match": sum(i["exact_match"] for i in items) / n,
        "custom_score": sum(i["custom_score"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


# --- PI4PC ------------------------------------------------------------------------------------
def pi4pc_answer(doc: dict, response: str) -> int | None:
    value = last_json_value(response, "answer")
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        return None
    return value if str(value) in _options(doc) else None


def pi4pc_item(doc: dict, response: str) -> dict:
    pred = pi4pc_answer(doc, response)
    gold = {int(x) for x in _as_list(doc["gold_answers"])}
    silver = {int(x) for x in _as_list(doc.get("silver_answers"))}
    points = 2 if pred in gold else 1 if pred in silver else 0
    return {
        "gold_hit": int(points == 2),
        "score": points / 2,
        "accuracy": int(points > 0),
        "unreadable": int(pred is None),
        "answer": None if pred is None else str(pred),
    }


def pi4pc_summary(items: list[dict]) -> dict:
    n = len(items)
    return {
        "gold_hit_rate": sum(i["gold_hit"] for i in items) / n,
        "custom_score": sum(i["score"] for i in items) / n,
        "accuracy": sum(i["accuracy"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


# --- NOC4PC -----------------------------------------------------------------------------------
def noc4pc_gold(doc: dict) -> str:
    answer = doc["answer"]
    if isinstance(answer, str):
        answer = json.loads(answer) if answer.strip().startswith("{") else {"code": answer}
    return str(answer["code"]).strip().upper()


def noc4pc_answer(response: str) -> str | None:
    value = last_json_value(response, "code")
    if isinstance(value, bool) or value is None:
        return None
    code = str(value).strip().upper()
    return code if code in NOC_LABELS else None


def noc4pc_item(doc: dict, response: str) -> dict:
    pred = noc4pc_answer(response)
    gold = noc4pc_gold(doc)
    return {"gold": gold, "pred": pred, "correct": int(pred == gold), "unreadable": int(pred is None), "answer": pred}


def macro_f1(pairs: list[tuple[str, str | None]]) -> float:
    """Macro-F1 over the labels that occur (as gold or as a readable prediction), every item
    counted: an unreadable prediction is a miss for its gold class and a false positive for none."""
    labels = sorted({g for g, _ in pairs} | {p for _, p in pairs if p is not None})
    scores = []
    for label in labels:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        fp = sum(1 for g, p in pairs if g != label and p == label)
        fn = sum(1 for g, p in pairs if g == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def noc4pc_summary(items: list[dict]) -> dict:
    n = len(items)
    return {
        "macro_f1": macro_f1([(i["gold"], i["pred"]) for i in items]),
        "accuracy": sum(i["correct"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


SCORERS = {
    "panorama_par4pc": (par4pc_item, par4pc_summary),
    "panorama_pi4pc": (pi4pc_item, pi4pc_summary),
    "panorama_noc4pc": (noc4pc_item, noc4pc_summary),
}


# --- prompts (zero-shot, JSON answers) ----------------------------------------------------------
def _context(doc: dict) -> str:
    context = doc.get("context") or {}
    claims = context.get("claims") or []
    return (
        f"Application number: {doc.get('application_number', '')}\n"
        f"Title: {context.get('title', '')}\n"
        f"Abstract: {context.get('abstract', '')}\n"
        f"Claims: {json.dumps(list(claims), ensure_ascii=False)}\n"
        f"Target claim for analysis: claim {doc.get('claim_number', '')}\n"
    )


def par4pc_prompt(doc: dict) -> str:
    options = "\n".join(
        f"[{key}] {opt.get('patent_id', '')}: {opt.get('title', '')}\nAbstract: {opt.get('abstract', '')}\n"
        f"Claims: {json.dumps(list(opt.get('claims') or []), ensure_ascii=False)}"
        for key, opt in _option_items(doc)
    )
    return (
        "You are a patent expert. Identify which of the candidate patents an examiner would cite as prior art "
        "against the target claim of this application.\n\n"
        f"{_context(doc)}\nCandidate patents:\n{options}\n\n"
        'Answer with JSON only: {"answer": "A"} or {"answer": ["A", "C"]}.'
    )


def pi4pc_prompt(doc: dict) -> str:
    art = doc.get("prior_art_specification") or {}
    options = "\n".join(f"[{key}] {text}" for key, text in _option_items(doc))
    return (
        "You are a patent expert. Given the target claim and a prior-art patent, pick the one paragraph of the "
        "prior art an examiner would cite against the claim.\n\n"
        f"{_context(doc)}\nPrior art {art.get('patent_id', '')}: {art.get('title', '')}\n"
        f"Abstract: {art.get('abstract', '')}\nSpecification:\n{art.get('specification', '')}\n\n"
        f"Candidate paragraphs:\n{options}\n\n"
        'Answer with JSON only, the paragraph number as an integer: {"answer": 17}.'
    )


def noc4pc_prompt(doc: dict) -> str:
    arts = []
    for art in doc.get("prior_art_specifications") or []:
        paragraphs = "\n".join(f"[{p.get('key')}] {p.get('content', '')}" for p in art.get("paragraphs") or [])
        arts.append(
            f"Prior art {art.get('patent_id', '')}: {art.get('title', '')}\nAbstract: {art.get('abstract', '')}\n"
            f"Claims: {json.dumps(list(art.get('claims') or []), ensure_ascii=False)}\nCited paragraphs:\n{paragraphs}"
        )
    return (
        "You are an expert AI acting as a U.S. patent examiner. Decide whether the target claim is allowable, "
        "anticipated by a single reference (35 U.S.C. 102), or obvious (35 U.S.C. 103) over the prior art.\n\n"
        f"{_context(doc)}\n" + "\n\n".join(arts) + "\n\n"
        'Answer with JSON only: {"code": "ALLOW"}, {"code": "102"} or {"code": "103"}.'
    )


def doc_to_text(doc: dict) -> str:
    """The exact user prompt a PANORAMA doc is scored with (the task follows from the doc's
    shape); the offline data recipe builds its training prompts with it too."""
    if "prior_art_specifications" in doc:
        return noc4pc_prompt(doc)
    if "prior_art_specification" in doc:
        return pi4pc_prompt(doc)
    return par4pc_prompt(doc)


def target_text(benchmark: str, doc: dict) -> str | None:
    """A training answer for `doc`, as the scorer reads it: the gold letters (PAR4PC), the first
    gold paragraph (PI4PC), or the examiner's reasoning followed by the code (NOC4PC). None when
    the doc has no usable gold."""
    if benchmark == "panorama_par4pc":
        letters = [str(x) for x in _as_list(doc.get("gold_answers"))]
        return json.dumps({"answer": letters}) if letters else None
    if benchmark == "panorama_pi4pc":
        gold = _as_list(doc.get("gold_answers"))
        return json.dumps({"answer": int(gold[0])}) if gold and str(gold[0]).isdigit() else None
    answer = doc.get("answer")
    if isinstance(answer, str):
        answer = json.loads(answer) if answer.strip().startswith("{") else {"code": answer}
    if not isinstance(answer, dict) or str(answer.get("code", "")).strip().upper() not in NOC_LABELS:
        return None
    reason = str(answer.get("reason") or "").strip()
    code = json.dumps({"code": str(answer["code"]).strip().upper()})
    return f"{reason}\n\n{code}" if reason else code


# lm-eval's own table: the item's metric averaged over its k sampled responses.
def par4pc_process_results(doc: dict, results: list) -> dict:
    values = [par4pc_item(doc, r)["f1"] for r in responses_of(results)]
    return {"f1": sum(values) / len(values)}


def pi4pc_process_results(doc: dict, results: list) -> dict:
    values = [pi4pc_item(doc, r)["gold_hit"] for r in responses_of(results)]
    return {"gold_hit": sum(values) / len(values)}


def noc4pc_process_results(doc: dict, results: list) -> dict:
    values = [noc4pc_item(doc, r)["correct"] for r in responses_of(results)]
    return {"correct": sum(values) / len(values)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    item = SCORERS[entry["name"]][0]
    return per_sample([item(doc, response) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    return SCORERS[entry["name"]][1](items)


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item.get("f1", item.get("gold_hit", item.get("correct"))) == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (the task's own files), or
    why it has none: NOC4PC's examiner's reason, then the code; the others their answer JSON."""
    answer = target_text(entry["name"], doc)
    if answer is None:
        return "no gold answer"
    reasoning, _, final = answer.rpartition("\n\n")
    return reasoning, final


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows (all of them here)."""
    return rows
