"""Supervised fine-tuning of a causal LM: full, LoRA or QLoRA, on chat or alpaca JSONL.

Self-contained: runs inside the `train` env through `accelerate launch` (one or more processes,
DeepSpeed ZeRO-2/3 through the accelerate config) and imports nothing from rdft.

    accelerate launch --config_file accelerate.yaml recipes/sft.py --config train.resolved.yaml

The config is the fully resolved YAML that `rdft train` writes (every key present). What it does:
- loss only on assistant tokens, found with the model's own chat template; each assistant
  turn's end-of-turn token is a target, so the model learns to stop;
- packing: samples are concatenated into rows of at most `data.max_length` tokens with position
  ids restarting at 0 at each sample; `micro_batch_size` rows make a micro-batch. transformers
  reads the samples' boundaries from the position ids, so no token attends across samples:
  flex_attention (GPU) skips the blocks between samples, sdpa gets a block-diagonal mask. A
  row's tail padding is one more "sample" with no targets, so no attention mask is needed;
- on a GPU: bf16/fp16 autocast for LoRA (PEFT keeps the adapters in fp32), no host sync except
  every `logging_steps`, and with `train.compile` each decoder layer compiled (regional
  torch.compile: one compilation serves every layer);
- samples longer than `data.max_length` are dropped and counted, never truncated;
- a metrics JSONL (step, loss, lr, grad norm, tokens/s, MFU, peak memory), checkpoints with resume
  from the latest one, and a final `result.json`;
- the same numbers to the trackers of `train.report_to`, each through its own library by
  accelerate's trackers (TensorBoard: output/tensorboard; MLflow: MLFLOW_TRACKING_URI, else a
  SQLite store; wandb; trackio), with the resolved config and, at the end, the final scores;
- the adapter (safetensors), or the full model, and on request merged weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

IGNORE = -100
# Dense bf16 peak TFLOP/s by GPU name, for MFU (spec sheets; SXM parts).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


# --- data -------------------------------------------------------------------------------------
def read_jsonl(path: Path | str) -> list[dict]:
    """Rows of a JSONL file, or of a JSON list (alpaca's `data.json`)."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise SystemExit(f"sft: {path} is not valid JSON ({error.msg}); fix the data file") from None
        if not isinstance(rows, list) or not rows:
            raise SystemExit(f"sft: {path} must hold a non-empty JSON list of samples")
        return rows
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise SystemExit(
                        f"sft: {path}:{number} is not valid JSON ({error.msg}); fix the data file"
                    ) from None
    if not rows:
        raise SystemExit(f"sft: {path} holds no samples")
    return rows


def to_messages(row: dict, data_format: str) -> list[dict]:
    """A chat (`messages`) or alpaca (`instruction`, `input`, `output`) row as chat messages."""
    if data_format == "chat" or (data_format == "auto" and "messages" in row):
        return row["messages"]
    prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]


