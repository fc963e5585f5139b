"""`rdft train`: validate, plan, write the launch files, ensure the train env, run, report."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import threading
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rdft.envs import Env, EnvManager
from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.resources import recipes_dir
from rdft.runner import run_in_env
from rdft.settings import Settings
from rdft.training.config import TrainConfig, load_config
from rdft.training.launch import Layout, choose_layout, write_launch_files
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


def host_hardware() -> dict:
    """GPUs as nvidia-smi sees them (no env needed), for --dry-run."""
    gpus = []
    binary = shutil.which("nvidia-smi")
    if binary:
        query = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
        proc = subprocess.run([binary, *query], capture_output=True, text=True)
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            index, name, memory = (part.strip() for part in line.split(","))
            gpus.append({"index": int(index), "name": name, "memory_gib": round(float(memory) / 1024, 2)})
    ram = 0.0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 2**20
    return {"gpu_count": len(gpus), "gpus": gpus, "ram_gib": round(ram, 2)}


def probe_in_env(env: Env, workspace: Path) -> dict:
    result = run_in_env(
        env, ["python", str(recipes_dir() / "probe_hardware.py"), "--disk", str(workspace)], echo=False, cwd=workspace
    )
    if not result.ok:
        raise RdftError(f"the hardware probe failed in the train env: {result.tail.strip().splitlines()[-1:]}")
    return json.loads(result.tail.strip().splitlines()[-1])


def build_tiny_model(env: Env, arch: str, model_dir: Path, console: Console, verbose: bool = False) -> Path:
    """The tiny test model at `model_dir`, built in the train env the first time (once, when
    several runs ask at the same time)."""
    if (model_dir / "config.json").is_file():
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(model_dir.parent / f".{model_dir.name}.lock"):
        if (model_dir / "config.json").is_file():  # another process built it meanwhile
            return model_dir
        console.print(f"rdft: building the tiny {arch} model at {model_dir}")
        command = ["python", str(recipes_dir() / "tiny_model.py"), "--out", str(model_dir), "--arch", arch]
        built = run_in_env(env, command, echo=verbose)
        if not built.ok:
            raise RdftError(f"building the tiny model failed: {built.tail.strip().splitlines()[-1:]}")
    return model_dir


def resolve_model(config: TrainConfig, settings: Settings) -> Path | None:
    """The local model folder (tiny models live under FT_FILE_PATH/models), or None for a hub id."""
    arch = config.model.tiny_arch
    if arch:
        if arch not in ("llama", "qwen2"):
            raise RdftError(f"model.path tiny:{arch} is unknown; use tiny:llama or tiny:qwen2")
        return settings.ft_file_path.expanduser().resolve() / "models" / f"tiny-{arch}"
    path = Path(config.model.path)
    return path if path.is_absolute() else None


def model_config_json(config: TrainConfig, model_dir: Path | None, settings: Settings) -> Path | None:
    if model_dir is not None:
        return model_dir / "config.json" if (model_dir / "config.json").is_file() else None
    from huggingface_hub import hf_hub_download

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        return Path(hf_hub_download(config.model.path, "config.json", token=token))
    except Exception as error:  # hub errors come in many types; all mean "cannot read the config"
        raise RdftError(
            f"cannot fetch config.json of {config.model.path!r} ({type(error).__name__}); "
            "check the repo id, HF_TOKEN, or give a local folder"
        ) from None


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
            result = run_in_env(
                env, ["bash", str(launch)], extra_env=extra, cwd=workspace, log_path=log_path, echo=verbose,
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
