"""TableBench scorers: fact checking, numerical reasoning, data analysis (text answers) and
visualization (chart code that is run).

Items: the TCoT row of each question (TableBench_TCoT.jsonl of Multilingual-Multimodal-NLP/TableBench;
`benchmark_docs` keeps rows of the benchmark's qtype whose instruction_type is TCoT), as RD-Agent's
OpenCompass configs load them (the fork RD-Agent installs, Jensen246/opencompass,
configs/datasets/tablebench/tablebench_*_gen.py: instruction_type 'TCoT' in all four). The prompt
is that config's template for the task: the row's instruction, the table as their format_table
prints it ("col | col" rows under a dashed line), and the question.

Scoring is the authors' (TableBench/TableBench: parse_tablebench_instruction_response_script.py,
metrics/qa_metrics.py, metrics/custom_em_metric.py, metrics/chart_metric_utils.py,
eval_tablebench_script.py):

- the answer is the rest of the line after the first "Final Answer: " (case as written; none:
  unreadable, scored as the empty answer), read after <think>…</think> is dropped (rdft's rule
  for every benchmark);
- answer and gold are normalised as their QA metric does: lower case, punctuation deleted,
  articles (a, an, the) removed, whitespace collapsed; then
- fact checking, numerical reasoning: exact match (EM, their custom_em_metric.compute_em): equal
  strings, or equal numbers (after normalising, digit strings: 03 equals 3);
- data analysis, by subtype as in their Mix_Metric: CorrelationAnalysis, TrendForecasting,
  StatisticalAnalysis: EM_with_error_10 (a number within 10% of the gold's); ImpactAnalysis: EM;
  every other subtype: ROUGE-L (the F-measure of the longest common subsequence of rouge-score's
  tokens, their `evaluate` 'rouge' rougeL, no stemmer); `mix_metric` is the mean of the items'
  scores, and ROUGE-L, EM and EM_with_error_10 over all items are reported beside it (the
  benchmark's primary metric, its table row's, is ROUGE-L over all items, RD-Agent's headline);
- visualization: Pass@1, their chart check (chart_check.py, run in the sandbox): the last
  ```python block runs with the table as table.csv, the values it plots are read off the axes by
  the item's chart_type and compared with the gold `y_references` (rounded to 2 decimals, sorted;
  a pie's wedges as shares). ECR@1 (the code ran) and Parse@1 (the check printed a verdict, True
  or False: their parsed_prediction) beside it.

Readings, where the authors' code decides something surprising, rdft keeps their behaviour so
the numbers compare with theirs: normalisation deletes '.', ',', '%' and '-' before numbers are
compared (12.5 and 125 are equal; 0.85 against 0.8 compares 85 with 8, so EM_with_error_10 fails
it); their split-level ROUGE-L is `evaluate`'s bootstrap median of the items' mean, rdft reports
the mean; the chart code runs twice in one process (their ECR run, then the check run) without
closing figures, so a chart drawn on pyplot's current axes with no plt.figure() is drawn twice
and fails; anything the code prints fails it too (the check run's output must be exactly True);
and it runs as `exec(code, globals, {})`, so a lambda or (Python 3.11) a comprehension that reads
the code's own variables raises NameError. RD-Agent's OpenCompass
evaluators differ (first "Final Answer:" of any case, else the whole response; punctuation
turned into spaces; ROUGE-L of the `rouge` package; charts by capturing plt.bar/plot/scatter
calls, which never passes a pie chart or a pandas-drawn one): rdft follows the benchmark's
authors, as RD-Agent's configs say they mean to ("official method").

Training rows (TableInstruct, the authors' training set: `response` instead of `answer`): the TCoT
rows of the benchmark's task; a row's gold is its response's "Final Answer" line, and a chart's
gold is what its own code plots alone (chart_type inferred from the code: the rows name none).
Runs in the eval env (and, for the data recipe's checks, the data env); imports nothing from rdft.
"""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import per_sample, responses_of, strip_think

HERE = os.path.dirname(os.path.abspath(__file__))

