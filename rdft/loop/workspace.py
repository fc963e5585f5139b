"""What the coding and running stages do in an experiment's workspace: run its data script in the
data env, read and check the rows it wrote, and write its train.yaml with the fields rdft
manages. A failure is a `StepFailed` naming the step."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rdft.datasets.prepare import datasets_dir
from rdft.datasets.toolkit import data_script_environment
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.loop.scenario import Scenario
from rdft.settings import Settings
from rdft.training.config import RL_METHODS, MethodSection, load_config

DATA_FILES = ("data.jsonl", "data.json")


class Interrupted(Exception):
    """The run's --timeout budget ran out in the middle of a step: the step is no failure and is
    redone when the run resumes."""


class StepFailed(RdftError):
    """A step of an experiment failed; `stage` says which (data, config, debug_train, train, eval)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def managed_config(
    text: str,
    scenario: Scenario,
    data_file: str,
    start: dict | None = None,
    *,
    workspace: Path | None = None,
    track: str | None = None,
) -> dict:
    """The coder's train.yaml with the fields rdft manages set by rdft. The run trains its base
    model only: a train.yaml naming another model is refused (a tuned checkpoint would pass
    for this run's work). GRPO starts from `start`, an earlier loop's training record of this
    run (its merged or full weights as model.path, or the base with its adapter as
    model.adapter), and is rewarded by the run's benchmark. `workspace` (<run folder>/Loop_<i>/
    workspace) names the trackers' run after the experiment, <run folder>/Loop_<i>/<method>, and
    puts MLflow's local store in the run folder, where the loop-level tracking writes; `track`
    (the run's loop-level tracker) is added to the trackers the training reports to."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise StepFailed("config", f"train.yaml is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise StepFailed("config", "train.yaml must be a mapping with model, data, method, train, output")
    model = config.setdefault("model", {})
    if not isinstance(model, dict):
        raise StepFailed("config", "train.yaml's model must be a mapping (dtype, attn_implementation)")
    named = model.get("path")
    base = scenario.base_model
    weights = (start or {}).get("merged_dir") or (start or {}).get("model_dir")  # GRPO's start, rdft's own
    allowed = (None, "", base.path, base.name, weights)
    if named not in allowed and Path(str(named)).expanduser().resolve() != Path(base.path):
        raise StepFailed(
            "config",
            f"train.yaml sets model.path to {named}, but this run fine-tunes its base model {base.name} only; "
            "remove model.path (rdft sets it)",
        )
    model["path"] = base.path
    model.pop("adapter", None)
    method = config.get("method")
    if isinstance(method, dict) and method.get("type") in RL_METHODS:
        rl = config.setdefault("rl", {})
        if isinstance(rl, dict):
            rl["benchmark"] = scenario.benchmark
        if weights:
            model["path"] = weights
        elif (start or {}).get("adapter_dir"):
            model["adapter"] = start["adapter_dir"]
    config.setdefault("data", {})["path"] = data_file
    config.setdefault("output", {})["dir"] = "output"
    train = config.setdefault("train", {}) if workspace is not None or track else None
    if workspace is not None and isinstance(train, dict):
        loop, run = workspace.parent, workspace.parent.parent
        default = MethodSection.model_fields["type"].default
        kind = method.get("type", default) if isinstance(method, dict) else default
        train["run_name"] = f"{run.name}/{loop.name}/{kind}"
        train["mlflow_store"] = str(run / "mlruns" / "mlflow.db")
    if track and isinstance(train, dict):
        asked = train.get("report_to") or []
        asked = [asked] if isinstance(asked, str) else asked
        if isinstance(asked, list):  # anything else is the schema's to refuse
            train["report_to"] = [name for name in asked if name not in ("none", track)] + [track]
    return config


def benchmark_spec_variable(benchmark: str | None) -> dict[str, str]:
    """RDFT_BENCHMARK_SPEC for a user benchmark: where `rdft_data.scorer()` reads its spec."""
    from rdft.evaluation.custom import spec_path

    path = spec_path(benchmark) if benchmark else None
    return {"RDFT_BENCHMARK_SPEC": str(path)} if path else {}


def run_data_script(
    settings: Settings,
    workspace: Path,
    *,
    family: str,
    debug: bool,
    timeout: float,
    log_path: Path,
    usage_path: Path | None = None,
    benchmark: str | None = None,
) -> Path:
    """Run process_data.py in the data env; the samples file it wrote, checked. `usage_path`:
    where the toolkit's model pools write what they spent (calls, tokens, cost)."""
    for name in DATA_FILES:
        (workspace / name).unlink(missing_ok=True)
    env = EnvManager(settings).ensure("data")
    variables = {
        **data_script_environment(settings, with_secrets=True),
        "RDFT_DATASETS_DIR": str(datasets_dir(settings)),
        "RDFT_BENCHMARK_FAMILY": family,
        **({"RDFT_BENCHMARK": benchmark} if benchmark else {}),
        **benchmark_spec_variable(benchmark),
    }
    if usage_path is not None:
        variables["RDFT_USAGE_FILE"] = str(usage_path)
    command = ["python", "process_data.py", *(["--debug"] if debug else [])]
    result = env.run(command, extra_env=variables, cwd=workspace, timeout=timeout, log_path=log_path, echo=False)
    if result.timed_out:
        raise StepFailed("data", f"the data script timed out after {timeout:g} s")
    if not result.ok:
        raise StepFailed("data", f"the data script failed (exit {result.returncode}):\n{result.tail[-2000:]}")
    produced = [workspace / name for name in DATA_FILES if (workspace / name).is_file()]
    if not produced:
        raise StepFailed("data", "the data script wrote neither data.jsonl nor data.json in its folder")
    check_samples(read_samples(produced[0]), force_think=settings.ft_force_think_token)
    return produced[0]


