"""MATH (Hendrycks et al., 2021) scored as RD-Agent scores it: OpenCompass's
`math_0shot_gen_393424`, the config RD-Agent's benchmark map names for `math`.

Items: the 5,000 test problems of MATH, not MATH-500. The config reads OpenCompass's `math.json`
(MATHDataset's default file; the MATH-500 configs name `test_prm800k_500.json` instead), and
OpenCompass's published MATH scores move in steps of 0.02 points, i.e. 1/5000. rdft reads them
from DigitalLearningGmbH/MATH-lighteval (`default` config, `test` split: problem, level, type,
solution), the plain-schema copy of the original release. The gold is the solution's last
`\\boxed{}` (OpenCompass's `extract_boxed_answer`); a doc with an `answer` field (deepscaler's
rows, MATH-500 copies) is scored against that field instead.

Prompt: the problem, then "Please reason step by step, and put your final answer within
\\boxed{}." (the config's only round). The config caps answers at 1,024 tokens
(`max_out_len=1024`, which RD-Agent's own model setting does not override), so the task YAML's
standard budget is 1,024 too.

Scoring, ported unchanged from opencompass/datasets/math.py (Jensen246/opencompass abc7c91, the
fork RD-Agent installs; the same in open-compass/opencompass a5acc4b):
- `math_postprocess_v2` reads the answer: the content of the last `\\boxed{}` (one pair of
  doubled braces stripped); with no box (or an empty one), the first sentence (split on '.')
  that says "final answer" or "answer is", else the first sentence, through
  `normalize_final_answer` (Minerva's normaliser). So a response without a box can still be
  right, as in OpenCompass; it counts as unreadable in the diagnostics all the same.
- `MATHEvaluator(version='v2').is_equiv`: both sides through `_strip_string_v2` (Hendrycks et
  al.'s `strip_string` extended by OpenCompass: units in a trailing \\text{}, `\\$`, `%`,
  `\\cdot`, `a.000` → `a`, "x = " prefixes of at most two characters, \\frac12 → \\frac{1}{2},
  1/2 → \\frac{1}{2}, \\sqrt2 → \\sqrt{2}), then `normalize_final_answer` of both, then of the raw
  strings, then plain equality. Unlike the authors' v1 rule, v2 does not turn 0.5 into
  \\frac{1}{2}: 0.5 against a gold \\frac{1}{2} is wrong, as in RD-Agent's scores.
`<think>…</think>` is dropped first (OpenCompass's `extract-non-reasoning-content`, which
RD-Agent applies to reasoning models). Accuracy is avg@k over the k samples (OpenCompass's
mean over its n replicas is the same number).

Runs in the eval env, pure Python (the forgetting check scores a seeded slice of it for every
candidate); imports nothing from rdft.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import responses_of, strip_think

PROMPT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


# --- OpenCompass's answer extraction (opencompass/datasets/math.py), unchanged -------------------
def last_boxed_only_string(string: str) -> str | None:
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    i = idx
    right_brace_idx = None
    num_left_braces_open = 0
    while i < len(string):
        if string[i] == "{":
            num_left_braces_open += 1
        if string[i] == "}":
            num_left_braces_open -= 1
            if num_left_braces_open == 0:
                right_brace_idx = i
                break
        i += 1
    return None if right_brace_idx is None else string[idx : right_brace_idx + 1]


def remove_boxed(s: str) -> str | None:
    left = "\\boxed{"
    if s[: len(left)] == left and s[-1] == "}":
        return s[len(left) : -1]
    return None  # \fbox{…} and `\boxed 5` are not read (OpenCompass's asserts fail on them)


def extract_boxed_answer(pred_str: str, strip_double_curly_brace: bool = False) -> str | None:
    boxed_str = last_boxed_only_string(pred_str)
    if boxed_str is None:
        return None
    answer = remove_boxed(boxed_str)
    if answer is None:
        return None
    if strip_double_curly_brace:
        match = re.match(r"^\{(.*)\}$", answer)
        if match:
            answer = match.group(1)
    return answer


SUBSTITUTIONS = [("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), (r"\ ", ""), (" ", ""), ("mbox", "text"),
                 (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"), ("\\le", "<")]  # fmt: skip
REMOVED_EXPRESSIONS = [
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"',
    "\\dots", "\n", "\r", "\f",
]  # fmt: skip


def normalize_final_answer(final_answer: str) -> str:
    """Normalize a final answer to a quantitative reasoning question (Minerva's rule)."""
    for before, after in SUBSTITUTIONS:
        final_answer = final_answer.replace(before, after)
    for expr in REMOVED_EXPRESSIONS:
        final_answer = final_answer.replace(expr, "")
    final_answer = re.sub(r"(\\text\{)\((.*?)\)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", final_answer)
    if len(re.findall(r"finalansweris(.*)", final_answer)) > 0:
        final_answer = re.findall(r"finalansweris(.*)", final_answer)[-1]
    if len(re.findall(r"answer?is:?(.*)", final_answer)) > 0:
        final_answer = re.findall(r"answer?is:?(.*)", final_answer)[-1]
    if len(re.findall(r"oxed\{(.*?)\}", final_answer)) > 0:
        final_answer = re.findall(r"oxed\{(.*?)\}", final_answer)[-1]
    if len(re.findall(r"\$(.*?)\$", final_answer)) > 0:
        final_answer = re.findall(r"\$(.*?)\$", final_answer)[-1]
    final_answer = final_answer.strip()
    if "rac" in final_answer and "\\frac" not in final_answer:
        final_answer = final_answer.replace("rac", "\\frac")
    final_answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", final_answer)
    final_answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", final_answer)
    final_answer = final_answer.replace("$", "")
    if final_answer.replace(",", "").isdigit():
        final_answer = final_answer.replace(",", "")
    return final_answer


def math_postprocess_v2(text: str) -> str:
    """The answer OpenCompass compares: the last box, else a sentence naming the answer, else
    the first sentence."""
    cand_ans = extract_boxed_answer(text, strip_double_curly_brace=True)
    if cand_ans:
        return cand_ans
    for maybe_ans in text.split("."):
        if re.search("final answer|answer is", maybe_ans.lower()):
            return normalize_final_answer(maybe_ans)
    return normalize_final_answer(text.split(".")[0])


# --- OpenCompass's MATHEvaluator(version='v2'), unchanged -----------------------------------------
def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    if len(substrs) > 1:
        for substr in substrs[1:]:
            new_str += "\\frac"
            if len(substr) > 0 and substr[0] == "{":
                new_str += substr
            else:
                if len(substr) < 2:
                    return string
                a, b = substr[0], substr[1]
                if b != "{":
                    new_str += "{" + a + "}{" + b + "}" + substr[2:]
                else:
                    new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    a, b = int(a), int(b)  # a ValueError escapes to is_equiv, as in OpenCompass: it tries the next rule
    if string != f"{a}/{b}":
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _fix_sqrt_v2(string: str) -> str:
    return re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", string)


def _strip_string_v2(string) -> str:
    string = str(string).strip()
    string = string.replace("\n", "")
    string = string.rstrip(".")
    string = string.replace("\\!", "")
    string = string.replace("\\ ", "")
    string = string.replace("\\\\", "\\")
    string = string.replace("\\\\", "\\")
    string = string.replace("tfrac", "frac")
    string = string.replace("dfrac", "frac")
    string = string.replace("\\left", "")
    string = string.replace("\\right", "")
    _string = re.sub(r"\\text{.*?}$", "", string).strip()  # a unit after the number
    if _string != "" and _string != string:
        string = _string
    string = string.replace("^{\\circ}", "")
    string = string.replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = string.replace("$", "")
    string = string.replace("\\text", "")
    string = string.replace("x\\in", "")
    string = string.replace("\\%", "")
    string = string.replace("%", "")
    string = string.replace(" .", " 0.")
    string = string.replace("{.", "{0.")
    string = string.replace("\\cdot", "")
    string = string.replace("infinity", "\\infty")
    if "\\infty" not in string:
        string = string.replace("inf", "\\infty")
    string = string.replace("+\\inity", "\\infty")
    string = string.replace("and", "")
    string = string.replace("\\mathbf", "")
    string = re.sub(r"\\mbox{.*?}", "", string)
    # (OpenCompass's two `string.replace` calls for quotes discard their result: no-ops, left out)
    if "j" in string and "i" not in string:
        string = string.replace("j", "i")
    string = re.sub(r"(\d+)\.0+([^\d])", r"\1\2", string)
    string = re.sub(r"(\d+)\.0+$", r"\1", string)
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]  # "x = 5" → "5"
    string = _fix_sqrt_v2(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    string = _fix_a_slash_b(string)
    return string


def is_equiv(str1: str | None, str2: str | None) -> bool:
    """OpenCompass's MATHEvaluator v2 equivalence of a prediction and a gold answer."""
    if str1 is None and str2 is None:
        return True
    if str1 is None or str2 is None:
        return False
    try:
        ss1, ss2 = _strip_string_v2(str1), _strip_string_v2(str2)
        if ss1 == ss2:
            return True
        if normalize_final_answer(ss1) == normalize_final_answer(ss2):
            return True
    except Exception:  # as in OpenCompass: a rule that fails moves on to the next
        pass
    try:
        if normalize_final_answer(str1) == normalize_final_answer(str2):
            return True
    except Exception:
        pass
    return str1 == str2


# --- rdft's side: docs, items, metrics ------------------------------------------------------------
def doc_to_text(doc: dict) -> str:
    return doc["problem"] + PROMPT_SUFFIX


def gold(doc: dict) -> str | None:
    """The doc's `answer` where it has that field (None when it is empty: deepscaler's rows
    without an answer are not guessed from their solution), else its solution's last box (None:
    no box)."""
    if "answer" in doc:
        answer = doc["answer"]
        return None if answer in (None, "") else str(answer)
    return extract_boxed_answer(str(doc.get("solution") or ""))


def score_one(doc: dict, response: str) -> dict:
    text = strip_think(response or "")
    boxed = extract_boxed_answer(text, strip_double_curly_brace=True)
    correct = is_equiv(math_postprocess_v2(text), gold(doc))
    return {"correct": int(correct), "readable": int(bool(boxed)), "answer": boxed or None}


def score_item(doc: dict, responses: list[str]) -> dict:
    scores = [score_one(doc, r) for r in responses]
    return {
        "accuracy": sum(s["correct"] for s in scores) / len(scores),
        "pass_at_k": int(any(s["correct"] for s in scores)),
        "unreadable": sum(1 - s["readable"] for s in scores),
        "samples": len(scores),
        "answer": scores[0]["answer"],
        "has_gold": int(gold(doc) is not None),
    }


def summarize(entry: dict, items: list[dict]) -> dict:
    n = len(items)
    return {
        "accuracy": sum(i["accuracy"] for i in items) / n,
        "pass_at_k": sum(i["pass_at_k"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),  # samples without a \boxed{}
        "n_without_gold": sum(1 - i["has_gold"] for i in items),  # solution without a box: wrong, as upstream
        "samples_per_item": items[0]["samples"],
    }


def process_results(doc: dict, results: list) -> dict:
    item = score_item(doc, responses_of(results))
    return {"accuracy": item["accuracy"], "pass_at_k": item["pass_at_k"]}


def doc_to_target(doc: dict) -> str:
    return gold(doc) or ""


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    """MATH scores its k samples together (avg@k, pass@k)."""
    return score_item(doc, responses)


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["accuracy"] == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (deepscaler's
    problem/answer/solution, or a MATH-style problem/solution), or why it has none: the solution
    must be there (a row without reasoning teaches answering without it) and its last box, if
    any, must equal the answer by the scorer's `is_equiv`; a box is appended when it has none
    (and after the reasoning with force_think)."""
    answer = gold(doc)
    if answer is None:
        return "no answer"
    solution = str(doc.get("solution") or "").strip()
    if not solution:
        return "no reasoning"
    boxed = extract_boxed_answer(solution)
    if boxed is not None and not is_equiv(boxed, answer):
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
