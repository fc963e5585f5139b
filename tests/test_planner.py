"""The memory planner counts parameters from the architecture and picks what fits."""

import json
import struct
from pathlib import Path

import pytest
import yaml
from conftest import one_line_error
from hub_server import HubServer

from rdft.errors import RdftError
from rdft.resources import recipes_dir
from rdft.training.planner import estimate_gib, plan, shape_from_config

# Qwen2.5-7B's published config.json (the fields the planner reads).
QWEN25_7B = {
    "model_type": "qwen2",
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}


def safetensors_numel(path: Path) -> int:
    """Parameter count from a safetensors header (no torch on the host)."""
    with open(path, "rb") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(size))
    total = 0
    for name, meta in header.items():
        if name != "__metadata__":
            count = 1
            for dim in meta["shape"]:
                count *= dim
            total += count
    return total


def test_counts_the_tiny_models_parameters_exactly(shared_dirs, train_env):
    model = Path(shared_dirs["FT_FILE_PATH"]).resolve() / "models" / "tiny-llama"
    if not (model / "config.json").is_file():
        from rdft.resources import recipes_dir

        assert train_env.run(["python", str(recipes_dir() / "tiny_model.py"), "--out", str(model)]).ok
    shape = shape_from_config(model / "config.json")
    assert shape.params == safetensors_numel(model / "model.safetensors")


