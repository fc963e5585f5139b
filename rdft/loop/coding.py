"""Stage `coding`: write the experiment's files into its workspace and prove them.

Files: `process_data.py` (+ `data_recipe.json` for the offline recipe) and `train.yaml`; the
launch files are written by `rdft train`'s writer when the workspace trains. Each round:
1. the data script runs with `--debug` in the data env (timeout FT_DEBUG_DATA_PROCESSING_TIMEOUT)
   and must write non-empty chat (`data.jsonl`) or alpaca (`data.json`) samples, none of which
   may contain an evaluation item (the leakage guard: the coder learns it early);
2. `train.yaml` must pass the training schema, with the fields rdft manages set by rdft (a
   `model.path` other than the run's base model is refused);
3. a micro-batch training (2 steps on the debug samples, timeout FT_MICRO_BATCH_TIMEOUT) must run.
A failure goes back to the coder with the error, up to FT_CODER_MAX_LOOP rounds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, Field
from rich.console import Console

from rdft.datasets.guard import run_guard
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import table_row
from rdft.files import write_atomic
from rdft.knowledge import files_diff, fixes_for, recipes_for, remember_fix, render_fixes, render_recipes
from rdft.llm import ChatLLM
from rdft.loop.contract import coder_contract
from rdft.loop.proposal import Params, Proposal, default_params
from rdft.loop.quality import gate
from rdft.loop.scenario import Scenario
from rdft.loop.workspace import Interrupted, StepFailed, managed_config, read_samples, run_data_script, write_config
from rdft.resources import evaluation_dir, recipes_dir
from rdft.settings import Settings
from rdft.training.config import RL_METHODS
from rdft.training.run import train

CODE_FILES = ("process_data.py", "data_recipe.json", "train.yaml")
GUARD_TIMEOUT = 3600.0  # the leakage guard's own limit (a big dataset against a big benchmark)
TEMPLATE_TOKENS = 16  # what a chat template adds around a row's text, at most, for the tiny and usual models


class CodeFiles(BaseModel):
    process_data_py: str = Field(description="The complete data script (python), run in the workspace")
    train_yaml: str = Field(description="The complete train.yaml for rdft's SFT recipe")


class Round(BaseModel):
    round: int
    ok: bool
    stage: str | None = None
    error: str | None = None
    seconds: float
    measured: dict | None = None  # what the debug run measured: rows, seconds, API cost, tokens/s
    quality: dict | None = None  # the data-quality gate's record (statistics, projection, verdict)


class CodingResult(BaseModel):
    ok: bool
    rounds: list[Round]
    error: str | None = None


# --- the files -------------------------------------------------------------------------------
def train_config(scenario: Scenario, params: Params) -> dict:
    cpu = not scenario.hardware.get("gpus")
    small = (scenario.base_model.parameters or 0) < 50_000_000
    if params.method in RL_METHODS:
        return rl_config(scenario, params, cpu)
    method = {"type": params.method}
    if params.method != "full":
        method.update(lora_r=params.lora_r, lora_alpha=2 * params.lora_r)
    return {
        "model": {"path": scenario.base_model.path, "dtype": "float32" if cpu else "bfloat16"},
        "data": {
            "path": "data.jsonl",
            "max_length": params.max_length or (256 if cpu else min(scenario.base_model.context_length or 4096, 4096)),
            "packing": True,
        },
        "method": method,
        "train": {
            "epochs": params.epochs,
            "learning_rate": params.learning_rate,
            "warmup_ratio": 0.0 if small else 0.03,
            "micro_batch_size": 4 if cpu else "auto",
            "gradient_checkpointing": False if cpu else "auto",
            "seed": 0,
        },
        "output": {"merge": False},
    }


RL_COMPLETION_TOKENS = {"cpu": 32, "gpu": 1024}  # the answers GRPO/DPO sample: short on a CPU (the demo's fit)


def rl_config(scenario: Scenario, params: Params, cpu: bool) -> dict:
    """GRPO or DPO from the start loop's weights (rdft sets model.path/model.adapter and
    rl.benchmark): a LoRA on top, merged for scoring; GRPO takes one prompt's group a step, DPO
    two pairs."""
    return {
        "model": {"path": scenario.base_model.path, "dtype": "float32" if cpu else "bfloat16"},
        "data": {"path": "data.jsonl"},
        "method": {"type": params.method, "lora_r": params.lora_r, "lora_alpha": 2 * params.lora_r},
        "rl": {
            "reward": "benchmark",
            "benchmark": scenario.benchmark,
            "num_generations": params.num_generations,
            "max_completion_length": RL_COMPLETION_TOKENS["cpu" if cpu else "gpu"],
            "learning_rate": params.learning_rate,
        },
        # Checkpoints every 8 steps: a killed run's redone training resumes from the last one.
        "train": {
            "epochs": params.epochs,
            "micro_batch_size": 1 if params.method == "grpo" else 2,
            "warmup_ratio": 0.0,
            "seed": 0,
            "save_steps": 8,
            "save_total_limit": 1,
        },
        "output": {"merge": True},  # the adapter is relative to the start's weights: the merge is what scores
    }


def data_recipe(scenario: Scenario, params: Params, datasets: list[str]) -> dict:
    max_length = train_config(scenario, params)["data"].get("max_length", 2048)
    return {
        "datasets": params.datasets or datasets,
        "benchmark": scenario.benchmark,
        "benchmark_family": scenario.benchmark_family,
        "max_samples": params.max_samples,
        "seed": 0,
        "tasks_dir": str(evaluation_dir() / "tasks"),  # prompts and scorers; no evaluation items
        "tokenizer": scenario.base_model.path,
        "max_tokens": max_length - TEMPLATE_TOKENS,
        "force_think": scenario.force_think,
        "rows": "prompts" if params.method in RL_METHODS else "chat",
    }


def offline_files(scenario: Scenario, proposal: Proposal) -> dict[str, str]:
    """The offline recipe's files: the shipped data script, configured by data_recipe.json."""
    params = proposal.params
    return {
        "process_data.py": (recipes_dir() / "data_recipe.py").read_text(),
        "data_recipe.json": json.dumps(data_recipe(scenario, params, proposal.datasets), indent=1) + "\n",
        "train.yaml": yaml.safe_dump(train_config(scenario, params), sort_keys=False),
    }


