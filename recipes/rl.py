"""Learning from the model's own answers, scored by the benchmark's scorer (or your function):

- GRPO (group relative policy optimisation, TRL's GRPOTrainer): answers sampled for each prompt
  as it trains, rewarded, and each answer's advantage taken against its own group; sampled by
  the trainer's generate, or (rl.generation vllm) by a vLLM server that loads the adapter after
  each optimizer step;
- DPO (direct preference optimisation, TRL's DPOTrainer): answers sampled once from the starting
  model (transformers' generate), scored, and for each prompt whose answers scored differently a
  pair: a best-scored answer as chosen, a worst-scored one as rejected (for a right/wrong scorer,
  one it accepts and one it rejects). The pairs are what it trains on.

Self-contained: runs inside the `train` env (one process, or several through `accelerate
launch` with ddp) and imports nothing from rdft.

    python recipes/rl.py --config train.resolved.yaml

The config is the fully resolved YAML that `rdft train` writes (method.type grpo or dpo);
`reward.json` beside it says what rewards:
- `{"family", "tasks_dir", "entry"}`: the benchmark's own scorer — its family module
  (evaluation/tasks/<family>/utils.py, loaded from the file, never copied) scores each answer
  against its row's `doc` exactly as evaluation does (`score`, then `primary` of that one item:
  an unreadable answer is 0);
- `{"file": "reward.py"}`: the user's `reward(prompts, completions, **columns) -> list[float]`.

The data is JSONL of prompt rows: `prompt` (the user turn as text, or chat messages) and `doc`
(the benchmark row its answers are scored against). What it writes:
- a metrics JSONL per logged step: loss, lr, and GRPO's reward mean and std, KL to the starting
  model (rl.beta > 0), the answers' mean length and the share of prompts whose answers all got
  the same reward (no learning signal); DPO's chosen-over-rejected reward margin and accuracy;
- DPO: `pairs.jsonl` (each pair with its answers' scores) and the pair-building counts, in
  result.json and in the workspace's data_stats.json under `dpo_pairs`;
- checkpoints every `train.save_steps` with resume from the latest one (DPO reuses its pairs),
  and `result.json` last;
- the trackers of `train.report_to` through the trainer's own integrations (its `report_to`;
  TensorBoard's writer on output/tensorboard), which log what the trainer logs (loss, learning
  rate, grad norm, the RL metrics) and rdft's tokens/s and peak memory, added to its logs; the
  resolved config, and at the end the final scores and (MLflow) the run's files;
- the adapter (rl.weights lora) or the whole model; merged weights when `model.adapter` (a
  parent's adapter, merged before training) or `output.merge` asks, since the new adapter is
  relative to the merged weights.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import numbers
import os
import resource
import shutil
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
        raise SystemExit(f"rl: {path} holds no prompt rows")
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
        return module.reward(prompts=prompts, completions=texts, doc=docs, **columns)

    reward.__name__ = "user_reward"
    return reward


def load_reward(config_path: Path, rows: list[dict]):
    """The reward, loaded and called once on the first prompt's row with two answers before
    anything trains: a file that does not load, or a reward that fails or returns anything but
    one finite number per answer, stops the run in one line."""
    spec = json.loads((config_path.parent / "reward.json").read_text())
    name = f"rl.reward ({spec['file']})" if "file" in spec else f"{spec['benchmark']}'s scorer"
    try:
        reward = user_reward(config_path.parent / spec["file"]) if "file" in spec else benchmark_reward(spec)
    except Exception as error:  # whatever the user's module raises on import
        raise SystemExit(f"rl: {name} does not load: {type(error).__name__}: {error}; fix it") from None
    answers = ["", "\\boxed{}"]
    try:
        finite_numbers(reward([rows[0]["prompt"]] * 2, answers, [rows[0]["doc"]] * 2), 2, name)
    except SystemExit:
        raise
    except Exception as error:
        raise SystemExit(
            f"rl: {name} failed on two answers to the first prompt: {type(error).__name__}: {error}; fix it"
        ) from None

    def checked(prompts, completions, doc, **columns):
        return finite_numbers(reward(prompts, completions, doc, **columns), len(completions), name)

    checked.__name__ = reward.__name__  # TRL logs rewards/<name>
    return checked


def finite_numbers(values, n: int, name: str) -> list[float]:
    """One finite number per answer (NumPy's and torch's too), or the run stops in one line."""
    if hasattr(values, "tolist"):  # an array or a tensor
        values = values.tolist()
    if isinstance(values, (list, tuple)) and len(values) == n:
        if all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
            return [float(v) for v in values]
    raise SystemExit(
        f"rl: {name} returned {repr(values)[:200]} for {n} answers; reward(prompts, completions, **columns) must "
        "return one finite number per completion"
    )


# --- model ------------------------------------------------------------------------------------
def load_tokenizer(config: dict):
    """The tokenizer of the starting weights (the parent adapter's, which may add a template)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config["model"]["adapter"] or config["model"]["path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues the prompt's end
    return tokenizer


def load_model(config: dict):
    """The starting weights: model.path, with model.adapter (a parent's LoRA) merged in."""
    from transformers import AutoModelForCausalLM

    model_cfg = config["model"]
    dtype = getattr(torch, model_cfg["dtype"])
    model = AutoModelForCausalLM.from_pretrained(
        model_cfg["path"], dtype=dtype, attn_implementation=model_cfg["attn_implementation"]
    )
    if model_cfg.get("adapter"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_cfg["adapter"]).merge_and_unload()
    return model, load_tokenizer(config)


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if folder.is_dir() else []
    return found[-1] if found else None


# --- shared training pieces ------------------------------------------------------------------
def lora_config(config: dict):
    """rl.weights lora: the adapter method.lora_* describes; None trains every weight."""
    from peft import LoraConfig

    if config["rl"]["weights"] != "lora":
        return None
    method = config["method"]
    return LoraConfig(
        r=method["lora_r"],
        lora_alpha=method["lora_alpha"],
        lora_dropout=method["lora_dropout"],
        target_modules=method["target_modules"],
        task_type="CAUSAL_LM",
    )


def common_args(config: dict, checkpoints: Path, cuda: bool) -> dict:
    """The TrainingArguments both trainers take from train.* (and rl.learning_rate)."""
    tcfg = config["train"]
    return {
        "output_dir": str(checkpoints),
        "learning_rate": config["rl"]["learning_rate"],
        "gradient_accumulation_steps": tcfg["gradient_accumulation_steps"],
        "num_train_epochs": tcfg["epochs"],
        "max_steps": tcfg["max_steps"],
        "lr_scheduler_type": tcfg["lr_scheduler"],
        "warmup_steps": tcfg["warmup_ratio"],  # transformers 5: a float below 1 is a share of the steps
        "weight_decay": tcfg["weight_decay"],
        "max_grad_norm": tcfg["max_grad_norm"],
        "gradient_checkpointing": bool(tcfg["gradient_checkpointing"]),
        "seed": tcfg["seed"],
        "logging_steps": tcfg["logging_steps"],
        "save_strategy": "steps" if tcfg["save_steps"] > 0 else "no",
        "save_steps": max(tcfg["save_steps"], 1),
        "save_total_limit": tcfg["save_total_limit"],
        "bf16": cuda and config["model"]["dtype"] == "bfloat16",
        "fp16": cuda and config["model"]["dtype"] == "float16",
        "use_cpu": not cuda,
        # TensorBoard's callback is given its writer instead (tracking_callbacks)
        "report_to": [name for name in tcfg["report_to"] if name not in ("none", "tensorboard")] or "none",
        "run_name": run_name(config),
        "project": os.environ.get("TRACKIO_PROJECT") or "rdft",  # trackio's project
        "disable_tqdm": True,
    }


def metrics_callback(path: Path, first: dict, record_of, config: dict, writer):
    """A TrainerCallback that writes rdft's metrics JSONL from the trainer's logs (the main
    process only); `record_of(logs)` gives the method's own fields, or None for a log line
    that is not a training step's (the end-of-training summary). It runs before the trackers'
    callbacks (tracking_callbacks puts it first): the tokens/s and peak memory it adds to a
    step's logs, and the final scores it adds to the summary, reach every tracker. `writer`:
    TensorBoard's, for the resolved config (text, then HParams with the final scores)."""
    from transformers import TrainerCallback

    class Metrics(TrainerCallback):
        def __init__(self):
            self.last, self.tokens, self.started, self.final = time.perf_counter(), None, False, {}

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.started and state.is_world_process_zero:  # every tracker's run has started
                self.started = True
                first["mlflow_run_id"] = start_tracking(config, writer)

        def on_log(self, args, state, control, logs=None, **kwargs):
            fields = record_of(logs) if state.is_world_process_zero and logs else None
            if fields is None:
                if state.is_world_process_zero and logs and "train_runtime" in logs:  # the summary
                    logs.update(final_scores(first, logs, self.tokens))
                    self.final = {k: logs[k] for k in FINAL if isinstance(logs.get(k), (int, float))}
                return
            now, tokens = time.perf_counter(), logs.get("num_tokens")
            seen = tokens - self.tokens if tokens is not None and self.tokens is not None else tokens
            record = {
                "step": state.global_step,
                "total_steps": state.max_steps,
                "loss": round(float(logs.get("loss", 0.0)), 6),
                "lr": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
                **fields,
                "tokens_per_s": round((seen or 0) / max(now - self.last, 1e-9), 2),
                "peak_memory_gib": round(peak_memory_gib(), 3),
            }
            self.last, self.tokens = now, tokens
            logs["tokens_per_s"], logs["peak_memory_gib"] = record["tokens_per_s"], record["peak_memory_gib"]
            first.setdefault("loss", record["loss"])
            first["final_loss"] = record["loss"]
            if "reward_mean" in record:
                first.setdefault("reward", record["reward_mean"])
                first["final_reward"] = record["reward_mean"]
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero and writer is not None:  # before its callback closes it
                metrics = {f"final/{k}": float(v) for k, v in self.final.items()}
                # run_name ".": in the run's own folder, not a sub-run of it
                writer.add_hparams(flat_config(config), metrics, run_name=".", global_step=state.global_step)

    return Metrics()


# --- experiment tracking (train.report_to) ------------------------------------------------------
# As in sft.py (each recipe is self-contained). Credentials (WANDB_API_KEY,
# MLFLOW_TRACKING_PASSWORD, ...) are read from the environment by each library alone.
# The final scores added to the trainer's end-of-training summary (beside its train_runtime, train_loss).
FINAL = ("first_loss", "final_loss", "train_loss", "first_reward", "final_reward", "train_runtime",
         "train_tokens_per_s", "train_peak_memory_gib")  # fmt: skip


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


def prepare_trackers(config: dict, output: Path, resume: Path | None):
    """What the trainer's integrations read from the environment, set for this process (the main
    one: the others log nothing), and TensorBoard's writer (None: not asked for). MLflow's
    experiment (MLFLOW_EXPERIMENT_NAME, else rdft, as the loop-level tracking's) is created here
    when missing, so that its artifacts stay beside a local store."""
    from accelerate import PartialState

    names = config["train"]["report_to"]
    if not PartialState().is_main_process:
        return None
    writer, step = None, int(resume.name.split("-")[-1]) if resume else None
    if "tensorboard" in names:
        from torch.utils.tensorboard import SummaryWriter

        folder = output / "tensorboard"
        if step is None:
            shutil.rmtree(folder, ignore_errors=True)
        # a resumed run hides what the interrupted attempt logged after the checkpoint
        writer = SummaryWriter(str(folder), purge_step=step + 1 if step is not None else None)
    if "mlflow" in names:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        artifacts = mlflow_store(config)
        experiment = os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "rdft")
        os.environ["MLFLOW_TAGS"] = json.dumps(mlflow_tags(config, step))
        client = MlflowClient()
        if client.get_experiment_by_name(experiment) is None:
            try:
                client.create_experiment(experiment, artifact_location=artifacts)
            except MlflowException:  # another process created it meanwhile
                pass
    if "wandb" in names:
        os.environ.setdefault("WANDB_PROJECT", "rdft")
    return writer


