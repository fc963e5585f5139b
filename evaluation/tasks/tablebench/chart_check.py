"""TableBench's chart check, run inside the sandbox (evaluation/tasks/sandbox.py) on one answer.

The authors' parse_chart_code_then_exec (TableBench/TableBench,
parse_tablebench_instruction_response_script.py) and their metrics/chart_metric_utils.py, kept
step for step so a chart passes here exactly when it passes there:

1. table.csv is written from the item's table (rows as dicts, pandas, no index);
2. the answer's code runs once, wrapped in `if __name__ == '__main__':` (ECR@1: it ran);
3. in the same process, without closing the figures, it runs again followed by the reference
   (`y_references = [[...]]`), `chart_type = "..."` and their check, which reads the plotted values
   off the current axes (bar heights, hbar widths, pie wedge angles, line/radar y data, scatter
   offsets, area vertices) and prints True or False; Pass@1 is that output, stripped, being
   exactly "True";
4. each run is `exec(code, globals, locals)` with their module's globals (pd, plt, np, re, os, sys,
   ast and the metric functions) shared by the runs and a fresh locals dict, stopped after 15 s.

A training row (TableInstruct holds no reference) first runs its own code once, alone, and its
plotted values become the reference: the row is kept only if it passes the steps above against
what it draws itself. Inputs are files in the working folder: code.py, answer.py (absent: derive
the reference), table.json, meta.json ({"chart_type": ...}). The result is one line on the
original stdout: RESULT_MARK followed by JSON {"ecr": bool, "verdict": bool, "passed": bool,
"derived": bool|null}; `verdict`: the check printed True or False (the authors' Parse@1 of a chart).
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import signal
import sys

import numpy as np

__all__ = [
    "compare",
    "compute_general_chart_metric",
    "compute_pie_chart_metric",
    "get_area_y_predictions",
    "get_bar_y_predictions",
    "get_hbar_y_predictions",
    "get_line_y_predictions",
    "get_pie_y_predictions",
    "get_radar_y_predictions",
    "get_scatter_y_predictions",
    "get_waterfall_y_predictions",
    "np",
    "std_digit",
]

RESULT_MARK = "@@tablebench-chart@@ "
EXEC_SECONDS = 15  # the authors' @timeout(15) around each exec
# The authors' test case, appended after the answer's code and the reference (verbatim logic).
CHECK = """
if chart_type == 'line':
    y_predictions = get_line_y_predictions(plt)
if chart_type == 'bar':
    y_predictions = get_bar_y_predictions(plt)
if chart_type == 'hbar':
    y_predictions = get_hbar_y_predictions(plt)
if chart_type == 'pie':
    y_predictions = get_pie_y_predictions(plt)
if chart_type == 'area':
    y_predictions = get_area_y_predictions(plt)
if chart_type == 'radar':
    y_predictions = get_radar_y_predictions(plt)
if chart_type == 'scatter':
    y_predictions = get_scatter_y_predictions(plt)
if chart_type == 'waterfall':
    y_predictions = get_waterfall_y_predictions(plt)

if chart_type == 'pie':
    print(compute_pie_chart_metric(y_references, y_predictions))
else:
    print(compute_general_chart_metric(y_references, y_predictions))
"""


# --- the authors' metric functions (metrics/chart_metric_utils.py), same behaviour ---------------
def compare(list1, list2):
    list1.sort()
    list2.sort()
    if len(list1) != len(list2):
        return False
    for a, b in zip(list1, list2, strict=True):
        if np.isnan(a):
            if not np.isnan(b):
                return False
        elif a != b:
            return False
    return True


def std_digit(list_nums):
    return [round(value, 2) for value in list_nums]


def _flatten(values) -> list:
    flat = []
    for value in values:
        if isinstance(value, list):
            flat.extend(value)
        else:
            flat.append(value)
    return flat


def compute_general_chart_metric(references, predictions):
    return compare(std_digit(_flatten(references)), std_digit(_flatten(predictions)))


def compute_pie_chart_metric(references, predictions):
    references = _flatten(references)
    total = 0
    for reference in references:
        total += reference
    shares = [round(reference / total, 2) for reference in references]
    return compare(std_digit(shares), std_digit(_flatten(predictions)))


def get_line_y_predictions(plt):
    return [list(line.get_ydata()) for line in plt.gca().get_lines()]


def get_bar_y_predictions(plt):
    return [patch.get_height() for patch in plt.gca().patches]


def get_hbar_y_predictions(plt):
    return [patch.get_width() for patch in plt.gca().patches]


def get_pie_y_predictions(plt):
    return [round((patch.theta2 - patch.theta1) / 360.0, 2) for patch in plt.gca().patches]


def get_area_y_predictions(plt):
    areas = []
    for collection in plt.gca().collections:
        areas.append([y for y in collection.get_paths()[0].vertices[:, 1] if y != 0])
    return areas


def get_radar_y_predictions(plt):
    return [list(line.get_ydata())[:-1] for line in plt.gca().get_lines()]


def get_scatter_y_predictions(plt):
    return [[point[1] for point in collection.get_offsets()] for collection in plt.gca().collections]


def get_waterfall_y_predictions(plt):
    return [patch.get_height() for patch in plt.gca().patches]


# --- the runs ---------------------------------------------------------------------------------
def surround_with_main(code: str) -> str:
    """The authors' surround_pycode_with_main: every line indented under the __main__ guard."""
    return "\nif __name__ == '__main__':\n" + "".join(f"    {line}\n" for line in code.strip().split("\n"))


