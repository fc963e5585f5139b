"""The training config schema: one pydantic model validates a train YAML and explains what is wrong.

Configs are data. `rdft train` validates a user's YAML here, fills every default, resolves
paths, and writes the complete result as the workspace's `train.yaml`, which the recipe
reads without defaults of its own.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rdft.errors import RdftError

TINY_PREFIX = "tiny:"  # model.path "tiny:llama" = the tiny test model, built locally when missing


# Methods that learn from the model's own scored answers: prompt rows, a reward, keys under rl.
RL_METHODS = ("grpo", "dpo")

# train.report_to: each tracker through its own library, and the module that must import in the
# train env. tensorboard and mlflow are in the train lock; wandb and trackio are the user's to add.
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}
# The credentials each tracker's library reads from its own environment. Secret-named ones are
# kept from every child by the runner; a training that reports to the tracker gets them (and the
# runner masks their values in its logs). rdft never writes them anywhere.
TRACKER_CREDENTIALS = {
    "mlflow": ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
    "wandb": ("WANDB_API_KEY",),
    "trackio": ("HF_TOKEN",),  # a Space as the dashboard (TRACKIO_SPACE_ID)
}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Section):
    path: str = Field(
        description="Local folder or Hugging Face repo id; `tiny:llama` or `tiny:qwen2` for the test model"
    )
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    attn_implementation: Literal["auto", "sdpa", "flex_attention", "flash_attention_2", "eager"] = "auto"
    adapter: Path | None = Field(
        None,
        description="grpo, dpo: a LoRA adapter (a parent experiment's) merged into model.path before training; "
        "the result is then saved merged as well",
    )

    @field_validator("path", mode="before")
    @classmethod
    def _named(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("give a model folder or a Hub id like Qwen/Qwen2.5-7B")
        return value

    @property
    def tiny_arch(self) -> str | None:
        return self.path.removeprefix(TINY_PREFIX) if self.path.startswith(TINY_PREFIX) else None


class DataSection(Section):
    path: Path = Field(
        description="Chat JSONL (`messages`) or alpaca JSONL (`instruction`, `input`, `output`); grpo, dpo: prompt "
        "JSONL (`prompt`: the user turn, `doc`: the benchmark row its reward scores against)"
    )
    format: Literal["auto", "chat", "alpaca", "prompt"] = "auto"
    max_length: int = Field(
        2048,
        ge=16,
        description="SFT: longer samples are dropped and counted, never truncated; DPO: TRL cuts a pair's answer at it",
    )
    packing: bool = True

    @field_validator("path", mode="before")
    @classmethod
    def _named(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("give the path of a chat or alpaca JSONL file")  # "" would be the config's own folder
        return value


class MethodSection(Section):
    type: Literal["full", "lora", "qlora", "grpo", "dpo"] = Field(
        "lora",
        description="Supervised fine-tuning (full, lora, qlora); or learning from the model's own scored answers, "
        "keys under rl: grpo (TRL's GRPOTrainer) or dpo (TRL's DPOTrainer on pairs of a best- and a worst-scored "
        "answer to one prompt)",
    )
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainSection(Section):
    # Bounded: 10**15 epochs was accepted and planned as a run that never ends (a typo, or an LLM's).
    epochs: int = Field(1, ge=1, le=1000, description="Passes over the data")
    max_steps: int = Field(-1, ge=-1, description="Optimizer steps; -1 runs `epochs` epochs")
    micro_batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Samples per micro-batch (packed: token budget = this × max_length); auto = planner"
    )
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    seed: int = 42
    liger: Literal["auto", "on", "off"] = "auto"
    compile: bool = Field(False, description="Compile each decoder layer with torch.compile (GPU; first step slower)")
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(0, ge=0, description="Checkpoint every N optimizer steps; 0 = only the final weights")
    save_total_limit: int = Field(2, ge=1)
    resume: bool = Field(True, description="Resume from the latest checkpoint in output.dir")
    report_to: list[Literal["none", "tensorboard", "mlflow", "wandb", "trackio"]] = Field(
        ["none"],
        description="Experiment trackers, each through its own library: loss, learning rate, grad norm, tokens/s, "
        "peak memory and the RL metrics per logged step; the resolved config; the final scores. tensorboard: event "
        "files in output.dir/tensorboard; mlflow: MLFLOW_TRACKING_URI, else train.mlflow_store; wandb, trackio: "
        "installed by you in the train env (WANDB_API_KEY, HF_TOKEN read by the library itself)",
    )
    run_name: str | None = Field(
        None,
        description="The run's name in the trackers; default: the workspace folder and the method "
        "(the agent loop sets <run folder>/Loop_<i>/<method>)",
    )
    mlflow_store: Path | None = Field(
        None,
        description="mlflow without MLFLOW_TRACKING_URI: the SQLite file of the store, artifacts beside it; "
        "default output.dir/mlruns/mlflow.db (the agent loop sets its run folder's <run folder>/mlruns/mlflow.db)",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        if value is None or value == []:
            return ["none"]
        return [value] if isinstance(value, str) else value

    @field_validator("report_to")
    @classmethod
    def _none_alone(cls, value: list[str]) -> list[str]:
        trackers = list(dict.fromkeys(value))  # each once, in the order given
        if "none" in trackers and len(trackers) > 1:
            raise ValueError("none reports to no tracker; give it alone, or only tracker names")
        return trackers


class RLSection(Section):
    """Learning from the model's own answers (method.type grpo or dpo): answers sampled for each
    of the data's prompts and scored by the reward. GRPO compares each answer with its prompt's
    group as it trains; DPO samples once from the starting model, pairs a best- with a
    worst-scored answer of each prompt whose answers differ, and trains on the pairs."""

    reward: str = Field(
        "benchmark",
        description="`benchmark`: rl.benchmark's own scorer (the function that scores it, as strict: unreadable = 0); "
        "or a Python file defining reward(prompts, completions, **columns) -> list[float]",
    )
    benchmark: str | None = Field(None, description="The benchmark whose scorer rewards (the agent loop sets it)")
    weights: Literal["lora", "full"] = Field(
        "lora", description="What GRPO or DPO trains: a LoRA adapter (method.lora_*) or every weight"
    )
    num_generations: int = Field(
        4, ge=2, description="Answers sampled per prompt (GRPO's group, DPO's pool for pairs): their spread is signal"
    )
    max_completion_length: int = Field(256, ge=1, description="Tokens per sampled answer")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the answers")
    beta: float | None = Field(
        None,
        ge=0,
        description="Pull towards the starting model: GRPO's KL penalty (default 0.04; 0: none, no reference pass), "
        "DPO's β (default 0.1; higher stays closer)",
    )
    learning_rate: float = Field(1e-5, gt=0, description="Replaces train.learning_rate for GRPO and DPO")
    generation: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="Who samples GRPO's answers. vllm: a vLLM server (the score env's, started for the run, or "
        "rl.vllm_server_url), which loads the LoRA being trained after every optimizer step; transformers: the "
        "trainer's own generate. auto: vllm on a GPU host whose score env is built, for rl.weights lora; else "
        "transformers. DPO samples once, from the starting model, with transformers",
    )
    vllm_server_url: str | None = Field(
        None,
        description="A running vLLM server to sample from instead of starting one (its first model: model.path, "
        "served with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); with rl.vllm_command, the address "
        "the started server listens at (default: a free port on 127.0.0.1)",
    )
    vllm_command: list[str] | None = Field(
        None,
        description="The command that starts vLLM's server (`vllm serve`'s argv before the model); default: the "
        "score env's vllm serve. Given, it runs on any host (a CPU build of vLLM too)",
    )
    vllm_gpu: int | None = Field(
        None,
        ge=0,
        description="The GPU the started server takes; default: the last selected GPU when several are selected "
        "(training gets the others), else the one training uses, shared (rl.vllm_memory)",
    )
    vllm_memory: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Share of its GPU's memory the started vLLM server takes when training shares the GPU "
        "(a GPU of its own: 0.9)",
    )


class OutputSection(Section):
    dir: Path = Path("output")
    merge: bool = Field(False, description="Also save the adapter merged into the base model (LoRA)")


class DistributedSection(Section):
    strategy: Literal["auto", "single", "ddp", "zero2", "zero3"] = "auto"
    offload: bool = Field(False, description="ZeRO-3: offload parameters and optimizer state to CPU")
    num_processes: int | None = Field(None, ge=1, description="Default: one per selected GPU, or 1 on CPU")
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int = 29500

    @model_validator(mode="after")
    def _multi_node(self) -> DistributedSection:
        """Several machines need distributed.main_process_ip (rank 0's address) and machine_rank below
        num_machines; distributed.offload needs strategy zero3."""
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("num_machines > 1 needs main_process_ip (the rank-0 machine's address)")
        if self.machine_rank >= self.num_machines:
            raise ValueError("machine_rank must be below num_machines")
        if self.offload and self.strategy != "zero3":
            raise ValueError("offload needs strategy: zero3")
        return self


class TrainConfig(Section):
    model: ModelSection
    data: DataSection
    method: MethodSection = MethodSection()
    train: TrainSection = TrainSection()
    output: OutputSection = OutputSection()
    distributed: DistributedSection = DistributedSection()
    rl: RLSection = RLSection()

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        """output.merge applies to LoRA/QLoRA only (a full fine-tune saves the whole model); QLoRA
        cannot be sharded with zero3 (use zero2 or ddp). GRPO and DPO train on prompt rows, take
        their reward from rl.benchmark's scorer unless rl.reward names a file, and run as one
        process or ddp; model.adapter is for them. rl.beta's default is the method's."""
        rl = self.method.type in RL_METHODS
        if self.rl.beta is None:
            self.rl.beta = 0.1 if self.method.type == "dpo" else 0.04
        if self.output.merge and (self.method.type == "full" or (rl and self.rl.weights == "full")):
            raise ValueError("output.merge applies to LoRA/QLoRA; a full fine-tune already saves the whole model")
        if self.method.type == "qlora" and self.distributed.strategy == "zero3":
            raise ValueError("QLoRA cannot be sharded with ZeRO-3 here; use strategy zero2 or ddp")
        method = self.method.type
        if rl and self.data.format in ("chat", "alpaca"):
            raise ValueError(f"method.type {method} trains on prompt rows; set data.format: prompt (or auto)")
        if not rl and self.data.format == "prompt":
            raise ValueError("data.format prompt (rows without answers) is for method.type grpo or dpo")
        if rl and self.rl.reward == "benchmark" and not self.rl.benchmark:
            raise ValueError("rl.reward benchmark needs rl.benchmark: the benchmark whose scorer rewards")
        if rl and self.distributed.strategy in ("zero2", "zero3"):
            raise ValueError(f"method.type {method} runs as one process or ddp here; set distributed.strategy: auto")
        if self.model.adapter is not None and not rl:
            raise ValueError("model.adapter (merged before training) is for method.type grpo or dpo")
        # The trainers build a full-weight run's reference model from model.path, without the
        # adapter the policy starts from: the KL (DPO's β) would pull towards the wrong model.
        if rl and self.rl.weights == "full" and self.model.adapter is not None:
            raise ValueError("rl.weights full with model.adapter: merge the adapter into a model folder first, "
                             "or train a LoRA (rl.weights lora)")  # fmt: skip
        if method == "grpo" and self.rl.generation == "vllm" and self.rl.weights == "full":
            # Only the adapter travels to the server each step (a file of megabytes, not the model)
            raise ValueError("rl.generation vllm loads the trained LoRA into the server each step; with "
                             "rl.weights full use rl.generation transformers (or auto)")  # fmt: skip
        if self.rl.vllm_server_url and not self.rl.vllm_command and self.model.adapter is not None:
            raise ValueError("rl.vllm_server_url serves model.path, not model.path with model.adapter merged in: "
                             "merge the adapter into a model folder, serve that and give it as model.path")  # fmt: skip
        if method == "dpo" and self.rl.generation == "vllm":
            raise ValueError("rl.generation vllm is GRPO's sampler; DPO samples once, from the starting model, "
                             "with transformers: set rl.generation: auto")  # fmt: skip
        if self.rl.generation == "transformers" and (self.rl.vllm_server_url or self.rl.vllm_command):
            raise ValueError("rl.vllm_server_url and rl.vllm_command are for rl.generation vllm (or auto)")
        if method == "dpo" and self.rl.beta == 0:
            raise ValueError("rl.beta 0 makes DPO's loss a constant: give β > 0 (default 0.1)")
        return self


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(options)}"


def _section_model(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = TrainConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model


def explain(error: ValidationError, source: str) -> str:
    """One line that says which key is wrong and how to fix it."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        options = list(_section_model(loc).model_fields)
        return f"{source}: unknown key {where!r}{_closest(str(loc[-1]), options)}"
    if first["type"] == "missing":
        return f"{source}: {where} is required"
    message = first["msg"].removeprefix("Value error, ")
    if len(loc) > 2:  # a union's members (`4 | "auto"`) fail one by one: one message for the key
        members = [e for e in error.errors() if tuple(e["loc"][:2]) == loc[:2]]
        if len(members) > 1:
            where = ".".join(str(p) for p in loc[:2])
            message = ", or ".join(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in members))
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
    return f"{source}: {where}: {message}{shown}"


