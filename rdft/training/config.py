"""The training config schema: one pydantic model validates a train YAML and explains what is wrong.

Configs are data. `rdft train` validates a user's YAML here, fills every default, resolves
paths, and writes the complete result as the workspace's `train.yaml`, which the recipe
reads without defaults of its own.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rdft.errors import RdftError

TINY_PREFIX = "tiny:"  # model.path "tiny:llama" = the tiny test model, built locally when missing


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Section):
    path: str = Field(
        description="Local folder or Hugging Face repo id; `tiny:llama` or `tiny:qwen2` for the test model"
    )
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"

    @property
    def tiny_arch(self) -> str | None:
        return self.path.removeprefix(TINY_PREFIX) if self.path.startswith(TINY_PREFIX) else None


class DataSection(Section):
    path: Path = Field(description="Chat JSONL (`messages`) or alpaca JSONL (`instruction`, `input`, `output`)")
    format: Literal["auto", "chat", "alpaca"] = "auto"
    max_length: int = Field(2048, ge=16, description="Longer samples are dropped and counted, never truncated")
    packing: bool = True


class MethodSection(Section):
    type: Literal["full", "lora", "qlora"] = "lora"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainSection(Section):
    epochs: int = Field(1, ge=1)
    max_steps: int = Field(-1, description="Optimizer steps; -1 runs `epochs` epochs")
    micro_batch_size: int | Literal["auto"] = Field(
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
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(0, ge=0, description="Checkpoint every N optimizer steps; 0 = only the final weights")
    save_total_limit: int = Field(2, ge=1)
    resume: bool = Field(True, description="Resume from the latest checkpoint in output.dir")


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

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        if self.method.type == "full" and self.output.merge:
            raise ValueError("output.merge applies to LoRA/QLoRA; a full fine-tune already saves the whole model")
        if self.method.type == "qlora" and self.distributed.strategy == "zero3":
            raise ValueError("QLoRA cannot be sharded with ZeRO-3 here; use strategy zero2 or ddp")
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
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
    return f"{source}: {where}: {message}{shown}"


def load_config(path: Path) -> TrainConfig:
    """Parse and validate a train YAML; relative paths resolve against the file's folder."""
    if not path.is_file():
        raise RdftError(f"config {path} does not exist; give the path of a train YAML (see recipes/configs/)")
    try:
        raw = yaml.safe_load(path.read_text())
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
    return config