def save_table_csv(table: dict) -> None:
    """The authors' pre_save_table_to_csv: rows as {column: value} dicts (a repeated column name
    keeps its last value), written by pandas without the index."""
    import pandas as pd

    rows = [{column: row[i] for i, column in enumerate(table["columns"])} for row in table["data"]]
    pd.DataFrame(rows).to_csv("table.csv", index=False)


def _timeout(signum, frame):
    raise TimeoutError(f"the code ran longer than {EXEC_SECONDS} s")


def run(source: str, namespace: dict) -> None:
    """exec with the shared globals and a fresh locals dict, as the authors' execute() does."""
    signal.signal(signal.SIGALRM, _timeout)
    signal.setitimer(signal.ITIMER_REAL, EXEC_SECONDS)
    try:
        exec(source, namespace, {})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def module_globals(plt) -> dict:
    """What the authors' exec sees as globals: their module's imports and the metric functions."""
    import pandas as pd

    names = {"__name__": "__main__", "__builtins__": __builtins__, "pd": pd, "plt": plt, "ast": ast}
    names.update({"re": re, "os": os, "sys": sys})
    names.update({name: globals()[name] for name in __all__})
    return names


def derive_reference(code: str, chart_type: str, plt) -> str | None:
    """`y_references = [...]` from what the code itself draws (a training row's reference), or None
    when it does not run or draws nothing of its chart type; pie wedges as unrounded shares."""
    getters = {
        "line": get_line_y_predictions, "bar": get_bar_y_predictions, "hbar": get_hbar_y_predictions,
        "area": get_area_y_predictions, "radar": get_radar_y_predictions, "scatter": get_scatter_y_predictions,
        "waterfall": get_waterfall_y_predictions,
    }  # fmt: skip
    try:
        with _quiet():
            run(surround_with_main(code), module_globals(plt))
        if chart_type == "pie":
            values = [[(patch.theta2 - patch.theta1) / 360.0 for patch in plt.gca().patches]]
        else:
            drawn = getters[chart_type](plt)
            values = [drawn] if drawn and not isinstance(drawn[0], list) else drawn
        series = [[float(v) for v in s] for s in values]
    except BaseException:  # the answer's own failure: no reference
        return None
    finally:
        plt.close("all")
    if not any(series) or any(np.isnan(v) for s in series for v in s):
        return None
    return f"y_references = {series!r}"


class _quiet:
    """stdout into a buffer while the answer's code runs (its prints are not the check's)."""

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, io.StringIO()
        return sys.stdout

    def __exit__(self, *exc):
        sys.stdout = self.saved
        return False


def main() -> None:
    real_stdout = os.dup(1)  # the answer's code may replace sys.stdout; the result goes here
    os.environ["MPLBACKEND"] = "Agg"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = json.loads(open("meta.json", encoding="utf-8").read())
    code = open("code.py", encoding="utf-8").read()
    chart_type = meta["chart_type"]
    save_table_csv(json.loads(open("table.json", encoding="utf-8").read()))
    derived = None
    if os.path.exists("answer.py"):
        answer = open("answer.py", encoding="utf-8").read()
    else:
        answer = derive_reference(code, chart_type, plt)
        derived = answer is not None
    result = {"ecr": False, "verdict": False, "passed": False, "derived": derived}
    if answer is not None:
        namespace = module_globals(plt)
        try:
            with _quiet():
                run(surround_with_main(code), namespace)
            result["ecr"] = True
        except BaseException:  # any failure of the answer's code is ECR 0
            pass
        check = f'from chart_check import *\n{code}\n{answer}\nchart_type="{chart_type}"\n{CHECK}'
        try:
            with _quiet() as output:
                run(surround_with_main(check), namespace)
            printed = output.getvalue()
        except BaseException:  # no output: not passed
            printed = ""
        result["verdict"] = printed.strip() in ("True", "False")
        result["passed"] = printed.strip() == "True"
    os.write(real_stdout, ("\n" + RESULT_MARK + json.dumps(result) + "\n").encode())
