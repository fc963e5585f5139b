"""The data-quality gate after the coder's debug run: the data script's rows must be worth a
full run before one starts.

Statistics (rdft_data.quality in the data env, plus the debug training's exact count of rows over
data.max_length): rows, reasoning present and its length, token lengths, duplicates, how many
user turns are the benchmark's own prompt, and how many answers the benchmark's scorer marks
correct against the training dataset's gold. Projections from the debug run's timings and token
usage: the full data run's time and API cost, the full training's time. The rules below fail
the round with reasons (they go back to the coder like any error); with an LLM configured, a
judge then reads the statistics and sample rows and passes or fails the data with reasons.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from rdft.datasets.registry import get_dataset
from rdft.datasets.toolkit import data_script_environment
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.llm import ChatLLM
from rdft.loop.contract import projection
from rdft.loop.scenario import Scenario
from rdft.loop.workspace import StepFailed, benchmark_spec_variable, read_samples
from rdft.settings import Settings
from rdft.training.config import RL_METHODS

MIN_REASONING_SHARE = 0.5  # of rows with reasoning, where the benchmark scores reasoned answers
MAX_TOO_LONG_SHARE = 0.1  # of rows over data.max_length (training drops them)
MAX_DUPLICATE_SHARE = 0.2
MIN_GOLD_SHARE = 0.5  # of checked answers the benchmark's scorer marks correct
MIN_GOLD_CHECKED = 5  # fewer checked answers say nothing
SAMPLE_ROWS = 4  # rows the judge reads
ROW_CHARS = 1500


class DataVerdict(BaseModel):
    passed: bool = Field(description="Whether the data is fit to train on for the target benchmark")
    reasons: str = Field(description="What is wrong with the data (or why it is fine), concretely")


def statistics(
    settings: Settings, scenario: Scenario, data: Path, datasets: list[str], log: Path, timeout: float
) -> dict:
    env = EnvManager(settings).ensure("data")
    command = ["python", "-m", "rdft_data.quality", "--data", str(data), "--family", scenario.benchmark_family]
    if (Path(scenario.base_model.path) / "tokenizer.json").is_file():  # else lengths in words
        command += ["--tokenizer", scenario.base_model.path]
    for view in scenario.datasets:
        if view.name in datasets:
            option = "--gold-dataset-dir" if get_dataset(view.name).gold else "--dataset-dir"
            command += [option, view.path]
    variables = {
        **data_script_environment(settings, with_secrets=False),
        "RDFT_BENCHMARK_FAMILY": scenario.benchmark_family,
        "RDFT_BENCHMARK": scenario.benchmark,
        **benchmark_spec_variable(scenario.benchmark),
    }
    result = env.run(command, extra_env=variables, timeout=timeout, log_path=log, echo=False)
    if not result.ok:
        raise StepFailed("quality", f"the data statistics failed (exit {result.returncode}):\n{result.tail[-1500:]}")
    try:
        return json.loads(result.tail.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StepFailed("quality", f"the data statistics printed no JSON; see {log}") from None


def rule_failures(stats: dict, *, reasoning: bool, projected: dict, settings: Settings, max_length: int) -> list[str]:
    """The rules' reasons to refuse the data (empty: it passes)."""
    rows = max(1, stats["rows"])
    reasons = []
    if reasoning and stats["with_reasoning"] / rows < MIN_REASONING_SHARE:
        reasons.append(
            f"only {stats['with_reasoning']} of {stats['rows']} rows carry reasoning before the final answer (mean "
            f"{stats['reasoning_words_mean']} words); this benchmark scores reasoned answers, so a model trained on "
            "bare answers unlearns reasoning: generate or keep the chain-of-thought"
        )
    too_long = stats.get("dropped_too_long") or 0
    if too_long / rows > MAX_TOO_LONG_SHARE:
        reasons.append(
            f"{too_long} of {stats['rows']} rows are longer than data.max_length ({max_length} tokens with the chat "
            f"template; the longest has {stats['tokens_max']} tokens of text) and training drops them: raise "
            "data.max_length within the model's context, or filter/shorten rows in the script (filter_by_tokens)"
        )
    if stats["duplicates"] / rows > MAX_DUPLICATE_SHARE:
        reasons.append(f"{stats['duplicates']} of {stats['rows']} rows are duplicates: sample without repeats")
    checked = stats.get("gold_checked") or 0
    if checked >= MIN_GOLD_CHECKED and stats["gold_correct"] / checked < MIN_GOLD_SHARE:
        reasons.append(
            f"only {stats['gold_correct']} of {checked} answers are correct by the benchmark's scorer against the "
            "dataset's gold: check answers in code before keeping a row (math_equal, same_molecule, the scorer)"
        )
    data_seconds = projected.get("data_seconds")
    if data_seconds is not None and data_seconds > settings.ft_data_processing_timeout:
        reasons.append(
            f"the full data run would take about {data_seconds:.0f} s for {projected['rows']} rows, over "
            f"FT_DATA_PROCESSING_TIMEOUT ({settings.ft_data_processing_timeout} s): use fewer rows or fewer/faster "
            "calls per row"
        )
    train_seconds = projected.get("train_seconds")
    if train_seconds is not None and train_seconds > settings.ft_full_timeout:
        reasons.append(
            f"full training would take about {train_seconds:.0f} s, over FT_FULL_TIMEOUT ({settings.ft_full_timeout} "
            "s): fewer epochs, fewer rows or shorter rows"
        )
    return reasons


