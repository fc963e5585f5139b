"""The memory planner counts parameters from the architecture and picks what fits."""

import json
import struct
from pathlib import Path

import pytest
import yaml
from conftest import QWEN25_7B, one_line_error
from hub_server import HubServer

from rdft.errors import RdftError
from rdft.resources import recipes_dir
from rdft.training.models import shape_from_config
from rdft.training.planner import estimate_gib, plan


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
    # One row without recomputation fits 40 GiB (33.7 GiB estimated): it beats 16 rows with it,
    # which recompute every layer at 1.39× the time for a few percent larger matmuls.
    assert (tight.micro_batch_size, tight.gradient_checkpointing, tight.estimate_gib) == (1, False, 33.68)
    # Fixed choices are kept.
    fixed = plan(shape, memory_gib=139, micro_batch_size=2, checkpointing=True, **common)
    assert (fixed.micro_batch_size, fixed.gradient_checkpointing) == (2, True)
    # ZeRO-3 divides the weights of a full fine-tune over the processes.
    full = dict(method="full", dtype="bfloat16", lora_r=16, tokens=2048, checkpointing=True)
    assert estimate_gib(shape, processes=8, strategy="zero3", **full) < estimate_gib(shape, **full) / 3


QWEN25_05B = {**QWEN25_7B, "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
              "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2}  # fmt: skip

# Measured peaks on an H200, bf16, LoRA r16 all-linear unless "full". A regression pin: a new
# measurement outside the band re-fits the model in planner.py; it never widens the band.
# The stock HF Trainer (../shared/reference/gpu-anchors.md): 7B shape, padded rows of 2048, sdpa.
# rdft's recipe step (bench/gpu_suite.py on 2026-12-04, issue 25's table): packed rows, Liger.
MEASURED_PEAKS_GIB = [  # (recipe, model, method, attention, Liger, checkpointing, tokens, row, GiB)
    ("hf_trainer", QWEN25_7B, "lora", "sdpa", False, True, 8192, 2048, 30.3),
    ("hf_trainer", QWEN25_7B, "lora", "sdpa", False, False, 8192, 2048, 80.0),
    ("hf_trainer", QWEN25_7B, "lora", "sdpa", True, True, 8192, 2048, 28.9),
    ("hf_trainer", QWEN25_7B, "lora", "sdpa", True, False, 8192, 2048, 56.0),
    ("hf_trainer", QWEN25_7B, "lora", "sdpa", True, False, 16384, 2048, 97.2),
    ("rdft", QWEN25_7B, "lora", "flex_attention", True, False, 16384, 2048, 120.5),  # lora case
    ("rdft", QWEN25_7B, "lora", "flex_attention", True, False, 16384, 4096, 120.5),  # skewed
    ("rdft", QWEN25_7B, "lora", "sdpa", True, False, 16384, 4096, 124.1),  # skewed_sdpa
    ("rdft", QWEN25_05B, "full", "flex_attention", True, False, 65536, 2048, 68.4),  # full
]


@pytest.mark.parametrize(
    ("recipe", "model", "method", "attention", "liger", "checkpointing", "tokens", "row", "measured"),
    MEASURED_PEAKS_GIB,
)
def test_estimate_matches_the_measured_h200_peaks(
    tmp_path, recipe, model, method, attention, liger, checkpointing, tokens, row, measured
):
    """Never below a measured peak by more than 5% (a plan that does not fit is an out-of-memory
    crash), never more than 10% above it (a card left idle)."""
    (tmp_path / "config.json").write_text(json.dumps(model))
    shape = shape_from_config(tmp_path / "config.json")
    estimate = estimate_gib(
        shape,
        method=method,
        dtype="bfloat16",
        lora_r=16,
        tokens=tokens,
        attention=attention,
        checkpointing=checkpointing,
        row_length=row,
        liger=liger,
        recipe=recipe,
    )
    assert -0.05 <= estimate / measured - 1 <= 0.10, (estimate, measured)


def test_kv_copies_follow_the_kernel(tmp_path):
    """K/V are copied to all 28 query heads of the 7B shape for flex_attention (a group of 7 is
    not a power of two) and for sdpa on packed rows; a group of 4 (Llama-3-8B's 32/8) needs no
    copy under flex: the estimate is lower by exactly the copies, 2·(32−8)·128·2 bytes a token a layer."""
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    seven = shape_from_config(tmp_path / "config.json")
    llama = {**QWEN25_7B, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096}
    (tmp_path / "config.json").write_text(json.dumps(llama))
    four = shape_from_config(tmp_path / "config.json")
    from rdft.training.planner import expands_kv

    assert expands_kv(seven, "flex_attention") and expands_kv(seven, "sdpa") and not expands_kv(four, "flex_attention")
    common = dict(method="lora", dtype="bfloat16", lora_r=16, tokens=8192, checkpointing=False, row_length=2048)
    with_copies = estimate_gib(four, attention="sdpa", **common) - estimate_gib(
        four, attention="flex_attention", **common
    )
    mask = (8192 * 2048 * 8 + 8192 * 2048 * 2 * 28) * 1.1 / 2**30  # 28 layers
    copies = 8192 * 28 * 2 * (32 - 8) * 128 * 2 * 1.1 / 2**30
    assert with_copies == pytest.approx(mask + copies, rel=1e-9)


def test_plan_says_when_nothing_fits(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    shape = shape_from_config(tmp_path / "config.json")
    with pytest.raises(RdftError, match="the model does not fit"):
        plan(shape, method="full", dtype="bfloat16", lora_r=16, max_length=4096, memory_gib=24)


def test_unknown_architecture_names_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery", "d_model": 8}))
    with pytest.raises(RdftError, match=r"set train\.micro_batch_size and train\.gradient_checkpointing by hand"):
        shape_from_config(tmp_path / "config.json")


def test_estimate_matches_the_measured_peak_on_the_tiny_model(shared_dirs, train_env):
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
    errors = []
    for row in json.loads(result.tail.strip().splitlines()[-1]):
        estimate = estimate_gib(
            shape, method="lora", dtype="float32", lora_r=16, tokens=row["tokens"], checkpointing=False, device="cpu"
        )
        errors.append(round(estimate / (row["peak_bytes"] / 2**30) - 1, 4))
    # Measured −4.6% and +2.4% (torch 2.13 CPU; the count is exact, so it repeats): within −6% … +10%.
    assert all(-0.06 <= error <= 0.10 for error in errors), errors


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
        assert "sft.py --config train.resolved.yaml" in result.stdout  # the launch script
        shown = json.loads(result.stderr[result.stderr.index("{") :])
        assert shown["layout"]["processes"] == int(gpus.split("x")[0])
        assert shown["layout"]["strategy"] == ("ddp" if gpus.startswith("8x") else "single")
        written = yaml.safe_load((tmp_path / gpus / "train.resolved.yaml").read_text())
        assert written["train"]["micro_batch_size"] == shown["plan"]["micro_batch_size"]
        # One sample of a few tokens: no row holds two, so sdpa (flex_attention would only add overhead).
        assert written["model"]["attn_implementation"] == shown["attention"]["chosen"] == "sdpa"
        assert shown["attention"] == {
            "asked": "auto",
            "chosen": "sdpa",
            "samples": 1,
            "several_a_row": False,
            "counted_with": "bytes/4",
        }
        return shown["plan"]

    # Planned assuming the cuda train env, which has Liger (see planner.py): 141 GiB holds 2 rows
    # of 4096 without recomputation (4 would need ~132 GiB with sdpa's mask and K/V copies, over
    # 90% of the card); 32 GiB holds one only with checkpointing.
    large, small = dry_run("1x141GiB"), dry_run("1x32GiB")
    assert large["tokens_per_micro_batch"] >= 8192 and large["gradient_checkpointing"] is False
    assert (large["micro_batch_size"], large["estimate_gib"]) == (2, 74.56)
    assert small["gradient_checkpointing"] is True and (small["micro_batch_size"], small["estimate_gib"]) == (1, 25.05)
    # 24 GiB: one 4096-token row needs ~25.1 GiB even with checkpointing (the anchors measured
    # 28.9 GiB at 8,192 tokens with Liger and checkpointing): refused with the fix; rows of 2048
    # fit with checkpointing.
    refused = rdft("train", tmp_path / "lora.yaml", "--dry-run", "--assume-gpus", "1x24GiB")
    assert refused.returncode != 0 and "Traceback" not in refused.output
    assert "needs ~25.1 GiB of 24.0 GiB per GPU; use qlora or lower data.max_length" in refused.output
    config = yaml.safe_load((tmp_path / "lora.yaml").read_text())
    config["data"]["max_length"] = 2048
    (tmp_path / "lora-2048.yaml").write_text(yaml.safe_dump(config))
    shorter = rdft(
        "train", tmp_path / "lora-2048.yaml", "--workspace", tmp_path / "2048", "--dry-run", "--assume-gpus", "1x24GiB"
    )
    assert shorter.returncode == 0, shorter.output
    planned = json.loads(shorter.stderr[shorter.stderr.index("{") :])["plan"]
    assert (planned["micro_batch_size"], planned["gradient_checkpointing"], planned["estimate_gib"]) == (1, True, 20.76)

    cluster = dry_run("8x80GiB")  # LoRA on 8 cards: DDP, each card planned on its own memory
    assert (cluster["micro_batch_size"], cluster["gradient_checkpointing"], cluster["estimate_gib"]) == (
        1,
        False,
        45.79,
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
        return rdft(
            "train",
            tmp_path / "hub.yaml",
            "--workspace",
            tmp_path / "ws",
            "--dry-run",
            "--assume-gpus",
            "1x141GiB",
            env=env,
        )

    repos = {"Qwen/Qwen2.5-7B-Instruct": qwen, "acme/gated": qwen, "acme/bare": bare}
    with HubServer(repos, gated={"acme/gated": "hf_right"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        planned = dry_run("Qwen/Qwen2.5-7B-Instruct", env)
        assert planned.returncode == 0, planned.output
        plan_shown = json.loads(planned.stderr[planned.stderr.index("{") :])["plan"]
        assert (plan_shown["micro_batch_size"], plan_shown["estimate_gib"]) == (2, 74.56)
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


def test_attention_auto_follows_what_the_rows_hold(rdft, tmp_path):
    """`attn_implementation: auto` on a GPU: sdpa when no packed row holds two samples (every
    sample near data.max_length), flex_attention when rows hold several (short samples); the
    lengths counted with the model's tokenizer.json where the folder has one."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    config_path = lora_7b_config(tmp_path)
    config = yaml.safe_load(config_path.read_text())
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "word": 1}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.save(str(tmp_path / "qwen25-7b" / "tokenizer.json"))  # one token a word

    def attention(rows: list[dict], name: str) -> dict:
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        config["data"]["path"] = str(tmp_path / f"{name}.jsonl")
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = rdft(
            "train", tmp_path / f"{name}.yaml", "--workspace", tmp_path / name, "--dry-run", "--assume-gpus", "1x141GiB"
        )
        assert result.returncode == 0, result.output
        shown = json.loads(result.stderr[result.stderr.index("{") :])
        written = yaml.safe_load((tmp_path / name / "train.resolved.yaml").read_text())
        assert written["model"]["attn_implementation"] == shown["attention"]["chosen"]
        return shown["attention"]

    # 3,000 words + markers: one sample a row of 4096 (two would need ~6,100 tokens).
    long_rows = [{"instruction": "word " * 1500, "output": "word " * 1500} for _ in range(6)]
    short_rows = [{"instruction": "word " * 50, "output": "word " * 50} for _ in range(6)]
    assert attention(long_rows, "long") == {
        "asked": "auto",
        "chosen": "sdpa",
        "samples": 6,
        "several_a_row": False,
        "counted_with": "tokenizer.json",
    }
    assert attention(short_rows, "short")["chosen"] == "flex_attention"
    assert attention(long_rows + short_rows, "mixed")["chosen"] == "flex_attention"  # some row holds two
    # On a CPU, or with packing off, sdpa whatever the rows hold (flex_attention has no CPU backward).
    config["data"]["packing"] = False
    assert attention(short_rows, "unpacked") == {"asked": "auto", "chosen": "sdpa"}


def test_the_coders_train_yaml_stays_and_a_child_is_planned_again(rdft, tmp_path):
    """The resolved plan goes to train.resolved.yaml beside the coder's train.yaml, which keeps its
    `auto`s: the next loop's coder copies train.yaml (rdft/loop/run.py), so a child with another
    data.max_length is planned for its own rows, not stuck with its parent's micro-batch."""
    parent, child = tmp_path / "Loop_0", tmp_path / "Loop_1"
    parent.mkdir()
    config = yaml.safe_load(lora_7b_config(tmp_path).read_text())
    (parent / "train.yaml").write_text(yaml.safe_dump(config))
    written = (parent / "train.yaml").read_text()

    def planned(workspace: Path) -> dict:
        result = rdft(
            "train", workspace / "train.yaml", "--workspace", workspace, "--dry-run", "--assume-gpus", "1x80GiB"
        )
        assert result.returncode == 0, result.output
        resolved = yaml.safe_load((workspace / "train.resolved.yaml").read_text())["train"]
        return {key: resolved[key] for key in ("micro_batch_size", "gradient_checkpointing")}

    assert planned(parent) == {"micro_batch_size": 1, "gradient_checkpointing": False}
    assert (parent / "train.yaml").read_text() == written  # the coder's file, auto kept
    child.mkdir()
    copied = yaml.safe_load((parent / "train.yaml").read_text())  # what the child's coder starts from
    copied["data"]["max_length"] = 1024
    (child / "train.yaml").write_text(yaml.safe_dump(copied))
    assert copied["train"]["micro_batch_size"] == "auto"
    assert planned(child) == {"micro_batch_size": 4, "gradient_checkpointing": False}
