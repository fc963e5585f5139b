"""Run inside the train env: load a training run's weights the way a user would and report.

python check_weights.py BASE OUTPUT_DIR   ->  one JSON line
"""

import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_path, output = sys.argv[1], Path(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(base_path)
messages = [{"role": "user", "content": "What is 12 + 30?"}]
text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
report = {}
with torch.no_grad():
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    base_logits = base(ids, use_cache=False).logits
    if (output / "adapter").is_dir():
        tuned = PeftModel.from_pretrained(base, output / "adapter").eval()
        tuned_logits = tuned(ids, use_cache=False).logits
        report["adapter_changes_logits"] = float((tuned_logits - base_logits).abs().max())
        report["lora_tensors"] = sum(1 for n, _ in tuned.named_parameters() if "lora_" in n)
    else:
        tuned = AutoModelForCausalLM.from_pretrained(output / "model", dtype=torch.float32).eval()
        tuned_logits = tuned(ids, use_cache=False).logits
        report["model_changes_logits"] = float((tuned_logits - base_logits).abs().max())
    if (output / "merged").is_dir():
        merged = AutoModelForCausalLM.from_pretrained(output / "merged", dtype=torch.float32).eval()
        report["merged_vs_adapter"] = float((merged(ids, use_cache=False).logits - tuned_logits).abs().max())
print(json.dumps(report))