def tracking_callbacks(trainer, metrics, writer) -> None:
    """rdft's metrics callback first, before the trackers' (it adds to the logs they read), and
    TensorBoard's own callback with rdft's writer."""
    trainer.callback_handler.callbacks.insert(0, metrics)
    if writer is not None:
        from transformers.integrations import TensorBoardCallback

        trainer.add_callback(TensorBoardCallback(tb_writer=writer))


def start_tracking(config: dict, writer) -> str | None:
    """The resolved config, once every tracker's run has started: as parameters (MLflow, beside
    the trainer's arguments it logs itself), the run's config (wandb, trackio), and text
    (TensorBoard, whose HParams get it with the final scores). Returns MLflow's run id."""
    names, values, run_id = config["train"]["report_to"], flat_config(config), None
    if writer is not None:
        writer.add_text("rdft/config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)
    run = None
    if "mlflow" in names:
        import mlflow

        run = mlflow.active_run()  # the trainer's (none: its integration is switched off)
    if run is not None:
        items = list(values.items())
        for at in range(0, len(items), 100):  # MLflow takes at most 100 parameters a call
            mlflow.log_params(dict(items[at : at + 100]))
        run_id = run.info.run_id
    if "wandb" in names:
        import wandb

        wandb.config.update(values, allow_val_change=True)
    if "trackio" in names:
        import trackio

        trackio.config.update(values, allow_val_change=True)
    return run_id


def final_scores(first: dict, summary: dict, tokens) -> dict:
    """Training's final scores, for the trainer's end-of-training summary (the loop's evaluation
    scores are logged by the loop-level tracking)."""
    runtime = summary.get("train_runtime")
    scores = {
        "first_loss": first.get("loss"),
        "final_loss": first.get("final_loss"),
        "first_reward": first.get("reward"),
        "final_reward": first.get("final_reward"),
        "train_tokens_per_s": round(tokens / runtime, 2) if tokens and runtime else None,
        "train_peak_memory_gib": round(peak_memory_gib(), 3),
    }
    return {k: v for k, v in scores.items() if v is not None}


def log_artifacts(config_path: Path, output: Path, config: dict, run_id: str | None) -> None:
    """The run's files as MLflow artifacts, once result.json is written (the run has ended:
    logged by its id)."""
    if run_id is None or "mlflow" not in config["train"]["report_to"]:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for path in (config_path, output / "metrics.jsonl", output / "result.json"):
        if path.is_file():
            client.log_artifact(run_id, str(path))


def grpo_record(logs: dict) -> dict | None:
    if "reward" not in logs:  # the end-of-training summary has no reward
        return None
    return {
        "reward_mean": round(float(logs["reward"]), 6),
        "reward_std": round(float(logs.get("reward_std", 0.0)), 6),
        "kl": logs.get("kl"),
        "completion_length": logs.get("completions/mean_length"),
        "same_reward_share": logs.get("frac_reward_zero_std"),
    }


def dpo_record(logs: dict) -> dict | None:
    if "rewards/margins" not in logs:  # the end-of-training summary has no margins
        return None
    # DPO's "rewards" are β·log(π/π_ref) of an answer, not the scorer's: named as what they are.
    return {
        "chosen_margin": round(float(logs["rewards/margins"]), 6),
        "chosen_preferred_share": logs.get("rewards/accuracies"),
        "logp_chosen": logs.get("logps/chosen"),
        "logp_rejected": logs.get("logps/rejected"),
    }


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def finish(trainer, config: dict, tokenizer, output: Path, result: dict) -> None:
    """Save what trained (adapter or model, and the merge where it is asked or needed) and
    result.json last: its presence says the run is complete."""
    lora = config["rl"]["weights"] == "lora"
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
    write_atomic(output / "result.json", json.dumps(result, indent=2))
    print(f"{result['method']}: done: {json.dumps(result)}", flush=True)


def train_and_save(
    trainer, config: dict, config_path: Path, tokenizer, output: Path, first: dict, resume: Path | None, data: dict
):
    """Train (from `resume` when given), then, on the main process, save and write result.json
    (and give MLflow the run's files)."""
    began = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - began
    if not trainer.is_world_process_zero():
        return
    result = {
        "method": config["method"]["type"],
        "weights": config["rl"]["weights"],
        "steps": trainer.state.global_step,
        "first_loss": first.get("loss"),
        "final_loss": first.get("final_loss"),
        "first_reward": first.get("reward"),  # GRPO's; DPO has no reward as it trains
        "final_reward": first.get("final_reward"),
        "train_loss": outcome.training_loss,
        "resumed_from": str(resume) if resume else None,
        "runtime_s": round(runtime, 2),
        "peak_memory_gib": round(peak_memory_gib(), 3),
        "processes": trainer.accelerator.num_processes,
        "attention": config["model"]["attn_implementation"],
        "data": data,
    }
    finish(trainer, config, tokenizer, output, result)
    try:
        log_artifacts(config_path, output, config, first.get("mlflow_run_id"))
    except Exception as error:  # the weights and result.json are saved: the training did not fail
        print(f"{result['method']}: warning: MLflow did not take the run's files: {type(error).__name__}: {error}")


def start(config: dict) -> tuple[Path, Path, Path | None, Path]:
    """The output folder, its checkpoints, the checkpoint to resume from, the metrics file."""
    output = Path(config["output"]["dir"])
    output.mkdir(parents=True, exist_ok=True)
    checkpoints = output / "checkpoints"
    resume = latest_checkpoint(checkpoints) if config["train"]["resume"] else None
    metrics_path = output / "metrics.jsonl"
    if resume is None:
        metrics_path.unlink(missing_ok=True)  # a fresh run: no lines of an earlier attempt
    return output, checkpoints, resume, metrics_path


# --- vLLM generation (rl.generation vllm) ----------------------------------------------------------
# GRPO's answers sampled by vLLM's OpenAI-compatible server, over HTTP. The LoRA being trained
# reaches it as a file after each optimizer step (vLLM's runtime LoRA loading), so this env needs
# no vLLM: TRL's own server mode imports vLLM in the trainer for its NCCL weight transfer, and
# vLLM pins a torch of its own, not the train env's. Only the main process saves and loads the
# adapter; every process samples its own prompts.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


class ServerError(SystemExit):
    """An HTTP error status from the server: the run stops in one line unless it is expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def http_json(url: str, body: dict | None = None, timeout: float = 600.0) -> dict:
    """GET (no body) or POST JSON; the answer's JSON. An HTTP error, or a server that does not
    answer, stops the run in one line."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read().decode() or "{}"
    except urllib.error.HTTPError as error:
        detail = " ".join(error.read().decode(errors="replace").split())[:300]
        raise ServerError(error.code, f"rl: vLLM's server answered {error.code} to {url}: {detail}") from None
    except OSError as error:  # refused, reset, timed out: the server died or is not there
        raise SystemExit(
            f"rl: vLLM's server did not answer {url} ({error}); see output/vllm.log if rdft started it, "
            "or check that it runs"
        ) from None
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text}  # vLLM answers some endpoints with plain text