def test_counts_qwen25_7b(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    shape = shape_from_config(tmp_path / "config.json")
    assert shape.params == 7_615_616_512  # Qwen2.5-7B's published count (7.62B)
    assert shape.lora_params(16) == 40_370_176  # r=16 on q,k,v,o,gate,up,down: PEFT's count


def test_plan_prefers_no_checkpointing_when_memory_allows(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    shape = shape_from_config(tmp_path / "config.json")
    common = dict(method="lora", dtype="bfloat16", lora_r=16, max_length=2048)
    roomy = plan(shape, memory_gib=139, **common)
    tight = plan(shape, memory_gib=40, **common)
    assert (roomy.micro_batch_size, roomy.gradient_checkpointing) == (4, False) and roomy.estimate_gib <= 0.9 * 139
    # One row without recomputation fits 40 GiB (32.7 GiB estimated): it beats 16 rows with it,
    # which recompute every layer at 1.39× the time for a few percent larger matmuls.
    assert (tight.micro_batch_size, tight.gradient_checkpointing, tight.estimate_gib) == (1, False, 32.72)
    # Fixed choices are kept.
    fixed = plan(shape, memory_gib=139, micro_batch_size=2, checkpointing=True, **common)
    assert (fixed.micro_batch_size, fixed.gradient_checkpointing) == (2, True)
    # ZeRO-3 divides the weights of a full fine-tune over the processes.
    full = dict(method="full", dtype="bfloat16", lora_r=16, tokens=2048, checkpointing=True)
    assert estimate_gib(shape, processes=8, strategy="zero3", **full) < estimate_gib(shape, **full) / 3


# The stock HF stack's peaks on an H200 (../shared/reference/gpu-anchors.md): Qwen2.5-7B shape,
# LoRA r16 all-linear, micro-batch 4 (or 8) of 2048 tokens, bf16, SDPA with a mask.
ANCHOR_PEAKS_GIB = [  # (Liger, checkpointing, tokens, measured GiB)
    (False, True, 8192, 30.3),
    (False, False, 8192, 80.0),
    (True, True, 8192, 28.9),
    (True, False, 8192, 56.0),
    (True, False, 16384, 97.2),
]


@pytest.mark.parametrize(("liger", "checkpointing", "tokens", "measured"), ANCHOR_PEAKS_GIB)
def test_estimate_matches_the_h200_anchors(tmp_path, liger, checkpointing, tokens, measured):
    """Never below a measured peak by more than a few percent (a plan that does not fit is an
    out-of-memory crash), never far above it (a card left idle)."""
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    shape = shape_from_config(tmp_path / "config.json")
    estimate = estimate_gib(shape, method="lora", dtype="bfloat16", lora_r=16, tokens=tokens,
                            checkpointing=checkpointing, row_length=2048, liger=liger)  # fmt: skip
    assert -0.03 <= estimate / measured - 1 <= 0.10, (estimate, measured)


def test_plan_says_when_nothing_fits(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    shape = shape_from_config(tmp_path / "config.json")
    with pytest.raises(RdftError, match="the model does not fit"):
        plan(shape, method="full", dtype="bfloat16", lora_r=16, max_length=4096, memory_gib=24)


def test_unknown_architecture_names_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery", "d_model": 8}))
    with pytest.raises(RdftError, match=r"set train\.micro_batch_size and train\.gradient_checkpointing by hand"):
        shape_from_config(tmp_path / "config.json")


def test_estimate_within_25_percent_of_measured_peak_on_the_tiny_model(shared_dirs, train_env):
    """Peak tensor memory of real LoRA steps of the tiny model on CPU, measured in the train env."""
    from rdft.resources import recipes_dir

    model = Path(shared_dirs["FT_FILE_PATH"]).resolve() / "models" / "tiny-llama"
    if not (model / "config.json").is_file():
        assert train_env.run(["python", str(recipes_dir() / "tiny_model.py"), "--out", str(model)]).ok
    data = recipes_dir() / "configs" / "data" / "tiny_chat.jsonl"
    script = Path(__file__).parent / "in_env" / "measure_peak.py"
    result = train_env.run(["python", str(script), str(recipes_dir()), str(model), str(data), "1024", "4096"])
    assert result.ok, result.tail
    shape = shape_from_config(model / "config.json")
    for row in json.loads(result.tail.strip().splitlines()[-1]):
        estimate = estimate_gib(
            shape, method="lora", dtype="float32", lora_r=16, tokens=row["tokens"], checkpointing=False, device="cpu"
        )
        measured = row["peak_bytes"] / 2**30
        assert abs(estimate / measured - 1) <= 0.25, (row, estimate, measured)


def lora_7b_config(folder: Path) -> Path:
    """The shipped 7B LoRA config, pointed at a folder holding Qwen2.5-7B's config.json (all a
    dry run reads of the model) and a one-row data file."""
    model = folder / "qwen25-7b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(QWEN25_7B))
    (folder / "data.jsonl").write_text(json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    config = yaml.safe_load((recipes_dir() / "configs" / "lora_single_gpu.yaml").read_text())
    config["model"]["path"], config["data"]["path"] = str(model), str(folder / "data.jsonl")
    (folder / "lora.yaml").write_text(yaml.safe_dump(config))
    return folder / "lora.yaml"


def test_dry_run_plans_for_assumed_gpus(rdft, tmp_path):
    """A laptop plans the 7B LoRA config for cards it does not have: a 141 GiB card takes ≥ 8k
    tokens per micro-batch without recomputation, a 32 GiB one needs checkpointing, a 24 GiB one
    cannot hold a row of 4096 (one of 2048 with checkpointing)."""
    lora_7b_config(tmp_path)

    def dry_run(gpus: str) -> dict:
        result = rdft(
            "train", tmp_path / "lora.yaml", "--workspace", tmp_path / gpus, "--dry-run", "--assume-gpus", gpus
        )
        assert result.returncode == 0, result.output
        assert "sft.py --config train.yaml" in result.stdout  # the launch script
        shown = json.loads(result.stderr[result.stderr.index("{") :])
        assert shown["layout"]["processes"] == int(gpus.split("x")[0])
        assert shown["layout"]["strategy"] == ("ddp" if gpus.startswith("8x") else "single")
        written = yaml.safe_load((tmp_path / gpus / "train.yaml").read_text())
        assert written["train"]["micro_batch_size"] == shown["plan"]["micro_batch_size"]
        assert written["model"]["attn_implementation"] == "flex_attention"  # packed rows on a GPU
        return shown["plan"]

    # Planned assuming the cuda train env, which has Liger (see planner.py): 141 GiB holds 4 rows
    # of 4096 without recomputation; 32 GiB holds one only with checkpointing.
    large, small = dry_run("1x141GiB"), dry_run("1x32GiB")
    assert large["tokens_per_micro_batch"] >= 8192 and large["gradient_checkpointing"] is False
    assert (large["micro_batch_size"], large["estimate_gib"]) == (4, 104.12)
    assert small["gradient_checkpointing"] is True and (small["micro_batch_size"], small["estimate_gib"]) == (1, 23.74)
    # 24 GiB: one 4096-token row needs ~23.7 GiB even with checkpointing (the anchors measured
    # 28.9 GiB at 8,192 tokens with Liger and checkpointing): refused with the fix; rows of 2048
    # fit with checkpointing.
    refused = rdft("train", tmp_path / "lora.yaml", "--dry-run", "--assume-gpus", "1x24GiB")
    assert refused.returncode != 0 and "Traceback" not in refused.output
    assert "needs ~23.7 GiB of 24.0 GiB per GPU; use qlora or lower data.max_length" in refused.output
    config = yaml.safe_load((tmp_path / "lora.yaml").read_text())
    config["data"]["max_length"] = 2048
    (tmp_path / "lora-2048.yaml").write_text(yaml.safe_dump(config))
    shorter = rdft("train", tmp_path / "lora-2048.yaml", "--workspace", tmp_path / "2048", "--dry-run",
                   "--assume-gpus", "1x24GiB")  # fmt: skip
    assert shorter.returncode == 0, shorter.output
    planned = json.loads(shorter.stderr[shorter.stderr.index("{") :])["plan"]
    assert (planned["micro_batch_size"], planned["gradient_checkpointing"], planned["estimate_gib"]) == (1, True, 20.38)

    cluster = dry_run("8x80GiB")  # LoRA on 8 cards: DDP, each card planned on its own memory
    assert (cluster["micro_batch_size"], cluster["gradient_checkpointing"], cluster["estimate_gib"]) == (
        2,
        False,
        60.57,
    )
    refused = rdft("train", tmp_path / "lora.yaml", "--assume-gpus", "1x141GiB")
    assert refused.returncode != 0 and "use it with --dry-run" in refused.output
    for typo in ("lots", "", "99999x80GiB", "8x0GiB", "8x0.5GiB"):
        bad = rdft("train", tmp_path / "lora.yaml", "--dry-run", "--assume-gpus", typo)
        assert f"--assume-gpus {typo!r} is not COUNTxMEMORY like 8x80GiB" in one_line_error(bad)


def test_dry_run_reads_a_hub_models_config(rdft, tmp_path):
    """A Hub id is planned from its config.json fetched from the Hub (here a local stand-in), and
    the Hub's own refusals are one line even in a dry run: a mistyped id is said before any run."""
    qwen, bare = tmp_path / "qwen", tmp_path / "bare"
    qwen.mkdir()
    bare.mkdir()
    (qwen / "config.json").write_text(json.dumps(QWEN25_7B))
    (bare / "README.md").write_text("no model here\n")
    config = yaml.safe_load(lora_7b_config(tmp_path).read_text())

    def dry_run(repo: str, env: dict):
        config["model"]["path"] = repo
        (tmp_path / "hub.yaml").write_text(yaml.safe_dump(config))
        return rdft("train", tmp_path / "hub.yaml", "--workspace", tmp_path / "ws", "--dry-run", "--assume-gpus",
                    "1x141GiB", env=env)  # fmt: skip

    repos = {"Qwen/Qwen2.5-7B-Instruct": qwen, "acme/gated": qwen, "acme/bare": bare}
    with HubServer(repos, gated={"acme/gated": "hf_right"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        planned = dry_run("Qwen/Qwen2.5-7B-Instruct", env)
        assert planned.returncode == 0, planned.output
        plan_shown = json.loads(planned.stderr[planned.stderr.index("{") :])["plan"]
        assert (plan_shown["micro_batch_size"], plan_shown["estimate_gib"]) == (4, 104.12)
        assert "is not a model repo on the Hub (or it is private: set HF_TOKEN); check the id" in one_line_error(
            dry_run("Qwen/Qwen2.5-7B-Instruc", env)
        )
        assert "is gated on the Hub; accept its terms there and set HF_TOKEN to a token with access" in one_line_error(
            dry_run("acme/gated", env)
        )
        assert dry_run("acme/gated", {**env, "HF_TOKEN": "hf_right"}).returncode == 0
        hub.revoked.add("hf_old")
        assert "the Hub refused HF_TOKEN (401 Unauthorized); set a valid token or unset it" in one_line_error(
            dry_run("Qwen/Qwen2.5-7B-Instruct", {**env, "HF_TOKEN": "hf_old", "HF_HOME": str(tmp_path / "hf3")})
        )
        assert "has no config.json on the Hub: not a transformers model" in one_line_error(dry_run("acme/bare", env))
    # No answer from the Hub (offline here; unreachable is the same after huggingface_hub's retries):
    # the dry run plans without the shape and says so.
    offline = dry_run("Qwen/Qwen2.5-7B", {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf2")})
    assert offline.returncode == 0, offline.output
    assert json.loads(offline.stderr[offline.stderr.index("{") :])["plan"].startswith("unknown")