def judge_messages(scenario: Scenario, proposal_recipe: str, stats: dict, projected: dict, rows: list[dict]) -> list:
    shown = "\n\n".join(json.dumps(row, ensure_ascii=False)[:ROW_CHARS] for row in rows[:SAMPLE_ROWS])
    return [
        {
            "role": "system",
            "content": (
                "You check training data for one fine-tuning experiment before it is built in full. Fail it when the "
                "rows would not teach the target benchmark: wrong or unchecked answers, answers not in the format the "
                "scorer reads, prompts unlike the benchmark's, missing reasoning where the benchmark needs it, junk or "
                f"repetition. Pass it otherwise.\n\n{scenario.text()}"
            ),
        },
        {
            "role": "user",
            "content": (
                f"Data recipe: {proposal_recipe}\n\nStatistics of the debug run's rows: {json.dumps(stats)}\n"
                f"Projected full run: {json.dumps(projected)}\n\nSample rows:\n{shown}"
            ),
        },
    ]


def gate(
    settings: Settings,
    scenario: Scenario,
    *,
    data: Path,
    datasets: list[str],
    measured: dict,
    config: dict,
    rows_full: int,
    recipe: str,
    llm: ChatLLM | None,
    log: Path,
    timeout: float,
) -> dict:
    """The gate's record (statistics, projection, verdict); raises StepFailed("quality") with the
    reasons when the data fails. Adds the rows' mean token length to `measured`."""
    stats = statistics(settings, scenario, data, datasets, log, timeout)
    stats["dropped_too_long"] = measured.get("dropped_too_long")
    measured["tokens_mean"] = stats.get("tokens_mean")  # the next rounds' projections use it too
    projected = projection({**measured, "tokens_mean": stats.get("tokens_mean")}, config, rows_full)
    entry = get_benchmark(scenario.benchmark)
    prompts = (config.get("method") or {}).get("type") in RL_METHODS  # prompt rows: no answer, no reasoning to check
    reasons = rule_failures(
        stats,
        reasoning=(entry.reasoning or scenario.force_think) and not prompts,
        projected=projected,
        settings=settings,
        max_length=config["data"].get("max_length", 2048),
    )
    record = {"stats": stats, "projected": projected, "reasons": reasons, "judge": None}
    if not reasons and llm is not None:
        messages = judge_messages(scenario, recipe, stats, projected, read_samples(data))
        try:
            verdict = llm.structured(messages, DataVerdict, purpose="data_quality")
        except RdftError as error:  # the judge is advice; the rules decide when it is unavailable
            record["judge"] = {"error": str(error)}
        else:
            record["judge"] = verdict.model_dump()
            if not verdict.passed:
                reasons = [f"the data judge failed the data: {verdict.reasons}"]
                record["reasons"] = reasons
    log.with_name("quality.json").write_text(json.dumps(record, indent=1))
    if reasons:
        raise StepFailed("quality", "the data-quality gate refused the debug data:\n- " + "\n- ".join(reasons))
    return record