QTYPES = {
    "tablebench_fact_checking": "FactChecking",
    "tablebench_numerical_reasoning": "NumericalReasoning",
    "tablebench_data_analysis": "DataAnalysis",
    "tablebench_visualization": "Visualization",
}
INSTRUCTION_TYPE = "TCoT"  # RD-Agent's configs load TableBench_TCoT.jsonl for every task
WITHIN_10 = ("CorrelationAnalysis", "TrendForecasting", "StatisticalAnalysis")  # EM_with_error_10
EXACT = ("ImpactAnalysis",)  # EM; every other data-analysis subtype: ROUGE-L
CHART_TYPES = ("line", "bar", "hbar", "pie", "area", "radar", "scatter", "waterfall")
CHART_SECONDS = 60  # the sandbox's limit for one answer: up to three 15 s runs plus start-up

# RD-Agent's OpenCompass templates (tablebench_<task>_gen.py), verbatim.
_FACT = (
    "{instruction}\n\nTable:\n{table}\n\nQuestion: {question}\n\nPlease analyze the table carefully and provide your "
    "answer based on the information in the table. \n\nInstructions:\n- If the question asks for specific "
    "information (numbers, names, dates, etc.), provide that specific information\n- If the question asks for "
    "verification (is/are, does/do, etc.), answer with Yes/No or True/False\n- Be precise and concise\n- End your "
    'response with "Final Answer: <your answer>"\n\nAnswer:'
)
_NUMERICAL = (
    "{instruction}\n\nTable:\n{table}\n\nQuestion: {question}\n\nPlease analyze the table and provide the numerical "
    'answer. End your response with "Final Answer: <your numerical answer>".\n\nAnswer:'
)
_ANALYSIS = (
    "{instruction}\n\nTable:\n{table}\n\nQuestion: {question}\n\nPlease analyze the table and provide your answer. "
    'End your response with "Final Answer: <your detailed answer>".\n\nAnswer:'
)
_CHART = (
    "Generate Python code to create the requested visualization from the table below.\n\nTable:\n{table}\n\n"
    "Question: {question}\n\nInstructions: {instruction}\n\nImportant:\n- The table will be saved as 'table.csv' "
    "with the first column as row labels\n- Use pd.read_csv('table.csv') to load the data\n- The first column "
    'contains row names (like "Record high °F (°C)")\n- Use df.iloc[row_index, 1:] or df[df.iloc[:, 0] == '
    "'row_name'] to access rows\n\nRequired code structure:\n```python\nimport pandas as pd\nimport "
    "matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n...\nplt.show()\n```\nProvide only the Python code "
    "without any explanation.\nAnswer:"
)
TEMPLATES = {
    "FactChecking": _FACT,
    "NumericalReasoning": _NUMERICAL,
    "DataAnalysis": _ANALYSIS,
    "Visualization": _CHART,
}

PUNCTUATION = frozenset(string.punctuation)
FINAL_ANSWER = re.compile(r"Final Answer: (.+)")  # the authors' parse_dp_prediction
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.S)  # the authors' parse_python_code: the last one


# --- prompts ------------------------------------------------------------------------------------
def table_of(doc: dict):
    """The doc's table, a {"columns", "data"} dict as the files hold it; JSON text of one (older copies
    of the data) is read as that dict, so a table renders the same however it was loaded (their
    loader would print such text as it is)."""
    table = doc.get("table")
    if isinstance(table, str) and table.strip().startswith("{"):
        try:
            return json.loads(table)
        except json.JSONDecodeError:
            return table
    return table


def format_table(table) -> str:
    """The table as RD-Agent's OpenCompass loader prints it into the prompt (their format_table)."""
    if not table:
        return ""
    if isinstance(table, str):
        return table
    if isinstance(table, dict) and "columns" in table and "data" in table:
        columns, data = table["columns"], table["data"]
        if not columns or not data:
            return str(table)
        header = " | ".join(str(column) for column in columns)
        return "\n".join([header, "-" * len(header), *(" | ".join(str(cell) for cell in row) for row in data)])
    if isinstance(table, list) and table and isinstance(table[0], dict):
        keys = list(table[0].keys())
        header = " | ".join(str(key) for key in keys)
        rows = (" | ".join(str(row.get(key, "")) for key in keys) for row in table)
        return "\n".join([header, "-" * len(header), *rows])
    if isinstance(table, dict):
        header = " | ".join(str(key) for key in table)
        return "\n".join([header, "-" * len(header), " | ".join(str(value) for value in table.values())])
    return str(table)