CODER_SYSTEM = """You write the files of one fine-tuning experiment.

process_data.py runs in a Python env with datasets, litellm, rdkit, sympy and the toolkit `rdft_data`
(every public name below). It reads the prepared datasets under the folder in the RDFT_DATASETS_DIR
environment variable, supports --debug (process only a small sample, e.g. with debug_sample), and writes
data.jsonl (chat: {{"messages": [...]}} ending with the assistant's answer) in the current folder, at
most {limit} samples, with the answer in the benchmark's format.{think} For a GRPO or DPO experiment
(method.type grpo or dpo) data.jsonl holds prompt rows instead, {{"prompt": rdft_data.prompt(row), "doc": row}}
(write_prompt_jsonl): the benchmark's own scorer rewards the model's answers against each doc.

train.yaml follows rdft's schema (every key below); rdft sets model.path, data.path and output.dir.

Each round is proven in order: the data script runs with --debug; the leakage guard refuses rows that
hold evaluation items; a 2-step training runs on the rows; the data-quality gate checks the rows
(reasoning where the benchmark scores reasoned answers, length against data.max_length, duplicates,
answers against the dataset's gold, the projected full data time and API cost){judge}. A failure comes
back to you with its reason.

{contract}

The offline planner's train.yaml for this model and host (a known-good start):
{example}

{scenario}"""


def coder_messages(
    settings: Settings,
    scenario: Scenario,
    proposal: Proposal,
    current: dict[str, str],
    failure: tuple[str, str] | None,
    *,
    measured: dict | None,
    with_judge: bool,
    budget_left: float | None = None,
) -> list[dict]:
    """The coding call's messages: the contract (generated from the code), the task, the
    current files, the last failure with the fixes remembered for it, and — in a first round —
    the recipes that worked before on this benchmark family."""
    params = proposal.params or default_params(scenario)
    config = train_config(scenario, params)
    rows = params.max_samples if proposal.params else scenario.upper_data_size_limit
    current_config = yaml.safe_load(current["train.yaml"]) if "train.yaml" in current else config
    think = (
        "\nFT_FORCE_THINK_TOKEN is set: every assistant answer puts its reasoning in <think>…</think> and the final "
        "answer after </think>."
        if scenario.force_think
        else ""
    )
    system = CODER_SYSTEM.format(
        limit=scenario.upper_data_size_limit,
        think=think,
        judge=", then an LLM judge reads the statistics and sample rows" if with_judge else "",
        contract=coder_contract(
            settings,
            scenario,
            measured,
            current_config if isinstance(current_config, dict) else config,
            rows,
            budget_left,
        ),
        example=yaml.safe_dump(config, sort_keys=False),
        scenario=scenario.text(),
    )
    task = (
        f"Hypothesis: {proposal.hypothesis}\nData recipe: {proposal.data_recipe}\n"
        f"Training recipe: {proposal.training_recipe}\nDatasets: {', '.join(proposal.datasets)}"
    )
    files = "\n\n".join(f"--- {name} ---\n{text}" for name, text in current.items()) or "(none yet)"
    ask = f"{task}\n\n"
    if failure is None:
        remembered = render_recipes(recipes_for(settings, scenario.benchmark_family))
        ask += f"{remembered}\n\n" if remembered else ""
    ask += f"Current files:\n{files}\n\n"
    if failure is not None:
        stage, error = failure
        fixes = render_fixes(fixes_for(settings, stage, error))
        ask += f"The last round failed:\n[{stage}] {error}\n\n" + (f"{fixes}\n\n" if fixes else "") + "Fix the files."
    else:
        ask += "Write the files."
    return [{"role": "system", "content": system}, {"role": "user", "content": ask}]


