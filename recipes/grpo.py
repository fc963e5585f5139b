"""GRPO (group relative policy optimisation) of a causal LM with TRL's GRPOTrainer: answers
sampled for each prompt, rewarded, and each answer's advantage taken against its own group.

Self-contained: runs inside the `train` env (one process, or several through `accelerate
launch` with ddp) and imports nothing from rdft.

    python recipes/grpo.py --config train.resolved.yaml

The config is the fully resolved YAML that `rdft train` writes; `reward.json` beside it says
what rewards:
- `{"family", "tasks_dir", "entry"}`: the benchmark's own scorer — its family module
  (evaluation/tasks/<family>/utils.py, loaded from the file, never copied) scores each answer
  against its row's `doc` exactly as evaluation does (`score`, then `primary` of that one item:
  an unreadable answer is 0);
- `{"file": "reward.py"}`: the user's `reward(prompts, completions, **columns) -> list[float]`.

The data is JSONL of prompt rows: `prompt` (the user turn as text, or chat messages) and `doc`
(the benchmark row its answers are scored against). What it writes:
- a metrics JSONL per logged step: loss, lr, the reward's mean and std, the KL to the starting
  model (rl.beta > 0), the answers' mean length, and the share of prompts whose answers all got
  the same reward (no learning signal);
- checkpoints every `train.save_steps` with resume from the latest one, and `result.json` last;
- the adapter (rl.weights lora) or the whole model; merged weights when `model.adapter` (a
  parent's adapter, merged before training) or `output.merge` asks, since the new adapter is
  relative to the merged weights.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
import yaml


# --- data and reward --------------------------------------------------------------------------
def read_prompts(path: Path) -> list[dict]:
    """Prompt rows, the doc kept as JSON text (Arrow would merge the docs' differing fields)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            prompt = row["prompt"]
            if isinstance(prompt, str):  # a user turn: the chat template renders it, as scoring does
                prompt = [{"role": "user", "content": prompt}]
            rows.append({"prompt": prompt, "doc": json.dumps(row.get("doc") or {}, ensure_ascii=False)})
    if not rows:
        raise SystemExit(f"grpo: {path} holds no prompt rows")
    return rows


def answer_text(completion) -> str:
    """A sampled answer's text (TRL gives chat completions as a list of messages)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def benchmark_reward(spec: dict):
    """The benchmark's own scorer as a reward: per answer, its family's `score` of that answer
    against the row's doc, then `primary` over that one item (None, e.g. an unavailable
    oracle, is 0)."""
    tasks = spec["tasks_dir"]
    if tasks not in sys.path:
        sys.path.insert(0, tasks)  # the scorers import `answers` from there
    loaded = importlib.util.spec_from_file_location(
        f"rdft_reward_{spec['family']}", Path(tasks) / spec["family"] / "utils.py"
    )
    family = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(family)
    entry = spec["entry"]

    def reward(prompts, completions, doc, **_):
        values = []
        for completion, raw in zip(completions, doc, strict=True):
            item = family.score(entry, json.loads(raw), [answer_text(completion)])
            value = family.primary(entry, [item])
            values.append(float(value) if value is not None else 0.0)
        return values

    reward.__name__ = f"{spec['benchmark']}_score"  # TRL logs rewards/<name>
    return reward


def user_reward(path: Path):
    loaded = importlib.util.spec_from_file_location("rdft_user_reward", path)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)

    def reward(prompts, completions, doc, **columns):
        docs = [json.loads(raw) for raw in doc]
        texts = [answer_text(completion) for completion in completions]
        return [float(v) for v in module.reward(prompts=prompts, completions=texts, doc=docs, **columns)]

    reward.__name__ = "user_reward"
    return reward


def load_reward(config_path: Path):
    spec = json.loads((config_path.parent / "reward.json").read_text())
    if "file" in spec:
        return user_reward(config_path.parent / spec["file"])
    return benchmark_reward(spec)


# --- model ------------------------------------------------------------------------------------
def load_model(config: dict):
    """The starting weights: model.path, with model.adapter (a parent's LoRA) merged in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_cfg = config["model"]
    dtype = getattr(torch, model_cfg["dtype"])
    model = AutoModelForCausalLM.from_pretrained(
        model_cfg["path"], dtype=dtype, attn_implementation=model_cfg["attn_implementation"]
    )
    if model_cfg.get("adapter"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_cfg["adapter"]).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(model_cfg["adapter"] or model_cfg["path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues the prompt's end
    return model, tokenizer


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if folder.is_dir() else []
    return found[-1] if found else None


# --- training ---------------------------------------------------------------------------------
def metrics_callback(path: Path, first: dict):
    """A TrainerCallback that writes rdft's metrics JSONL from TRL's logs (the main process only)."""
    from transformers import TrainerCallback

    class Metrics(TrainerCallback):
        def __init__(self):
            self.last, self.tokens = time.perf_counter(), None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return  # the end-of-training summary has no reward
            now, tokens = time.perf_counter(), logs.get("num_tokens")
            seen = tokens - self.tokens if tokens is not None and self.tokens is not None else tokens
            record = {
                "step": state.global_step,
                "total_steps": state.max_steps,
                "loss": round(float(logs.get("loss", 0.0)), 6),
                "lr": logs.get("learning_rate"),
                "reward_mean": round(float(logs["reward"]), 6),
                "reward_std": round(float(logs.get("reward_std", 0.0)), 6),
                "kl": logs.get("kl"),
                "completion_length": logs.get("completions/mean_length"),
                "same_reward_share": logs.get("frac_reward_zero_std"),
                "tokens_per_s": round((seen or 0) / max(now - self.last, 1e-9), 2),
                "peak_memory_gib": round(peak_memory_gib(), 3),
            }
            self.last, self.tokens = now, tokens
            first.setdefault("loss", record["loss"])
            first.setdefault("reward", record["reward_mean"])
            first["final_loss"], first["final_reward"] = record["loss"], record["reward_mean"]
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    return Metrics()


def train(config: dict, config_path: Path) -> None:
    import datasets
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    rl, tcfg, output = config["rl"], config["train"], Path(config["output"]["dir"])
    output.mkdir(parents=True, exist_ok=True)
    checkpoints = output / "checkpoints"
    resume = latest_checkpoint(checkpoints) if tcfg["resume"] else None
    metrics_path = output / "metrics.jsonl"
    if resume is None:
        metrics_path.unlink(missing_ok=True)  # a fresh run: no lines of an earlier attempt
    rows = read_prompts(Path(config["data"]["path"]))
    model, tokenizer = load_model(config)
    cuda = torch.cuda.is_available()
    lora = rl["weights"] == "lora"
    peft_config = None
    if lora:
        method = config["method"]
        peft_config = LoraConfig(
            r=method["lora_r"],
            lora_alpha=method["lora_alpha"],
            lora_dropout=method["lora_dropout"],
            target_modules=method["target_modules"],
            task_type="CAUSAL_LM",
        )
    args = GRPOConfig(
        output_dir=str(checkpoints),
        num_generations=rl["num_generations"],
        max_completion_length=rl["max_completion_length"],
        temperature=rl["temperature"],
        beta=rl["beta"],
        learning_rate=rl["learning_rate"],
        # train.micro_batch_size prompts a step, each with its group of answers
        per_device_train_batch_size=tcfg["micro_batch_size"] * rl["num_generations"],
        gradient_accumulation_steps=tcfg["gradient_accumulation_steps"],
        num_train_epochs=tcfg["epochs"],
        max_steps=tcfg["max_steps"],
        lr_scheduler_type=tcfg["lr_scheduler"],
        warmup_steps=tcfg["warmup_ratio"],  # transformers 5: a float below 1 is a share of the steps
        weight_decay=tcfg["weight_decay"],
        max_grad_norm=tcfg["max_grad_norm"],
        gradient_checkpointing=bool(tcfg["gradient_checkpointing"]),
        seed=tcfg["seed"],
        logging_steps=tcfg["logging_steps"],
        save_strategy="steps" if tcfg["save_steps"] > 0 else "no",
        save_steps=max(tcfg["save_steps"], 1),
        save_total_limit=tcfg["save_total_limit"],
        bf16=cuda and config["model"]["dtype"] == "bfloat16",
        fp16=cuda and config["model"]["dtype"] == "float16",
        use_cpu=not cuda,
        report_to="none",
        disable_tqdm=True,
    )
    first: dict = {}
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[load_reward(config_path)],
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[metrics_callback(metrics_path, first)],
    )
    start = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start
    if not trainer.is_world_process_zero():
        return
    result = {
        "method": "grpo",
        "weights": rl["weights"],
        "steps": trainer.state.global_step,
        "first_loss": first.get("loss"),
        "final_loss": first.get("final_loss"),
        "first_reward": first.get("reward"),
        "final_reward": first.get("final_reward"),
        "train_loss": outcome.training_loss,
        "resumed_from": str(resume) if resume else None,
        "runtime_s": round(runtime, 2),
        "peak_memory_gib": round(peak_memory_gib(), 3),
        "processes": trainer.accelerator.num_processes,
        "attention": config["model"]["attn_implementation"],
        "data": {"prompts": len(rows)},
    }
    target = output / ("adapter" if lora else "model")
    trainer.model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    result["adapter_dir" if lora else "model_dir"] = str(target)
    if lora and (config["model"].get("adapter") or config["output"]["merge"]):
        # The new adapter is relative to the merged starting weights: what scores is the merge.
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(output / "merged", safe_serialization=True)
        tokenizer.save_pretrained(output / "merged")
        result["merged_dir"] = str(output / "merged")
    tmp = output / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, output / "result.json")
    print(f"grpo: done: {json.dumps(result)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="GRPO with the benchmark's scorer (or your function) as the reward.")
    parser.add_argument("--config", type=Path, required=True, help="The resolved config (train.resolved.yaml).")
    args = parser.parse_args()
    train(yaml.safe_load(args.config.read_text()), args.config)


if __name__ == "__main__":
    main()
