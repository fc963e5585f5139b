"""TableBench through the real `rdft score`: hand-made answers (right, wrong, other valid forms,
unreadable) score what the benchmark authors' own code gives on the same answers; the items are
the TCoT rows of each task; the prompt is RD-Agent's OpenCompass template; and the offline recipe
builds its rows from TableInstruct as the scorer reads them.

The reference values (REFERENCE below, per item) come from running the authors' parser and metrics,
TableBench/TableBench at 6c61a20 (parse_tablebench_instruction_response_script.parse_inference_results,
then metrics/custom_em_metric.compute_em and compute_em_with_tolerance(error_range=10) on
metrics/qa_metrics.QAMetric.prepsocess's normalised strings, evaluate's 'rouge' rougeL per item with
use_aggregator=False, and eval_tablebench_script.eval_by_type for the split), in a throwaway venv
(Python 3.11, pandas 3.1.1, matplotlib 3.11.2, numpy 2.4.6):

    uv venv /tmp/ref-tb -p 3.11
    uv pip install --python /tmp/ref-tb/bin/python "datasets<3" evaluate rouge_score nltk absl-py pandas \
        matplotlib wrapt_timeout_decorator numpy rouge==1.0.1
    git -C /work/.mirror/TableBench+TableBench/repo archive HEAD | tar -x -C /tmp/tbref
    mkdir -p /tmp/tbref/hf_metrics/rouge && git -C /work/.mirror/huggingface+evaluate/repo show \
        HEAD:metrics/rouge/rouge.py > /tmp/tbref/hf_metrics/rouge/rouge.py   # evaluate.load('rouge'), offline
    python tests/test_tablebench_family.py samples /tmp/samples.json     # these docs with these responses
    python tests/test_tablebench_family.py runner /tmp/tbref/ref_eval.py # REFERENCE_RUNNER
    /tmp/ref-tb/bin/python /tmp/tbref/ref_eval.py /tmp/samples.json /tmp/ref_out.json

Their split-level values (eval_by_type): FactChecking EM 40.0, Parse@1 70.0; NumericalReasoning EM
58.33, Parse@1 91.67; DataAnalysis Mix_Metric 59.55, ROUGE-L 47.88 (47.59 on a second run: evaluate's
bootstrap), EM 33.33, EM_with_error_10 53.33, Parse@1 93.33; Visualization Pass@1 41.67, ECR@1 75.0.

RD-Agent's OpenCompass evaluators (Jensen246/opencompass abc7c91, opencompass/datasets/tablebench/
tablebench.py, opencompass imports stubbed, `rouge` 1.0.1), on the same answers, for the record
(rdft follows the authors; evaluation/tasks/tablebench/utils.py says why): FactChecking 50.0
(the lower-case "final answer:" counts), NumericalReasoning 25.0 (punctuation becomes spaces: 40,990,
50% and 03 fail, 366 no longer equals 3.66), DataAnalysis: correlation 100, trend 66.67, statistics
100, impact 66.67, ROUGE-L over all 55.17 (RD-Agent's UI mean of the five 77.70), Visualization
Pass@1 50.0, ECR@1 83.33 (it captures plt.bar/plot/scatter calls: the pie and the pandas chart fail,
the doubled bars, the printing and the lambda answers pass).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FIXTURE = FIXTURES / "benchmarks" / "tablebench.jsonl"
BENCHMARKS = ("tablebench_fact_checking", "tablebench_numerical_reasoning", "tablebench_data_analysis",
              "tablebench_visualization")  # fmt: skip

CODE_HEAD = "```python\nimport pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n"
# (index of the TCoT doc in the fixture, response), per benchmark.
FACT = [
    (0, "Calder has 88 stations and Elsworth 61.\nFinal Answer: Yes"),  # right
    (1, "The earliest opening year is 1969, Calder's.\nFinal Answer: calder."),  # case and a period: right
    (2, "Farrow has a single line.\nFinal Answer: Yes"),  # wrong
    (3, "Maple Bend has 22 workers.\nfinal answer: Maple Bend"),  # the marker is case-sensitive: unreadable
    (4, "Final Answer: Yes, Stonebrook has the most pears"),  # an answer with an explanation: wrong
    (5, "Final Answer: yes\nFinal Answer: no"),  # the first marker counts: right
    (6, "Final Answer: The answer is Japan"),  # wrong
    (7, ""),  # empty: unreadable
    (8, "Final Answer: Tess Moore."),  # right
    (9, "The tallest is Harrow Rock with 45 m."),  # no marker: unreadable
]
NUMERICAL = [
    (20, "Summing the stations gives 271.\nFinal Answer: 271"),  # right
    (21, "Final Answer: 275.83"),  # right
    (22, "Final Answer: 03"),  # the same number: right
    (23, "Final Answer: 67 stations"),  # a unit after the number: wrong
    (24, "Final Answer: 42.0"),  # '.' is deleted before comparing: 420 against 42, wrong
    (25, "Final Answer: 579"),  # wrong
    (26, "Final Answer: 366"),  # and so 366 equals 3.66: right
    (27, "Final Answer: the Oakridge"),  # articles are dropped: right
    (28, "Final Answer: 1.7"),  # 17 against 171: wrong
    (30, "Final Answer: 40,990"),  # the thousands comma is deleted: right
    (31, "Final Answer: 50%"),  # right
    (33, "The revenue per customer is 4.83."),  # no marker: unreadable
]
ANALYSIS = [
    (40, "Final Answer: Strong positive correlation, 0.99"),  # EM_with_error_10, as text: right
    (42, "Final Answer: Strong negative correlation, -0.97"),  # not a number after normalising: wrong
    (44, "Final Answer: 131.02"),  # 13102 against 13071, within 10%: right
    (45, "Final Answer: 18000"),  # 18000 against 1873214: wrong (3.9% off before '.' is deleted)
    (46, "Final Answer: increasing trend."),  # right
    (48, "Final Answer: 4221.4"),  # 42214 against 422143: wrong
    (49, "Final Answer: 0.58"),  # 58 against 59: right
    (50, "Final Answer: 32"),  # 6.7% off: right
    (52, "Final Answer: Positive impact."),  # EM: right
    (53, "Final Answer: Positive impact"),  # wrong
    (54, "Final Answer: Workers"),  # right
    (56, "Final Answer: The table lists six city transit networks by lines, stations and riders; Calder and "
         "Elsworth carry the most riders."),  # ROUGE-L
    (57, "Final Answer: The table describes six lighthouses by height, year built, range and region. Taller "
         "lighthouses such as Harrow Rock and Cape Weller reach the farthest, and the northern ones are the oldest."),
    (58, "Five bridges are listed."),  # no marker: unreadable, 0
    (59, "Final Answer: The festival grew every year but 2020."),  # ROUGE-L
]  # fmt: skip
CHART = [
    (60, f"{CODE_HEAD}plt.figure(figsize=(8, 5))\nplt.bar(df['city'], df['stations'])\nplt.show()\n```"),  # passes
    # drawn on pyplot's current axes: the authors' second run draws the bars again (12 against 6): fails
    (61, f"{CODE_HEAD}plt.bar(df['city'], df['daily riders (thousands)'])\nplt.show()\n```"),
    (62, f"{CODE_HEAD}plt.figure()\nplt.bar(df['farm'], df['pears (t)'])\nplt.show()\n```"),  # the wrong column: fails
    (63, f"{CODE_HEAD}df.plot(kind='bar', x='swimmer', y='time (s)')\nplt.show()\n```"),  # pandas, a new figure: passes
    # its print is in the check run's output, which must be exactly "True": no verdict, fails
    (64, f"{CODE_HEAD}print(df)\nplt.figure()\nplt.bar(df['name'], df['height (m)'])\nplt.show()\n```"),
    (68, f"Bread per month.\n{CODE_HEAD}plt.figure()\nplt.plot(df['month'], df['bread'])\nplt.show()\n```"),  # passes
    (71, f"{CODE_HEAD}plt.figure()\nplt.plot(df['year'], df['films'])\nplt.show()\n```"),  # one of two lines: fails
    (73, f"{CODE_HEAD}plt.figure()\nplt.pie(df['members'], labels=df['club'])\nplt.show()\n```"),  # passes
    (74, f"{CODE_HEAD}plt.figure()\nplt.pie(df['pear'])\nplt.show()\n```"),  # KeyError: ECR 0
    (77, f"{CODE_HEAD}plt.figure()\nplt.scatter(df['rainfall (mm)'], df['harvest (t)'])\nplt.show()\n```"),  # passes
    # the lambda reads the answer's own variable, which exec(code, globals, locals) hides: NameError, ECR 0
    (78, f"{CODE_HEAD}scale = 1\ny = df['revenue ($)'].apply(lambda v: v * scale)\nplt.figure()\n"
         "plt.scatter(df['customers'], y)\nplt.show()\n```"),
    (79, "I would draw a scatter plot of range against height."),  # no code block: Parse@1 0
]  # fmt: skip
CASES = {
    "tablebench_fact_checking": FACT,
    "tablebench_numerical_reasoning": NUMERICAL,
    "tablebench_data_analysis": ANALYSIS,
    "tablebench_visualization": CHART,
}


# The authors' per-item values on the cases above (REFERENCE_RUNNER's output): fact checking and
# numerical reasoning their EM; data analysis the subtype's metric (EM_with_error_10 for correlation,
# trend and statistics, EM for impact, ROUGE-L for the rest); charts (Pass@1, ECR@1, Parse@1).
REFERENCE = {
    "tablebench_fact_checking": [1, 1, 0, 0, 0, 1, 0, 0, 1, 0],
    "tablebench_numerical_reasoning": [1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0],
    "tablebench_data_analysis": [1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 30 / 47, 1, 0, 5 / 17],
    "tablebench_visualization": [(1, 1, 1), (0, 1, 1), (0, 1, 1), (1, 1, 1), (0, 1, 0), (1, 1, 1), (0, 1, 1),
                                 (1, 1, 1), (0, 0, 0), (1, 1, 1), (0, 0, 0), (0, 0, 0)],
}  # fmt: skip
# Data analysis, every item's ROUGE-L, EM and EM_with_error_10 (their type-level columns).
ANALYSIS_ROUGE = [1, 0.75, 0, 0, 1, 0, 0, 0, 1, 0.5, 1, 30 / 47, 1, 0, 5 / 17]
ANALYSIS_EM = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0]
ANALYSIS_EM10 = [1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 0]

REFERENCE_RUNNER = r'''"""Run the TableBench authors' own parsing and metric code on hand-made predictions.

    /tmp/ref-tb/bin/python /tmp/tbref/ref_eval.py SAMPLES.json OUT.json