# --- proving ---------------------------------------------------------------------------------


def guard_debug_data(
    settings: Settings, scenario: Scenario, data: Path, guard_docs: Path, log: Path, timeout: float
) -> dict:
    """The leakage guard on the debug rows: any row holding an evaluation item fails the round."""
    try:
        report = run_guard(settings, scenario.benchmark, [guard_docs], [data], log_path=log, timeout=timeout)
    except RdftError as error:
        raise StepFailed("leakage", str(error)) from None
    dropped = report["dropped"]
    if sum(dropped.values()):
        reasons = ", ".join(f"{reason} {n}" for reason, n in dropped.items() if n)
        raise StepFailed(
            "leakage",
            f"{sum(dropped.values())} of {report['rows']} debug rows contain evaluation items ({reasons}; "
            f"{report['evaluation_items_hit']} item(s) hit); the guard would drop them: build the data from the "
            "training datasets only, never from the benchmark's questions",
        )
    return report


def prove(
    settings: Settings,
    scenario: Scenario,
    proposal: Proposal,
    workspace: Path,
    guard_docs: Path,
    console: Console,
    *,
    llm: ChatLLM | None = None,
    deadline: Callable[[float], float] = lambda seconds: seconds,
    start: dict | None = None,
) -> dict:
    """One round's checks (raises StepFailed), every step within deadline(its own timeout);
    returns the gate's record. What the debug run measured (rows, seconds, API cost, training
    throughput) is written to .debug/measured.json as soon as it is known, so a failing round
    still tells the next one how fast this host is."""
    debug = workspace / ".debug"
    shutil.rmtree(debug, ignore_errors=True)
    debug.mkdir()
    timeout = deadline(settings.ft_debug_data_processing_timeout)
    started = time.monotonic()
    data = run_data_script(
        settings,
        workspace,
        family=scenario.benchmark_family,
        debug=True,
        timeout=timeout,
        log_path=debug / "data.log",
        usage_path=debug / "api_usage.json",
        benchmark=scenario.benchmark,
    )
    data_seconds = round(time.monotonic() - started, 1)
    shutil.move(data, debug / data.name)
    data = debug / data.name
    usage = json.loads((debug / "api_usage.json").read_text()) if (debug / "api_usage.json").is_file() else {}
    measured = {"rows": len(read_samples(data)), "data_seconds": data_seconds,
                "api_cost_usd": usage.get("cost_usd", 0.0), "api_calls": usage.get("calls", 0)}  # fmt: skip
    write_atomic(debug / "measured.json", json.dumps(measured))
    guard_debug_data(settings, scenario, data, guard_docs, debug / "leakage.log", deadline(GUARD_TIMEOUT))
    config = managed_config((workspace / "train.yaml").read_text(), scenario, data.name, start, workspace=workspace)
    write_config(workspace, config)
    micro = {**config, "data": {**config["data"], "path": f".debug/{data.name}"}}
    micro["train"] = {**config.get("train", {}), "max_steps": 2, "epochs": 1}
    if micro["train"].get("run_name"):  # the proof run reports to the trackers too: named as such
        micro["train"]["run_name"] += " (debug)"
    micro["output"] = {**config["output"], "dir": "output", "merge": False}
    path = write_config(workspace, micro, ".debug-train.yaml")
    try:
        result = train(
            settings,
            path,
            workspace=debug / "train",
            console=console,
            timeout=deadline(settings.ft_micro_batch_timeout),
            benchmark_entry=table_row,
        )
    except RdftError as error:
        log = debug / "train" / "train.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise StepFailed("debug_train", f"{error}\n{tail}") from None
    measured.update(
        tokens_per_s=result.get("tokens_per_s"), dropped_too_long=(result.get("data") or {}).get("dropped_too_long")
    )
    write_atomic(debug / "measured.json", json.dumps(measured))
    params = proposal.params or default_params(scenario)
    try:
        return gate(
            settings,
            scenario,
            data=data,
            datasets=proposal.datasets or [d.name for d in scenario.datasets],
            measured=measured,
            config=config,
            rows_full=params.max_samples if proposal.params else scenario.upper_data_size_limit,
            recipe=proposal.data_recipe,
            llm=llm,
            log=debug / "quality.log",
            timeout=deadline(settings.ft_debug_data_processing_timeout),
        )
    finally:  # with the rows' mean length the gate measured
        write_atomic(debug / "measured.json", json.dumps(measured))