class VLLMServer:
    """The vLLM server GRPO samples from: started here (rl.vllm_command, at rl.vllm_server_url's
    port) or already running (rl.vllm_server_url alone), stopped at the end if started here."""

    def __init__(self, config: dict, output: Path):
        rl = config["rl"]
        self.url = rl["vllm_server_url"].rstrip("/")
        self.config, self.output, self.process, self.log = config, output, None, output / "vllm.log"
        self.served = self.name = None  # the start weights' name on the server; the adapter being sampled
        self.step, self.adapters = None, output / "vllm-adapters"
        # Adapter names of this output folder's own (a shared server may serve other runs too),
        # the same in every process.
        self.prefix = "rdft-" + hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:8]

    # the server -------------------------------------------------------------------------------
    def launch(self, model_dir: str, max_model_len: int) -> None:
        """Start the server on the main process (its output in vllm.log), when rl.vllm_command
        asks for one; `ready` waits for it. It stays in the training's process group: whatever
        stops the training stops it too."""
        import subprocess
        from urllib.parse import urlparse

        from accelerate import PartialState

        rl, address = self.config["rl"], urlparse(self.url)
        if rl["vllm_command"] and PartialState().is_main_process:
            rank = next((r for r in LORA_RANKS if r >= self.config["method"]["lora_r"]), LORA_RANKS[-1])
            training = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
            shared = rl["vllm_gpu"] is None or str(rl["vllm_gpu"]) in training
            memory = rl["vllm_memory"] if shared else 0.9  # a GPU of its own: most of it
            argv = [*rl["vllm_command"], model_dir, "--host", address.hostname or "127.0.0.1",
                    "--port", str(address.port or 8000), "--served-model-name", "start", "--enable-lora",
                    "--max-lora-rank", str(rank), "--max-loras", "2", "--gpu-memory-utilization", str(memory),
                    "--max-model-len", str(max_model_len), "--dtype", self.config["model"]["dtype"],
                    "--seed", str(self.config["train"]["seed"])]  # fmt: skip
            env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
            if rl["vllm_gpu"] is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(rl["vllm_gpu"])
            print(f"rl: starting vLLM's server: {' '.join(argv)} (log: {self.log})", flush=True)
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def ready(self) -> None:
        """On every process, wait until the server answers: one that exits first stops the run in
        one line with its last line of output."""
        self.wait(float(os.environ.get("RDFT_VLLM_START_TIMEOUT", "900")))
        self.served = self.name = http_json(f"{self.url}/v1/models")["data"][0]["id"]
        if self.config["rl"]["vllm_command"] and self.served != "start":  # another server took the port first
            raise SystemExit(f"rl: {self.url} is another server's (it serves {self.served}); run again")

    def wait(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
                last = lines[-1] if lines else "(no output)"
                raise SystemExit(
                    f"rl: vLLM's server exited ({self.process.returncode}) before it answered: {last}; "
                    f"see {self.log}, or set rl.generation: transformers"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                where = self.log if self.process is not None else "whether it runs"
                raise SystemExit(f"rl: vLLM's server at {self.url} did not answer within {timeout:g} s; see {where}")
            time.sleep(1.0)

    def stop(self) -> None:
        """The main process stops the server it started, or has a running one drop the adapter
        left loaded; then the adapters' files go (the trained one is saved as output/adapter)."""
        import subprocess

        from accelerate import PartialState

        if not PartialState().is_main_process:
            return
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a server that does not stop on SIGTERM
                self.process.kill()
                self.process.wait()
        elif self.process is None and self.name not in (None, self.served):
            try:
                http_json(f"{self.url}/v1/unload_lora_adapter", {"lora_name": self.name}, timeout=30)
            except SystemExit:  # the training's outcome stands; the server keeps a stale adapter
                print(f"rl: warning: vLLM's server at {self.url} kept adapter {self.name}", flush=True)
        shutil.rmtree(self.adapters, ignore_errors=True)
        shutil.rmtree(self.output / "start-weights", ignore_errors=True)

    # the weights ------------------------------------------------------------------------------
    def load(self, name: str, folder: Path) -> None:
        """Load an adapter under `name`; one of that name left by a crashed attempt of this run (on a
        server that outlived it) is replaced."""
        body = {"lora_name": name, "lora_path": str(folder)}
        try:
            http_json(f"{self.url}/v1/load_lora_adapter", body)
        except ServerError as error:
            if error.status != 400 or "already been loaded" not in str(error):
                raise
            http_json(f"{self.url}/v1/unload_lora_adapter", {"lora_name": name})
            http_json(f"{self.url}/v1/load_lora_adapter", body)

    def sync(self, trainer) -> None:
        """After each optimizer step, the main process saves the adapter as it is now and has the
        server load it under a new name (then drops the one before); every process samples from it."""
        step = trainer.state.global_step
        if step == self.step:
            return
        name = f"{self.prefix}-step-{step}"
        if trainer.accelerator.is_main_process:
            folder = self.adapters / name
            trainer.accelerator.unwrap_model(trainer.model).save_pretrained(folder, safe_serialization=True)
            self.load(name, folder)
            if self.name != self.served:
                http_json(f"{self.url}/v1/unload_lora_adapter", {"lora_name": self.name})
                shutil.rmtree(self.adapters / self.name, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
        self.step, self.name = step, name

    # sampling ---------------------------------------------------------------------------------
    def complete(self, prompt_ids: list[int], n: int) -> list[tuple[list[int], list[float]]]:
        """n answers to one prompt: each as its token ids and their sampling log-probabilities
        (vLLM keeps the EOS token the model stopped at, which is what teaches it to stop)."""
        rl = self.config["rl"]
        answer = http_json(
            f"{self.url}/v1/completions",
            {
                "model": self.name,
                "prompt": prompt_ids,
                "n": n,
                "max_tokens": rl["max_completion_length"],
                "temperature": rl["temperature"],
                # every sampling knob given: the model's generation_config.json (vLLM's defaults
                # for what a request leaves out) only adds its EOS ids
                "top_p": 1.0,
                "top_k": 0,
                "min_p": 0.0,
                "repetition_penalty": 1.0,
                "logprobs": 0,  # the sampled token's own
                "return_tokens_as_token_ids": True,
                "skip_special_tokens": False,
            },
        )
        try:
            out = []
            for choice in sorted(answer["choices"], key=lambda c: c["index"]):
                logprobs = choice["logprobs"]
                ids = [int(token.removeprefix("token_id:")) for token in logprobs["tokens"]]
                out.append((ids, [float("nan") if v is None else float(v) for v in logprobs["token_logprobs"]]))
        except (KeyError, TypeError, ValueError) as error:
            raise SystemExit(
                f"rl: {self.url} answered /v1/completions without token ids and log-probabilities "
                f"({type(error).__name__}: {error}); is it vLLM's OpenAI-compatible server?"
            ) from None
        if len(out) != n:
            raise SystemExit(f"rl: vLLM's server gave {len(out)} answers where {n} were asked")
        return out

    def rollout(self, prompts: list, trainer) -> dict:
        """TRL's rollout_func: the answers to this process's prompts, in order. TRL hands each
        prompt once per answer wanted, a group's copies side by side: one request per group."""
        from concurrent.futures import ThreadPoolExecutor

        self.sync(trainer)
        tokenizer = trainer.processing_class
        groups: list[list] = []  # [prompt, copies]
        for prompt in prompts:
            if groups and groups[-1][0] == prompt:
                groups[-1][1] += 1
            else:
                groups.append([prompt, 1])
        ids = [rendered_ids(tokenizer, prompt) for prompt, _ in groups]
        with ThreadPoolExecutor(max_workers=16) as pool:  # vLLM batches concurrent requests itself
            answers = list(pool.map(lambda at: self.complete(ids[at], groups[at][1]), range(len(groups))))
        prompt_ids, completion_ids, logprobs = [], [], []
        for group_ids, group in zip(ids, answers, strict=True):
            for answer_ids, answer_logprobs in group:
                prompt_ids.append(list(group_ids))
                completion_ids.append(answer_ids)
                logprobs.append(answer_logprobs)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}


def rendered_ids(tokenizer, prompt) -> list[int]:
    """A prompt's token ids as TRL renders it for the trainer: the chat template, ready to answer."""
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]


def save_start_weights(model, tokenizer, output: Path) -> str:
    """The starting weights with model.adapter merged in, saved (main process) for the server to
    load: the adapter trained here is relative to them."""
    from accelerate import PartialState

    folder = output / "start-weights"
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:  # saved afresh: a crashed attempt's may hold another start
            partial = output / "start-weights.partial"
            shutil.rmtree(partial, ignore_errors=True)
            model.save_pretrained(partial, safe_serialization=True)
            tokenizer.save_pretrained(partial)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
    return str(folder)


def longest_sequence(rows: list[dict], tokenizer, config: dict) -> int:
    """vLLM's --max-model-len: the longest prompt as rendered, plus an answer's most tokens (the
    model's own limit would reserve a KV cache for lengths never sampled)."""
    longest = max(len(rendered_ids(tokenizer, row["prompt"])) for row in rows)
    return longest + config["rl"]["max_completion_length"]


# --- GRPO -------------------------------------------------------------------------------------
def train_grpo(config: dict, config_path: Path) -> None:
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    rl, tcfg = config["rl"], config["train"]
    output, checkpoints, resume, metrics_path = start(config)
    rows = read_prompts(Path(config["data"]["path"]))
    reward = load_reward(config_path, rows)
    server = VLLMServer(config, output) if rl["generation"] == "vllm" else None
    try:
        model, tokenizer = start_sampler(server, config, rows, output)
        args = GRPOConfig(
            **common_args(config, checkpoints, torch.cuda.is_available()),
            num_generations=rl["num_generations"],
            max_completion_length=rl["max_completion_length"],
            temperature=rl["temperature"],
            beta=rl["beta"],
            # train.micro_batch_size prompts a step, each with its group of answers
            per_device_train_batch_size=tcfg["micro_batch_size"] * rl["num_generations"],
        )
        first: dict = {}
        writer = prepare_trackers(config, output, resume)  # after the server answers: one that fails leaves no run
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(config),
            rollout_func=server.rollout if server else None,
        )
        tracking_callbacks(trainer, metrics_callback(metrics_path, first, grpo_record, config, writer), writer)
        data = {"prompts": len(rows), "generation": rl["generation"]}
        train_and_save(trainer, config, config_path, tokenizer, output, first, resume, data)
    finally:
        if server is not None:
            server.stop()