def load_config(path: Path) -> TrainConfig:
    """Parse and validate a train YAML; relative paths resolve against the file's folder."""
    if not path.is_file():
        raise RdftError(f"config {path} does not exist; give the path of a train YAML (see recipes/configs/)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RdftError(f"{path} is not a text file; give a train YAML (see recipes/configs/)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise RdftError(
            f"{path} is not valid YAML{f' at line {mark.line + 1}' if mark else ''}; fix the file"
        ) from None
    if not isinstance(raw, dict):
        raise RdftError(f"{path} must be a mapping with model, data, method, train, output, distributed")
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise RdftError(explain(error, str(path))) from None
    base = path.resolve().parent
    if not config.model.tiny_arch and (base / config.model.path).exists():
        config.model.path = str((base / config.model.path).resolve())
    config.data.path = (base / config.data.path).resolve()
    if config.model.adapter is not None:
        config.model.adapter = (base / config.model.adapter).resolve()
    if config.rl.reward != "benchmark":
        config.rl.reward = str((base / config.rl.reward).resolve())
    if config.train.mlflow_store is not None:
        config.train.mlflow_store = (base / config.train.mlflow_store).expanduser().resolve()
    return config


# --- train.report_to: the trackers' libraries and credentials ----------------------------------
def trackers(config: TrainConfig) -> list[str]:
    """The trackers train.report_to names (none: [])."""
    return [name for name in config.train.report_to if name != "none"]


def check_trackers(config: TrainConfig, env, specs_dir: Path) -> None:
    """Every tracker train.report_to names imports in the train env `env` (its own library: each
    imported in a fresh interpreter, as the recipe will); a missing one is one line that says how
    to install it. `specs_dir`: the env specs in use (RDFT_ENV_SPECS_DIR or the shipped ones)."""
    names = trackers(config)
    if not names:
        return
    code = (
        "import importlib, json, sys\n"
        "missing = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        missing.append(name)\n"
        "print(json.dumps(missing))"
    )
    result = env.run(["python", "-c", code, *(TRACKERS[name] for name in names)], echo=False)
    try:
        missing = json.loads(result.tail.strip().splitlines()[-1]) if result.ok else None
    except (IndexError, ValueError):
        missing = None
    if missing is None:
        raise RdftError(f"train.report_to: cannot check the trackers' libraries in the train env: {result.tail[-300:]}")
    for module in missing:
        name = next(n for n in names if TRACKERS[n] == module)
        raise RdftError(
            f"train.report_to: {name} is not installed in the train env; install it with your own env specs "
            f"(copy {specs_dir} to a folder, add `{module}` to the pip list of its train.yml, set RDFT_ENV_SPECS_DIR "
            f"to that folder and run `rdft env lock train`), or drop {name} from train.report_to"
        )


def tracker_environment(config: TrainConfig, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The credentials the requested trackers read from their environment (os.environ's, else
    `secrets`: rdft's settings, which may come from .env), for the training process only."""
    out = {}
    for name in trackers(config):
        for variable in TRACKER_CREDENTIALS.get(name, ()):
            value = os.environ.get(variable) or (secrets or {}).get(variable)
            if value:
                out[variable] = value
    return out


# --- the schema as text: what `rdft train --schema` prints and the coder is told ------------------
AUTO_VALUES = {
    "train.micro_batch_size": "the memory planner's largest micro-batch that fits in 90% of the GPU's memory, "
    "without checkpointing when one fits (4 on CPU)",
    "train.gradient_checkpointing": "on only when no micro-batch fits without it",
    "model.attn_implementation": "flex_attention for packed rows on a GPU (attention within each sample, masked "
    "blocks skipped); sdpa otherwise",
    "train.liger": "Liger's fused kernels when liger-kernel is installed in the train env and a GPU is used",
    "distributed.strategy": "single for one process; ddp for LoRA/QLoRA and zero3 for a full fine-tune on several GPUs",
    "data.format": "chat when rows hold `messages`, alpaca when they hold `instruction`/`output`",
}


def _type_text(annotation) -> str:
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "|".join(str(value) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return "|".join(_type_text(arg) for arg in typing.get_args(annotation) if arg is not type(None)) + (
            "|null" if type(None) in typing.get_args(annotation) else ""
        )
    if origin is list:
        return f"list[{_type_text(typing.get_args(annotation)[0])}]"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field) -> str:
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    out = []
    for item in field.metadata:
        for name, symbol in symbols.items():
            value = getattr(item, name, None)
            if value is not None:
                out.append(f"{symbol} {value}")
    return ", ".join(out)


def schema_rows(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[dict]:
    """Every key of the schema (`section.key`) with its type, default, constraints and meaning,
    read from the pydantic models themselves."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += schema_rows(annotation, f"{prefix}{name}.")
            continue
        key = f"{prefix}{name}"
        default = "required" if field.is_required() else f"default {field.default!s}"
        rows.append(
            {
                "key": key,
                "type": _type_text(annotation),
                "default": default,
                "constraints": _constraints(field),
                "description": field.description or "",
                "auto": AUTO_VALUES.get(key, ""),
            }
        )
    return rows


def _rules() -> list[str]:
    """The cross-key rules, from the validators' docstrings."""
    validators = (TrainConfig._combinations, DistributedSection._multi_node)
    return [" ".join((v.__doc__ or "").split()) for v in validators if v.__doc__]


def schema_reference() -> str:
    lines = ["train.yaml keys (unknown keys are refused; omitted keys take the default):"]
    for row in schema_rows():
        parts = [f"{row['key']}: {row['type']}", row["default"]]
        if row["constraints"]:
            parts.append(row["constraints"])
        text = ", ".join(parts)
        if row["description"]:
            text += f" — {row['description']}"
        if row["auto"]:
            text += f" (auto: {row['auto']})"
        lines.append("  " + text)
    lines.append("Rules across keys:")
    lines += [f"  {rule}" for rule in _rules()]
    return "\n".join(lines)
