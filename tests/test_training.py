"""`rdft train` on CPU with the tiny model: the real CLI, the real train env, real weights."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, one_line_error

from rdft.resources import recipes_dir

IN_ENV = Path(__file__).parent / "in_env"
TINY_CONFIG = recipes_dir() / "configs" / "tiny_cpu_lora.yaml"
PINNED_LOSSES = [4.147398, 1.740677, 1.557298]  # steps 1, 13 and 26 of the shipped tiny LoRA config


def in_env_json(env, *args) -> dict:
    result = env.run(["python", *map(str, args)], echo=False)
    assert result.ok, result.tail
    return json.loads(result.tail.strip().splitlines()[-1])


def variant(tmp_path: Path, name: str, **sections) -> Path:
    """The shipped tiny config with some sections changed, written next to a copy of its data."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"]["path"] = str(recipes_dir() / "configs" / "data" / "tiny_chat.jsonl")
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def train_cli(rdft, shared_dirs, train_env):
    def call(*args, **kwargs):
        return rdft("train", *map(str, args), env=shared_dirs, **kwargs)

    return call


def tiny_model(shared_dirs) -> Path:
    return Path(shared_dirs["FT_FILE_PATH"]).resolve() / "models" / "tiny-llama"


def test_tiny_cpu_lora_end_to_end(train_cli, shared_dirs, train_env, tmp_path):
    workspace = tmp_path / "run"
    result = train_cli(TINY_CONFIG, "--workspace", workspace)
    assert result.returncode == 0, result.output
    final = json.loads((workspace / "result.json").read_text())
    assert final["adapter_dir"] == str(workspace / "output" / "adapter")
    assert final["merged_dir"] == str(workspace / "output" / "merged")
    assert final["tokens_per_s"] > 0 and final["peak_memory_gib"] > 0
    # The recipe's own count: its packing of the 256 samples (rows of 256 tokens, 4 rows per
    # micro-batch, the first epoch's shuffle) times the epochs; and the fixed value for this data.
    count = (
        "import sys, yaml; sys.path.insert(0, '.'); import sft; from transformers import AutoTokenizer\n"
        "config = yaml.safe_load(open('train.resolved.yaml'))\n"
        "tok = AutoTokenizer.from_pretrained(config['model']['path'])\n"
        "samples, _ = sft.load_samples(config, tok)\n"
        "batches = len(sft.epoch_batches(samples, config, 0, tok.pad_token_id or tok.eos_token_id))\n"
        "print(max(batches // config['train']['gradient_accumulation_steps'], 1) * config['train']['epochs'])"
    )
    counted = train_env.run(["python", "-c", count], cwd=workspace, echo=False)
    assert counted.ok, counted.tail
    assert final["steps"] == int(counted.tail.strip().splitlines()[-1]) == 26
    assert final["final_loss"] < 0.5 * final["first_loss"], final
    assert f"weights in {final['adapter_dir']}" in result.stderr
    # What a user runs by hand is there and readable.
    for name in ("launch.sh", "accelerate.yaml", "train.resolved.yaml", "sft.py", "train.log"):
        assert (workspace / name).is_file(), name
    metrics = [json.loads(line) for line in (workspace / "output" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 27))
    # The recipe's losses pinned at fixed steps, as torchtune pins its recipes': a change to the
    # data path, the packing, the loss mask or the optimizer moves them (seeded; torch 2.13 CPU).
    losses = {m["step"]: m["loss"] for m in metrics}
    assert [losses[step] for step in (1, 13, 26)] == pytest.approx(PINNED_LOSSES, rel=1e-3), losses
    assert {"loss", "lr", "tokens_per_s", "mfu", "peak_memory_gib"} <= set(metrics[0])

    hardware = json.loads((workspace / "plan.json").read_text())["hardware"]
    assert hardware["gpu_count"] == len(hardware["gpus"]) == 0 and hardware["cpu_cores"] >= 1
    assert hardware["torch"] == "2.13.0+cpu"

    report = in_env_json(train_env, IN_ENV / "check_weights.py", tiny_model(shared_dirs), workspace / "output")
    assert report["lora_tensors"] == 28  # 7 linear maps × 2 layers × (A, B)
    assert report["adapter_changes_logits"] > 1e-2
    assert report["merged_vs_adapter"] < 1e-4


def test_dry_run_writes_plan_and_runs_nothing(rdft, tmp_path):
    workspace = tmp_path / "dry"
    result = rdft("train", str(TINY_CONFIG), "--workspace", str(workspace), "--dry-run")
    assert result.returncode == 0, result.output
    # One process needs no launcher (accelerate.yaml is there for launching by hand).
    assert 'command=(python sft.py --config train.resolved.yaml "$@")' in result.stdout
    assert '"strategy": "single"' in result.stderr
    assert not (workspace / "output").exists() and not (workspace / "result.json").exists()
    assert not (rdft.envs_dir / "train").exists()  # not even the env was built


