"""Paired bootstrap of two scored runs on the same docs: is the candidate better than the base?

    python evaluation/compare.py --benchmark NAME --base ITEMS.jsonl --candidate ITEMS.jsonl

Items are the per-item scores `score.py --items` writes, in docs order, for the same split. Each
resample draws item indices once and computes the family's primary metric on both runs, so the
difference keeps the pairing (the same questions for both). Prints JSON: both values, the
difference, its 95% interval, and `p_not_better`, the share of resamples where the candidate is
not better. Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from score import Family, load_table


def read_items(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare(benchmark: str, base: list[dict], candidate: list[dict], resamples: int = 2000, seed: int = 0) -> dict:
    if len(base) != len(candidate):
        raise SystemExit(f"compare: {len(base)} base items but {len(candidate)} candidate items; score the same split")
    entry = load_table()[benchmark]
    family = Family(benchmark, entry)
    metric = entry["primary"]["metric"]
    sign = 1 if entry["primary"]["direction"] == "higher" else -1
    rng = random.Random(seed)
    differences = []
    for _ in range(resamples):
        indices = [rng.randrange(len(base)) for _ in base]
        a = family.primary([base[i] for i in indices])
        b = family.primary([candidate[i] for i in indices])
        if a is not None and b is not None:
            differences.append(sign * (b - a))
    base_value, candidate_value = family.primary(base), family.primary(candidate)
    differences.sort()
    n = len(differences)
    return {
        "metric": metric,
        "base": base_value,
        "candidate": candidate_value,
        "difference": None if None in (base_value, candidate_value) else sign * (candidate_value - base_value),
        "ci95": [differences[int(0.025 * (n - 1))], differences[int(0.975 * (n - 1))]] if n else None,
        "p_not_better": sum(d <= 0 for d in differences) / n if n else 1.0,
        "resamples": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--output", type=Path, help="Also write the JSON here (what rdft reads).")
    args = parser.parse_args()
    text = json.dumps(compare(args.benchmark, read_items(args.base), read_items(args.candidate), args.resamples))
    if args.output:
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_text(text)
        tmp.replace(args.output)
    print(text)


if __name__ == "__main__":
    main()
