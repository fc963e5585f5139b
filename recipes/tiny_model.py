"""Build a tiny random-weight causal LM as a normal Hugging Face folder, with no hub access.

A byte-level BPE tokenizer is trained locally with `tokenizers` on a small synthetic corpus,
wrapped as a fast tokenizer with a ChatML chat template, and paired with a 2-layer Llama (or
Qwen2) config of hidden size 64. A few seconds of language-model pre-training on the synthetic
corpus (chat-formatted turns included) give a base whose logits are not uniform, so LoRA on
top of it visibly learns. Everything is seeded. Runs inside the `train` env; imports nothing
from rdft.

    python recipes/tiny_model.py --out /tmp/tiny-llama [--arch llama|qwen2] [--pretrain-steps 150]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
WORDS = (
    "the a of to and in is it that for on with as was at by this be from or an are answer question "
    "number sum plus minus times equals zero one two three four five six seven eight nine ten "
    "molecule carbon oxygen nitrogen ring bond patent claim prior art novelty paragraph reason "
    "therefore so we get final boxed json key value true false yes no user assistant system"
).split()


def corpus(seed: int, lines: int = 4000) -> list[str]:
    """Synthetic text covering words, digits, JSON, LaTeX and SMILES-like strings."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        out.append(f"{words}. {a} + {b} = {a + b}. \\boxed{{{a + b}}}")
        out.append(json.dumps({"answer": rng.choice(WORDS), "score": rng.randint(0, 9)}))
        out.append("".join(rng.choice("CCNOc1()=[]#@+-") for _ in range(rng.randint(5, 30))))
    return out


def build_tokenizer(seed: int, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def pretrain(model, tokenizer, seed: int, steps: int, seq: int = 96, batch: int = 8) -> None:
    """Plain next-token training on the synthetic corpus, chat turns included."""
    import torch

    rng = random.Random(seed + 1)
    texts = corpus(seed + 1, lines=600)
    for _ in range(400):
        words = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))  # noqa: E731
        messages = [{"role": "user", "content": words()}, {"role": "assistant", "content": words()}]
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    rng.shuffle(texts)
    ids = tokenizer("".join(texts), add_special_tokens=False)["input_ids"]
    rows = torch.tensor(ids[: len(ids) // seq * seq]).view(-1, seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(0, rows.shape[0], (batch,), generator=generator)
        loss = model(input_ids=rows[pick], labels=rows[pick], use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build(
    out: Path,
    arch: str = "llama",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = 1024,
    pretrain_steps: int = 150,
) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(seed, vocab)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,  # room for few-shot prompts (FinanceIQ's five shots); RoPE: no weights
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    model = AutoModelForCausalLM.from_config(config)
    if pretrain_steps:
        pretrain(model, tokenizer, seed, pretrain_steps)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # Write into a temporary folder and rename: a half-written model is never picked up.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--pretrain-steps", type=int, default=150, help="0 leaves the weights random.")
    parser.add_argument("--if-missing", action="store_true", help="Reuse --out when it already holds a model.")
    args = parser.parse_args()
    if args.if_missing and (args.out / "config.json").is_file():
        print(f"reusing tiny model at {args.out}")
        return
    build(args.out, args.arch, args.seed, args.hidden, args.layers, pretrain_steps=args.pretrain_steps)
    print(f"built tiny {args.arch} model at {args.out}")


if __name__ == "__main__":
    main()
