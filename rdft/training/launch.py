"""Launch files: from a validated config and the hardware, the readable files a person could run
by hand — `train.resolved.yaml` (complete, every auto resolved), `accelerate.yaml`,
`ds_config.json` (DeepSpeed only), the recipe (`sft.py`, or `rl.py` for GRPO and DPO) copied in, and `launch.sh`."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.training.config import RL_METHODS, TrainConfig

RESOLVED = "train.resolved.yaml"  # what sft.py reads; the train YAML it came from stays as written


@dataclass(frozen=True)
class Layout:
    strategy: str  # single | ddp | zero2 | zero3
    processes: int  # on this machine
    gpus: list[int]  # selected GPU indices ([] on CPU)

    @property
    def cpu(self) -> bool:
        return not self.gpus


def choose_layout(config: TrainConfig, hardware: dict, gpus: list[int] | None) -> Layout:
    """Which GPUs, how many processes, and the distribution strategy."""
    available = [g["index"] for g in hardware.get("gpus", [])]
    if gpus is None:
        gpus = available
    missing = sorted(set(gpus) - set(available))
    if missing:
        raise RdftError(f"GPU(s) {missing} not found (this host has {available or 'none'}); fix --gpus")
    dist = config.distributed
    processes = dist.num_processes or max(len(gpus), 1)
    if gpus and processes != len(gpus):
        raise RdftError(f"distributed.num_processes={processes} but {len(gpus)} GPU(s) selected; one process per GPU")
    strategy = dist.strategy
    if strategy == "auto":
        if processes == 1:
            strategy = "single"
        else:
            strategy = "zero3" if config.method.type == "full" else "ddp"
    total = processes * dist.num_machines
    if strategy == "single" and total > 1:
        raise RdftError("strategy single runs one process; use ddp, zero2 or zero3 for several")
    if strategy in ("ddp", "zero2") and total == 1:
        raise RdftError(f"strategy {strategy} needs several processes; use single (or zero3 with offload)")
    if strategy == "zero3" and total == 1 and not dist.offload:
        raise RdftError("zero3 with one process shards nothing; set distributed.offload: true or use single")
    if config.method.type == "qlora" and not gpus:
        raise RdftError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit); use method.type: lora on CPU")
    if config.model.dtype != "float32" and not gpus:
        raise RdftError(f"model.dtype {config.model.dtype} on CPU is slow and unsupported here; use float32")
    return Layout(strategy=strategy, processes=processes, gpus=gpus)


def free_port() -> int:
    """A port nothing listens on now, on this host's loopback (the started vLLM server's)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def choose_rl_generation(
    config: TrainConfig,
    layout: Layout,
    hardware: dict,
    score_vllm: Callable[[bool], Path | None],
    *,
    slurm: bool,
    log: Callable[[str], None],
) -> Layout:
    """Resolve rl.generation to vllm or transformers (GRPO; DPO samples once with transformers).
    For a server the recipe starts: its command (the score env's `vllm serve` unless
    rl.vllm_command), its address and its GPU. `score_vllm(build)`: the score env's vllm
    executable, built first when `build`, or None. Returns the layout training keeps: without the
    server's GPU when several are selected."""
    rl = config.rl
    if config.method.type != "grpo" or rl.generation == "transformers":
        rl.generation = "transformers"
        return layout
    explicit, why, command = rl.generation == "vllm", None, rl.vllm_command
    if rl.weights == "full":
        why = "rl.weights full (only a LoRA is loaded into the server each step)"
    elif rl.vllm_server_url and not command:  # the user's own server, wherever it runs
        rl.generation = "vllm"
        return layout
    elif config.distributed.num_machines > 1:  # the other machines would ask their own 127.0.0.1
        why = "a server rdft starts serves one machine (give rl.vllm_server_url, reading output/ from shared storage)"
    elif command is None and slurm:
        why = "under --slurm-nodes rdft starts no server (give rl.vllm_server_url)"
    elif command is None and not layout.gpus:
        why = "this host has no GPU (or give rl.vllm_command, e.g. a CPU build of vLLM)"
    elif command is None:
        vllm = score_vllm(explicit)
        if vllm is None:
            why = "the score env, which holds vLLM, is not built (`rdft env create score`)"
        else:
            command = [str(vllm), "serve"]
    if why is not None:
        if explicit:
            raise RdftError(f"rl.generation vllm: {why}; or set rl.generation: transformers")
        if layout.gpus:  # on a CPU host transformers is the only choice: nothing to say
            log(f"GRPO samples its answers with transformers: {why}")
        rl.generation = "transformers"
        return layout
    rl.generation, rl.vllm_command = "vllm", command
    rl.vllm_server_url = rl.vllm_server_url or f"http://127.0.0.1:{free_port()}"
    available = [g["index"] for g in hardware.get("gpus", [])]
    if rl.vllm_gpu is None and layout.gpus:
        rl.vllm_gpu = layout.gpus[-1]  # alone when several are selected, else shared (rl.vllm_memory)
    if rl.vllm_gpu is not None and rl.vllm_gpu not in available:
        raise RdftError(f"rl.vllm_gpu {rl.vllm_gpu} not found (this host has {available or 'no GPU'}); fix it")
    if rl.vllm_gpu in layout.gpus and len(layout.gpus) > 1:
        layout = choose_layout(config, hardware, [g for g in layout.gpus if g != rl.vllm_gpu])
    log(f"GRPO samples its answers with vLLM on GPU {rl.vllm_gpu}" if rl.vllm_gpu is not None else
        "GRPO samples its answers with vLLM (rl.vllm_command)")  # fmt: skip
    return layout