def test_packing_equals_unpacked_and_only_assistant_tokens_train(train_cli, shared_dirs, train_env, tmp_path):
    if not (tiny_model(shared_dirs) / "config.json").is_file():
        assert train_cli(TINY_CONFIG, "--workspace", tmp_path / "build", "--dry-run").returncode == 0
        train_env.run(["python", str(recipes_dir() / "tiny_model.py"), "--out", str(tiny_model(shared_dirs))])
    data = recipes_dir() / "configs" / "data" / "tiny_chat.jsonl"
    report = in_env_json(train_env, IN_ENV / "check_packing.py", recipes_dir(), tiny_model(shared_dirs), data)
    assert report["n"] == 7
    # The same checks with SDPA (rdft's attention on a CPU) and flex_attention (its attention for
    # packed rows on a GPU, whose block mask transformers builds from the same position ids).
    for attention in ("sdpa", "flex_attention"):
        checked = report[attention]
        assert checked["implementation"] == attention
        assert checked["max_abs_diff"] < 1e-5, attention
        # The model's own loss over the packed row is the token-weighted mean of the per-sample
        # losses (no sample's last position is scored against the next sample's first token).
        weighted = sum(m * t for m, t in zip(checked["per_sample"], checked["targets"], strict=True)) / sum(
            checked["targets"]
        )
        assert checked["model_loss_packed"] == pytest.approx(weighted, rel=1e-5), attention
        # No attention across samples or into padding: a sample's logits ignore its row-mates.
        assert checked["row_mates_diff"] < 1e-5, attention
        # Several padded rows per micro-batch give the same loss as one row.
        assert checked["multi_rows"] == 3 and checked["multi_loss"] == pytest.approx(weighted, rel=1e-5), attention
    assert report["flex_attention"]["per_sample"] == pytest.approx(report["sdpa"]["per_sample"], rel=1e-5)
    assert report["two_turn_target_text"] == "2<|im_end|>\n4<|im_end|>\n"


def _losses(metrics: Path) -> dict[int, float]:
    """Loss per step; a resumed run rewrites the steps after its checkpoint, the last write wins."""
    out = {}
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row["loss"]
    return out


