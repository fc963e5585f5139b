"""Runs in the data env: the prompts a loop trained on and the prompts lm-eval scored with are
the same function of a doc (`doc_to_text` of the family's utils.py, of the doc as the benchmark's docs
hold it: `benchmark_doc`, as the data recipe builds its prompts).

    python check_prompts.py --family F --benchmark B --tasks-dir DIR --dataset DIR --train data.jsonl --samples S.jsonl

Prints JSON: how many training rows' user turns are doc_to_text of a dataset row, and how many
of lm-eval's scored prompts are doc_to_text of their doc.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from rdft_data.benchmark import benchmark_entry, prompt
from rdft_data.profile import data_files, read_rows

parser = argparse.ArgumentParser()
for flag in ("--family", "--benchmark", "--tasks-dir", "--dataset", "--train", "--samples"):
    parser.add_argument(flag, required=True)
args = parser.parse_args()
sys.path.insert(0, args.tasks_dir)
import importlib.util  # noqa: E402

spec = importlib.util.spec_from_file_location("family", Path(args.tasks_dir) / args.family / "utils.py")
family = importlib.util.module_from_spec(spec)
spec.loader.exec_module(family)

entry = benchmark_entry(args.benchmark, args.tasks_dir)
prompts = set()
for path in data_files(Path(args.dataset)):
    for row in read_rows(path):
        try:
            prompts.add(prompt(row, family, entry))
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
train = [json.loads(line) for line in Path(args.train).read_text().splitlines() if line.strip()]
users = [next(m["content"] for m in row["messages"] if m["role"] == "user") for row in train]
samples = [json.loads(line) for line in Path(args.samples).read_text().splitlines() if line.strip()]
scored = 0
for sample in samples:
    prompt = sample["arguments"]["gen_args_0"]["arg_0"]
    user = re.search(r"<\|im_start\|>user\n(.*)<\|im_end\|>\n<\|im_start\|>assistant\n$", prompt, re.S).group(1)
    scored += user == family.doc_to_text(sample["doc"])
print(
    json.dumps(
        {
            "train_rows": len(users),
            "train_rows_with_the_benchmark_prompt": sum(u in prompts for u in users),
            "scored": len(samples),
            "scored_with_doc_to_text": scored,
        }
    )
)
