"""The data toolkit's model pool against bare litellm: 1,000 chat calls, 64 workers, 100 ms per
call (a local OpenAI-compatible server in its own process, tests/llm_server.py). The ideal is
n · latency / workers = 1.56 s; on a small host litellm's own CPU cost per call is the limit, so
the baseline is bare `litellm.completion` from a plain thread pool, timed in the same process.
Each arm runs twice, alternating, and keeps its best (a burst of load must not decide).

    python bench/pool_throughput.py [--calls 1000] [--workers 64] [--latency 0.1]

Prints JSON: ideal, bare and pool seconds, and pool / max(ideal, bare) (the target is ≤ 1.3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    import litellm

    from rdft.datasets.toolkit import toolkit_path

    tmp = Path(tempfile.mkdtemp(prefix="rdft-pool-bench-"))
    sys.path.insert(0, str(toolkit_path(tmp / "toolkit")))
    import rdft_data

    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "llm_server.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        key = "sk-bench"

        def ask(text: str) -> list[dict]:
            return [{"role": "user", "content": text}]

        def bare(i: int):
            return litellm.completion(
                model="openai/bare", messages=ask(f"b{i}"), api_base=base_url, api_key=key, timeout=30, num_retries=0
            )

        models = rdft_data.ModelPool(
            ["openai/a", "openai/b"], api_key=key, api_base=base_url, workers=args.workers, cache=tmp / "cache"
        )

        def timed(work) -> float:
            start = time.monotonic()
            work()
            return time.monotonic() - start

        def bare_run() -> None:
            with ThreadPoolExecutor(args.workers) as executor:
                list(executor.map(bare, range(args.calls)))

        def pool_run(trial: int) -> None:
            assert all(models.map([f"q{trial}-{i}" for i in range(args.calls)], ask, progress=False))

        bare(0)
        baseline = elapsed = float("inf")
        for trial in range(2):
            baseline = min(baseline, timed(bare_run))
            elapsed = min(elapsed, timed(lambda t=trial: pool_run(t)))
    finally:
        server.kill()
    ideal = args.calls * args.latency / args.workers
    result = {"calls": args.calls, "workers": args.workers, "ideal_s": round(ideal, 2), "bare_s": round(baseline, 2),
              "pool_s": round(elapsed, 2), "ratio": round(elapsed / max(ideal, baseline), 3)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