def test_killed_run_resumes_to_the_same_losses(train_cli, train_env, tmp_path):
    slow = {"micro_batch_size": 1, "gradient_accumulation_steps": 4, "epochs": 1, "max_steps": 20, "save_steps": 4}
    config = variant(tmp_path, "resume", data={"packing": False}, train=slow, output={"merge": False})
    straight = tmp_path / "straight"
    assert train_cli(config, "--workspace", straight).returncode == 0

    # Write the launch files, then run launch.sh by hand and kill -9 it after a checkpoint.
    killed = tmp_path / "killed"
    assert train_cli(config, "--workspace", killed, "--dry-run").returncode == 0
    argv, environ = train_env.command(["bash", str(killed / "launch.sh")], dict(os.environ))
    proc = subprocess.Popen(
        argv, env=environ, cwd=killed, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = killed / "output" / "checkpoints" / "step-8" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.is_file() and not (killed / "output" / "result.json").exists(), "the run ended before the kill"

    resumed = train_cli(config, "--workspace", killed)
    assert resumed.returncode == 0, resumed.output
    assert "resumed from" in (killed / "train.log").read_text()
    expected, got = _losses(straight / "output" / "metrics.jsonl"), _losses(killed / "output" / "metrics.jsonl")
    assert sorted(got) == list(range(1, 21))
    assert max(abs(expected[s] - got[s]) for s in expected) < 1e-4


def test_compiled_layers_train_as_eager_ones(train_cli, tmp_path):
    """train.compile compiles each decoder layer (regional torch.compile) and changes no loss."""
    short = {"max_steps": 3, "micro_batch_size": 2, "gradient_accumulation_steps": 1}
    runs = {}
    for name, compile_layers in (("eager", False), ("compiled", True)):
        config = variant(tmp_path, name, train={**short, "compile": compile_layers}, output={"merge": False})
        result = train_cli(config, "--workspace", tmp_path / name)
        assert result.returncode == 0, result.output
        runs[name] = tmp_path / name / "output"
    compiled = json.loads((runs["compiled"] / "result.json").read_text())
    assert compiled["compiled_graphs"] >= 1  # dynamo traced the layers, not a silent fallback to eager
    assert "compiled_graphs" not in json.loads((runs["eager"] / "result.json").read_text())
    eager, got = _losses(runs["eager"] / "metrics.jsonl"), _losses(runs["compiled"] / "metrics.jsonl")
    assert sorted(got) == [1, 2, 3]
    assert max(abs(eager[s] - got[s]) for s in eager) < 1e-4, (eager, got)


@pytest.mark.parametrize(
    ("strategy", "processes", "offload"),
    [("ddp", 2, False), ("zero2", 2, False), ("zero3", 2, True)],
)
def test_distributed_cpu_runs_save_loadable_weights(
    train_cli, shared_dirs, train_env, tmp_path, strategy, processes, offload
):
    distributed = {"strategy": strategy, "num_processes": processes, "offload": offload}
    train = {"epochs": 1, "gradient_checkpointing": strategy == "zero2"}
    config = variant(tmp_path, strategy, distributed=distributed, train=train, output={"merge": True})
    workspace = tmp_path / strategy
    result = train_cli(config, "--workspace", workspace, timeout=900)
    assert result.returncode == 0, result.output + (workspace / "train.log").read_text()[-3000:]
    final = json.loads((workspace / "result.json").read_text())
    assert final["processes"] == processes and final["layout"]["strategy"] == strategy
    assert final["final_loss"] < final["first_loss"]
    adapter = Path(final["adapter_dir"]) / "adapter_model.safetensors"
    assert adapter.stat().st_size > 100_000  # never an empty adapter (ZeRO-3 gathers 16-bit weights)
    report = in_env_json(train_env, IN_ENV / "check_weights.py", tiny_model(shared_dirs), workspace / "output")
    assert report["adapter_changes_logits"] > 1e-2 and report["merged_vs_adapter"] < 1e-4
    if strategy != "ddp":
        assert (workspace / "ds_config.json").is_file()


def test_full_fine_tune_saves_a_loadable_model(train_cli, shared_dirs, train_env, tmp_path):
    config = variant(tmp_path, "full", method={"type": "full"}, train={"learning_rate": 1e-3}, output={"merge": False})
    workspace = tmp_path / "full"
    result = train_cli(config, "--workspace", workspace)
    assert result.returncode == 0, result.output
    final = json.loads((workspace / "result.json").read_text())
    assert final["model_dir"] == str(workspace / "output" / "model") and "adapter_dir" not in final
    assert final["final_loss"] < 0.5 * final["first_loss"]
    report = in_env_json(train_env, IN_ENV / "check_weights.py", tiny_model(shared_dirs), workspace / "output")
    assert report["model_changes_logits"] > 1e-2


def test_multi_node_fields_reach_accelerate_config(tmp_path):
    from rdft.training.config import TrainConfig
    from rdft.training.launch import choose_layout, write_launch_files

    config = TrainConfig.model_validate(
        {
            "model": {"path": "/models/base", "dtype": "bfloat16"},
            "data": {"path": "/data/train.jsonl"},
            "train": {"micro_batch_size": 2, "gradient_checkpointing": True},
            "distributed": {"strategy": "zero3", "num_machines": 2, "machine_rank": 1, "main_process_ip": "10.1.2.3"},
        }
    )
    hardware = {"gpus": [{"index": i, "name": "H100", "memory_gib": 80} for i in range(8)]}
    layout = choose_layout(config, hardware, [0, 1, 2, 3])
    write_launch_files(config, layout, tmp_path, recipes_dir())
    accelerate = yaml.safe_load((tmp_path / "accelerate.yaml").read_text())
    assert accelerate["distributed_type"] == "DEEPSPEED" and accelerate["num_processes"] == 8
    assert (accelerate["num_machines"], accelerate["machine_rank"]) == (2, 1)
    assert (accelerate["main_process_ip"], accelerate["main_process_port"]) == ("10.1.2.3", 29500)
    ds = json.loads((tmp_path / "ds_config.json").read_text())
    assert (
        ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    )
    assert ds["bf16"]["enabled"] and ds["train_micro_batch_size_per_gpu"] == 1  # packed rows
    assert "export CUDA_VISIBLE_DEVICES=0,1,2,3" in (tmp_path / "launch.sh").read_text()


def test_bad_configs_are_one_line(rdft, tmp_path):
    typo = variant(tmp_path, "typo", train={"learning_rat": 1e-4})
    assert "unknown key 'train.learning_rat'; did you mean 'learning_rate'?" in one_line_error(rdft("train", str(typo)))
    qlora = variant(tmp_path, "qlora", method={"type": "qlora"})
    assert "QLoRA needs a CUDA GPU" in one_line_error(rdft("train", str(qlora), "--dry-run"))
    zero3 = variant(tmp_path, "zero3", distributed={"strategy": "zero3"})
    assert "zero3 with one process shards nothing" in one_line_error(rdft("train", str(zero3), "--dry-run"))
    twice = one_line_error(rdft("train", str(TINY_CONFIG), "--gpus", "0,0", "--dry-run"))
    assert "--gpus '0,0' lists a GPU twice; give each index once" in twice
    gpus = one_line_error(rdft("train", str(TINY_CONFIG), "--gpus", "3", "--dry-run"))
    assert "GPU(s) [3] not found" in gpus
    assert "does not exist" in one_line_error(rdft("train", str(tmp_path / "nope.yaml")))
    bf16 = variant(tmp_path, "bf16", model={"dtype": "bfloat16"})
    assert "use float32" in one_line_error(rdft("train", str(bf16), "--dry-run"))


def test_shipped_configs_validate():
    from rdft.training.config import load_config

    for path in sorted((REPO / "recipes" / "configs").glob("*.yaml")):
        load_config(path)
