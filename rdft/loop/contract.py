"""The coder's contract, generated from the code so it cannot drift from what runs:

- the data toolkit's public functions with signatures and docstrings (read from its sources);
- every train.yaml key with its type, default, constraints and `auto` meaning (the pydantic
  schema, as `rdft train --schema` prints it);
- the benchmark's exact scoring prompt (the `doc_to_text` source and what it calls) and the
  generation settings the run scores with (samples, temperature, top-p, token budget);
- every timeout, the coder's rounds, FT_API_MAX_WORKERS and the per-call timeout;
- the training throughput and data-script speed measured on this host by the last debug run,
  with the projected full-run time of a config.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml

from rdft.datasets.toolkit import toolkit_reference
from rdft.evaluation.benchmarks import get_benchmark
from rdft.loop.scenario import Scenario
from rdft.resources import evaluation_dir
from rdft.settings import Settings
from rdft.training.config import schema_reference


def _module_sources(path: Path, *roots: str) -> str:
    """The source of `roots` in the module at `path` and of the module-level names they use,
    transitively (helpers and prompt constants), in file order."""
    source = path.read_text()
    tree = ast.parse(source)
    defined = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    defined[target.id] = node
    wanted, queue = set(), list(roots)
    while queue:
        name = queue.pop()
        if name in wanted or name not in defined:
            continue
        wanted.add(name)
        queue += [n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name)]
    nodes = sorted({id(defined[n]): defined[n] for n in wanted}.values(), key=lambda n: n.lineno)
    return "\n\n".join(ast.get_source_segment(source, node) for node in nodes)


def scoring_reference(scenario: Scenario) -> str:
    """How the benchmark scores a model: the prompt, the chat template, the generation settings."""
    family = scenario.benchmark_family
    folder = evaluation_dir() / "tasks" / family
    entry = get_benchmark(scenario.benchmark)
    lines = entry.task_template.read_text().splitlines()
    task = yaml.safe_load("\n".join(line for line in lines if "!function" not in line))  # no lm-eval tags
    generation = dict(task.get("generation_kwargs") or {})
    plan = scenario.scoring
    generation["max_gen_toks"] = plan.max_gen_toks or generation.get("max_gen_toks")
    if plan.samples > 1:
        generation.update(do_sample=True, temperature=plan.temperature, top_p=plan.top_p)
    sampling = (
        f"{plan.samples} samples per item (avg@{plan.samples}: the split has {plan.items} items), "
        f"temperature {plan.temperature}, top-p {plan.top_p}"
        if plan.samples > 1
        else "one greedy answer per item"
    )
    return (
        f"Scoring ({scenario.benchmark}): lm-eval renders `doc_to_text(doc)` below as the only user turn, "
        "through the model's chat template (--apply_chat_template; no system prompt, 0-shot), and generates "
        f"with {json.dumps(generation)}: {sampling}. Train on exactly this user prompt and end every assistant "
        "answer the way the scorer reads it. In a data script, `rdft_data.prompt(row)` is that prompt for a row in "
        "the benchmark's schema (`doc_to_text(benchmark_doc(entry, row))`; `rdft_data.scorer()` is this module).\n"
        f"evaluation/tasks/{family}/utils.py (the prompt):\n"
        f"{_module_sources(folder / 'utils.py', 'doc_to_text', 'benchmark_doc')}"
        + (
            f"\nThis benchmark is the user's own; its spec (SPEC above): {json.dumps(entry.custom)}"
            if entry.custom
            else ""
        )
    )


def limits_reference(settings: Settings, scenario: Scenario, budget_left: float | None) -> str:
    return (
        "Limits: the debug data run (--debug) must finish within FT_DEBUG_DATA_PROCESSING_TIMEOUT="
        f"{settings.ft_debug_data_processing_timeout} s and the debug training within FT_MICRO_BATCH_TIMEOUT="
        f"{settings.ft_micro_batch_timeout} s; the full data run within FT_DATA_PROCESSING_TIMEOUT="
        f"{settings.ft_data_processing_timeout} s and full training within FT_FULL_TIMEOUT={settings.ft_full_timeout} "
        f"s. The coder has FT_CODER_MAX_LOOP={settings.ft_coder_max_loop} rounds. Model pools run "
        f"FT_API_MAX_WORKERS={settings.ft_api_max_workers} calls at once, each with a "
        f"{settings.rdft_llm_timeout:g} s timeout (RDFT_LLM_TIMEOUT). At most {scenario.upper_data_size_limit} "
        "training samples (FT_UPPER_DATA_SIZE_LIMIT). What is left of the run's --timeout budget: "
        f"{_seconds(budget_left)} (every step stops at it)."
    )


def _seconds(value: float | None) -> str:
    return "no --timeout set" if value is None else f"{value:.0f} s"


def projection(measured: dict, config: dict | None, rows: int) -> dict:
    """The full run's time and API cost, scaled from the debug run's: data seconds per row,
    training tokens per second, tokens per row, and cost per row."""
    debug_rows = max(1, measured.get("rows") or 1)
    out = {"rows": rows}
    if measured.get("data_seconds") is not None:
        out["data_seconds"] = round(measured["data_seconds"] * rows / debug_rows, 1)
    if measured.get("api_cost_usd") is not None:
        out["api_cost_usd"] = round(measured["api_cost_usd"] * rows / debug_rows, 4)
    speed, tokens = measured.get("tokens_per_s"), measured.get("tokens_mean")
    if speed and tokens and config:
        train = config.get("train") or {}
        epochs = train.get("epochs", 1) if train.get("max_steps", -1) in (-1, None) else 1
        out["train_tokens"] = int(tokens * rows * epochs)
        out["train_seconds"] = round(out["train_tokens"] / speed, 1)
    return out


def throughput_reference(measured: dict | None, config: dict | None, rows: int) -> str:
    if not measured:
        return "Throughput on this host: not measured yet (the first debug run measures it)."
    projected = projection(measured, config, rows)
    parts = [
        f"Measured on this host by the last debug run: the data script wrote {measured.get('rows')} rows in "
        f"{measured.get('data_seconds')} s (API cost ${measured.get('api_cost_usd') or 0:.4f}); training ran at "
        f"{measured.get('tokens_per_s')} tokens/s with {measured.get('tokens_mean')} tokens per row."
    ]
    if "train_seconds" in projected or "data_seconds" in projected:
        parts.append(
            f"Projected for {rows} rows with the current train.yaml: data {projected.get('data_seconds', '?')} s, "
            f"API ${projected.get('api_cost_usd', 0):.4f}, training {projected.get('train_seconds', '?')} s "
            f"({projected.get('train_tokens', '?')} tokens)."
        )
    return " ".join(parts)


def coder_contract(
    settings: Settings,
    scenario: Scenario,
    measured: dict | None,
    config: dict | None,
    rows: int,
    budget_left: float | None = None,
) -> str:
    return "\n\n".join(
        [
            toolkit_reference(),
            schema_reference(),
            scoring_reference(scenario),
            limits_reference(settings, scenario, budget_left),
            throughput_reference(measured, config, rows),
        ]
    )