SAMPLES.json: TableBench rows (qtype, qsubtype, answer, table, chart_type, instruction_type, ...), each
with a `prediction`. Writes the per-item values from their code and their type-level results to OUT.json.
The authors' repo is /tmp/tbref (git archive of TableBench/TableBench 6c61a20); evaluate's 'rouge'
metric is loaded from a local copy of huggingface/evaluate's metrics/rouge/rouge.py (no network).
"""
import json, os, sys, tempfile
import numpy as np
sys.path.insert(0, "/tmp/tbref")
os.environ["MPLBACKEND"] = "Agg"
import evaluate
_load = evaluate.load
LOCAL_ROUGE = "/tmp/tbref/hf_metrics/rouge/rouge.py"
evaluate.load = lambda name, *a, **k: _load(LOCAL_ROUGE) if name == "rouge" else _load(name, *a, **k)
import parse_tablebench_instruction_response_script as parse_mod
parse_mod.__dict__["__name__"] = "__main__"  # as when they run the script: their exec'd code is guarded by it
import eval_tablebench_script as eval_mod
from metrics.qa_metrics import QAMetric
from metrics.custom_em_metric import compute_em, compute_em_with_tolerance

samples = json.load(open(sys.argv[1]))
for s in samples:
    s.setdefault("model_name", "hand-made")
    s.setdefault("instruction", "")
cwd = os.getcwd()
work = tempfile.mkdtemp()
os.chdir(work)  # their parser writes table.csv into the working folder
parsed = parse_mod.parse_inference_results([dict(s) for s in samples])
os.chdir(cwd)
engine = QAMetric()
rouge = evaluate.load("rouge")
items = []
for s in parsed:
    r = s["parsed_result"]
    row = {"id": s["id"], "qtype": s["qtype"], "qsubtype": s["qsubtype"],
           "parsed_prediction": r["parsed_prediction"], "Parse@1": r["Parse@1"]}
    if s["qtype"] == "Visualization":
        row["ecr_1"] = r.get("ecr_1")
    else:
        refs, preds = engine.prepsocess([s["answer"]], [r["parsed_prediction"]])
        row["EM"] = compute_em(references=refs, predictions=preds)
        row["EM_with_error_10"] = compute_em_with_tolerance(references=refs, predictions=preds, error_range=10)
        scores = rouge.compute(references=refs, predictions=preds, rouge_types=["rougeL"], use_aggregator=False)
        row["ROUGE-L"] = scores["rougeL"][0]
    items.append(row)
out = {"items": items}
qtypes = {s["qtype"] for s in samples}
if qtypes == {"FactChecking", "NumericalReasoning", "DataAnalysis", "Visualization"}:
    np.random.seed(0)  # their split-level ROUGE-L is evaluate's bootstrap: seeded so a rerun prints the same
    eval_mod.EVAL_RESULT_DIR = work
    for s in parsed:
        s.pop("instruction", None); s.pop("prediction", None)
    path = os.path.join(work, "sim.json"); json.dump(parsed, open(path, "w"))
    cat = eval_mod.build_categoried_llm_inference_results([path], [])
    out["by_type"] = eval_mod.eval_by_type(cat, engine)
json.dump(out, open(sys.argv[2], "w"), indent=1)
'''


def tcot_docs() -> list[dict]:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["instruction_type"] == "TCoT"]


def family():
    """The family's module, loaded as evaluation/score.py loads it (pure Python: the prompt only)."""
    sys.path.insert(0, str(REPO / "evaluation" / "tasks"))
    spec = importlib.util.spec_from_file_location("tablebench_utils", REPO / "evaluation/tasks/tablebench/utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def score_both(rdft, shared_dirs, eval_env, benchmark: str, responses: list[list[str]], docs: list[dict], tmp_path):
    """`rdft score`'s summary, and each item's scores from the same scorer (evaluation/score.py
    --items, which `rdft score` runs without keeping them)."""
    from rdft.resources import evaluation_dir

    docs_path = write_jsonl(tmp_path / f"{benchmark}.docs.jsonl", docs)
    rows = [{"doc_id": n, "response": r} for n, group in enumerate(responses) for r in group]
    predictions = write_jsonl(tmp_path / f"{benchmark}.predictions.jsonl", rows)
    scored = rdft("score", "--benchmark", benchmark, "--docs", docs_path, "--predictions", predictions, env=shared_dirs)
    assert scored.returncode == 0, scored.output
    items = tmp_path / f"{benchmark}.items.jsonl"
    command = ["python", str(evaluation_dir() / "score.py"), "--benchmark", benchmark, "--docs", str(docs_path),
               "--predictions", str(predictions), "--items", str(items)]  # fmt: skip
    direct = eval_env.run(command, echo=False)
    assert direct.ok, direct.tail
    return json.loads(scored.stdout), [json.loads(line) for line in items.read_text().splitlines()]


def cases_of(benchmark: str) -> tuple[list[dict], list[list[str]]]:
    docs = tcot_docs()
    return [docs[i] for i, _ in CASES[benchmark]], [[r] for _, r in CASES[benchmark]]


# --- items and prompts ----------------------------------------------------------------------------
def test_items_are_each_tasks_tcot_rows(rdft):
    """The fixture holds 20 TCoT questions per task and 4 PoT rows of some of them (the repo's other
    instruction files): each benchmark keeps its task's 20 TCoT rows."""
    for benchmark in BENCHMARKS:
        prepared = rdft("benchmarks", "prepare", benchmark, "--source", str(FIXTURE))
        assert prepared.returncode == 0, prepared.output
        items = Path(prepared.stdout.strip().rsplit(" at ", 1)[1])
        rows = [json.loads(line) for line in items.read_text().splitlines()]
        qtype = family().QTYPES[benchmark]
        assert len(rows) == 20 and {(r["qtype"], r["instruction_type"]) for r in rows} == {(qtype, "TCoT")}


def test_rows_of_another_instruction_type_are_one_line(rdft, tmp_path):
    from conftest import one_line_error

    rows = [{**row, "instruction_type": "DP"} for row in tcot_docs()]
    source = write_jsonl(tmp_path / "dp.jsonl", rows)
    refused = rdft("benchmarks", "prepare", "tablebench_fact_checking", "--source", source)
    assert one_line_error(refused).endswith(
        "no FactChecking rows with instruction_type TCoT in the data; give TableBench_TCoT.jsonl"
    )


def test_docs_of_another_task_are_one_line(rdft, shared_dirs, eval_env, tmp_path):
    from conftest import one_line_error

    docs = write_jsonl(tmp_path / "docs.jsonl", tcot_docs()[:2])  # fact checking items
    predictions = write_jsonl(tmp_path / "predictions.jsonl", [{"doc_id": 0, "response": "Final Answer: Yes"}])
    refused = rdft("score", "--benchmark", "tablebench_data_analysis", "--docs", docs, "--predictions", predictions,
                   env=shared_dirs)  # fmt: skip
    assert one_line_error(refused).endswith(
        "a FactChecking doc is no tablebench_data_analysis item; give its DataAnalysis rows"
    )


def test_prompt_is_rdagents_opencompass_template():
    """tablebench_fact_checking_gen.py's template, {table} as their format_table prints the table."""
    doc = tcot_docs()[0]
    header = "city | lines | stations | daily riders (thousands) | opened"  # 59 characters, then 59 dashes
    rows = (
        "Arlen | 4 | 52 | 310 | 1978\nBrisco | 2 | 21 | 95 | 1994\nCalder | 6 | 88 | 640 | 1969\n"
        "Dunmore | 3 | 37 | 150 | 2003\nElsworth | 5 | 61 | 420 | 1985\nFarrow | 1 | 12 | 40 | 2011"
    )
    table = f"{header}\n{'-' * 59}\n{rows}"
    expected = (
        f"{doc['instruction']}\n\nTable:\n{table}\n\nQuestion: Is it true that Calder has more stations than "
        "Elsworth?\n\nPlease analyze the table carefully and provide your answer based on the information in the "
        "table. \n\nInstructions:\n- If the question asks for specific information (numbers, names, dates, etc.), "
        "provide that specific information\n- If the question asks for verification (is/are, does/do, etc.), answer "
        'with Yes/No or True/False\n- Be precise and concise\n- End your response with "Final Answer: <your '
        'answer>"\n\nAnswer:'
    )
    module = family()
    assert module.doc_to_text(doc) == expected
    assert module.doc_to_text({**doc, "table": json.dumps(doc["table"])}) == expected  # a table as JSON text
    chart_doc = tcot_docs()[60]
    question = "Please draw a bar chart showing the number of stations in each city."
    assert module.doc_to_text(chart_doc).startswith(
        "Generate Python code to create the requested visualization from the table below.\n\n"
        f"Table:\n{table}\n\nQuestion: {question}\n\nInstructions: {chart_doc['instruction']}\n\nImportant:"
    )


# --- fidelity: the authors' values ------------------------------------------------------------------
@pytest.mark.parametrize("benchmark", ["tablebench_fact_checking", "tablebench_numerical_reasoning"])
def test_exact_match_is_the_authors(benchmark, rdft, shared_dirs, eval_env, tmp_path):
    docs, responses = cases_of(benchmark)
    summary, items = score_both(rdft, shared_dirs, eval_env, benchmark, responses, docs, tmp_path)
    want = REFERENCE[benchmark]
    assert [item["score"] for item in items] == want
    unreadable = [n for n, (_, r) in enumerate(CASES[benchmark]) if "Final Answer: " not in r]
    assert [n for n, item in enumerate(items) if not item["readable"]] == unreadable
    assert summary["primary"]["name"] == "exact_match"
    assert summary["primary"]["value"] == pytest.approx(sum(want) / len(want))  # 0.4 and 7/12 (their 40.0, 58.33)
    assert summary["metrics"]["parse_at_1"] == pytest.approx(1 - len(unreadable) / len(want))  # 70.0, 91.67
    assert summary["metrics"]["n_unreadable"] == len(unreadable)


def test_data_analysis_mix_metric_is_the_authors(rdft, shared_dirs, eval_env, tmp_path):
    docs, responses = cases_of("tablebench_data_analysis")
    summary, items = score_both(rdft, shared_dirs, eval_env, "tablebench_data_analysis", responses, docs, tmp_path)
    assert [item["score"] for item in items] == pytest.approx(REFERENCE["tablebench_data_analysis"], abs=1e-12)
    assert [item["rouge_l"] for item in items] == pytest.approx(ANALYSIS_ROUGE, abs=1e-12)
    assert [item["em"] for item in items] == ANALYSIS_EM
    assert [item["em_with_error_10"] for item in items] == ANALYSIS_EM10
    assert [item["metric"] for item in items] == ["em_with_error_10"] * 8 + ["em"] * 3 + ["rouge_l"] * 4
    # The primary metric is ROUGE-L (the and RD-Agent's headline): their 47.88 and 47.59 on two
    # runs (evaluate's bootstrap median of resampled means); the items' mean: 47.88.
    assert summary["primary"]["name"] == "rouge_l"
    assert summary["primary"]["value"] == pytest.approx(sum(ANALYSIS_ROUGE) / 15)
    assert summary["metrics"]["mix_metric"] == pytest.approx(sum(REFERENCE["tablebench_data_analysis"]) / 15)  # 59.55
    assert summary["metrics"]["em"] == pytest.approx(5 / 15)  # their 33.33
    assert summary["metrics"]["em_with_error_10"] == pytest.approx(8 / 15)  # their 53.33
    assert summary["metrics"]["parse_at_1"] == pytest.approx(14 / 15) and summary["metrics"]["n_unreadable"] == 1


def test_visualization_pass_at_1_is_the_authors(rdft, shared_dirs, eval_env, tmp_path):
    docs, responses = cases_of("tablebench_visualization")
    summary, items = score_both(rdft, shared_dirs, eval_env, "tablebench_visualization", responses, docs, tmp_path)
    assert [(item["score"], item["ecr"], item["parsed"]) for item in items] == REFERENCE["tablebench_visualization"]
    assert summary["primary"]["name"] == "pass_at_1"
    assert summary["primary"]["value"] == pytest.approx(5 / 12)  # their Pass@1 41.67
    assert summary["metrics"] == pytest.approx({"pass_at_1": 5 / 12, "ecr_at_1": 9 / 12, "parse_at_1": 8 / 12})
    assert items[-1]["answer"] is None and summary["diagnostics"]["unreadable_rate"] == pytest.approx(1 / 12)


# --- rdft's own reading -----------------------------------------------------------------------------
def test_thinking_is_dropped_and_samples_average(rdft, shared_dirs, eval_env, tmp_path):
    """rdft drops <think>…</think> before reading the answer (every benchmark's rule; the authors'
    parser would read the first marker, inside it), and k samples average: by hand, (1 + 0) / 2 for the
    first item, (1 + 1) / 2 for the second."""
    docs = tcot_docs()[:2]  # gold Yes, Calder
    responses = [["<think>Final Answer: No</think>\nCalder has more.\nFinal Answer: Yes", "Final Answer: No"],
                 ["Final Answer: Calder", "</think>Final Answer: Calder"]]  # fmt: skip
    summary, items = score_both(rdft, shared_dirs, eval_env, "tablebench_fact_checking", responses, docs, tmp_path)
    assert [[s["score"] for s in item["per_sample"]] for item in items] == [[1, 0], [1, 1]]
    assert summary["primary"]["value"] == pytest.approx((0.5 + 1) / 2)


# --- training rows --------------------------------------------------------------------------------------
BUILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1] + "/recipes")
from data_recipe import Builder
from rdft_data import benchmark_entry, scorer
from rdft_data.profile import data_files, read_rows
tasks = sys.argv[1] + "/evaluation/tasks"
rows = [row for path in data_files(Path(sys.argv[2])) for row in read_rows(path)]
out = {}
for name in sys.argv[3:]:
    builder = Builder({"force_think": False}, scorer("tablebench", tasks), benchmark_entry(name, tasks))
    built = [builder.row(row) for row in rows]
    out[name] = {"kept": sum(b is not None for b in built), "dropped": builder.drops,
                 "last": [b["messages"][1]["content"] for b in built if b][-1]}
