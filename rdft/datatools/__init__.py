"""The data toolkit: what generated data scripts import in the `data` env, as `rdft_data`.

rdft runs every command in the data env with PYTHONPATH pointing at a copy of this package
named `rdft_data` (plus the benchmarks' answer reader, `answers.py`), so a data script writes:

    from rdft_data import strong_pool, math_check, debug_sample, prompt, write_chat_jsonl

    problems = debug_sample(load_problems())                 # 100 items under --debug
    pool = strong_pool()                                     # STRONG_MODEL_POOL via litellm
    replies = pool.map(problems, to_messages, check=...)     # FT_API_MAX_WORKERS threads
    write_chat_jsonl(samples, "data.jsonl")                  # validated, atomic

Modules: `benchmark` (the target benchmark's prompt, scorer and table row), `llm` (model pools), `checks`
(answer checkers), `records` (debug sampling, token lengths, writers), `leakage` (the
benchmark-overlap guard), `profile` (dataset profiles), `quality` (the data-quality gate's
statistics).
Only the standard library is imported here; each module imports its heavy dependencies
(litellm, rdkit, tokenizers, sympy) when first used.
"""

from .benchmark import benchmark_entry, prompt, scorer
from .checks import boxed_answer, json_fields, math_check, math_equal, same_molecule, strip_think
from .leakage import Guard, drop_leaks  # assembled from rdft/datasets/leakage.py
from .llm import ModelPool, PoolExhausted, Reply, Usage, pool_from_env, strong_pool, weak_pool
from .records import (
    TokenCounter,
    debug_sample,
    filter_by_tokens,
    is_debug,
    sample_text,
    write_alpaca_json,
    write_chat_jsonl,
    write_prompt_jsonl,
)

__all__ = [
    "Guard",
    "ModelPool",
    "PoolExhausted",
    "Reply",
    "TokenCounter",
    "Usage",
    "benchmark_entry",
    "boxed_answer",
    "debug_sample",
    "drop_leaks",
    "filter_by_tokens",
    "is_debug",
    "json_fields",
    "math_check",
    "math_equal",
    "pool_from_env",
    "prompt",
    "same_molecule",
    "sample_text",
    "scorer",
    "strip_think",
    "strong_pool",
    "weak_pool",
    "write_alpaca_json",
    "write_chat_jsonl",
    "write_prompt_jsonl",
]  # fmt: skip
