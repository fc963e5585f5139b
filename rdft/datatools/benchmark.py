"""The target benchmark's own prompt and scorer, as lm-eval scores with them."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def scorer(family: str | None = None, tasks_dir: str | Path | None = None):
    """The benchmark family's scorer module (evaluation/tasks/<family>/utils.py, no evaluation
    items): `doc_to_text(benchmark_doc(entry, row))` is the exact user prompt lm-eval scores with
    (`prompt(row)` builds training prompts with it), `process_results(doc, [response])` scores a
    response against a doc's gold.
    Defaults: RDFT_BENCHMARK_FAMILY and RDFT_TASKS_DIR, which rdft sets for data scripts."""
    family = family or os.environ["RDFT_BENCHMARK_FAMILY"]
    root = Path(tasks_dir or os.environ["RDFT_TASKS_DIR"])
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # the scorers import `answers`
    spec = importlib.util.spec_from_file_location(f"rdft_scorer_{family}", root / family / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prompt(row: dict, module=None, entry: dict | None = None) -> str:
    """The exact user prompt lm-eval scores `row` (a row in the benchmark's schema) with: the
    family's `doc_to_text` of the row as the benchmark's docs hold it (`benchmark_doc`, which marks
    a variant's rows, such as a CoT prompt's). Defaults: the run's benchmark and family."""
    module = module or scorer()
    entry = entry or benchmark_entry()
    return module.doc_to_text(module.benchmark_doc(entry, row))


def row_tokens(folder: str | Path, tokenizer: str, benchmark: str, tasks_dir: str | Path, rows: int = 200) -> int:
    """The 99th percentile, in the model's tokens, of the training rows the first `rows` rows of a
    dataset folder make with the benchmark's own prompt and answer (`prompt(row)` and the family's
    `training_answer`, as the offline recipe builds them; the prompt alone where the row has no
    answer), 0 when none renders: what the dataset's field lengths miss (a benchmark's
    instructions, few-shot examples, option lists)."""
    from .profile import data_files, read_rows
    from .records import TokenCounter

    entry = benchmark_entry(benchmark, tasks_dir)
    module, counter = scorer(entry["family"], tasks_dir), TokenCounter(tokenizer)
    lengths = []
    for path in data_files(Path(folder)):
        for row in read_rows(path):
            try:
                answer = module.training_answer(entry, row, False)
                text = prompt(row, module, entry) + ("" if isinstance(answer, str) else "\n\n".join(answer))
                lengths.append(counter.count(text))
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                continue  # not this benchmark's schema: the recipe drops it too
            if len(lengths) >= rows:
                break
        if len(lengths) >= rows:
            break
    lengths.sort()
    return lengths[int(0.99 * (len(lengths) - 1))] if lengths else 0


def benchmark_entry(benchmark: str | None = None, tasks_dir: str | Path | None = None) -> dict:
    """The benchmark's row of evaluation/benchmarks.yaml (the user's own benchmarks included),
    with its name: what every family function takes as `entry`. Defaults: RDFT_BENCHMARK and
    RDFT_TASKS_DIR."""
    benchmark = benchmark or os.environ["RDFT_BENCHMARK"]
    root = Path(tasks_dir or os.environ["RDFT_TASKS_DIR"]).parent
    spec = importlib.util.spec_from_file_location("rdft_benchmark_table", root / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {**module.load_table()[benchmark], "name": benchmark}
