"""`rdft train`: validate, plan, write the launch files, ensure the train env, run, report."""

from __future__ import annotations

import datetime
import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rdft import slurm
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.hardware import host_hardware, probe_in_env, ram_gib
from rdft.resources import evaluation_dir, recipes_dir
from rdft.settings import Settings
from rdft.training.config import RL_METHODS, TrainConfig, check_trackers, load_config, tracker_environment
from rdft.training.launch import Layout, choose_layout, choose_rl_generation, write_launch_files
from rdft.training.models import HUB_ID, build_tiny_model, model_config_json, resolve_model, shape_from_config
from rdft.training.planner import Plan, plan
from rdft.training.rows import RowEstimate, estimate_rows


class TrainingFailed(RdftError):
    """A training run that started and failed: the agent loop turns it into feedback."""

    exit_code = 1

    def __init__(self, message: str, *, oom: bool = False, timed_out: bool = False):
        super().__init__(message)
        self.oom, self.timed_out = oom, timed_out


def check_inputs(config: TrainConfig) -> None:
    """The model and the data exist and can be read: said in one line, before anything starts."""
    path = config.model.path
    if not config.model.tiny_arch:
        local = Path(path).expanduser()
        if local.exists() or path.startswith((".", "/", "~")) or not HUB_ID.match(path):
            if not (local / "config.json").is_file():
                why = "does not exist" if not local.exists() else "has no config.json"
                raise RdftError(
                    f"model.path {path} {why}; give a Hugging Face model folder or a Hub id like Qwen/Qwen2.5-7B"
                )
    adapter = config.model.adapter
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise RdftError(
            f"model.adapter {adapter} is not a PEFT adapter (no adapter_config.json); give an adapter folder"
        )
    if config.method.type in RL_METHODS:
        check_reward(config)
    data = Path(config.data.path)
    if data.is_dir():
        raise RdftError(f"data.path {data} is a folder; give a chat or alpaca JSONL file")
    if not data.is_file():
        raise RdftError(f"data.path {data} does not exist; give a chat or alpaca JSONL file")
    data_format = "prompt" if config.method.type in RL_METHODS else config.data.format
    if config.method.type in RL_METHODS and config.rl.reward == "benchmark":
        data_format = "prompt+doc"
    try:
        rows = check_rows(data, data_format)
    except OSError as error:
        raise RdftError(f"cannot read data.path {data} ({error.strerror}); fix its permissions") from None
    if not rows:
        raise RdftError(f"data.path {data} is empty; give a chat or alpaca JSONL file with rows")


def prompt_problem(row: dict) -> str | None:
    """What keeps a row from being a GRPO or DPO prompt (what rl.py reads): `prompt` is the user turn
    (text, or chat messages without the answer) and `doc` the benchmark row its reward scores."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            return "has an empty prompt"
    elif not (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in prompt)
    ):
        return "has no prompt (a string, or a list of {role, content} messages)"
    if "doc" in row and not isinstance(row["doc"], dict):
        return "has a doc that is not an object (the benchmark row the reward scores against)"
    return None


def check_reward(config: TrainConfig) -> None:
    """GRPO's and DPO's own reward file, said before any env starts: Python that defines
    reward(prompts, completions, **columns) (checked by parsing it, never by running it)."""
    import ast

    if config.rl.reward == "benchmark":
        return
    path = Path(config.rl.reward)
    if not path.is_file() or path.suffix != ".py":
        raise RdftError(f"rl.reward {path} is not a Python file; give `benchmark` or a .py defining reward()")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError) as error:
        raise RdftError(f"rl.reward {path} is not valid Python ({error}); fix the file") from None
    if not any(isinstance(node, ast.FunctionDef) and node.name == "reward" for node in tree.body):
        raise RdftError(f"rl.reward {path} defines no reward(prompts, completions, **columns) function")


def write_reward(config: TrainConfig, workspace: Path, benchmark_entry: Callable[[str], dict] | None) -> None:
    """What rl.py rewards with, in the workspace: reward.json naming the benchmark's family
    scorer (evaluation/tasks/<family>/utils.py, loaded in the train env: the scoring code itself)
    and its table row, or the user's reward file copied beside it."""
    import shutil

    if config.rl.reward != "benchmark":
        shutil.copy2(config.rl.reward, workspace / "reward.py")
        spec = {"file": "reward.py"}
    else:
        if benchmark_entry is None:
            raise RdftError("rl.reward benchmark needs the benchmark table; run GRPO or DPO through `rdft train`")
        entry = benchmark_entry(config.rl.benchmark)
        spec = {
            "benchmark": config.rl.benchmark,
            "family": entry["family"],
            "tasks_dir": str(evaluation_dir() / "tasks"),
            "entry": {**entry, "name": config.rl.benchmark},
        }
    write_atomic(workspace / "reward.json", json.dumps(spec, indent=1) + "\n")


