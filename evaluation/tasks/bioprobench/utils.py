"""BioProBench scorers (PQA, ORD, ERR, GEN), as RD-Agent scores them: OpenCompass's bioprobench
configs and evaluators (RD-Agent's fork Jensen246/opencompass,
opencompass/{configs/datasets,datasets}/bioprobench/), which follow the authors' Metrics/*.py.

Prompts are the configs' QUERY_TEMPLATEs, each field put in as OpenCompass does (`str(value)`:
a list or a dict appears as its Python repr). Answers sit between [ANSWER_START] and
[ANSWER_END], read after the last </think>:

- PQA `<option text> & <confidence>%` (the first tagged block; without `&`, the last word is the
  confidence): right when the text equals `answer` exactly; the Brier score of the confidences.
- ORD `[2, 0, 1]`, the shuffled steps' indices in the right order (the last tagged block, a
  Python list): exact match, and Kendall's tau pooled over the step pairs of all items (their
  code's definition, not a mean of per-item taus). tau is in [-1, 1].
- ERR `True` / `False` (the first tagged block, else the last line; "True" wins when both
  appear): True means the step is right. Accuracy, and precision/recall/F1 of `False` (the step
  has an error) — F1 is RD-Agent's headline.
- GEN the steps, one a line (the first tagged block): ROUGE-1/2/L F-measures (rouge-score with
  its Porter stemmer) against the gold steps joined by spaces; ROUGE-L is RD-Agent's headline.
  BLEU and METEOR (NLTK) are computed only where NLTK's punkt_tab / wordnet data are installed
  (rdft downloads nothing), and the keyword and step metrics, which need sentence-transformers
  models (all-MiniLM-L6-v2, all-mpnet-base-v2), never: `not_computed` says which and why.

Unreadable answers: OpenCompass leaves an unparsed answer out of every mean and counts it as
`failed`. rdft counts every item — an unreadable answer is wrong (PQA), the other label (ERR),
every pair of its steps discordant (ORD), ROUGE and BLEU 0 (GEN) — so a model cannot raise its
score by failing the items it finds hard. OpenCompass's own numbers stay beside, under
`opencompass` (in [0, 1], where OpenCompass prints percentages). Runs in the eval env; imports
nothing from rdft.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from itertools import combinations

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import per_sample, responses_of

TAGGED = re.compile(r"\[ANSWER_START\](.*?)\[ANSWER_END\]", re.S)
ROUGE_CORRECT = 0.5  # RD-Agent's per-item `correct` for GEN: ROUGE-L at least this

# The configs' QUERY_TEMPLATEs (opencompass/configs/datasets/bioprobench/bioprobench_*.py), with
# their input columns in order: OpenCompass replaces each `{column}` by str(value), one by one.
PQA_PROMPT = """You are answering a multiple-choice question.
Choose exactly one option from the given Choices.
Return your final answer and confidence in this exact format:
[ANSWER_START] <chosen option text> & <confidence as integer 0-100>% [ANSWER_END]
Only include the final line in that format at the end of your response.

Question:
{question}

Choices:
{choices}"""
ORD_PROMPT = """{question}
The steps are:
{wrong_steps}

- Give me the correct order of the steps as a list of their original indices (start from 0), no other words.
- Output your answer *wrapped exactly* between the tags [ANSWER_START] and [ANSWER_END].
- The format of your response must be:
[ANSWER_START]a list of the original indices[ANSWER_END]"""
ERR_PROMPT = """Determine whether the following target step in a protocol is True or False:
{step}

You may use the following context, which includes the purpose of the step, as well as the preceding and following steps, to inform your decision:
{context}

Please carefully evaluate if the step is logically consistent, necessary, and accurate in the context. If you find anything wrong, answer False.

- Please respond with only True or False, without any additional explanation.
- Output your answer *wrapped exactly* between the tags [ANSWER_START] and [ANSWER_END].
- The format of your response must be:
[ANSWER_START]True or False[ANSWER_END]"""  # noqa: E501 (the config's lines)
GEN_PROMPT = """{system_prompt}
{instruction}
Format requirements for the final output steps (which must be placed *between* the [ANSWER_START] and [ANSWER_END] tags):
- Each step must be on a separate line.