def accelerate_config(config: TrainConfig, layout: Layout, ds_path: Path | None) -> dict:
    dist = config.distributed
    out: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": dist.num_machines,
        "machine_rank": dist.machine_rank,
        "num_processes": layout.processes * dist.num_machines,
        "use_cpu": False,  # CPU runs set ACCELERATE_USE_CPU in launch.sh: `use_cpu` would force one process
        "main_training_function": "main",
    }
    if layout.strategy not in ("zero2", "zero3"):
        out["mixed_precision"] = "no"  # the recipe loads weights in model.dtype; DeepSpeed's JSON says it there
    if dist.num_machines > 1:
        out.update(main_process_ip=dist.main_process_ip, main_process_port=dist.main_process_port)
    if layout.strategy in ("zero2", "zero3"):
        out["distributed_type"] = "DEEPSPEED"
        out["deepspeed_config"] = {
            "deepspeed_config_file": ds_path.name,
            "zero3_init_flag": layout.strategy == "zero3",
        }
    elif layout.processes * dist.num_machines > 1:
        out["distributed_type"] = "MULTI_GPU"
    else:
        out["distributed_type"] = "NO"
    return out


def deepspeed_config(config: TrainConfig, layout: Layout) -> dict:
    zero: dict = {"stage": 2 if layout.strategy == "zero2" else 3, "overlap_comm": True}
    if layout.strategy == "zero3":
        # Gathered 16-bit weights on save: without it ZeRO-3 writes empty adapters.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if config.distributed.offload:
            zero["offload_param"] = {"device": "cpu", "pin_memory": not layout.cpu}
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": not layout.cpu}
    return {
        "train_micro_batch_size_per_gpu": 1 if config.data.packing else config.train.micro_batch_size,
        "gradient_accumulation_steps": config.train.gradient_accumulation_steps,
        "gradient_clipping": config.train.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": config.model.dtype == "bfloat16"},
        "fp16": {"enabled": config.model.dtype == "float16"},
        "zero_allow_untested_optimizer": True,
    }