def tokenize_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids and labels: labels are the ids on assistant turns (their end-of-turn token
    included) and IGNORE elsewhere. Each assistant turn is located by rendering the template
    up to it, so any chat template works without {% generation %} markers."""

    def render(upto: int, generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation_prompt)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = render(len(messages), False)
    labels = [IGNORE] * len(ids)
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render(index, True))
        upto = render(index + 1, False)
        end = len(upto)
        if ids[:end] != upto or start > end:
            raise SystemExit("sft: the chat template does not render conversations incrementally; use alpaca data")
        labels[start:end] = ids[start:end]
    return ids, labels


def load_samples(config: dict, tokenizer) -> tuple[list[dict], dict]:
    data = config["data"]
    rows = read_jsonl(Path(data["path"]))
    samples, dropped_long, dropped_empty = [], 0, 0
    for row in rows:
        ids, labels = tokenize_chat(tokenizer, to_messages(row, data["format"]))
        if len(ids) > data["max_length"]:
            dropped_long += 1
        elif all(label == IGNORE for label in labels[1:]):
            dropped_empty += 1
        else:
            samples.append({"input_ids": ids, "labels": labels})
    stats = {
        "rows": len(rows),
        "samples": len(samples),
        "dropped_too_long": dropped_long,
        "dropped_no_target": dropped_empty,
    }
    if not samples:
        raise SystemExit(f"sft: no usable samples in {data['path']} ({stats}); raise data.max_length or fix the data")
    return samples, stats


def pack_rows(samples: list[dict], row_length: int) -> list[list[dict]]:
    """Greedy in-order packing into rows of at most `row_length` tokens."""
    rows, current, used = [], [], 0
    for sample in samples:
        if current and used + len(sample["input_ids"]) > row_length:
            rows.append(current)
            current, used = [], 0
        current.append(sample)
        used += len(sample["input_ids"])
    if current:
        rows.append(current)
    return rows


def pack(samples: list[dict], row_length: int, rows_per_batch: int, pad_id: int) -> list[dict]:
    """Packed rows (pack_rows), `rows_per_batch` rows per micro-batch."""
    rows = pack_rows(samples, row_length)
    return [collate_packed(rows[i : i + rows_per_batch], pad_id) for i in range(0, len(rows), rows_per_batch)]


def shuffled(samples: list[dict], config: dict, epoch: int) -> list[dict]:
    order = list(range(len(samples)))
    random.Random(config["train"]["seed"] + epoch).shuffle(order)
    return [samples[i] for i in order]


def rows_with_several(samples: list[dict], config: dict) -> tuple[int, int]:
    """The first epoch's packed rows, and how many hold more than one sample: what
    `attn_implementation: auto` decides by (rdft estimates it on the host; this is the count)."""
    rows = pack_rows(shuffled(samples, config, 0), config["data"]["max_length"])
    return len(rows), sum(len(row) > 1 for row in rows)


def collate_packed(rows: list[list[dict]], pad_id: int) -> dict:
    """Rows of samples as one micro-batch. Each row's tail padding gets positions from 0, which
    makes it a sample of its own with no targets: the real samples never attend to it and no
    attention mask is needed (one would switch off transformers' boundary detection)."""
    width = max(sum(len(s["input_ids"]) for s in row) for row in rows)
    input_ids, labels, positions = [], [], []
    for row in rows:
        ids, targets, pos = [], [], []
        for sample in row:
            ids += sample["input_ids"]
            # The first token of a sample is never a target: without this, the last token of
            # the previous sample would be trained to predict it.
            targets += [IGNORE, *sample["labels"][1:]]
            pos += range(len(sample["input_ids"]))
        pad = width - len(ids)
        input_ids.append(ids + [pad_id] * pad)
        labels.append(targets + [IGNORE] * pad)
        positions.append(pos + list(range(pad)))
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
        "num_tokens": sum(len(s["input_ids"]) for row in rows for s in row),  # padding excluded
    }