def read_samples(path: Path) -> list[dict]:
    try:
        if path.suffix == ".json":
            rows = json.loads(path.read_text())
            return rows if isinstance(rows, list) else []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise StepFailed("data", f"{path.name} is not valid JSON: {error.msg} (line {error.lineno})") from None


def check_samples(rows: list[dict], force_think: bool = False) -> None:
    if not rows:
        raise StepFailed("data", "the data script wrote no samples")
    for number, row in enumerate(rows[:50]):
        messages = row.get("messages") if isinstance(row, dict) else None
        if isinstance(row, dict) and "prompt" in row and not messages:  # GRPO's: a prompt and its doc, no answer
            if not (isinstance(row["prompt"], (str, list)) and row["prompt"] and isinstance(row.get("doc"), dict)):
                raise StepFailed("data", f"sample {number} is a prompt row without a prompt and its doc")
            continue
        if messages:
            if messages[-1].get("role") != "assistant" or not str(messages[-1].get("content", "")).strip():
                raise StepFailed("data", f"sample {number} does not end with a non-empty assistant message")
            answer = str(messages[-1].get("content"))
        elif not (isinstance(row, dict) and row.get("instruction") and row.get("output")):
            raise StepFailed("data", f"sample {number} is neither chat (messages) nor alpaca (instruction, output)")
        else:
            answer = str(row["output"])
        if force_think and not ("<think>" in answer and "</think>" in answer):
            raise StepFailed(
                "data",
                f"sample {number}'s answer has no <think>…</think> (FT_FORCE_THINK_TOKEN is set): put the reasoning "
                "in <think>…</think> and the final answer after it",
            )


def write_config(workspace: Path, config: dict, name: str = "train.yaml") -> Path:
    path = workspace / name
    write_atomic(path, yaml.safe_dump(config, sort_keys=False))
    try:
        load_config(path)
    except RdftError as error:
        raise StepFailed("config", str(error)) from None
    return path