def write_launch_files(config: TrainConfig, layout: Layout, workspace: Path, recipes: Path) -> Path:
    """Write the launch files into `workspace`; returns the path of launch.sh."""
    workspace.mkdir(parents=True, exist_ok=True)
    resolved = config.model_dump(mode="json")
    # Beside the config it came from, never over it: the loop's next coder copies train.yaml, and
    # a child that inherited a fixed micro-batch and checkpointing would never be re-planned.
    write_atomic(
        workspace / RESOLVED,
        "# Written by `rdft train`: the complete config the recipe reads (every default filled in,\n"
        "# every auto resolved for this host). Edit the train YAML it came from, not this file.\n"
        + yaml.safe_dump(resolved, sort_keys=False),
    )
    ds_path = None
    if layout.strategy in ("zero2", "zero3"):
        ds_path = workspace / "ds_config.json"
        write_atomic(ds_path, json.dumps(deepspeed_config(config, layout), indent=2) + "\n")
    write_atomic(
        workspace / "accelerate.yaml",
        "# Written by `rdft train` for `accelerate launch --config_file accelerate.yaml`.\n"
        + yaml.safe_dump(accelerate_config(config, layout, ds_path), sort_keys=False),
    )
    recipe = "rl.py" if config.method.type in RL_METHODS else "sft.py"  # each recipe self-contained
    shutil.copy2(recipes / recipe, workspace / recipe)
    lines = [
        "#!/usr/bin/env bash",
        "# Written by `rdft train`; run it by hand inside the train env with: bash launch.sh",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f"export CUDA_VISIBLE_DEVICES={','.join(map(str, layout.gpus))}",
        # DeepSpeed JIT-compiles ops on first use; keep them with the workspace's other caches.
        'export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.torch_extensions}"',
        "export TOKENIZERS_PARALLELISM=false",
    ]
    if layout.cpu:
        # Several CPU processes need accelerate's MULTI_CPU (gloo) mode; `--cpu` would run one.
        lines.append("export ACCELERATE_USE_CPU=true")
    deepspeed = layout.strategy in ("zero2", "zero3")
    lines += [
        # Under Slurm (`srun launch.sh` on each of N nodes) the machines come from Slurm's own
        # variables: the first node of the job is rank 0, each node's id is its rank.
        "first_host() {  # the first host of a Slurm node list: scontrol's answer, else the list's own syntax",
        "    local found prefix=${1%%[[,]*} rest",
        '    found=$(scontrol show hostnames "$1" 2>/dev/null | head -n 1) || true',
        '    if [ -n "$found" ]; then echo "$found"; return; fi',
        '    if [ "${1:${#prefix}:1}" != "[" ]; then echo "$prefix"; return; fi',
        "    rest=${1#*[}",
        '    echo "$prefix${rest%%[],-]*}"',
        "}",
        "args=()",
        'if [ "${SLURM_NNODES:-1}" -gt 1 ]; then',
        '    head_node=$(first_host "$SLURM_JOB_NODELIST")',
        '    args=(--num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" --main_process_ip "$head_node"',
        f'          --main_process_port "${{RDFT_MAIN_PROCESS_PORT:-{config.distributed.main_process_port}}}"',
        f'          --num_processes "$((SLURM_NNODES * {layout.processes}))"'
        + (" --deepspeed_multinode_launcher standard)" if deepspeed else ")"),
    ]
    if layout.processes * config.distributed.num_machines == 1 and not deepspeed:
        # One process needs no launcher: accelerate launch would only start a second interpreter
        # (and import torch twice); accelerate.yaml stays for whoever launches by hand.
        lines += [
            '    command=(accelerate launch --config_file accelerate.yaml "${args[@]}"',
            f'             {recipe} --config train.resolved.yaml "$@")',
            "else",
            f'    command=(python {recipe} --config train.resolved.yaml "$@")',
            "fi",
        ]
    else:
        lines += [
            "fi",
            'command=(accelerate launch --config_file accelerate.yaml "${args[@]}"',
            f'         {recipe} --config train.resolved.yaml "$@")',
        ]
    lines += [
        '[ -n "${RDFT_LAUNCH_PRINT:-}" ] && { echo "${command[*]}"; exit 0; }  # show the command, run nothing',
        'exec "${command[@]}"',
    ]
    launch = workspace / "launch.sh"
    write_atomic(launch, "\n".join(lines) + "\n", mode=0o755)
    return launch