def row_problem(row: object, data_format: str) -> str | None:
    """What keeps a data row from being a chat or alpaca sample (what sft.py's to_messages reads),
    or, for data.format prompt, a GRPO or DPO prompt."""
    if not isinstance(row, dict):
        return f"is a JSON {type(row).__name__}, not an object"
    if data_format.startswith("prompt"):
        problem = prompt_problem(row)
        if problem is None and data_format == "prompt+doc" and "doc" not in row:
            problem = "has no doc (the benchmark row rl.reward benchmark scores the answers against)"
        return problem
    if data_format == "chat" or (data_format == "auto" and "messages" in row):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            return "has no list of messages"
        # An assistant turn may carry tool calls in place of content: chat templates take either.
        if not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and ("content" in m or "tool_calls" in m)
            for m in messages
        ):
            return "has a message without a role and content"
        return None
    if not (isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str)):
        keys = ", ".join(sorted(row)[:6]) or "none"
        return f"has neither messages nor string instruction and output (its keys: {keys})"
    return None


def check_rows(data: Path, data_format: str) -> int:
    """Every sample of the data file is one sft.py can read: the first bad one is one line with
    where it is, before any env starts (sft.py would stop on it after loading the model). JSONL,
    or a `.json` list (alpaca's data.json), read as sft.py reads them: strict UTF-8."""
    fix = "give chat rows (messages) or alpaca rows (instruction, output)"
    if data_format.startswith("prompt"):
        fix = 'give GRPO or DPO rows {"prompt": ..., "doc": {...}}'
    if data.suffix == ".json":
        try:
            rows = json.loads(data.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as error:
            raise RdftError(f"{data} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
        except json.JSONDecodeError as error:
            raise RdftError(f"{data} is not valid JSON ({error.msg}, line {error.lineno}); fix the file") from None
        if not isinstance(rows, list):
            raise RdftError(f"{data} holds a JSON {type(rows).__name__}; a .json data file is a list of samples")
        for number, row in enumerate(rows, 1):
            problem = row_problem(row, data_format)
            if problem:
                raise RdftError(f"{data}: sample {number} {problem}; {fix}")
        return len(rows)
    count = 0
    with open(data, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise RdftError(f"{data}:{number} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RdftError(
                    f"{data}:{number} is not valid JSON ({error.msg}); data.path takes JSONL, one sample a line"
                ) from None
            problem = row_problem(row, data_format)
            if problem:
                raise RdftError(f"{data}:{number} {problem}; {fix}")
            count += 1
    return count


def score_vllm(manager: EnvManager, build: bool) -> Path | None:
    """The score env's vllm executable (GRPO's sampler on a GPU host): built first when `build`
    (rl.generation vllm asked for it), else only when the env is already there."""
    if build:
        env = manager.ensure("score")
    elif manager.ready("score"):
        env = manager.current("score")
    else:
        return None
    vllm = env.python.parent / "vllm"
    return vllm if vllm.is_file() else None


def parse_gpus(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if not text.strip():
        return []
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise RdftError(f"--gpus {text!r} is not a comma-separated list of GPU indices like 0,1") from None
    if len(set(indices)) != len(indices):  # two ranks on one card: each expects the whole card
        raise RdftError(f"--gpus {text!r} lists a GPU twice; give each index once, like 0,1")
    return indices


def resolve_attention(config: TrainConfig, layout: Layout, config_json: Path | None) -> RowEstimate | None:
    """attn_implementation auto (rdft/training/rows.py says why): on a GPU, flex_attention when
    packed rows hold several samples — it skips the blocks between them, where sdpa runs its
    masked kernel over a dense block-diagonal mask — and sdpa when every row holds one; sdpa on a
    CPU (flex has no CPU backward) and for padded batches. Returns the rows' estimate when made."""
    if config.model.attn_implementation != "auto":
        return None
    if not (layout.gpus and config.data.packing) or config.method.type in RL_METHODS:  # GRPO, DPO pad
        config.model.attn_implementation = "sdpa"
        return None
    tokenizer = config_json.parent / "tokenizer.json" if config_json is not None else None
    rows = estimate_rows(config.data.path, tokenizer, config.data.max_length, config.train.seed)
    config.model.attn_implementation = "flex_attention" if rows.several_a_row else "sdpa"
    return rows


ASSUME_GPUS = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+(?:\.\d+)?)\s*(?:GiB|GB|G)?\s*$")


def assumed_hardware(text: str) -> dict:
    """`8x80GiB`: the hardware a dry run plans for instead of this host's (a laptop planning a
    cluster run). GPUs are taken at their nominal memory; the train env is assumed to be the
    cuda one (Liger installed)."""
    match = ASSUME_GPUS.match(text)
    # GPUs of one node, each with at least 1 GiB: anything else is a typo (99999x80GiB wrote an
    # 11 MB plan), not a machine.
    if not match or not 1 <= int(match.group(1)) <= 1024 or not 1 <= float(match.group(2)) <= 4096:
        raise RdftError(
            f"--assume-gpus {text!r} is not COUNTxMEMORY like 8x80GiB or 1x141GiB (1-1024 GPUs of 1-4096 GiB)"
        )
    count, memory = int(match.group(1)), float(match.group(2))
    gpus = [{"index": i, "name": f"assumed {memory:g} GiB", "memory_gib": memory} for i in range(count)]
    return {"gpu_count": count, "gpus": gpus, "ram_gib": ram_gib(), "assumed": True}


def make_plan(config: TrainConfig, layout: Layout, hardware: dict, config_json: Path | None) -> Plan | None:
    """Fill micro_batch_size / gradient_checkpointing set to auto; None when nothing was auto, or
    when the model's config.json is not at hand (a dry run before the model is built or fetched)."""
    train = config.train
    fixed_size = train.micro_batch_size if train.micro_batch_size != "auto" else None
    fixed_ckpt = train.gradient_checkpointing if train.gradient_checkpointing != "auto" else None
    if fixed_size is not None and fixed_ckpt is not None:
        return None
    if config.method.type in RL_METHODS:  # the planner models SFT steps: one prompt (or pair) a step, no checkpointing
        train.micro_batch_size = fixed_size or 1
        train.gradient_checkpointing = bool(fixed_ckpt)
        return None
    if config_json is None:  # a dry run without the model's config.json: no plan is invented
        return None
    else:
        if layout.gpus:
            memory = min(g["memory_gib"] for g in hardware["gpus"] if g["index"] in layout.gpus)
        else:
            memory = hardware.get("ram_gib", 8) / 2  # CPU: leave half the RAM to everything else
        chosen = plan(
            shape_from_config(config_json),
            method=config.method.type,
            dtype=config.model.dtype,
            lora_r=config.method.lora_r,
            max_length=config.data.max_length,
            memory_gib=memory,
            processes=layout.processes * config.distributed.num_machines,
            strategy=layout.strategy,
            offload=config.distributed.offload,
            micro_batch_size=fixed_size,
            checkpointing=fixed_ckpt,
            attention=config.model.attn_implementation,
            device="cuda" if layout.gpus else "cpu",
            # Liger runs on a GPU when liger-kernel is in the train env (the cuda lock has it).
            liger=bool(layout.gpus) and config.train.liger != "off" and hardware.get("liger", True),
        )
    train.micro_batch_size = chosen.micro_batch_size
    train.gradient_checkpointing = chosen.gradient_checkpointing
    return chosen


def _follow(metrics: Path, progress: Progress, task, stop: threading.Event) -> None:
    """Move the progress bar from the recipe's metrics JSONL as lines arrive."""
    seen = 0
    while not stop.is_set():
        if metrics.is_file():
            lines = metrics.read_text().splitlines()
            for line in lines[seen:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line being written; read it next time
                seen += 1
                progress.update(
                    task,
                    completed=row["step"],
                    total=row["total_steps"],
                    loss=f"{row['loss']:.4f}",
                    speed=f"{row['tokens_per_s']:,.0f}",
                )
        stop.wait(0.5)


def train(
    settings: Settings,
    config_path: Path,
    *,
    gpus: list[int] | None = None,
    workspace: Path | None = None,
    dry_run: bool = False,
    verbose: bool = False,
    console: Console | None = None,
    timeout: float | None = None,
    assume_gpus: str | None = None,
    slurm_nodes: int | None = None,
    benchmark_entry: Callable[[str], dict] | None = None,
) -> dict | None:
    """`benchmark_entry(name)`: a benchmark's table row (the evaluation layer's, which this one
    does not import), for GRPO's and DPO's `rl.reward: benchmark`."""
    console = console or Console(stderr=True, soft_wrap=True)  # paths stay whole in logs
    if assume_gpus is not None and not dry_run and not slurm_nodes:
        raise RdftError(
            "--assume-gpus plans for hardware this host does not have; use it with --dry-run "
            "(or with --slurm-nodes, for the nodes' GPUs)"
        )
    if slurm_nodes and not assume_gpus:  # this login node's hardware says nothing about the nodes'
        raise RdftError("--slurm-nodes plans for the nodes' GPUs: add --assume-gpus NxMEM, e.g. --assume-gpus 8x80GiB")
    assumed = assumed_hardware(assume_gpus) if assume_gpus is not None else None
    config = load_config(config_path)
    if slurm_nodes and config.model.tiny_arch and not dry_run:  # built in the train env, which the job builds
        raise RdftError(
            f"model.path {config.model.path} is built locally for tests; give the nodes a real model "
            "(a hub id or a folder on shared storage), or train it here without --slurm-nodes"
        )
    if slurm_nodes:  # the machines come from Slurm at run time: launch.sh reads its variables
        config.distributed.num_machines = slurm_nodes
        config.distributed.machine_rank = 0
        config.distributed.main_process_ip = config.distributed.main_process_ip or "slurm-first-node"
    check_inputs(config)  # before any env starts: a missing model or data file is one line, not 49
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    workspace = (workspace or settings.ft_file_path / "workspaces" / f"train-{stamp}").expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    config.output.dir = (workspace / config.output.dir).resolve()
    model_dir = resolve_model(config, settings)

    manager = EnvManager(settings, log=lambda message: console.print(f"rdft: {message}", highlight=False))
    # Under Slurm the job builds the env itself, on a node, with the nodes' torch variant.
    env = None if dry_run or slurm_nodes else manager.ensure("train")
    if env is not None:  # train.report_to's libraries import there, or one line says how to install them
        check_trackers(config, env, manager.specs_dir)
    hardware = assumed or (host_hardware() if env is None else probe_in_env(env, workspace))
    layout = choose_layout(config, hardware, gpus)
    if config.method.type in RL_METHODS:
        layout = choose_rl_generation(
            config,
            layout,
            hardware,
            lambda build: score_vllm(manager, build and not dry_run),
            slurm=bool(slurm_nodes),
            log=lambda message: console.print(f"rdft: {message}", highlight=False),
        )

    if config.model.tiny_arch and env is not None:
        build_tiny_model(env, config.model.tiny_arch, model_dir, console, verbose)
    if model_dir is not None:
        config.model.path = str(model_dir)
    # Before a job is submitted too: a mistyped repo id or a missing token is one line here, not a
    # failed job on the nodes.
    config_json = model_config_json(
        config, model_dir, settings, required=env is not None or bool(slurm_nodes and not dry_run)
    )
    asked_attention = config.model.attn_implementation
    rows = resolve_attention(config, layout, config_json)
    chosen = make_plan(config, layout, hardware, config_json)
    if config.method.type in RL_METHODS:
        write_reward(config, workspace, benchmark_entry)
    launch = write_launch_files(config, layout, workspace, recipes_dir())
    plan_shown: dict | str | None = asdict(chosen) if chosen else None
    if chosen is None and "auto" in (config.train.micro_batch_size, config.train.gradient_checkpointing):
        plan_shown = "unknown: the model's config.json is not here yet (it is built or fetched when training starts)"
    attention: dict = {"asked": asked_attention, "chosen": config.model.attn_implementation}
    if rows is not None:
        attention.update(asdict(rows))
    summary = {"workspace": str(workspace), "layout": asdict(layout), "plan": plan_shown, "attention": attention}
    if config.method.type in RL_METHODS:
        summary["generation"] = config.rl.generation
    write_atomic(workspace / "plan.json", json.dumps({**summary, "hardware": hardware}, indent=2) + "\n")
    sbatch = None
    if slurm_nodes:
        sbatch = workspace / "train.sbatch"
        variant = slurm.jobs_variant(settings.rdft_torch_variant, len(layout.gpus))
        write_atomic(
            sbatch, slurm.train_script(workspace, nodes=slurm_nodes, gpus_per_node=len(layout.gpus), variant=variant)
        )
    if dry_run:
        console.print_json(json.dumps(summary))
        print(launch.read_text(), end="")
        if sbatch is not None:
            print(f"# {sbatch}\n{sbatch.read_text()}", end="")
        return None
    if sbatch is not None:
        slurm.require_slurm()
        job = slurm.submit(sbatch)
        console.print(f"rdft: submitted job {job} ({slurm_nodes} nodes); output in {workspace}/slurm-{job}.out")
        return {"job": job, **summary}

    log_path = workspace / "train.log"
    metrics = config.output.dir / "metrics.jsonl"
    extra = {"HF_TOKEN": settings.hf_token.get_secret_value()} if settings.hf_token and model_dir is None else {}
    extra.update(tracker_environment(config, settings.secrets()))  # read by the trackers' libraries alone
    console.print(f"rdft: training in {workspace} ({layout.strategy}, {layout.processes} process(es)); log: {log_path}")
    stop = threading.Event()
    columns = [
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[speed]} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=verbose) as progress:
        task = progress.add_task("train", total=None, loss="-", speed="-")
        follower = threading.Thread(target=_follow, args=(metrics, progress, task, stop), daemon=True)
        follower.start()
        try:
            result = env.run(
                ["bash", str(launch)],
                extra_env=extra,
                cwd=workspace,
                log_path=log_path,
                echo=verbose,
                timeout=timeout,
            )
        finally:
            stop.set()
            follower.join()
    recipe_result = config.output.dir / "result.json"
    if not result.ok or not recipe_result.is_file():
        if not verbose:
            console.print(result.tail.rstrip(), highlight=False, markup=False)
        why = "out of GPU memory (CUDA OOM)" if result.oom else f"exit {result.returncode}"
        if result.timed_out:
            why = f"timed out after {timeout:g} s"
        raise TrainingFailed(f"training failed ({why}); see {log_path}", oom=result.oom, timed_out=result.timed_out)
    final = {**json.loads(recipe_result.read_text()), **summary, "log": str(log_path)}
    write_atomic(workspace / "result.json", json.dumps(final, indent=2) + "\n")
    saved = final.get("adapter_dir") or final.get("model_dir")
    console.print(f"rdft: done: loss {final['first_loss']:.4f} → {final['final_loss']:.4f}; weights in {saved}")
    if final.get("merged_dir"):
        console.print(f"rdft: merged model in {final['merged_dir']}")
    return final