{input}"""  # noqa: E501 (the config's lines)
COLUMNS = {
    "pqa": (PQA_PROMPT, ("question", "choices")),
    "ord": (ORD_PROMPT, ("question", "wrong_steps")),
    "err": (ERR_PROMPT, ("step", "context")),
    "gen": (GEN_PROMPT, ("system_prompt", "instruction", "input")),
}
# What a doc of each task holds (its own files' schema); benchmark_docs selects by it.
SHAPE = {
    "pqa": ("question", "choices", "answer"),
    "ord": ("question", "wrong_steps", "correct_steps"),
    "err": ("context", "is_correct"),
    "gen": ("instruction", "input", "output"),
}
FILES = {"pqa": "PQA_test.json", "ord": "ORD_test.json", "err": "ERR_test.json", "gen": "GEN_test.json"}


def task_of(doc: dict) -> str | None:
    """The task a doc belongs to, from its fields (the four tasks' schemas differ)."""
    for task, fields in SHAPE.items():
        if all(field in doc for field in fields):
            return task
    return None


def task_of_entry(entry: dict) -> str:
    return entry["name"].rsplit("_", 1)[-1]


def step_of(doc: dict):
    """ERR's target step: the corrected text of a correct step, else the corrupted one (their loader)."""
    return doc.get("corrected_text") if doc.get("is_correct") else doc.get("corrupted_text")


def doc_to_text(doc: dict) -> str:
    """The exact user prompt a BioProBench doc is scored with (the task follows from the doc's
    shape); the offline data recipe builds its training prompts with it too."""
    task = task_of(doc)
    if task is None:
        raise KeyError("not a BioProBench PQA, ORD, ERR or GEN doc")
    template, columns = COLUMNS[task]
    values = {**doc, "step": step_of(doc)} if task == "err" else doc
    for column in columns:  # OpenCompass's safe_format: str(value) in place of `{column}`
        template = template.replace("{" + column + "}", str(values[column]))
    return template


def after_think(text: str) -> str:
    return (text or "").split("</think>")[-1]


# --- PQA --------------------------------------------------------------------------------------
def pqa_answer(response: str) -> tuple[str, int] | None:
    """(option text, confidence) as their bioprobench_pqa_postprocess and evaluator read it, or
    None where they fail the item."""
    match = TAGGED.search(after_think(response))
    if not match:
        return None
    content = match.group(1).strip()
    if "&" in content:
        parts = content.split("&")
        if len(parts) != 2:
            return None
    else:
        words = content.split(" ")
        parts = [" ".join(words[:-1]), words[-1]]
    confidence = re.search(r"\d+", parts[-1])
    if not confidence or int(confidence.group()) > 100:
        return None
    return parts[0].strip(), int(confidence.group())


def pqa_item(doc: dict, response: str) -> dict:
    parsed = pqa_answer(response)
    if parsed is None:
        return {"correct": 0, "readable": 0, "confidence": None, "answer": None}
    answer, confidence = parsed
    return {"correct": int(answer == doc["answer"]), "readable": 1, "confidence": confidence, "answer": answer}


def pqa_summary(items: list[dict]) -> dict:
    parsed = [i for i in items if i["readable"]]
    brier = sum((i["confidence"] / 100 - i["correct"]) ** 2 for i in parsed) / len(parsed) if parsed else None
    return {
        "accuracy": sum(i["correct"] for i in items) / len(items),
        "n_unreadable": len(items) - len(parsed),
        "opencompass": {
            "accuracy": sum(i["correct"] for i in parsed) / len(parsed) if parsed else 0.0,
            "brier_score": brier,
            "failed": len(items) - len(parsed),
        },
    }


# --- ORD --------------------------------------------------------------------------------------
def ord_gold(doc: dict) -> list[int]:
    """Their loader's `correct_ids`: each correct step's index among the shuffled ones (a step
    that occurs twice takes its last index, as their dict does)."""
    index = {step: i for i, step in enumerate(doc["wrong_steps"])}
    ids = [index.get(step) for step in doc["correct_steps"]]
    if None in ids:
        raise ValueError(f"ORD item {doc.get('id')}: a correct step is not among its wrong_steps")
    return ids


def ord_answer(response: str) -> list[int] | None:
    """The indices of the last tagged block, as their bioprobench_ord_postprocess reads them."""
    matches = TAGGED.findall(after_think(response))
    if not matches:
        return None
    try:
        value = ast.literal_eval(matches[-1].strip())
    except Exception:  # literal_eval raises many kinds; their code catches them all
        return None
    if not isinstance(value, (list, tuple)):
        return None
    try:
        return [int(x) for x in value]
    except Exception:
        return None


def pair_counts(gold: list[int], pred: list[int]) -> tuple[int, int]:
    """(concordant pairs, pairs) of one item, as their kendall_tau counts them."""
    gold_rank = {step: i for i, step in enumerate(gold)}
    pred_rank = {step: i for i, step in enumerate(pred)}
    concordant = pairs = 0
    for a, b in combinations(gold_rank.keys() & pred_rank.keys(), 2):
        concordant += (gold_rank[a] - gold_rank[b]) * (pred_rank[a] - pred_rank[b]) > 0
        pairs += 1
    return concordant, pairs


def ord_item(doc: dict, response: str) -> dict:
    gold = ord_gold(doc)
    pred = ord_answer(response)
    # Their evaluator fails a prediction that is not a reordering of the gold indices.
    if pred is None or len(pred) != len(gold) or set(pred) != set(gold):
        pairs = len(set(gold)) * (len(set(gold)) - 1) // 2
        return {"exact_match": 0, "concordant": 0, "pairs": pairs, "readable": 0, "answer": None}
    concordant, pairs = pair_counts(gold, pred)
    return {"exact_match": int(pred == gold), "concordant": concordant, "pairs": pairs, "readable": 1,
            "answer": str(pred)}  # fmt: skip


def tau(items: list[dict]) -> float:
    pairs = sum(i["pairs"] for i in items)
    return (2 * sum(i["concordant"] for i in items) - pairs) / pairs if pairs else 0.0


def ord_summary(items: list[dict]) -> dict:
    parsed = [i for i in items if i["readable"]]
    return {
        "kendall_tau": tau(items),  # an unreadable item's pairs all count as discordant
        "exact_match": sum(i["exact_match"] for i in items) / len(items),
        "n_unreadable": len(items) - len(parsed),
        "opencompass": {
            "kendall_tau": tau(parsed),
            "exact_match": sum(i["exact_match"] for i in parsed) / len(parsed) if parsed else 0.0,
            "failed": len(items) - len(parsed),
        },
    }


# --- ERR --------------------------------------------------------------------------------------
def err_answer(response: str) -> bool | None:
    """True/False as their bioprobench_err_postprocess reads it, or None."""
    text = after_think(response)
    if "[/INST]" in text:
        text = text.split("[/INST]")[-1]
    match = TAGGED.search(text)
    answer = match.group(1).strip() if match else text.strip().split("\n")[-1].strip()
    if "True" in answer or "true" in answer:
        return True
    if "False" in answer or "false" in answer:
        return False
    return None


def err_gold(doc: dict) -> bool:
    gold = doc["is_correct"]
    if not isinstance(gold, bool):
        raise ValueError(f"ERR item {doc.get('id')}: is_correct is {gold!r}, not true or false")
    return gold


def err_item(doc: dict, response: str) -> dict:
    pred, gold = err_answer(response), err_gold(doc)
    return {"pred": pred, "gold": gold, "correct": int(pred is gold), "readable": int(pred is not None),
            "answer": None if pred is None else str(pred)}  # fmt: skip


def classification(pairs: list[tuple[bool, bool]]) -> dict:
    """Their compute_classification_metrics: the positive class is False (the step has an error)."""
    tp = sum(p is False and g is False for p, g in pairs)
    fp = sum(p is False and g is True for p, g in pairs)
    fn = sum(p is True and g is False for p, g in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": sum(p == g for p, g in pairs) / len(pairs) if pairs else 0.0,
        "precision": precision,
        "recall": recall,
    }


def err_summary(items: list[dict]) -> dict:
    every = [(i["pred"] if i["readable"] else not i["gold"], i["gold"]) for i in items]  # unreadable: the other label
    parsed = [(i["pred"], i["gold"]) for i in items if i["readable"]]
    return {
        **classification(every),
        "n_unreadable": len(items) - len(parsed),
        "opencompass": {**classification(parsed), "failed": len(items) - len(parsed)},
    }


# --- GEN --------------------------------------------------------------------------------------
def gen_answer(response: str) -> str | None:
    """The first tagged block, as their bioprobench_gen_postprocess reads it, or None."""
    text = after_think(response)
    if "</Structure>" in text:
        text = text.split("</Structure>")[-1]
    match = TAGGED.search(text)
    return match.group(1).strip() if match else None


_ROUGE = None


def rouge(reference: str, generated: str) -> dict:
    global _ROUGE
    if _ROUGE is None:
        try:
            from rouge_score import rouge_scorer
        except ImportError as error:  # the eval env has it (through lm-eval); an env without it says so
            raise ImportError(
                "BioProBench GEN scores with rouge-score (and NLTK's Porter stemmer), which this env lacks: "
                "add rouge-score==0.1.2 to its spec in envs/ and relock"
            ) from error

        _ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = _ROUGE.score(reference, generated)
    return {"rouge_1": scores["rouge1"].fmeasure, "rouge_2": scores["rouge2"].fmeasure,
            "rouge_l": scores["rougeL"].fmeasure}  # fmt: skip


def nltk_metrics(reference: str, generated: str) -> tuple[float | None, float | None]:
    """Their BLEU (bigram, smoothing method1) and METEOR over NLTK's word tokens, or None where
    NLTK's data (punkt_tab, wordnet) is not installed."""
    try:
        import nltk
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        ref, gen = nltk.word_tokenize(reference.lower()), nltk.word_tokenize(generated.lower())
    except (ImportError, LookupError):  # NLTK itself, or its data, absent
        return None, None
    bleu = sentence_bleu([ref], gen, weights=(0.5, 0.5), smoothing_function=SmoothingFunction().method1)
    try:
        from nltk.translate.meteor_score import meteor_score

        return bleu, meteor_score([ref], gen)
    except LookupError:
        return bleu, None


def gen_reference(doc: dict) -> str:
    output = doc["output"]
    return " ".join(output) if isinstance(output, list) else str(output)


def gen_item(doc: dict, response: str) -> dict:
    reference, answer = gen_reference(doc), gen_answer(response)
    if answer is None:
        return {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0, "bleu": 0.0, "meteor": 0.0, "readable": 0,
                "answer": None}  # fmt: skip
    scores = rouge(reference, answer)
    bleu, meteor = nltk_metrics(reference, answer)
    return {**scores, "bleu": bleu, "meteor": meteor, "readable": 1, "answer": answer[:200]}


NOT_COMPUTED = {
    "KW_Precision": "KeyBERT over sentence-transformers all-MiniLM-L6-v2, a model rdft does not download",
    "KW_Recall": "KeyBERT over sentence-transformers all-MiniLM-L6-v2, a model rdft does not download",
    "KW_F1": "KeyBERT over sentence-transformers all-MiniLM-L6-v2, a model rdft does not download",
    "Step_Recall": "sentence-transformers all-mpnet-base-v2 embeddings, a model rdft does not download",
    "Redundancy_Penalty": "sentence-transformers all-mpnet-base-v2 embeddings, a model rdft does not download",
}


def mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def gen_summary(items: list[dict]) -> dict:
    parsed = [i for i in items if i["readable"]]
    nltk_ok = all(i["bleu"] is not None for i in parsed) and bool(parsed)
    meteor_ok = nltk_ok and all(i["meteor"] is not None for i in parsed)
    not_computed = dict(NOT_COMPUTED)
    if not nltk_ok:
        not_computed["BLEU"] = "NLTK or its punkt_tab tokenizer data is not installed (nltk.download('punkt_tab'))"
    if not meteor_ok:
        not_computed["METEOR"] = "NLTK or its punkt_tab or wordnet data is not installed"
    out = {name: mean([i[name] for i in items]) for name in ("rouge_l", "rouge_1", "rouge_2")}
    out.update(
        bleu=mean([i["bleu"] for i in items]) if nltk_ok else None,
        meteor=mean([i["meteor"] for i in items]) if meteor_ok else None,
        n_unreadable=len(items) - len(parsed),
        opencompass={
            "ROUGE-L": mean([i["rouge_l"] for i in parsed]),
            "ROUGE-1": mean([i["rouge_1"] for i in parsed]),
            "ROUGE-2": mean([i["rouge_2"] for i in parsed]),
            "BLEU": mean([i["bleu"] for i in parsed]) if nltk_ok else None,
            "METEOR": mean([i["meteor"] for i in parsed]) if meteor_ok else None,
            "failed": len(items) - len(parsed),
        },
        not_computed=not_computed,
    )
    return out


SCORERS = {
    "pqa": (pqa_item, pqa_summary),
    "ord": (ord_item, ord_summary),
    "err": (err_item, err_summary),
    "gen": (gen_item, gen_summary),
}
ITEM_METRIC = {"pqa": "correct", "ord": "exact_match", "err": "correct", "gen": "rouge_l"}


# lm-eval's own table: the item's metric averaged over its k sampled responses.
def _process(task: str, doc: dict, results: list) -> dict:
    values = [SCORERS[task][0](doc, r)[ITEM_METRIC[task]] for r in responses_of(results)]
    return {ITEM_METRIC[task]: sum(values) / len(values)}


def pqa_process_results(doc: dict, results: list) -> dict:
    return _process("pqa", doc, results)


def ord_process_results(doc: dict, results: list) -> dict:
    return _process("ord", doc, results)


def err_process_results(doc: dict, results: list) -> dict:
    return _process("err", doc, results)


def gen_process_results(doc: dict, results: list) -> dict:
    return _process("gen", doc, results)


def doc_to_target(doc: dict) -> str:
    return ""


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    item = SCORERS[task_of_entry(entry)][0]
    return per_sample([item(doc, response) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    return SCORERS[task_of_entry(entry)][1](items)


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    """Right (PQA, ERR), the exact order (ORD), ROUGE-L at least 0.5 (GEN: RD-Agent's `correct`)."""
    task = task_of_entry(entry)
    return item["rouge_l"] >= ROUGE_CORRECT if task == "gen" else item[ITEM_METRIC[task]] == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (the task's own files: PQA.json,
    ORD.json, ERR.json, GEN.json), or why it has none. The prompts ask for the tagged answer alone,
    so there is no reasoning. PQA's confidence is 100%: the gold answer is certain, and the data
    holds no calibrated confidence to teach (only the Brier score reads it)."""
    task = task_of_entry(entry)
    if task_of(doc) != task:
        return f"not a {task.upper()} row"
    if task == "pqa":
        answer = doc.get("answer")
        if not isinstance(answer, str) or answer not in (doc.get("choices") or []):
            return "no gold answer among the choices"
        if "&" in answer or answer != answer.strip():
            return "the gold answer cannot be read back (holds '&' or surrounding spaces)"
        return "", f"[ANSWER_START]{answer} & 100%[ANSWER_END]"
    if task == "ord":
        try:
            gold = ord_gold(doc)
        except ValueError:
            return "a correct step is not among the shuffled ones"
        if len(set(gold)) != len(gold):  # a repeated step: the gold list is no reordering to teach
            return "a step repeats"
        return "", f"[ANSWER_START]{gold}[ANSWER_END]"
    if task == "err":
        if not isinstance(doc.get("is_correct"), bool) or not step_of(doc):
            return "no step or no is_correct"
        return "", f"[ANSWER_START]{doc['is_correct']}[ANSWER_END]"
    steps = doc.get("output")
    text = "\n".join(str(step) for step in steps) if isinstance(steps, list) else str(steps or "")
    return ("", f"[ANSWER_START]{text}[ANSWER_END]") if text.strip() else "no gold steps"


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows: the rows of its task (a local file
    may hold several tasks' items; the Hub's config holds only its own)."""
    task = task_of_entry(entry)
    own = [row for row in rows if task_of(row) == task]
    if not own:
        raise SystemExit(
            f"prepare: none of the {len(rows)} rows is a BioProBench {task.upper()} item "
            f"({', '.join(SHAPE[task])}); give its {FILES[task]}"
        )
    return own