def start_sampler(server, config: dict, rows: list[dict], output: Path):
    """The starting model and tokenizer, and the vLLM server (rl.generation vllm) ready: started
    on model.path before the model loads here (vLLM's minutes of start-up overlap the load), or
    on the merge once it exists (model.adapter)."""
    if server is None:
        return load_model(config)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func: TRL's documented hook
    adapter = config["model"].get("adapter")
    if not adapter:
        server.launch(config["model"]["path"], longest_sequence(rows, load_tokenizer(config), config))
    model, tokenizer = load_model(config)
    if adapter:
        server.launch(save_start_weights(model, tokenizer, output), longest_sequence(rows, tokenizer, config))
    server.ready()
    return model, tokenizer


# --- DPO --------------------------------------------------------------------------------------
def sample_answers(model, tokenizer, rows: list[dict], config: dict) -> list[list[str]]:
    """rl.num_generations answers to each prompt from the starting model, sampled at
    rl.temperature (seeded by train.seed), rendered with the chat template as scoring does."""
    rl, k = config["rl"], config["rl"]["num_generations"]
    torch.manual_seed(config["train"]["seed"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    batch = max(1, 32 // k)  # prompts a generate call: 32 answers at a time
    answers: list[list[str]] = []
    for at in range(0, len(rows), batch):
        chunk = rows[at : at + batch]
        texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in chunk]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(
                **encoded,
                do_sample=True,
                temperature=rl["temperature"],
                top_p=1.0,
                top_k=0,
                max_new_tokens=rl["max_completion_length"],
                num_return_sequences=k,
                pad_token_id=tokenizer.pad_token_id,
            )
        decoded = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        answers += [decoded[i * k : (i + 1) * k] for i in range(len(chunk))]
        print(f"dpo: sampled {len(answers)}/{len(rows)} prompts' answers", flush=True)
    model.train()
    return answers


def build_pairs(rows: list[dict], answers: list[list[str]], reward) -> tuple[list[dict], dict]:
    """Per prompt, its answers scored; where the scores differ, pairs of a best-scored answer
    (chosen) and a worst-scored one (rejected), each distinct answer used once. Returns the
    pairs and the counts of how they were built."""
    pairs, same, with_pair, scores = [], 0, 0, []
    for row, texts in zip(rows, answers, strict=True):
        values = reward([row["prompt"]] * len(texts), texts, [row["doc"]] * len(texts))
        scores += values
        best, worst = max(values), min(values)
        if best == worst:
            same += 1  # every answer scored alike: nothing to prefer
            continue
        chosen = list(dict.fromkeys(t for t, v in zip(texts, values, strict=True) if v == best))
        rejected = list(dict.fromkeys(t for t, v in zip(texts, values, strict=True) if v == worst))
        with_pair += 1
        for good, bad in zip(chosen, rejected, strict=False):  # as many pairs as the shorter side has
            pairs.append(
                {
                    "prompt": row["prompt"],
                    "chosen": [{"role": "assistant", "content": good}],
                    "rejected": [{"role": "assistant", "content": bad}],
                    "chosen_score": best,
                    "rejected_score": worst,
                }
            )
    counts = {
        "prompts": len(rows),
        "answers": len(scores),
        "mean_score": round(sum(scores) / max(len(scores), 1), 6),
        "prompts_with_a_pair": with_pair,
        "prompts_all_scored_alike": same,
        "pairs": len(pairs),
    }
    return pairs, counts


def record_pair_counts(config_path: Path, counts: dict) -> None:
    """The pair-building counts in the workspace's data_stats.json (the data stage's record),
    under dpo_pairs, beside what the data script counted."""
    path = config_path.parent / "data_stats.json"
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        stats = {}
    stats = stats if isinstance(stats, dict) else {}
    stats["dpo_pairs"] = counts
    write_atomic(path, json.dumps(stats, indent=2) + "\n")


def fingerprint(path: str | None) -> list | None:
    """A model or adapter folder's files by name, size and modification time (weights rewritten
    in place count as changed), as lists (what pairs.json reads back); None for a Hub id."""
    if not path or not Path(path).is_dir():
        return None
    return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in Path(path).iterdir() if p.is_file())


def pairs_source(config: dict, config_path: Path) -> dict:
    """What the pairs were sampled from: saved pairs are reused only when all of it is the same."""
    data = Path(config["data"]["path"])
    spec = json.loads((config_path.parent / "reward.json").read_text())
    scorer = (
        config_path.parent / spec["file"] if "file" in spec else Path(spec["tasks_dir"]) / spec["family"] / "utils.py"
    )
    return {
        "model": config["model"]["path"],
        "model_files": fingerprint(config["model"]["path"]),
        "dtype": config["model"]["dtype"],
        "adapter": config["model"].get("adapter"),
        "adapter_files": fingerprint(config["model"].get("adapter")),
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "reward": spec,
        "reward_sha256": hashlib.sha256(scorer.read_bytes()).hexdigest(),
        "sampling": {k: config["rl"][k] for k in ("num_generations", "temperature", "max_completion_length")},
        "seed": config["train"]["seed"],
    }


def own_pairs(config, config_path, output, rows, reward, model, tokenizer) -> tuple[list[dict], dict]:
    """The pairs and their counts: sampled and scored by the main process (the others wait,
    then read them), or read back when a resumed run sampled them from the same start. Pairs
    sampled again drop the checkpoints and metrics of the old ones."""
    from accelerate import PartialState

    state, source = PartialState(), pairs_source(config, config_path)
    pairs_path, record = output / "pairs.jsonl", output / "pairs.json"
    with state.main_process_first():
        saved = json.loads(record.read_text()) if record.is_file() else None
        reuse = saved is not None and saved["source"] == source and config["train"]["resume"]
        if reuse or not state.is_main_process:
            pairs = [json.loads(line) for line in pairs_path.read_text().splitlines() if line.strip()]
            if state.is_main_process:
                print(f"dpo: {len(pairs)} pairs from {pairs_path}", flush=True)
            return pairs, saved["counts"]
        if saved is not None:  # sampled from another start: what trained on the old pairs is no start either
            shutil.rmtree(output / "checkpoints", ignore_errors=True)
            (output / "metrics.jsonl").unlink(missing_ok=True)
            changed = sorted(k for k in source if saved["source"].get(k) != source[k])
            print(f"dpo: {', '.join(changed)} changed: new pairs, training from the start", flush=True)
        pairs, counts = build_pairs(rows, sample_answers(model, tokenizer, rows, config), reward)
        write_atomic(pairs_path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
        # last: its presence says the pairs are complete
        write_atomic(record, json.dumps({"counts": counts, "source": source}, indent=2))
        record_pair_counts(config_path, counts)
        print(f"dpo: pairs: {json.dumps(counts)}", flush=True)
        return pairs, counts


def train_dpo(config: dict, config_path: Path) -> None:
    import datasets
    from trl import DPOConfig, DPOTrainer

    tcfg = config["train"]
    output, checkpoints, resume, metrics_path = start(config)
    rows = read_prompts(Path(config["data"]["path"]))
    reward = load_reward(config_path, rows)
    model, tokenizer = load_model(config)
    # Before the pairs: the process group it starts carries TrainingArguments' ddp_timeout while
    # the other processes wait for the main one's sampling.
    args = DPOConfig(
        **common_args(config, checkpoints, torch.cuda.is_available()),
        beta=config["rl"]["beta"],
        max_length=config["data"]["max_length"],
        per_device_train_batch_size=tcfg["micro_batch_size"],
    )
    pairs, counts = own_pairs(config, config_path, output, rows, reward, model, tokenizer)
    resume = latest_checkpoint(checkpoints) if resume else None  # gone when the pairs were sampled again
    if not pairs:
        raise SystemExit(
            f"dpo: no pairs: the {counts['prompts']} prompts' {counts['answers']} answers all scored alike within "
            f"each prompt (mean score {counts['mean_score']}); raise rl.num_generations or rl.temperature, "
            "or start from a model that is right some of the time"
        )
    keep = ("prompt", "chosen", "rejected")
    first: dict = {}
    writer = prepare_trackers(config, output, resume)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list([{k: p[k] for k in keep} for p in pairs]),
        processing_class=tokenizer,
        peft_config=lora_config(config),
    )
    tracking_callbacks(trainer, metrics_callback(metrics_path, first, dpo_record, config, writer), writer)
    train_and_save(trainer, config, config_path, tokenizer, output, first, resume, {"pairs": counts})


def main() -> None:
    parser = argparse.ArgumentParser(
        description="GRPO or DPO on the model's own answers, scored by the benchmark's scorer (or your function)."
    )
    parser.add_argument("--config", type=Path, required=True, help="The resolved config (train.resolved.yaml).")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    if config["method"]["type"] == "dpo":
        train_dpo(config, args.config)
    else:
        train_grpo(config, args.config)


if __name__ == "__main__":
    main()
