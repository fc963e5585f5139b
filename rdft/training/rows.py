"""What the recipe's packed rows will hold, estimated on the host before any env starts: the
choice behind `model.attn_implementation: auto`.

sft.py packs the samples of each epoch, shuffled with `train.seed + epoch`, greedily into rows of
at most `data.max_length` tokens. When no row holds more than one sample, the rows need no
sample boundaries and sdpa is the faster kernel (the suite's `lora` case: flex_attention only adds
its block-mask overhead there); when rows hold several samples, flex_attention skips the blocks
between them and was 1.29× faster than sdpa's dense block-diagonal mask on the H200
(bench/RESULTS.md, `skewed` against `skewed_sdpa`).

The host has no chat template renderer of transformers' and never imports torch, so lengths are
estimated: the message texts counted with the model's own `tokenizer.json` (the `tokenizers`
library, which litellm already brings) where the model folder holds one, else UTF-8 bytes / 4;
plus the template's turn markers. The recipe counts exactly and records in its result.json how
many rows held several samples, so a wrong guess is visible, and it costs speed, never a
crash: the memory plan is made for the kernel chosen here.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

TURN_TOKENS = 8  # a chat template's markers around one message (<|im_start|>role\n … <|im_end|>\n)
PREAMBLE_TOKENS = 24  # a default system prompt some templates add (Qwen2.5's is ~20 tokens)


@dataclass(frozen=True)
class RowEstimate:
    samples: int  # samples that fit data.max_length (longer ones are dropped by the recipe)
    several_a_row: bool  # some row of the first epoch holds more than one sample
    counted_with: str  # "tokenizer.json" or "bytes/4"


def _texts(row: dict) -> list[str]:
    """The message texts of a chat or alpaca row (the rows were checked by check_rows)."""
    if isinstance(row.get("messages"), list):
        return [
            m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
            for m in row["messages"]
        ]
    return [str(row.get(key, "")) for key in ("system", "instruction", "input", "output") if row.get(key)]


def read_rows(data: Path) -> list[dict]:
    if data.suffix == ".json":
        return json.loads(data.read_text(encoding="utf-8"))
    with open(data, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sample_lengths(rows: list[dict], tokenizer_json: Path | None) -> tuple[list[int], str]:
    """Estimated tokens of each row as the recipe renders it."""
    count, how = (lambda text: len(text.encode("utf-8")) // 4), "bytes/4"
    if tokenizer_json is not None and tokenizer_json.is_file():
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception:  # a tokenizer.json this tokenizers version cannot read: fall back, said in the plan
            pass
        else:
            count, how = (lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)), "tokenizer.json"
    lengths = []
    for row in rows:
        texts = _texts(row)
        lengths.append(PREAMBLE_TOKENS + sum(count(text) + TURN_TOKENS for text in texts))
    return lengths, how


def several_a_row(lengths: list[int], max_length: int, seed: int) -> bool:
    """Whether sft.py's greedy packing of the first epoch (its shuffle, seed + 0) puts two samples
    in one row."""
    kept = [n for n in lengths if n <= max_length]
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    used = in_row = 0
    for index in order:
        if in_row and used + kept[index] > max_length:
            used = in_row = 0
        used += kept[index]
        in_row += 1
        if in_row > 1:
            return True
    return False


def estimate_rows(data: Path, tokenizer_json: Path | None, max_length: int, seed: int) -> RowEstimate:
    lengths, how = sample_lengths(read_rows(data), tokenizer_json)
    kept = sum(n <= max_length for n in lengths)
    return RowEstimate(kept, several_a_row(lengths, max_length, seed), how)
