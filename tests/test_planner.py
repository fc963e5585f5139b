"""The memory planner counts parameters from the architecture and picks what fits."""

import json
import struct
from pathlib import Path

import pytest

from rdft.errors import RdftError
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
    assert roomy.gradient_checkpointing is False and roomy.estimate_gib <= 0.9 * 139
    assert tight.estimate_gib <= 0.9 * 40
    assert (tight.micro_batch_size, tight.gradient_checkpointing) != (roomy.micro_batch_size, False)
    # Fixed choices are kept.
    fixed = plan(shape, memory_gib=139, micro_batch_size=2, checkpointing=True, **common)
    assert (fixed.micro_batch_size, fixed.gradient_checkpointing) == (2, True)
    # ZeRO-3 divides the weights of a full fine-tune over the processes.
    full = dict(method="full", dtype="bfloat16", lora_r=16, tokens=2048, checkpointing=True)
    assert estimate_gib(shape, processes=8, strategy="zero3", **full) < estimate_gib(shape, **full) / 3


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