def collate_padded(samples: list[dict], pad_id: int) -> dict:
    width = max(len(s["input_ids"]) for s in samples)
    ids = torch.full((len(samples), width), pad_id)
    labels = torch.full((len(samples), width), IGNORE)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample["input_ids"])
        ids[row, :n] = torch.tensor(sample["input_ids"])
        labels[row, :n] = torch.tensor(sample["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "num_tokens": int(mask.sum())}


def epoch_batches(samples: list[dict], config: dict, epoch: int, pad_id: int) -> list[dict]:
    """The micro-batches of one epoch, identical on every process and every (re)start."""
    ordered = shuffled(samples, config, epoch)
    size = config["train"]["micro_batch_size"]
    if config["data"]["packing"]:
        return pack(ordered, config["data"]["max_length"], size, pad_id)
    return [collate_padded(ordered[i : i + size], pad_id) for i in range(0, len(ordered), size)]


# --- model ------------------------------------------------------------------------------------
def load_model(config: dict, accelerator):
    from transformers import AutoModelForCausalLM

    model_cfg, method = config["model"], config["method"]
    dtype = getattr(torch, model_cfg["dtype"])
    kwargs = {"dtype": dtype, "attn_implementation": model_cfg["attn_implementation"]}
    if method["type"] == "qlora":
        if not torch.cuda.is_available():
            raise SystemExit("sft: QLoRA needs a CUDA GPU (bitsandbytes 4-bit); use method.type: lora on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": accelerator.local_process_index}
    model = AutoModelForCausalLM.from_pretrained(model_cfg["path"], **kwargs)
    model.config.use_cache = False
    liger = False
    if config["train"]["liger"] != "off" and torch.cuda.is_available():
        try:
            from liger_kernel.transformers import _apply_liger_kernel_to_instance
        except ImportError:
            if config["train"]["liger"] == "on":
                raise SystemExit("sft: train.liger is on but liger-kernel is not installed in the train env") from None
        else:
            _apply_liger_kernel_to_instance(model=model)
            liger = True
    if config["train"]["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config["train"]["compile"]:
        # Regional compilation: every decoder layer has the same code, so one compilation serves
        # them all (seconds, not the minutes of compiling the whole model).
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                module.compile()
    if method["type"] in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if method["type"] == "qlora":
            # Its own checkpointing call would switch to the reentrant kind; keep the one set above.
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=config["train"]["gradient_checkpointing"],
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        lora = LoraConfig(
            r=method["lora_r"],
            lora_alpha=method["lora_alpha"],
            lora_dropout=method["lora_dropout"],
            target_modules=method["target_modules"],
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model, liger


def matmul_params(model) -> int:
    """Parameters that take part in matmuls (embedding lookup excluded), for FLOP counts."""
    total = 0
    for name, param in model.named_parameters():
        if param.dim() >= 2 and "embed_tokens" not in name:
            total += param.numel() * (2 if getattr(param, "quant_state", None) is not None else 1)
    return total


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def gpu_peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


# --- checkpoints ------------------------------------------------------------------------------
def latest_checkpoint(output: Path) -> Path | None:
    folder = output / "checkpoints"
    done = [p for p in folder.glob("step-*") if (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(accelerator, output: Path, state: dict, keep: int) -> None:
    folder = output / "checkpoints" / f"step-{state['step']}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        # Written last: a checkpoint without it is incomplete and never resumed from.
        (folder / "trainer_state.json").write_text(json.dumps(state))
        done = sorted(
            (p for p in folder.parent.glob("step-*") if (p / "trainer_state.json").is_file()),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# --- saving -----------------------------------------------------------------------------------
def save_final(accelerator, model, tokenizer, config: dict, output: Path) -> dict:
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)  # gathers ZeRO-3 shards as 16-bit weights
    lora = config["method"]["type"] in ("lora", "qlora")
    target = output / ("adapter" if lora else "model")
    unwrapped.save_pretrained(
        target,
        state_dict=state_dict,
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        safe_serialization=True,
    )
    if accelerator.is_main_process:
        tokenizer.save_pretrained(target)
        weights = list(target.glob("*.safetensors"))
        if not weights or all(w.stat().st_size < 64 for w in weights):
            raise SystemExit(f"sft: saved weights in {target} are empty; refusing to report success")
    accelerator.wait_for_everyone()
    return {"adapter_dir" if lora else "model_dir": str(target)}


def merge(config_path: Path) -> None:
    """Merge the adapter into the base model, in its own process (DeepSpeed state is not welcome)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = yaml.safe_load(config_path.read_text())
    output = Path(config["output"]["dir"])
    dtype = getattr(torch, config["model"]["dtype"])
    base = AutoModelForCausalLM.from_pretrained(config["model"]["path"], dtype=dtype)
    merged = PeftModel.from_pretrained(base, output / "adapter").merge_and_unload()
    merged.save_pretrained(output / "merged", safe_serialization=True)
    AutoTokenizer.from_pretrained(output / "adapter").save_pretrained(output / "merged")


# --- experiment tracking (train.report_to) ------------------------------------------------------
# The same as rl.py's (each recipe is self-contained). Credentials (WANDB_API_KEY,
# MLFLOW_TRACKING_PASSWORD, ...) are read from the environment by each library alone.
# metrics.jsonl's fields the trackers get, under the HF Trainer's names
TRACKED = {"loss": "loss", "lr": "learning_rate", "grad_norm": "grad_norm", "epoch": "epoch",
           "tokens_per_s": "tokens_per_s", "mfu": "mfu", "peak_memory_gib": "peak_memory_gib"}  # fmt: skip


def run_name(config: dict) -> str:
    """The trackers' name for the run: train.run_name, else the workspace folder and the method."""
    workspace = Path(config["output"]["dir"]).resolve().parent
    return config["train"].get("run_name") or f"{workspace.name}/{config['method']['type']}"


def flat_config(config: dict, prefix: str = "") -> dict:
    """The resolved config as `section.key` -> a number, bool or text: what every tracker takes."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return out


def mlflow_store(config: dict) -> str | None:
    """MLflow's store for this process, read by MLflow itself: MLFLOW_TRACKING_URI, else a SQLite
    store at train.mlflow_store (default output.dir/mlruns/mlflow.db). Returns where a new
    experiment keeps its artifacts: beside a local store (None: the server decides)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    store = Path(config["train"].get("mlflow_store") or Path(config["output"]["dir"]) / "mlruns" / "mlflow.db")
    store.parent.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store.resolve()}"
    return (store.resolve().parent / "artifacts").as_uri()


def mlflow_tags(config: dict, resumed_step: int | None) -> dict:
    """Tags that tell a training's run apart (the loop-level tracking logs the loops beside it); a
    resumed training is a run of its own, from its checkpoint's step."""
    tags = json.loads(os.environ.get("MLFLOW_TAGS") or "{}")
    workspace = Path(config["output"]["dir"]).resolve().parent
    tags.update({"rdft.role": "training", "rdft.workspace": str(workspace), "rdft.method": config["method"]["type"]})
    return {**tags, **({"rdft.resumed_from_step": str(resumed_step)} if resumed_step is not None else {})}


def tracker_objects(config: dict, output: Path, resumed_step: int | None) -> list:
    """accelerate's tracker of each tracker train.report_to names: what Accelerator(log_with=) takes."""
    from accelerate import tracking

    names = [name for name in config["train"]["report_to"] if name != "none"]
    name, out = run_name(config), []
    if "tensorboard" in names:  # output/tensorboard (a resumed run's writer hides what the
        # interrupted attempt logged after the checkpoint)
        purge = {"purge_step": resumed_step + 1} if resumed_step is not None else {}
        out.append(tracking.TensorBoardTracker("tensorboard", output, **purge))
    if "mlflow" in names:
        artifacts = mlflow_store(config)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "rdft"  # the loop-level tracking's too
        out.append(tracking.MLflowTracker(experiment, artifacts, tags=mlflow_tags(config, resumed_step), run_name=name))
    if "wandb" in names:
        out.append(tracking.WandBTracker(os.environ.get("WANDB_PROJECT") or "rdft", name=name))
    if "trackio" in names:
        out.append(tracking.TrackioTracker(os.environ.get("TRACKIO_PROJECT") or "rdft", name=name))
    return out


def log_values(accelerator, values: dict, step: int) -> None:
    """One logged step to every tracker, named as the HF Trainer names them (and rl.py's runs
    are): `train/<name>` in TensorBoard, wandb and trackio, `<name>` in MLflow."""
    values = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for tracker in accelerator.trackers:
        tracker.log(values if tracker.name == "mlflow" else {f"train/{k}": v for k, v in values.items()}, step=step)


def start_tracking(accelerator, config: dict) -> None:
    """Start the trackers' runs and log the resolved config: as parameters (MLflow), the run's
    config (wandb, trackio), and text (TensorBoard: its hyperparameters come with the final
    scores, where its HParams view compares them)."""
    if not accelerator.log_with:
        return
    accelerator.init_trackers(run_name(config))  # the runs start on the main process only
    if not accelerator.is_main_process:
        return
    values = flat_config(config)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            text = yaml.safe_dump(config, sort_keys=False)
            tracker.writer.add_text("rdft/config", "```yaml\n" + text + "```", 0)  # markdown: kept as written
        else:
            tracker.store_init_configuration(values)


def finish_tracking(accelerator, config: dict, final: dict, step: int, files: list[Path]) -> None:
    """The final scores (training's own: the loop's evaluation is logged by the loop), the
    resolved config with them in TensorBoard's HParams, and the run's files as MLflow artifacts."""
    if not accelerator.trackers:
        return
    final = {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    log_values(accelerator, final, step)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            metrics = {f"final/{k}": float(v) for k, v in final.items()}
            # run_name ".": in the run's own folder, not a sub-run of it
            tracker.writer.add_hparams(flat_config(config), metrics, run_name=".", global_step=step)
        elif tracker.name == "mlflow":
            import mlflow

            for path in files:
                if path.is_file():
                    mlflow.log_artifact(str(path))


# --- training: setup, fit, finish (torchtune's shape) ------------------------------------------
@dataclass
class Trainer:
    """What setup() builds and fit() and finish() use: the run's objects and its progress."""

    config: dict
    output: Path
    accelerator: Any
    tokenizer: Any
    samples: list[dict]
    data_stats: dict
    model: Any
    liger: bool  # Liger's kernels were applied
    trainable: list
    optimizer: Any
    scheduler: Any
    per_epoch: int  # micro-batches of one epoch on each process
    total_steps: int
    state: dict = field(default_factory=lambda: {"step": 0, "first_loss": None})  # what a checkpoint keeps
    resumed: Path | None = None


def setup(config: dict) -> Trainer:
    """The tokenizer, the samples (and the attention their packed rows call for), the model, the
    optimizer and schedule, and the latest checkpoint's state when resuming."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer, get_scheduler

    tcfg = config["train"]
    output = Path(config["output"]["dir"])
    resume = latest_checkpoint(output) if tcfg["resume"] else None
    resumed_step = json.loads((resume / "trainer_state.json").read_text())["step"] if resume else None
    # Under DeepSpeed the accumulation steps come from ds_config.json; accelerate refuses both.
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    accelerator = Accelerator(
        log_with=tracker_objects(config, output, resumed_step) or None,
        **({} if deepspeed else {"gradient_accumulation_steps": tcfg["gradient_accumulation_steps"]}),
    )
    if resumed_step is None and accelerator.is_main_process:  # a fresh run's events start empty
        shutil.rmtree(output / "tensorboard", ignore_errors=True)
    set_seed(tcfg["seed"])
    tokenizer = AutoTokenizer.from_pretrained(config["model"]["path"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    samples, data_stats = load_samples(config, tokenizer)
    if config["data"]["packing"]:
        data_stats["packed_rows"], data_stats["rows_with_several_samples"] = rows_with_several(samples, config)
    if config["model"]["attn_implementation"] == "auto":  # rdft resolves it; a config run by hand may not
        several = config["data"]["packing"] and data_stats["rows_with_several_samples"] > 0
        config["model"]["attn_implementation"] = "flex_attention" if several and torch.cuda.is_available() else "sdpa"
    model, liger = load_model(config, accelerator)
    trainable = [p for p in model.parameters() if p.requires_grad]

    world = accelerator.num_processes
    per_epoch = len(epoch_batches(samples, config, 0, tokenizer.pad_token_id)) // world
    if per_epoch == 0:
        raise SystemExit(f"sft: {len(samples)} samples make fewer micro-batches than processes ({world})")
    steps_per_epoch = max(per_epoch // tcfg["gradient_accumulation_steps"], 1)
    total_steps = tcfg["max_steps"] if tcfg["max_steps"] > 0 else steps_per_epoch * tcfg["epochs"]

    optimizer = torch.optim.AdamW(
        trainable, lr=tcfg["learning_rate"], weight_decay=tcfg["weight_decay"], fused=torch.cuda.is_available()
    )
    scheduler = get_scheduler(
        tcfg["lr_scheduler"],
        optimizer,
        num_warmup_steps=math.ceil(tcfg["warmup_ratio"] * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    trainer = Trainer(
        config=config,
        output=output,
        accelerator=accelerator,
        tokenizer=tokenizer,
        samples=samples,
        data_stats=data_stats,
        model=model,
        liger=liger,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=scheduler,
        per_epoch=per_epoch,
        total_steps=total_steps,
    )
    if resume:
        accelerator.load_state(str(resume))
        trainer.state = json.loads((resume / "trainer_state.json").read_text())
        trainer.resumed = resume
        accelerator.print(f"sft: resumed from {resume} at step {trainer.state['step']}")
    return trainer


def fit(trainer: Trainer) -> dict:
    """The optimizer steps, from the state setup() restored: a metrics line per logged step,
    checkpoints every `save_steps`. Returns the final loss, the tokens trained on and the time."""
    config, accelerator, model = trainer.config, trainer.accelerator, trainer.model
    tcfg, state, output = config["train"], trainer.state, trainer.output
    world, rank = accelerator.num_processes, accelerator.process_index
    accum = tcfg["gradient_accumulation_steps"]
    flops_per_token = (4 if config["method"]["type"] != "full" else 6) * matmul_params(model)
    peak_flops = gpu_peak_flops()
    metrics_path = output / "metrics.jsonl"
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        if not trainer.resumed:
            metrics_path.unlink(missing_ok=True)
        accelerator.print(
            f"sft: {trainer.data_stats['samples']} samples ({trainer.data_stats}), {trainer.total_steps} optimizer "
            f"steps, {world} process(es)"
        )
    metrics = open(metrics_path, "a", buffering=1) if accelerator.is_main_process else None
    start_tracking(accelerator, config)

    model.train()
    device = accelerator.device
    # PEFT keeps LoRA weights in fp32 next to a bf16 base: autocast runs their matmuls in bf16.
    # A full fine-tune trains the weights in their own dtype and needs none.
    autocast = torch.autocast(
        device.type,
        dtype=getattr(torch, config["model"]["dtype"]),
        enabled=device.type == "cuda" and config["method"]["type"] != "full" and config["model"]["dtype"] != "float32",
    )
    # The loss stays on the device until a step is logged: one host sync per logged step.
    window_loss, window_tokens, window_micro = torch.zeros((), device=device), 0, 0
    total_tokens, run_start, last = 0, time.perf_counter(), time.perf_counter()
    micro_done = state["step"] * accum
    final_loss, grad_norm = None, None
    # Without clipping (max_grad_norm 0) the norm is still measured: clipping at infinity scales by 1.
    max_norm = tcfg["max_grad_norm"] if tcfg["max_grad_norm"] > 0 else math.inf
    pad_id = trainer.tokenizer.pad_token_id
    while state["step"] < trainer.total_steps:
        epoch, offset = divmod(micro_done, trainer.per_epoch)
        batches = epoch_batches(trainer.samples, config, epoch, pad_id)[rank::world][: trainer.per_epoch]
        for batch in batches[offset:]:
            window_tokens += batch.pop("num_tokens")  # real (non-pad) tokens: what a user means by throughput
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with accelerator.accumulate(model):
                with autocast:
                    loss = model(**batch, use_cache=False).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:  # the norm stays on the device until a step is logged
                    grad_norm = accelerator.clip_grad_norm_(trainer.trainable, max_norm)
                trainer.optimizer.step()
                trainer.scheduler.step()
                trainer.optimizer.zero_grad()
            micro_done += 1
            window_loss += loss.detach().float()
            window_micro += 1
            if micro_done % accum:
                continue
            state["step"] += 1
            logged = state["step"] in (1, trainer.total_steps) or state["step"] % tcfg["logging_steps"] == 0
            if logged:  # the mean loss of the micro-batches since the last logged step
                step_loss = accelerator.reduce(window_loss / window_micro, "mean").item()
                step_tokens = int(accelerator.reduce(torch.tensor(window_tokens, device=device), "sum").item())
                now = time.perf_counter()
                total_tokens += step_tokens
                tokens_per_s = step_tokens / max(now - last, 1e-9)
                last = now
                state["first_loss"] = state["first_loss"] if state["first_loss"] is not None else step_loss
                final_loss = step_loss
                if metrics:
                    record = {
                        "step": state["step"],
                        "epoch": epoch,
                        "loss": round(step_loss, 6),
                        "lr": trainer.scheduler.get_last_lr()[0],
                        # under DeepSpeed the engine's own (it clips inside its step), when it has one
                        "grad_norm": round(float(grad_norm), 6) if grad_norm is not None else None,
                        "tokens": step_tokens,
                        "tokens_per_s": round(tokens_per_s, 2),
                        "mfu": round(flops_per_token * tokens_per_s / (peak_flops * world), 4) if peak_flops else None,
                        "peak_memory_gib": round(peak_memory_gib(), 3),
                        "total_steps": trainer.total_steps,
                    }
                    metrics.write(json.dumps(record) + "\n")
                    tracked = {name: record[key] for key, name in TRACKED.items() if record[key] is not None}
                    log_values(accelerator, tracked, state["step"])
                window_loss, window_tokens, window_micro = torch.zeros((), device=device), 0, 0
            save_every = tcfg["save_steps"]
            if save_every > 0 and state["step"] % save_every == 0 and state["step"] < trainer.total_steps:
                save_checkpoint(accelerator, output, state, tcfg["save_total_limit"])
            if state["step"] >= trainer.total_steps:
                break
    if metrics:
        metrics.close()
    return {"final_loss": final_loss, "tokens": total_tokens, "runtime": time.perf_counter() - run_start}


def finish(trainer: Trainer, fitted: dict, config_path: Path) -> None:
    """The final weights (and merged ones on request), then result.json, written last: a run
    that reports success has its weights on disk."""
    accelerator, config, output = trainer.accelerator, trainer.config, trainer.output
    state = trainer.state
    result = {"steps": state["step"], "first_loss": state["first_loss"], "final_loss": fitted["final_loss"]}
    if config["train"]["compile"]:
        # graphs torch.compile really compiled (0: it fell back to eager; on a GPU flex_attention adds its own)
        result["compiled_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    result.update(save_final(accelerator, trainer.model, trainer.tokenizer, config, output))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if config["output"]["merge"] and "adapter_dir" in result:
            subprocess.run([sys.executable, __file__, "--config", str(config_path), "--merge-only"], check=True)
            result["merged_dir"] = str(output / "merged")
        result.update(
            {
                "tokens_per_s": round(fitted["tokens"] / max(fitted["runtime"], 1e-9), 2),
                "peak_memory_gib": round(peak_memory_gib(), 3),
                "runtime_s": round(fitted["runtime"], 2),
                "processes": accelerator.num_processes,
                "attention": config["model"]["attn_implementation"],
                "liger": trainer.liger,
                "data": trainer.data_stats,
            }
        )
        tmp = output / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, output / "result.json")
        final = {
            "first_loss": result["first_loss"],
            "final_loss": result["final_loss"],
            "train_runtime": result["runtime_s"],
            "train_tokens_per_s": result["tokens_per_s"],
            "train_peak_memory_gib": result["peak_memory_gib"],
        }
        files = [config_path, output / "metrics.jsonl", output / "result.json"]
        try:
            finish_tracking(accelerator, config, final, state["step"], files)
        except Exception as error:  # the weights and result.json are saved: the training did not fail
            accelerator.print(f"sft: warning: the trackers missed the final scores: {type(error).__name__}: {error}")
        accelerator.print(f"sft: done: {json.dumps(result)}")
    accelerator.end_training()  # ends the trackers' runs too


def train(config: dict, config_path: Path) -> None:
    trainer = setup(config)
    finish(trainer, fit(trainer), config_path)


def main() -> None:
    parser = argparse.ArgumentParser(description="Supervised fine-tuning (full, LoRA, QLoRA).")
    parser.add_argument("--config", type=Path, required=True, help="The resolved config (train.resolved.yaml).")
    parser.add_argument("--merge-only", action="store_true", help="Only merge output/adapter into output/merged.")
    args = parser.parse_args()
    if args.merge_only:
        merge(args.config)
        return
    train(yaml.safe_load(args.config.read_text()), args.config)


if __name__ == "__main__":
    main()