def doc_to_text(doc: dict) -> str:
    """The exact user prompt of a TableBench doc (or a TableInstruct row): its qtype's template
    with {table}, {question}, {instruction} replaced in that order, as OpenCompass fills it."""
    prompt = TEMPLATES[doc["qtype"]]
    values = {"table": format_table(table_of(doc)), "question": str(doc.get("question", "")),
              "instruction": str(doc.get("instruction") or "")}  # fmt: skip
    for key, value in values.items():
        prompt = prompt.replace("{" + key + "}", value)
    return prompt


def doc_to_target(doc: dict) -> str:
    return str(doc.get("answer", ""))


# --- the authors' answer reading and metrics ----------------------------------------------------
def final_answer(response: str) -> str | None:
    """The rest of the line after the first "Final Answer: ", or None when there is none."""
    match = FINAL_ANSWER.search(strip_think(response or ""))
    return match.group(1) if match else None


def normalize_answer(text: str) -> str:
    """Their normalize_answer: lower case, punctuation deleted, articles removed, spaces collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _is_number(value: str) -> bool:
    return bool(re.match(r"^-?\d+(\.\d+)?%?$", value.strip()))


def _number(value: str) -> Decimal:
    if value.endswith("%"):
        return (Decimal(value.strip("%")) / Decimal("100")).quantize(Decimal("1.0000"), rounding=ROUND_HALF_UP)
    return Decimal(value)


def _rounded(value: Decimal, places: int) -> str:
    return str(value.quantize(Decimal(f"1.{'0' * places}"), rounding=ROUND_HALF_UP))


def exact_match(gold: str, answer: str) -> float:
    """Their compute_em for one pair (both normalised): the comma-separated parts in order, each
    worth 1/parts; numbers compare rounded to the fewest decimals among the gold's numbers."""
    golds = [x.strip() for x in gold.split(",")]
    answers = [x.strip() for x in answer.split(",")]
    score = 0.0
    for index, ref in enumerate(golds):
        if index >= len(answers):
            continue
        pred = answers[index]
        if not _is_number(ref):
            score += (ref == pred) / len(golds)
            continue
        try:
            if ref.endswith("%"):
                score += (_number(ref) == _number(pred)) / len(golds)
            else:
                plain = [x for x in golds if _is_number(x) and not x.endswith("%")]
                places = min((len(x.split(".")[-1]) if "." in x else 0 for x in plain), default=0)
                score += (_rounded(_number(ref), places) == _rounded(_number(pred), places)) / len(golds)
        except ArithmeticError:  # a part that is no number (decimal.InvalidOperation): no credit
            continue
    return score


def exact_match_within(gold: str, answer: str, percent: float = 10) -> float:
    """Their compute_em_with_tolerance for one pair: numbers within `percent`% of the gold's (a
    gold of 0 must be met exactly), other parts equal."""
    golds = [x.strip() for x in gold.split(",")]
    answers = [x.strip() for x in answer.split(",")]
    score = 0.0
    for index, ref in enumerate(golds):
        if index >= len(answers):
            continue
        pred = answers[index]
        if not _is_number(ref):
            score += (ref == pred) / len(golds)
            continue
        try:
            expected, got = _number(ref), _number(pred)
            if expected == Decimal("0"):
                score += (got == expected) / len(golds)
            else:
                score += (abs(expected - got) / abs(expected) <= percent / 100) / len(golds)
        except ArithmeticError:
            continue
    return score


