"""Run inside the train env: the peak tensor memory of LoRA training steps on CPU, measured.

A dispatch mode sees every tensor an op creates (forward, backward and optimizer on CPU run in
this thread) and counts each storage until it is freed; the model's weights are added.

    python measure_peak.py RECIPES_DIR MODEL_DIR DATA_JSONL TOKENS [TOKENS ...]  ->  one JSON line
"""

import json
import sys
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, sys.argv[1])
import sft
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


class PeakTensorMemory(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = 0
        self.peak = 0

    def _freed(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    weakref.finalize(storage, self._freed, key)
        self.peak = max(self.peak, self.now)
        return out


recipes, model_dir, data, budgets = sys.argv[1], sys.argv[2], sys.argv[3], [int(t) for t in sys.argv[4:]]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
rows = sft.read_jsonl(data)
samples = []
for row in rows:
    ids, labels = sft.tokenize_chat(tokenizer, sft.to_messages(row, "auto"))
    samples.append({"input_ids": ids, "labels": labels})
report = []
for budget in budgets:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = sft.pack(samples, budget, 1, tokenizer.pad_token_id or 0)[0]  # one row of `budget` tokens
    batch.pop("num_tokens")
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    with PeakTensorMemory() as tracker:
        for _ in range(2):  # the second step has the optimizer states allocated
            model(**batch, use_cache=False).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    tokens = batch["input_ids"].shape[1]
    report.append({"tokens": tokens, "peak_bytes": frozen + trainable + tracker.peak})
print(json.dumps(report))
