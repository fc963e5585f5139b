"""HumanEval and MBPP scorers: pass@1, the answer's program executed against the item's tests.

RD-Agent scores both through OpenCompass (humaneval → `humaneval_gen`, mbpp → `mbpp_gen`, from
its fork Jensen246/opencompass); rdft follows those configs and the authors' execution rule:

HumanEval (openai/openai_humaneval, 164 items). Prompt: OpenCompass's instruction ("Read the
following function signature and docstring, …") then the item's `prompt`. The answer's code is
the first fenced block (```python … ```, prose around it is fine; OpenCompass's
`humaneval_postprocess_v2`), or the whole response when it has no fence. The program is
openai/human-eval's `prompt + completion + "\\n" + test + "\\n" + "check(entry_point)"`, with
`completion` read one of two ways:
- code that defines `def <entry_point>(` at the start of a line is the whole function (a chat
  answer): completion = "\\n" + the code, left-stripped, so the prompt's imports and helper
  functions stay and its docstring-only stub is redefined — OpenCompass's program, which appends
  the left-stripped code to the prompt;
- anything else is a continuation of the prompt (a base model's raw body): completion = the code
  as it is — openai/human-eval's rule. Here rdft departs from OpenCompass, whose left-strip
  unindents the first line of a body and so fails every raw continuation.
MBPP (google-research-datasets/mbpp, `full` test split: task_ids 11-510, the items OpenCompass's
`MBPPDataset` takes as train[10:510] of mbpp.jsonl). Prompt: OpenCompass's three-shot prompt
(tasks 2-4 with their `[BEGIN] '…' [DONE]` answers), its rounds joined into one user turn (lm-eval
sends one), ending with the item's task and tests; OpenCompass's `[BEGIN]` prefix of the answer
is left out (lm-eval cannot prefill a chat answer). The answer's code is OpenCompass's
`MBPPEvaluator._process_answer` (the first of its `[BEGIN]…[DONE]`/fence patterns that matches,
cut at the next fence and at DONE, `\\_` unescaped, stripped; the standard `re` module in place of
`regex`). The program is that code, then the item's `test_setup_code`, then its `test_list`
asserts, one per line. OpenCompass leaves `test_setup_code` out (the field is usually empty);
rdft runs it before the asserts, which is what the field is for, so an item whose asserts need it
(an import, a fixture) can pass.

Both: `<think>…</think>` is dropped first (RD-Agent's `extract-non-reasoning-content`). The
program runs as the authors run it — exec'd in a fresh globals dict (so `if __name__ ==
"__main__":` blocks do not run), an exception or any exit before the tests finish failing it —
but in its own process under evaluation/tasks/sandbox.py, which is what makes a program that
loops, forks, writes outside its folder, opens a socket or eats memory one failed item. Limits:
the authors' time limit as CPU seconds (HumanEval 3 s, OpenCompass's MBPP 9 s of its 10 s), a
wall clock of twice that plus 5 s (the interpreter's start on a loaded host), 1 GB of memory.
human-eval's `reliability_guard` sets os.remove, os.chdir, os.getcwd, shutil.rmtree and the like
to None; the sandbox lets them act inside the program's folder (and refuses them outside it), so
a program that calls them can pass here where it fails there.

A response is unreadable when it holds no code or its program does not compile (not run: it
would fail; an empty HumanEval answer leaves the prompt's stub, which runs and fails). Per
sample: pass_at_1 (0/1) and its status (passed, failed, timeout, memory, killed); with k samples
the item's pass@1 is their mean (avg@k), the samples kept under `per_sample` and run side by
side (a small thread pool). Training rows: MBPP's `code`, fenced (HumanEval has no
training split). Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import per_sample, responses_of, strip_think
from sandbox import run_python

WORKERS = max(2, min(8, os.cpu_count() or 1))  # programs run side by side
MEMORY_MB = 1024
HUMANEVAL_SECONDS = 3.0  # human-eval's timeout, as OpenCompass's HumanEvalEvaluator passes it
MBPP_SECONDS = 9.0  # OpenCompass's MBPP: time_limit(10 - 1) inside a process joined for 10 s
STATUSES = ("passed", "failed", "timeout", "memory", "killed")

HUMANEVAL_INSTRUCTION = (
    "Read the following function signature and docstring, and fully implement the function described. "
    "Your response should only contain the code for this function.\n"
)
# OpenCompass mbpp_gen_830460: the three shots (HUMAN, BOT) as its config spells them, and the
# final HUMAN round.
MBPP_SHOTS = (
    ("You are an expert Python programmer, and here is your task: Write a function to find the similar elements "
     "from the given two tuple lists. Your code should pass these tests:\n\n assert similar_elements((3, 4, 5, 6),"
     "(5, 7, 4, 10)) == (4, 5)\nassert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4) \nassert "
     "similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14) \n",
     "[BEGIN]\n 'def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
     "  return (res)' \n[DONE] \n\n "),
    ("You are an expert Python programmer, and here is your task: Write a python function to identify non-prime "
     "numbers. Your code should pass these tests:\n\n assert is_not_prime(2) == False \nassert is_not_prime(10) == "
     "True \nassert is_not_prime(35) == True \n",
     "[BEGIN]\n 'import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) "
     "+ 1):\r\n        if n % i == 0:\r\n            result = True\r\n    return result' \n[DONE] \n\n "),
    ("You are an expert Python programmer, and here is your task: Write a function to find the largest integers "
     "from a given list of numbers using heap queue algorithm. Your code should pass these tests:\n\n assert "
     "heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \nassert heap_queue_largest( [25, "
     "35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \nassert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58]"
     ",5)==[85, 75, 65, 58, 35] \n",
     "[BEGIN]\n 'import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n"
     "  return largest_nums' \n[DONE] \n\n "),
)  # fmt: skip
MBPP_TASK = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n {tests}  \n"
)
# OpenCompass MBPPEvaluator._process_answer's patterns, in its order.
MBPP_PATTERNS = [
    r"\[BEGIN\]\s*'(.*)'\s*\[DONE\]", r"BEGIN\s*'(.*)'\s*\[DONE\]", r"\[BEGIN\]\s*'(.*)'\s*DONE",
    r"BEGIN\s*'(.*)'\s*DONE", r"\[BEGIN\]\s*'(.*)\s*\[DONE\]", r"BEGIN\s*'(.*)\s*\[DONE\]",
    r"\[BEGIN\]\s*'(.*)\s*DONE", r"BEGIN\s*'(.*)\s*DONE", r"\[BEGIN\]\s*(.*)\s*\[DONE\]", r"BEGIN\s*(.*)\s*\[DONE\]",
    r"\[BEGIN\]\s*(.*)\s*DONE", r"BEGIN\s*(.*)\s*DONE", r"```python\s*(.*)\s*```", r"```\s*(.*)\s*```",
    r"```python\s*(.*)\s*$", r"```\s*(.*)\s*$", r"(.*)\s*```.*", r"\[BEGIN\]\s*'(.*)", r"\[BEGIN\](.*)",
    r"'(.*)'\s*\[DONE\]",
]  # fmt: skip
FENCE = re.compile(r"```\w*\n(.*?)```", re.S)  # OpenCompass humaneval_postprocess_v2
# The program exec's the authors' check program in a fresh globals dict, as they do; the marker
# is written only when it finished, so an exit before the tests ran (sys.exit(0)) fails.
DRIVER = (
    'with open("check_program.py", encoding="utf-8") as handle:\n'
    "    source = handle.read()\n"
    'exec(compile(source, "check_program.py", "exec"), {{}})\n'
    "__import__('os').write(1, b'\\n{marker}\\n')\n"
)


def is_humaneval(doc: dict) -> bool:
    return "entry_point" in doc and "prompt" in doc


def _tests(doc: dict) -> list[str]:
    tests = doc["test_list"]
    if isinstance(tests, str):  # OpenCompass joins them; a doc may hold them so
        return tests.splitlines()
    return [str(test) for test in tests]


def doc_to_text(doc: dict) -> str:
    """The exact user prompt a doc is scored with (HumanEval's or MBPP's, from the doc's shape);
    the offline data recipe builds its training prompts with it too."""
    if is_humaneval(doc):
        return HUMANEVAL_INSTRUCTION + doc["prompt"]
    shots = "".join(human + bot for human, bot in MBPP_SHOTS)
    return shots + MBPP_TASK.format(text=doc["text"], tests="\n".join(_tests(doc)))


def doc_to_target(doc: dict) -> str:
    return ""


# --- reading the answer and building the program -------------------------------------------------
def humaneval_completion(doc: dict, response: str) -> str:
    """What follows the prompt: the whole function (see the module docstring) or the raw body."""
    text = strip_think(response)
    blocks = FENCE.findall(text)
    code = blocks[0] if blocks else text
    if re.search(rf"^def\s+{re.escape(doc['entry_point'])}\s*\(", code, re.M):
        return "\n" + code.lstrip()
    return code


def mbpp_answer(response: str) -> str:
    """OpenCompass's MBPPEvaluator._process_answer (Jensen246/opencompass, as RD-Agent runs it)."""
    text = strip_think(response)
    for pattern in MBPP_PATTERNS:
        match = re.search(pattern, text, re.DOTALL)
        if match:
            text = match.group(1)
            break
    text = text.split("```")[0]
    text = re.split(r"'?\s*\[?DONE\]?", text)[0]
    text = text.replace("\\_", "_")
    return text.strip()


def program(doc: dict, response: str) -> tuple[str, str]:
    """(the answer's code, the check program the authors execute)."""
    if is_humaneval(doc):
        code = humaneval_completion(doc, response)
        check = f"{doc['prompt']}{code}\n{doc['test']}\ncheck({doc['entry_point']})\n"
        return code, check
    code = mbpp_answer(response)
    setup = str(doc.get("test_setup_code") or "")
    return code, f"{code}\n{setup}\n" + "\n".join(_tests(doc)) + "\n"


def compiles(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def score_one(doc: dict, response: str) -> dict:
    code, check = program(doc, response)
    valid = compiles(check)
    out = {"pass_at_1": 0, "status": "failed", "unreadable": int(not (valid and code.strip())),
           "answer": code.strip() or None if valid else None}  # fmt: skip
    if not valid:  # it would fail on exec; no process needed
        return out
    seconds = HUMANEVAL_SECONDS if is_humaneval(doc) else MBPP_SECONDS
    marker = uuid.uuid4().hex
    outcome = run_python(
        DRIVER.format(marker=marker), files={"check_program.py": check}, timeout_s=2 * seconds + 5,
        cpu_s=seconds, memory_mb=MEMORY_MB,
    )  # fmt: skip
    finished = outcome.status == "passed" and marker in outcome.stdout
    out["status"] = "passed" if finished else ("failed" if outcome.status == "passed" else outcome.status)
    out["pass_at_1"] = int(finished)
    return out


def score_item(doc: dict, responses: list[str]) -> dict:
    with ThreadPoolExecutor(min(WORKERS, len(responses))) as pool:
        scores = list(pool.map(lambda response: score_one(doc, response), responses))
    return per_sample(scores)


def process_results(doc: dict, results: list) -> dict:
    """lm-eval's own table: the item's pass@1, averaged over its k sampled responses."""
    item = score_item(doc, responses_of(results))
    samples = item.get("per_sample", [item])
    return {"pass_at_1": sum(s["pass_at_1"] for s in samples) / len(samples)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    return score_item(doc, responses)


def summarize(entry: dict, items: list[dict]) -> dict:
    n = len(items)
    return {
        "pass_at_1": sum(i["pass_at_1"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
        "statuses": {status: sum(i["status"] == status for i in items) for status in STATUSES},
    }


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return all(sample["pass_at_1"] == 1 for sample in item.get("per_sample", [item]))


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc`, or why it has none: an MBPP
    row's reference `code` (a HumanEval-schema row's prompt with its canonical solution), fenced
    as a chat model answers; no reasoning (the datasets hold none)."""
    if is_humaneval(doc):
        code = f"{doc['prompt']}{doc.get('canonical_solution') or ''}" if doc.get("canonical_solution") else ""
    else:
        code = str(doc.get("code") or "")
    code = code.replace("\r\n", "\n").strip()
    if not code:
        return "no reference solution"
    return "", f"```python\n{code}\n```"


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is. The prompt
    follows the row's shape, so MBPP rows keep MBPP's prompt for HumanEval too."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows: HumanEval all of them; MBPP the task_ids
    11-510 (OpenCompass's train[10:510] of mbpp.jsonl, the Hub's `full` test split)."""
    if not rows or is_humaneval(rows[0]):
        return rows
    return [row for row in rows if 11 <= int(row["task_id"]) <= 510]
