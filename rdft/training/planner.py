"""Memory planner: peak memory per GPU from the model's architecture, and the micro-batch and
gradient checkpointing that fit with the best throughput.

Parameters are counted from `config.json` (Llama/Qwen2/Mistral-style decoders), never guessed
from a model's name. With b the bytes per weight (2 for bf16/fp16, 4 for fp32, ~0.55 for
4-bit QLoRA linears), P the parameters, L the LoRA parameters, W the processes, T the tokens
in one micro-batch:

    weights      = P·b                 (ZeRO-3: /W; with offload: 0)
    LoRA states  = 16·L                (fp32 weight + grad + two Adam moments)
    full states  = 3·P·b               (grad + two Adam moments in the weight dtype; ZeRO-2/3: /W)
    activations  = T·layers·A          without checkpointing, A = b·(10·hidden + 4·intermediate) for
                                       LoRA (its adapters' own inputs and outputs are ~5 of the 10
                                       hidden-sized terms; a full fine-tune has 5·hidden). Liger's
                                       fused SwiGLU recomputes one intermediate tensor (3·intermediate)
                                       in the stock Trainer; rdft's LoRA step under bf16 autocast
                                       does not show that saving on the H200, so it is not counted
                 + T·layers·b·2·(heads − kv_heads)·head_dim
                                       where transformers copies K and V to every query head before
                                       the kernel: sdpa with a mask (packed rows), flex_attention
                                       when heads/kv_heads is not a power of two (28/4 for 7B)
                 = T·(layers·hidden·b + A) with checkpointing (saved layer inputs + one layer)
    logits       = T·vocab·4·2         (fp32 logits and their gradient for the loss; 0 with
                                        Liger and no checkpointing, as Liger's fused loss never
                                        materialises them; with checkpointing the anchors show
                                        Liger saving 1.4 GiB, not these 9.3: the peak moves into
                                        the backward, so the term stays as its stand-in)
    mask         = T·R·8 (+ T·R·b·layers on a GPU)
                                       (R tokens per row: the 4-D block-diagonal mask transformers
                                        builds for sdpa/eager on packed rows, 8 bytes per element
                                        measured on CPU; on the H200 sdpa on rows of 4096 took
                                        3 GiB more than flex_attention, one bf16 mask a layer kept
                                        for the backward. 0 for flex_attention and
                                        flash_attention_2, which work from the samples'
                                        boundaries, and for the stock Trainer's padded batches of
                                        full rows, where sdpa runs causal without a mask)
    peak         = (weights + states + activations + logits + mask)·1.1 + context
                   (context: 0.75 GiB on a GPU for the CUDA context and allocator; 0 on CPU)

The planner tries 1…64 rows per micro-batch and keeps the largest that fits in 90% of memory
without checkpointing; only when none fits does it turn checkpointing on (then the largest that
fits with it). Recomputation costs 1.39× on the H200 anchors (11,424 against 8,218 tokens/s),
while more tokens per micro-batch gain little once a row is long (+5% from 8,192 to 16,384,
Liger, no checkpointing), so a micro-batch that fits without recomputation beats a larger one
with it.

Error against measured peaks on an H200 (bf16; tests/test_planner.py asserts every row within
−5% … +10% as a regression pin: a new measurement that falls outside re-fits the model, it does
not widen the band). The stock HF Trainer (../gpu-anchors; Qwen2.5-7B shape, LoRA r16
all-linear, rows of 2048, sdpa, padded batches), `recipe="hf_trainer"`:

    micro-batch 4, checkpointing            30.3 GiB measured, 30.8 estimated (+1.6%)
    micro-batch 4                           80.0 measured, 79.7 estimated (−0.4%)
    Liger, micro-batch 4, checkpointing     28.9 measured, 30.5 estimated (+5.4%)
    Liger, micro-batch 4                    56.0 measured, 60.6 estimated (+8.2%)
    Liger, micro-batch 8                    97.2 measured, 104.1 estimated (+7.1%)

rdft's own recipe step (bench/gpu_suite.py, 2026-12-04; Liger, bf16 autocast for LoRA, no
checkpointing), `recipe="rdft"`:

    7B LoRA, 8 rows of 2048, flex_attention           120.5 measured, 127.7 estimated (+6.0%)
    7B LoRA, 4 packed rows of 4096, flex_attention    120.5 measured, 127.7 estimated (+6.0%)
    7B LoRA, 4 packed rows of 4096, sdpa              124.1 measured, 132.1 estimated (+6.4%)
    0.5B full fine-tune, 32 rows of 2048, flex        68.4 measured, 72.3 estimated (+5.7%)
"""

from __future__ import annotations

from dataclasses import dataclass

from rdft.errors import RdftError
from rdft.training.models import ModelShape

GIB = 2**30
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
CONTEXT_GIB = 0.75
FLASH_ATTENTION = ("flex_attention", "flash_attention_2")  # attention from the samples' boundaries, no mask


