"""Runs in the data env the way a generated data script does: `import rdft_data` (put on
PYTHONPATH by rdft), the checkers with RDKit and sympy, and the strong pool from the settings.

    python check_toolkit.py OUT.jsonl [--debug]
"""

import os
import sys

from rdft_data import (
    boxed_answer,
    debug_sample,
    is_debug,
    json_fields,
    math_check,
    math_equal,
    same_molecule,
    strong_pool,
    write_chat_jsonl,
)

# math: last \boxed{}, numeric and symbolic equivalence
assert boxed_answer("first \\boxed{1}, finally \\boxed{\\frac{3}{4}}") == "\\frac{3}{4}"
assert boxed_answer("<think>\\boxed{9}</think> no box") is None
for a, b in [
    ("\\frac{1}{2}", "0.5"),
    ("025", 25),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("1,000", "1000"),
    ("\\dfrac{\\pi}{4}", "\\frac{\\pi}{4}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("$12$", "12"),
]:
    assert math_equal(a, b), (a, b)
for a, b in [("\\frac{1}{3}", "0.33"), ("24", 25), (None, 1), ("x+1", "x-1")]:
    assert not math_equal(a, b), (a, b)
assert math_check("25")("so \\boxed{025}") and not math_check("25")("no answer")

# chemistry: the same molecule however it is written
assert same_molecule("OCC", "CCO") and same_molecule("c1ccccc1", "C1=CC=CC=C1")
assert not same_molecule("CCO", "CCN") and not same_molecule("not a smiles", "CCO")

# JSON fields, fenced or bare, last one wins
assert json_fields('```json\n{"answer": "A"}\n``` then {"answer": "B", "reason": "r"}', "answer", "reason") == {
    "answer": "B",
    "reason": "r",
}
assert json_fields('{"answer": "A"}', "answer", "reason") is None

# a small distillation run through the strong pool
assert is_debug() and os.environ["RDFT_LLM_CACHE"]
os.environ["RDFT_DEBUG_SAMPLES"] = "3"
problems = debug_sample([f"problem {i}" for i in range(5)])
pool = strong_pool(backoff=0.01)
assert pool.workers == 4, pool.workers
replies = pool.map(problems, lambda p: [{"role": "user", "content": p}], check=math_check("0.5"), progress=False)
samples = [
    {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r.content}]}
    for p, r in zip(problems, replies, strict=True)
    if r is not None
]
write_chat_jsonl(samples, sys.argv[1])
print(f"usage: {pool.usage}")
print("toolkit ok")