def _rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer without a stemmer: lower-case alphanumeric runs."""
    return [token for token in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", text.lower())) if token]


def rouge_l(gold: str, answer: str) -> float:
    """rouge-score's rougeL F-measure of one pair (target `gold`, prediction `answer`)."""
    target, prediction = _rouge_tokens(gold), _rouge_tokens(answer)
    if not target or not prediction:
        return 0.0
    previous = [0] * (len(prediction) + 1)
    for word in target:
        current = [0]
        for j, other in enumerate(prediction, 1):
            current.append(previous[j - 1] + 1 if word == other else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    precision, recall = lcs / len(prediction), lcs / len(target)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# --- golds ----------------------------------------------------------------------------------------
def gold_text(doc: dict) -> str:
    """The gold answer: a TableBench doc's `answer`; a TableInstruct row's response's Final Answer."""
    if doc.get("answer") not in (None, ""):
        return str(doc["answer"])
    gold = final_answer(str(doc.get("response") or ""))
    if gold is None:
        raise ValueError("the doc has no answer and its response no 'Final Answer: ' line")
    return gold


def python_code(response: str) -> str | None:
    """The last ```python block of a response (the authors' parse_python_code), or None."""
    blocks = CODE_BLOCK.findall(strip_think(response or ""))
    return blocks[-1] if blocks else None


def infer_chart_type(code: str) -> str:
    """A chart type for a training row that names none, from how its code draws (the authors'
    readers: pie wedges, horizontal bars, scatter points, filled areas, polar lines, bars, else lines)."""
    rules = [
        ("pie", r"\.pie\(|kind\s*=\s*['\"]pie"), ("hbar", r"\.barh\(|kind\s*=\s*['\"]barh"),
        ("scatter", r"\.scatter\(|kind\s*=\s*['\"]scatter"),
        ("area", r"\.fill_between\(|\.stackplot\(|kind\s*=\s*['\"]area"), ("radar", r"polar"),
        ("bar", r"\.bar\(|kind\s*=\s*['\"]bar"),
    ]  # fmt: skip
    return next((name for name, pattern in rules if re.search(pattern, code)), "line")


# --- items ----------------------------------------------------------------------------------------
def text_item(entry: dict, doc: dict, response: str) -> dict:
    """One text answer: its EM (fact checking, numerical reasoning) or its subtype's metric (data
    analysis) as `score`, with what it was read as."""
    answer = final_answer(response)
    gold, pred = normalize_answer(gold_text(doc)), normalize_answer(answer or "")
    item = {"score": exact_match(gold, pred), "readable": int(answer is not None), "answer": answer}
    if doc["qtype"] == "DataAnalysis":
        subtype = str(doc.get("qsubtype") or "")
        values = {
            "em": item["score"],
            "em_with_error_10": exact_match_within(gold, pred),
            "rouge_l": rouge_l(gold, pred),
        }
        metric = "em_with_error_10" if subtype in WITHIN_10 else "em" if subtype in EXACT else "rouge_l"
        item.update(values, score=values[metric], metric=metric, qsubtype=subtype)
    return item


def chart_item(entry: dict, doc: dict, response: str) -> dict:
    """One chart answer run through the authors' check in the sandbox: passed, ran, parsed."""
    code = python_code(response)
    item = {"score": 0, "ecr": 0, "parsed": 0, "answer": None if code is None else code[:500]}
    if code is None:
        return item
    has_gold = doc.get("answer") not in (None, "")
    chart_type = doc.get("chart_type") or (None if has_gold else infer_chart_type(code))
    table = table_of(doc)
    if chart_type not in CHART_TYPES or not isinstance(table, dict):
        return item  # the authors' check reads no values for it: not passed
    from sandbox import run_python

    _write_bytecode()
    files = {
        "chart_check.py": open(os.path.join(HERE, "chart_check.py"), encoding="utf-8").read(),
        "code.py": code,
        "table.json": json.dumps(table),
        "meta.json": json.dumps({"chart_type": chart_type}),
    }
    if has_gold:
        files["answer.py"] = str(doc["answer"])
    source = "import os, sys\nsys.path.insert(0, os.getcwd())\nimport chart_check\nchart_check.main()\n"
    outcome = run_python(source, files=files, timeout_s=CHART_SECONDS, memory_mb=2048)
    marked = [line for line in (outcome.stdout or "").splitlines() if line.startswith(CHART_RESULT_MARK)]
    if marked:
        result = json.loads(marked[-1][len(CHART_RESULT_MARK) :])
        item.update(score=int(result["passed"]), ecr=int(result["ecr"]), parsed=int(result["verdict"]))
    return item


CHART_RESULT_MARK = "@@tablebench-chart@@ "  # chart_check.RESULT_MARK (that file runs in the sandbox)
_bytecode_written = False


def _write_bytecode() -> None:
    """Import pandas and matplotlib once, outside the sandbox, so their bytecode caches exist: the
    sandbox may not write into the env, and without the caches every chart check compiles them
    again (about twice its time)."""
    global _bytecode_written
    if not _bytecode_written:
        _bytecode_written = True
        command = [sys.executable, "-c", "import pandas, matplotlib.pyplot"]
        try:  # only a speed-up: a failure here leaves the checks slower, not wrong
            subprocess.run(command, env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError):
            pass


def score_one(entry: dict, doc: dict, response: str) -> dict:
    return chart_item(entry, doc, response) if doc["qtype"] == "Visualization" else text_item(entry, doc, response)


# --- lm-eval ------------------------------------------------------------------------------------
PRIMARY_KEYS = {"FactChecking": "exact_match", "NumericalReasoning": "exact_match",
                "DataAnalysis": "mix_metric", "Visualization": "pass_at_1"}  # fmt: skip


def process_results(doc: dict, results: list) -> dict:
    """lm-eval's per-doc metric (the task YAML's): the item's score averaged over its k responses."""
    values = [score_one({}, doc, response)["score"] for response in responses_of(results)]
    return {PRIMARY_KEYS[doc["qtype"]]: sum(values) / len(values)}


def _task_docs(dataset, qtype: str):
    return dataset.filter(lambda row: row["qtype"] == qtype and row["instruction_type"] == INSTRUCTION_TYPE)


def fact_checking_docs(dataset):
    return _task_docs(dataset, "FactChecking")


def numerical_reasoning_docs(dataset):
    return _task_docs(dataset, "NumericalReasoning")


def data_analysis_docs(dataset):
    return _task_docs(dataset, "DataAnalysis")


def visualization_docs(dataset):
    return _task_docs(dataset, "Visualization")


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    qtype = QTYPES[entry["name"]]
    if doc.get("qtype") != qtype:
        raise ValueError(f"a {doc.get('qtype')} doc is no {entry['name']} item; give its {qtype} rows")
    return per_sample([score_one(entry, doc, response) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    n = len(items)
    parse = sum(item.get("parsed", item.get("readable", 0)) for item in items) / n
    qtype = QTYPES[entry["name"]]
    if qtype == "Visualization":
        return {
            "pass_at_1": sum(item["score"] for item in items) / n,
            "ecr_at_1": sum(item["ecr"] for item in items) / n,
            "parse_at_1": parse,
        }
    out = {PRIMARY_KEYS[qtype]: sum(item["score"] for item in items) / n}
    if qtype == "DataAnalysis":
        for key in ("rouge_l", "em", "em_with_error_10"):
            out[key] = sum(item[key] for item in items) / n
    return {**out, "parse_at_1": parse, "n_unreadable": sum(1 - item["readable"] for item in items)}


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item["score"] == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from a TableInstruct row (`response`),
    or why it makes none: a row of another task or another instruction type than the benchmark's
    (TCoT), or a response without the final answer the scorer reads (a "Final Answer: " line; for
    charts a ```python block)."""
    qtype = QTYPES[entry["name"]]
    if doc.get("qtype") != qtype:
        return "another TableBench task"
    if doc.get("instruction_type") != INSTRUCTION_TYPE:
        return f"instruction type {doc.get('instruction_type')}, not {INSTRUCTION_TYPE}"
    response = str(doc.get("response") or "").strip()
    if not response:
        return "no response"
    if qtype == "Visualization":
        blocks = list(CODE_BLOCK.finditer(response))
        if not blocks:
            return "no python code block"
        last = blocks[-1]
        return response[: last.start()].strip(), response[last.start() : last.end()]
    match = FINAL_ANSWER.search(response)
    if match is None:
        return "no 'Final Answer: ' line"
    return response[: match.start()].strip(), match.group(0).strip()


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (one prompt per task)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's items: rows of its qtype with the TCoT instruction (TableBench's files hold
    every question once per instruction type)."""
    qtype = QTYPES[entry["name"]]
    docs = [row for row in rows if row.get("qtype") == qtype and row.get("instruction_type") == INSTRUCTION_TYPE]
    if rows and not docs:
        raise SystemExit(
            f"prepare: no {qtype} rows with instruction_type {INSTRUCTION_TYPE} in the data; give TableBench_TCoT.jsonl"
        )
    return docs
