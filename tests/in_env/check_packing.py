"""Run inside the train env: the recipe's packing and label mask, checked on the tiny model,
with SDPA (rdft's choice on a CPU) and with flex_attention (its choice for packed rows on a
GPU: transformers builds its block mask from the same position ids; forward only, since flex
has no CPU backward, but the mask is the same one a GPU step uses).

python check_packing.py RECIPES_DIR MODEL_DIR DATA_JSONL  ->  one JSON line
"""

import json
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, sys.argv[1])
import sft
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
PAD = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
rows = sft.read_jsonl(sys.argv[3])[:6]
# A two-turn conversation too: both assistant turns must be targets, the user turn not.
rows.append(
    {
        "messages": [
            {"role": "user", "content": "What is 1 + 1?"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "And 2 + 2?"},
            {"role": "assistant", "content": "4"},
        ]
    }
)
samples = [
    dict(zip(("input_ids", "labels"), sft.tokenize_chat(tokenizer, sft.to_messages(r, "auto")), strict=True))
    for r in rows
]


def token_losses_of(logits, labels):
    """Next-token loss of every position of one (packed or single) row; 0 where not a target."""
    shift_logits, shift_labels = logits[0, :-1], labels[0, 1:]
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="none")


def checks(model) -> dict:
    """Every packing check on one model; the numbers the test asserts."""
    with torch.no_grad():
        alone = []
        for s in samples:
            batch = sft.collate_packed([[s]], PAD)
            losses = token_losses_of(model(batch["input_ids"], use_cache=False).logits, batch["labels"])
            alone.append(float(losses.sum() / (batch["labels"][0, 1:] != -100).sum()))
        packed = sft.collate_packed([samples], PAD)
        packed.pop("num_tokens")
        token_losses = token_losses_of(
            model(packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits, packed["labels"]
        )
        means, counts, start = [], [], 0
        for s in samples:
            n = len(s["input_ids"])
            # token t's loss sits at t-1 after the shift; a sample's first token is never a target
            targets = sum(1 for label in s["labels"][1:] if label != -100)
            means.append(float(token_losses[start : start + n - 1].sum()) / targets)
            counts.append(targets)
            start += n
        model_loss_packed = float(model(**packed, use_cache=False).loss)

        # A sample's logits do not depend on its row-mates: the same sample after two different
        # neighbours, and in a two-row micro-batch whose shorter row is padded.
        a, b, c = samples[0], samples[1], samples[2]

        def logits_of_last(rows, row, start, length):
            batch = sft.collate_packed(rows, PAD)
            batch.pop("num_tokens")
            out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
            return out[row, start : start + length]

        n_a = len(a["input_ids"])
        after_b = logits_of_last([[b, a]], 0, len(b["input_ids"]), n_a)
        after_c = logits_of_last([[c, a]], 0, len(c["input_ids"]), n_a)
        # Two rows per micro-batch, `a` last in the first: boundaries are found in every row.
        padded = logits_of_last([[c, b, a], [b]], 0, len(c["input_ids"]) + len(b["input_ids"]), n_a)
        row_mates_diff = max(float((after_b - after_c).abs().max()), float((after_b - padded).abs().max()))
        # The micro-batch loss of several padded rows is the token-weighted mean of its samples' losses.
        multi = sft.pack(samples, max(len(s["input_ids"]) for s in samples) + 8, 3, PAD)
        multi_rows = multi[0]["input_ids"].shape[0]
        multi_losses = []
        for batch in multi:
            batch.pop("num_tokens")
            token_count = int((batch["labels"] != -100).sum())
            multi_losses.append((float(model(**batch, use_cache=False).loss), token_count))
        multi_loss = sum(loss * count for loss, count in multi_losses) / sum(count for _, count in multi_losses)

    return {
        "max_abs_diff": max(abs(a - b) for a, b in zip(alone, means, strict=True)),
        "per_sample": means,
        "targets": counts,
        "model_loss_packed": model_loss_packed,
        "row_mates_diff": row_mates_diff,
        "multi_rows": multi_rows,
        "multi_loss": multi_loss,
    }


# torch 2.13's CPU code generation for flex_attention fails once a shape turns dynamic (a second
# micro-batch size: an undeclared variable in the generated C++): compile every shape statically.
torch._dynamo.config.automatic_dynamic_shapes = False
torch._dynamo.config.cache_size_limit = 64
by_attention = {}
for attention in ("sdpa", "flex_attention"):
    model = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32, attn_implementation=attention)
    # the implementation transformers really set up, so "flex = sdpa" cannot mean sdpa twice
    by_attention[attention] = {**checks(model.eval()), "implementation": model.config._attn_implementation}

two_turn = samples[-1]
targets = [token for token, label in zip(two_turn["input_ids"], two_turn["labels"], strict=True) if label != -100]
print(
    json.dumps(
        {
            "n": len(samples),
            **by_attention,
            "two_turn_target_text": tokenizer.decode(targets),
        }
    )
)
