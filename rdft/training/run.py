"""`rdft train`: validate, plan, write the launch files, ensure the train env, run, report."""

from __future__ import annotations

import datetime
import json
import threading
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.hardware import host_hardware, probe_in_env
from rdft.resources import recipes_dir
from rdft.settings import Settings
from rdft.training.config import TrainConfig, load_config
from rdft.training.launch import Layout, choose_layout, write_launch_files
from rdft.training.models import build_tiny_model, model_config_json, resolve_model
from rdft.training.planner import Plan, plan, shape_from_config


class TrainingFailed(RdftError):
    """A training run that started and failed: the agent loop turns it into feedback."""

    exit_code = 1

    def __init__(self, message: str, *, oom: bool = False, timed_out: bool = False):
        super().__init__(message)
        self.oom, self.timed_out = oom, timed_out


def parse_gpus(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if not text.strip():
        return []
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise RdftError(f"--gpus {text!r} is not a comma-separated list of GPU indices like 0,1") from None


def make_plan(config: TrainConfig, layout: Layout, hardware: dict, config_json: Path | None) -> Plan | None:
    """Fill micro_batch_size / gradient_checkpointing set to auto; None when nothing was auto."""
    train = config.train
    fixed_size = train.micro_batch_size if train.micro_batch_size != "auto" else None
    fixed_ckpt = train.gradient_checkpointing if train.gradient_checkpointing != "auto" else None
    if fixed_size is not None and fixed_ckpt is not None:
        return None
    if config_json is None:  # the tiny model, not built yet (dry run)
        chosen = Plan(fixed_size or 4, bool(fixed_ckpt), 0.0, 0.0)
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
            packing=config.data.packing,
            attention=config.model.attn_implementation,
            device="cuda" if layout.gpus else "cpu",
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
) -> dict | None:
    console = console or Console(stderr=True, soft_wrap=True)  # paths stay whole in logs
    config = load_config(config_path)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    workspace = (workspace or settings.ft_file_path / "workspaces" / f"train-{stamp}").expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    config.output.dir = (workspace / config.output.dir).resolve()
    model_dir = resolve_model(config, settings)

    manager = EnvManager(settings, log=lambda message: console.print(f"rdft: {message}", highlight=False))
    env = None if dry_run else manager.ensure("train")
    hardware = host_hardware() if env is None else probe_in_env(env, workspace)
    layout = choose_layout(config, hardware, gpus)

    if config.model.tiny_arch and env is not None:
        build_tiny_model(env, config.model.tiny_arch, model_dir, console, verbose)
    if model_dir is not None:
        config.model.path = str(model_dir)
    chosen = make_plan(
        config, layout, hardware, model_config_json(config, model_dir, settings) if env or model_dir else None
    )
    launch = write_launch_files(config, layout, workspace, recipes_dir())
    summary = {"workspace": str(workspace), "layout": asdict(layout), "plan": asdict(chosen) if chosen else None}
    write_atomic(workspace / "plan.json", json.dumps({**summary, "hardware": hardware}, indent=2) + "\n")
    if dry_run:
        console.print_json(json.dumps(summary))
        print(launch.read_text(), end="")
        return None

    log_path = workspace / "train.log"
    metrics = config.output.dir / "metrics.jsonl"
    extra = {"HF_TOKEN": settings.hf_token.get_secret_value()} if settings.hf_token and model_dir is None else {}
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
            result = env.run(["bash", str(launch)], extra_env=extra, cwd=workspace, log_path=log_path, echo=verbose,
                timeout=timeout,
            )  # fmt: skip
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