def estimate_gib(
    shape: ModelShape,
    *,
    method: str,
    dtype: str,
    lora_r: int,
    tokens: int,
    checkpointing: bool,
    processes: int = 1,
    strategy: str = "single",
    offload: bool = False,
    row_length: int | None = None,
    attention: str = "sdpa",
    device: str = "cuda",
    liger: bool = False,
    recipe: str = "rdft",
) -> float:
    """Estimated peak memory of one GPU, in GiB (formula in the module docstring). `recipe` is
    "rdft" (sft.py's packed rows, what rdft plans) or "hf_trainer" (the stock Trainer's padded
    batches, which the anchors measured)."""
    b = DTYPE_BYTES[dtype]
    if method == "qlora":
        weights = shape.linear_params * 0.55 + (shape.params - shape.linear_params) * b
    else:
        weights = shape.params * b
    if strategy == "zero3":
        weights = 0 if offload else weights / processes
    if method == "full":
        states = 3 * shape.params * b
        if strategy in ("zero2", "zero3"):
            states = 0 if offload else states / processes
    else:
        states = 16 * shape.lora_params(lora_r)
    packed = recipe == "rdft"
    # Liger's fused SwiGLU keeps one intermediate tensor fewer in the stock Trainer; rdft's LoRA
    # step under bf16 autocast does not show that saving on the H200 (measured, see the docstring).
    liger_saves = liger and not (packed and device == "cuda" and method != "full")
    hidden_terms = 5 if method == "full" else 10  # LoRA's own path saves ~5 hidden-sized tensors a layer
    per_layer = b * (hidden_terms * shape.hidden + (3 if liger_saves else 4) * shape.intermediate)
    if packed and expands_kv(shape, attention):
        per_layer += b * 2 * (shape.heads - shape.kv_heads) * shape.head_dim
    if checkpointing:
        activations = tokens * (shape.layers * shape.hidden * b + per_layer)
    else:
        activations = tokens * shape.layers * per_layer
    logits = 0 if liger and not checkpointing else tokens * shape.vocab * 4 * 2
    mask = 0.0
    if packed and attention not in FLASH_ATTENTION:  # a padded batch of full rows needs none (is_causal)
        rows = tokens * (row_length or tokens)
        mask = rows * 8 + (rows * b * shape.layers if device == "cuda" else 0)
    context = CONTEXT_GIB if device == "cuda" else 0.0
    return ((weights + states + activations + logits + mask) * 1.1) / GIB + context


def expands_kv(shape: ModelShape, attention: str) -> bool:
    """Whether transformers copies K and V to every query head before the kernel (the copies are
    saved for the backward): flex_attention takes grouped heads only when the group size is a
    power of two (Qwen2.5-7B's 28/4 = 7 is not); sdpa with a mask (packed rows) always copies."""
    if shape.heads == shape.kv_heads:
        return False
    if attention == "flex_attention":
        group = shape.heads // shape.kv_heads
        return group & (group - 1) != 0
    return attention in ("sdpa", "eager")


@dataclass(frozen=True)
class Plan:
    micro_batch_size: int
    gradient_checkpointing: bool
    estimate_gib: float
    memory_gib: float
    tokens_per_micro_batch: int  # at most: rows of max_length tokens (packed) or samples of it


def plan(
    shape: ModelShape,
    *,
    method: str,
    dtype: str,
    lora_r: int,
    max_length: int,
    memory_gib: float,
    processes: int = 1,
    strategy: str = "single",
    offload: bool = False,
    micro_batch_size: int | None = None,
    checkpointing: bool | None = None,
    attention: str = "sdpa",
    device: str = "cuda",
    liger: bool = False,
) -> Plan:
    """The largest micro-batch that fits without checkpointing, else the largest with it (module
    docstring); fixed values are respected."""

    def need(size: int, mode: bool) -> float:
        return estimate_gib(
            shape,
            method=method,
            dtype=dtype,
            lora_r=lora_r,
            tokens=size * max_length,
            checkpointing=mode,
            processes=processes,
            strategy=strategy,
            offload=offload,
            row_length=max_length,
            attention=attention,
            device=device,
            liger=liger,
        )

    best: Plan | None = None
    sizes = [micro_batch_size] if micro_batch_size else [1, 2, 4, 8, 16, 32, 64]
    modes = [checkpointing] if checkpointing is not None else [False, True]
    for mode in modes:  # no recomputation first: checkpointing only when nothing fits without it
        for size in sizes:
            needed = need(size, mode)
            if needed <= 0.9 * memory_gib:
                best = Plan(size, mode, round(needed, 2), memory_gib, size * max_length)
        if best is not None:
            break
    if best is None:
        smallest = need(1, True)
        fixes = {"full": "use lora or qlora, lower data.max_length, or zero3 over more GPUs",
                 "lora": "use qlora or lower data.max_length", "qlora": "lower data.max_length"}  # fmt: skip
        raise RdftError(
            f"the model does not fit: even micro-batch 1 with checkpointing needs ~{smallest:.1f} GiB of "
            f"{memory_gib:.1f} GiB per GPU; {fixes.get(method, fixes['full'])}"
        )
    return best