def code(
    settings: Settings,
    scenario: Scenario,
    proposal: Proposal,
    workspace: Path,
    stage_dir: Path,
    *,
    parent_workspace: Path | None,
    guard_docs: Path,
    llm: ChatLLM | None,
    console: Console,
    measured: dict | None = None,
    deadline: Callable[[float], float] = lambda seconds: seconds,
    out_of_budget: Callable[[], bool] = lambda: False,
    budget_left: Callable[[], float | None] = lambda: None,
    source: str = "",
    start_from: dict | None = None,
) -> CodingResult:
    """Rounds of writing and proving the files. `measured`: what the last debug run of this run
    measured (the coder sizes its data and training with it); `source`: the run and loop, for
    the fixes it teaches the knowledge store; `start_from`: the training record GRPO starts from."""
    workspace.mkdir(parents=True, exist_ok=True)
    if parent_workspace is not None:  # the coder starts from the parent's files
        for name in CODE_FILES:
            if (parent_workspace / name).is_file():
                shutil.copy2(parent_workspace / name, workspace / name)
    rounds: list[Round] = []
    failure: tuple[str, str] | None = None
    failed_files: list[tuple[tuple[str, str], dict[str, str]]] = []  # each failure with the files that failed
    for number in range(1, settings.ft_coder_max_loop + 1):
        if out_of_budget():  # the run's budget is spent: no more rounds (the stage is redone on resume)
            raise Interrupted
        start = time.monotonic()
        if llm is None:
            if failure is not None:  # the offline recipe is fixed: a second round would fail the same way
                break
            files = offline_files(scenario, proposal)
        else:
            current = {n: (workspace / n).read_text() for n in CODE_FILES if (workspace / n).is_file()}
            messages = coder_messages(
                settings,
                scenario,
                proposal,
                current,
                failure,
                measured=measured,
                with_judge=True,
                budget_left=budget_left(),
            )
            reply = llm.structured(messages, CodeFiles, purpose="coding")
            files = {"process_data.py": reply.process_data_py, "train.yaml": reply.train_yaml}
        round_dir = stage_dir / f"round_{number}"
        round_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_atomic(workspace / name, text)
            write_atomic(round_dir / name, text)
        console.print(f"rdft: coding round {number}: proving the files")
        try:
            record = prove(
                settings,
                scenario,
                proposal,
                workspace,
                guard_docs,
                console,
                llm=llm,
                deadline=deadline,
                start=start_from,
            )
        except StepFailed as error:
            if out_of_budget():
                raise Interrupted from None
            measured = _measured(workspace) or measured
            failure = (error.stage, str(error))
            failed_files.append((failure, files))
            rounds.append(
                Round(
                    round=number,
                    ok=False,
                    stage=error.stage,
                    error=f"[{error.stage}] {error}"[-4000:],
                    seconds=round(time.monotonic() - start, 1),
                    measured=measured,
                )
            )
            write_atomic(round_dir / "evaluation.json", rounds[-1].model_dump_json(indent=1))
            console.print(f"rdft: coding round {number} failed at {error.stage}: {str(error).splitlines()[0]}")
            continue
        measured = _measured(workspace) or measured
        rounds.append(
            Round(round=number, ok=True, seconds=round(time.monotonic() - start, 1), measured=measured, quality=record)
        )
        write_atomic(round_dir / "evaluation.json", rounds[-1].model_dump_json(indent=1))
        for (stage, error), before in failed_files if llm is not None else []:
            fix = files_diff(before, files)
            if fix:  # what made this error go away, for the next run that meets it
                remember_fix(
                    settings, family=scenario.benchmark_family, stage=stage, error=error, fix=fix, source=source
                )
        return CodingResult(ok=True, rounds=rounds)
    last = f"[{failure[0]}] {failure[1]}" if failure else None
    return CodingResult(ok=False, rounds=rounds, error=f"no round passed ({len(rounds)} tried); last: {last}")


def _measured(workspace: Path) -> dict | None:
    path = workspace / ".debug" / "measured.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
