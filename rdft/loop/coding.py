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
from pathlib import Path

import yaml
from pydantic import BaseModel, Field
from rich.console import Console

from rdft.datasets.guard import run_guard
from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.llm import ChatLLM
from rdft.loop.proposal import Params, Proposal, default_params
from rdft.loop.scenario import Scenario
from rdft.loop.workspace import StepFailed, managed_config, run_data_script, write_config
from rdft.resources import evaluation_dir, recipes_dir
from rdft.settings import Settings
from rdft.training.run import train

CODE_FILES = ("process_data.py", "data_recipe.json", "train.yaml")
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


class CodingResult(BaseModel):
    ok: bool
    rounds: list[Round]
    error: str | None = None


# --- the files -------------------------------------------------------------------------------
def train_config(scenario: Scenario, params: Params) -> dict:
    cpu = not scenario.hardware.get("gpus")
    small = (scenario.base_model.parameters or 0) < 50_000_000
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


def data_recipe(scenario: Scenario, params: Params, datasets: list[str]) -> dict:
    max_length = train_config(scenario, params)["data"]["max_length"]
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
(strong_pool/weak_pool model pools, math_check/same_molecule/json_fields checkers, TokenCounter,
filter_by_tokens, debug_sample, write_chat_jsonl, write_alpaca_json). It reads the prepared datasets
under the folder in the RDFT_DATASETS_DIR environment variable, supports --debug (process only a
small sample, e.g. with debug_sample), and writes data.jsonl (chat: {{"messages": [...]}} ending with
the assistant's answer) in the current folder, at most {limit} samples, with the answer in the
benchmark's format.{think}

train.yaml follows rdft's schema (example below). rdft sets model.path, data.path and output.dir
itself.

Example train.yaml:
{example}

{scenario}"""


def llm_files(
    llm: ChatLLM, scenario: Scenario, proposal: Proposal, current: dict[str, str], error: str | None
) -> dict[str, str]:
    example = yaml.safe_dump(train_config(scenario, proposal.params or default_params(scenario)), sort_keys=False)
    files = "\n\n".join(f"--- {name} ---\n{text}" for name, text in current.items()) or "(none yet)"
    task = (
        f"Hypothesis: {proposal.hypothesis}\nData recipe: {proposal.data_recipe}\n"
        f"Training recipe: {proposal.training_recipe}\nDatasets: {', '.join(proposal.datasets)}"
    )
    ask = f"{task}\n\nCurrent files:\n{files}\n\n"
    ask += f"The last round failed:\n{error}\n\nFix the files." if error else "Write the files."
    think = (
        "\nFT_FORCE_THINK_TOKEN is set: every assistant answer puts its reasoning in <think>…</think> and the final "
        "answer after </think>."
        if scenario.force_think
        else ""
    )
    system = CODER_SYSTEM.format(
        limit=scenario.upper_data_size_limit, example=example, scenario=scenario.text(), think=think
    )
    reply = llm.structured(
        [{"role": "system", "content": system}, {"role": "user", "content": ask}], CodeFiles, purpose="coding"
    )
    return {"process_data.py": reply.process_data_py, "train.yaml": reply.train_yaml}


# --- proving ---------------------------------------------------------------------------------


def guard_debug_data(settings: Settings, scenario: Scenario, data: Path, guard_docs: Path, log: Path) -> dict:
    """The leakage guard on the debug rows: any row holding an evaluation item fails the round."""
    try:
        report = run_guard(settings, scenario.benchmark, [guard_docs], [data], log_path=log)
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


def prove(settings: Settings, scenario: Scenario, workspace: Path, guard_docs: Path, console: Console) -> None:
    """One round's checks (raises StepFailed)."""
    debug = workspace / ".debug"
    shutil.rmtree(debug, ignore_errors=True)
    debug.mkdir()
    data = run_data_script(
        settings, workspace, debug=True, timeout=settings.ft_debug_data_processing_timeout, log_path=debug / "data.log"
    )
    shutil.move(data, debug / data.name)
    data = debug / data.name
    guard_debug_data(settings, scenario, data, guard_docs, debug / "leakage.log")
    config = managed_config((workspace / "train.yaml").read_text(), scenario, data.name)
    write_config(workspace, config)
    micro = {**config, "data": {**config["data"], "path": f".debug/{data.name}"}}
    micro["train"] = {**config.get("train", {}), "max_steps": 2, "epochs": 1}
    micro["output"] = {**config["output"], "dir": "output", "merge": False}
    path = write_config(workspace, micro, ".debug-train.yaml")
    try:
        train(settings, path, workspace=debug / "train", console=console, timeout=settings.ft_micro_batch_timeout)
    except RdftError as error:
        log = debug / "train" / "train.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise StepFailed("debug_train", f"{error}\n{tail}") from None


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
) -> CodingResult:
    workspace.mkdir(parents=True, exist_ok=True)
    if parent_workspace is not None:  # the coder starts from the parent's files
        for name in CODE_FILES:
            if (parent_workspace / name).is_file():
                shutil.copy2(parent_workspace / name, workspace / name)
    rounds: list[Round] = []
    error = None
    for number in range(1, settings.ft_coder_max_loop + 1):
        start = time.monotonic()
        if llm is None:
            if error is not None:  # the offline recipe is fixed: a second round would fail the same way
                break
            files = offline_files(scenario, proposal)
        else:
            current = {n: (workspace / n).read_text() for n in CODE_FILES if (workspace / n).is_file()}
            files = llm_files(llm, scenario, proposal, current, error)
        round_dir = stage_dir / f"round_{number}"
        round_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_atomic(workspace / name, text)
            write_atomic(round_dir / name, text)
        console.print(f"rdft: coding round {number}: proving the files")
        try:
            prove(settings, scenario, workspace, guard_docs, console)
        except StepFailed as failure:
            error = f"[{failure.stage}] {failure}"
            rounds.append(
                Round(
                    round=number,
                    ok=False,
                    stage=failure.stage,
                    error=error[-4000:],
                    seconds=round(time.monotonic() - start, 1),
                )
            )
            write_atomic(round_dir / "evaluation.json", rounds[-1].model_dump_json(indent=1))
            console.print(f"rdft: coding round {number} failed at {failure.stage}: {str(failure).splitlines()[0]}")
            continue
        rounds.append(Round(round=number, ok=True, seconds=round(time.monotonic() - start, 1)))
        write_atomic(round_dir / "evaluation.json", rounds[-1].model_dump_json(indent=1))
        return CodingResult(ok=True, rounds=rounds)
    return CodingResult(ok=False, rounds=rounds, error=f"no round passed ({len(rounds)} tried); last: {error}")