print(json.dumps(out))
"""


def test_recipe_rows_are_tcot_responses_the_scorer_reads(data_env):
    """The offline recipe (recipes/data_recipe.py's Builder, in the data env) on the TableInstruct
    fixture (36 rows): each benchmark keeps the TCoT rows of its task whose answer its scorer reads
    with full marks — a chart only when its code, run as the authors' check runs it, plots what it
    plots alone — and counts every other row by why."""
    from rdft.datasets.toolkit import data_env_variables

    result = data_env.run(["python", "-c", BUILD, str(REPO), str(FIXTURES / "datasets" / "tableinstruct"), *BENCHMARKS],
                          extra_env=data_env_variables(data_env.link.parent), echo=False)  # fmt: skip
    assert result.ok, result.tail
    built = json.loads(result.tail.strip().splitlines()[-1])
    other = "another TableBench task"
    assert {name: (b["kept"], b["dropped"]) for name, b in built.items()} == {
        "tablebench_fact_checking": (7, {other: 28, "instruction type PoT, not TCoT": 1}),
        "tablebench_numerical_reasoning": (8, {other: 25, "instruction type PoT, not TCoT": 1,
                                               "instruction type SCoT, not TCoT": 1, "no 'Final Answer: ' line": 1}),
        "tablebench_data_analysis": (9, {other: 27}),
        # the bar chart drawn on pyplot's current axes is drawn twice by the check: it fails
        "tablebench_visualization": (7, {other: 28, "answer does not score": 1}),
    }  # fmt: skip
    assert built["tablebench_fact_checking"]["last"].endswith("\n\nFinal Answer: No")  # reasoning, then the answer
    assert built["tablebench_visualization"]["last"].startswith("Let's think step by step.")
    assert built["tablebench_visualization"]["last"].endswith("plt.show()\n```")


if __name__ == "__main__":  # what the reference run needs (see the docstring)
    if sys.argv[1] == "samples":
        docs = tcot_docs()
        samples = [{**docs[i], "prediction": r} for cases in CASES.values() for i, r in cases]
        Path(sys.argv[2]).write_text(json.dumps(samples, ensure_ascii=False))
    else:
        Path(sys.argv[2]).write_text(REFERENCE_RUNNER)
