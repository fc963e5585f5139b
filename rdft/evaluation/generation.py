"""How scoring generates on a GPU: lm-eval's backend arguments from the model's shape and the
cards' memory, instead of lm-eval's defaults.

- vLLM (the `score` env, or an eval env that has it): `max_model_len` = min(the model's limit,
  the longest prompt + max_gen_toks), so the KV cache is not reserved for 32k-token rows nobody
  asks for; one replica per GPU (`data_parallel_size`) when the weights fit one card, tensor
  parallel over the fewest cards that hold them with room for the KV cache otherwise; an
  adapter through vLLM's LoRA.
- hf (the fallback): bf16; an explicit batch size from memory — what is left after the weights,
  divided by one sequence's KV cache at the longest prompt + max_gen_toks, at most 64 — in place
  of `batch_size auto`, whose probe at 32k tokens settles near batch 4 (gpu-anchors.md); an
  adapter merged into a copy of the base first (PEFT's unmerged LoRA layers cost a matmul pair
  per linear per token); and a static KV cache (`cache_implementation=static`, passed to
  `generate` through lm-eval's gen_kwargs), with which transformers compiles the decode step:
  on the H200 anchors it took batch 64 of a 1.5B model from 2,533 to 8,137–8,510 generated
  tokens/s. Its cost is a compilation per new cache shape (35 s on an H200): lm-eval's batches
  are sorted by length, so a split of similar prompts compiles a few times; the GPU suite's
  `score` arm times a second prompt length to show that cost next to the gain. On a CPU, never
  (no compiled decode there, and the dynamic cache is what the tests measure).

Prompt lengths are bounded from the docs without a tokenizer: a token of a byte-level BPE (or
of SentencePiece with byte fallback) is at least one UTF-8 byte, so a doc's JSON line in bytes
(which holds more than its prompt; the docs keep non-ASCII text unescaped, where one character
can be three tokens) plus room for the chat template bounds its prompt's tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

from rdft.errors import RdftError
from rdft.training.models import ModelShape, shape_from_config

TEMPLATE_ROOM = 1024  # tokens for the chat template and the prompt's fixed text
MAX_HF_BATCH = 64  # the anchors' batch: 2.5k tokens/s at 64 against ~0.3k at lm-eval's default
VLLM_MEMORY = 0.85  # vLLM's gpu_memory_utilization
STATIC_CACHE = "cache_implementation=static"  # lm-eval's --gen_kwargs for hf on a GPU
WEIGHTS_SHARE = 0.5  # weights up to this share of a card leave the KV cache room for a replica
VLLM_WORKSPACE_GIB = 2.0  # per card, beside weights and KV cache: vLLM's profiling activations, CUDA graphs


def shape_of(model: str) -> ModelShape | None:
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    try:
        return shape_from_config(config)
    except RdftError:
        return None  # an architecture the planner does not know: lm-eval's defaults


def context_length(model: str) -> int | None:
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    raw = json.loads(config.read_text())
    return raw.get("max_position_embeddings") or raw.get("text_config", {}).get("max_position_embeddings")


def longest_prompt_bound(docs: list[Path]) -> int:
    """An upper bound of the tokens of any prompt in the docs files."""
    longest = 0
    for path in docs:
        for line in path.read_bytes().splitlines():
            longest = max(longest, len(line))
    return longest + TEMPLATE_ROOM


def weights_gib(shape: ModelShape) -> float:
    return shape.params * 2 / 2**30  # bf16


def kv_bytes_per_token(shape: ModelShape) -> int:
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * 2  # K and V, bf16


def vllm_args(
    model: str, adapter: Path | None, gpu_memory: list[float], max_gen_toks: int, prompt_tokens: int
) -> list[str]:
    context = context_length(model)
    length = prompt_tokens + max_gen_toks
    max_model_len = min(context, length) if context else length
    count = max(len(gpu_memory), 1)
    shape = shape_of(model)
    tensor = count if shape is None else tensor_parallel(shape, gpu_memory, max_model_len)  # unknown: every card
    args = [f"pretrained={model}", "dtype=auto", f"gpu_memory_utilization={VLLM_MEMORY}",
            f"tensor_parallel_size={tensor}", f"data_parallel_size={max(count // tensor, 1)}",
            f"max_model_len={max_model_len}"]  # fmt: skip
    if adapter is not None:
        rank = json.loads((adapter / "adapter_config.json").read_text()).get("r", 16)
        args += [f"lora_local_path={adapter}", f"max_lora_rank={max(16, 1 << (int(rank) - 1).bit_length())}"]
    return args


def tensor_parallel(shape: ModelShape, gpu_memory: list[float], max_model_len: int) -> int:
    """The fewest cards to shard the weights over, in a size vLLM accepts (it divides the attention
    heads). First the sizes that also divide the cards (the replicas use every card), with the
    weights at most half of each card (the KV cache has room to batch); then any such size, some
    cards left idle; last, the weights, one max_model_len sequence's KV cache and vLLM's
    workspace within VLLM_MEMORY of each card (vLLM starts, with small batches)."""
    if not gpu_memory:
        return 1
    count, card = len(gpu_memory), min(gpu_memory)
    sizes = [t for t in range(1, count + 1) if shape.heads % t == 0]
    whole = [t for t in sizes if count % t == 0]

    def one_sequence_gib(size: int) -> float:  # each rank holds its share of the KV heads (one at least)
        return kv_bytes_per_token(shape) * max_model_len / max(1, min(size, shape.kv_heads)) / 2**30

    for candidates in (whole, sizes):
        for size in candidates:
            if weights_gib(shape) / size <= WEIGHTS_SHARE * card:
                return size
    for size in sizes:
        if weights_gib(shape) / size + one_sequence_gib(size) + VLLM_WORKSPACE_GIB <= VLLM_MEMORY * card:
            return size
    raise RdftError(
        f"the model's {weights_gib(shape):.0f} GiB of weights and the KV cache of one {max_model_len}-token sequence "
        f"do not fit {count} GPU(s) of {card:.0f} GiB in a tensor-parallel size that divides its {shape.heads} heads "
        f"({', '.join(map(str, sizes))}); use more GPUs or a shorter --max-gen-toks"
    )


def hf_batch_size(model: str, gpu_memory: float, max_gen_toks: int, prompt_tokens: int) -> int | None:
    """The largest batch whose KV cache fits beside the weights (80% of the card), at most 64;
    None when the model's shape is unknown (then lm-eval's `auto`)."""
    shape = shape_of(model)
    if shape is None:
        return None
    context = context_length(model)
    sequence = min(context, prompt_tokens + max_gen_toks) if context else prompt_tokens + max_gen_toks
    free = 0.8 * gpu_memory - 1.1 * weights_gib(shape)
    per_sequence = kv_bytes_per_token(shape) * sequence / 2**30
    # Generation's activations are one token per sequence: the KV cache is the memory that grows.
    return max(1, min(MAX_HF_BATCH, int(free / (1.25 * per_sequence)))) if free > 0 else 1


# --- sampling: how many answers an item gets, and at what temperature --------------------------
GENERATIONS = 100  # items × samples a small split is scored with, at least: no one lucky answer decides
MAX_SAMPLES = 16
SAMPLING = (0.6, 0.95)  # temperature, top-p: the usual reasoning-model settings, when the model names none


def samples_for(items: int) -> int:
    """Samples per item: 1 (greedy) for splits of GENERATIONS items or more, else enough that
    items × samples reaches GENERATIONS (at most MAX_SAMPLES)."""
    return 1 if items >= GENERATIONS else min(MAX_SAMPLES, -(-GENERATIONS // max(1, items)))


def model_sampling(model: str | Path) -> tuple[float, float]:
    """(temperature, top-p) from the model's generation_config.json, else SAMPLING."""
    path = Path(model) / "generation_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return SAMPLING
    temperature, top_p = config.get("temperature"), config.get("top_p")
    valid = isinstance(temperature, (int, float)) and temperature > 0
    return (
        float(temperature) if valid else SAMPLING[0],
        float(top_p) if isinstance(top_p, (int, float)) and 0 < top_p <= 1 else SAMPLING[1],
    )
