"""Training throughput on one GPU: the stock HF stack against rdft's recipe, in one process.

Baseline (what users run): `transformers.Trainer` + PEFT LoRA r16 on all linear layers,
gradient checkpointing on, padded micro-batches of 4, `adamw_torch_fused`, bf16, SDPA.
rdft: the recipe's own data path (`recipes/sft.py`: padding-free packing with position ids,
no attention across samples) and its training step, with gradient checkpointing and the
micro-batch chosen by rdft's memory planner, and Liger kernels when installed.

Model: random weights of the Qwen2.5-7B shape (no hub access needed). Two data mixes:
`uniform` (every sample 2048 tokens) and `skewed` (log-normal lengths, mean ≈ 600, max 4096).
Prints tokens/s, effective (non-pad) tokens/s, MFU (4N per token for LoRA, N = matmul
weights; attention FLOPs excluded), peak memory, and the ratios. Run inside the train env:

    rdft env run train -- python bench/train_throughput.py [--steps 10] [--warmup 3] [--case all]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
sys.path.insert(0, str(REPO))
import sft  # noqa: E402  (the recipe under test)

QWEN25_7B = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=32768,
)
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def lengths(case: str, n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    if case == "uniform":
        return [2048] * n
    # log-normal with mean ≈ 600 tokens, clipped to [32, 4096]
    sigma = 1.0
    mu = math.log(600) - sigma**2 / 2
    return [max(32, min(4096, int(rng.lognormvariate(mu, sigma)))) for _ in range(n)]


def samples_for(case: str, n: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for length in lengths(case, n):
        ids = torch.randint(100, QWEN25_7B["vocab_size"] - 100, (length,), generator=generator).tolist()
        half = length // 2  # the second half plays the assistant's answer
        out.append({"input_ids": ids, "labels": [sft.IGNORE] * half + ids[half:]})
    return out


def build_model(gradient_checkpointing: bool, liger: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**QWEN25_7B, tie_word_embeddings=False)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def matmul_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in n)


def run_baseline(samples: list[dict], steps: int, warmup: int) -> dict:
    """HF Trainer, padded batches of 4, checkpointing on."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = build_model(gradient_checkpointing=True, liger=False)
    rows = [{"input_ids": s["input_ids"], "labels": s["labels"]} for s in samples]
    times: list[float] = []
    batch_tokens: list[tuple[int, int]] = []  # (padded, real) per batch, in step order

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    def collate(batch):
        # Pad to the longest sample of the batch, as DataCollatorForSeq2Seq does.
        width = max(len(r["input_ids"]) for r in batch)
        batch_tokens.append((width * len(batch), sum(len(r["input_ids"]) for r in batch)))
        padded = sft.collate_padded(batch, 0)
        padded.pop("num_tokens")
        return padded

    args = TrainingArguments(
        output_dir="/tmp/bench-baseline", per_device_train_batch_size=4, max_steps=warmup + steps,
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}, bf16=True,
        optim="adamw_torch_fused", learning_rate=1e-4, report_to=[], save_strategy="no", logging_strategy="no",
        dataloader_num_workers=0, remove_unused_columns=False,
    )  # fmt: skip
    torch.cuda.reset_peak_memory_stats()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    timed = sum(times[warmup:])
    counted = batch_tokens[warmup : warmup + steps]  # one collate per step (no accumulation, no workers)
    result = {
        "tokens_per_s": sum(padded for padded, _ in counted) / timed,
        "effective_tokens_per_s": sum(real for _, real in counted) / timed,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "n_params": matmul_params(model),
    }
    del model
    torch.cuda.empty_cache()
    return result


def run_rdft(samples: list[dict], steps: int, warmup: int, memory_gib: float) -> dict:
    """The recipe's packing and step, with the planner's micro-batch and checkpointing."""
    from rdft.training.models import ModelShape
    from rdft.training.planner import plan

    shape = ModelShape(
        vocab=QWEN25_7B["vocab_size"],
        hidden=QWEN25_7B["hidden_size"],
        intermediate=QWEN25_7B["intermediate_size"],
        layers=QWEN25_7B["num_hidden_layers"],
        heads=28,
        kv_heads=4,
        head_dim=128,
        tied=False,
        qkv_bias=True,
    )
    try:
        import liger_kernel  # noqa: F401

        liger = True
    except ImportError:
        liger = False
    chosen = plan(shape, method="lora", dtype="bfloat16", lora_r=16, max_length=2048, memory_gib=memory_gib)
    model = build_model(chosen.gradient_checkpointing, liger)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    batches = sft.pack(samples, 2048, chosen.micro_batch_size, 0)
    torch.cuda.reset_peak_memory_stats()
    model.train()
    timed, real = 0.0, 0
    for index, batch in enumerate(batches[: warmup + steps]):
        tokens = batch.pop("num_tokens")
        batch = {k: v.cuda() for k, v in batch.items()}
        torch.cuda.synchronize()
        start = time.perf_counter()
        model(**batch, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if index >= warmup:
            timed += time.perf_counter() - start
            real += tokens
    result = {
        "tokens_per_s": real / timed,
        "effective_tokens_per_s": real / timed,  # padding excluded
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "plan": {"micro_batch_size": chosen.micro_batch_size, "gradient_checkpointing": chosen.gradient_checkpointing,
                 "estimate_gib": chosen.estimate_gib},
        "liger": liger,
        "n_params": matmul_params(model),
    }  # fmt: skip
    del model, optimizer
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--case", choices=["uniform", "skewed", "all"], default="all")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/train_throughput.py needs a CUDA GPU (H100/H200)")
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    import peft
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    report = {"gpu": name, **versions}
    cases = ["uniform", "skewed"] if args.case == "all" else [args.case]
    for case in cases:
        needed = (args.warmup + args.steps) * 64  # enough samples for either path
        samples = samples_for(case, needed)
        base = run_baseline(samples, args.steps, args.warmup)
        ours = run_rdft(samples, args.steps, args.warmup, memory)
        for result in (base, ours):
            result["mfu_4n"] = 4 * result.pop("n_params") * result["tokens_per_s"] / peak if peak else None
        report[case] = {
            "baseline": base,
            "rdft": ours,
            "ratio_tokens_per_s": ours["tokens_per_s"] / base["tokens_per_s"],
            "ratio_effective_tokens_per_s": ours["effective_tokens_per_s"] / base["effective_tokens_per_s"],
            "ratio_peak_memory": ours["peak_memory_gib"] / base["peak_memory_gib"],
        }
        print(json.dumps({case: report[case]}, indent=2), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
