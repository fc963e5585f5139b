"""bench/gpu_suite.py cannot rot: its CPU smoke runs every case end to end on tiny shapes."""

import json
import re
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"  # bench/ lives in the tree, not the wheel


def test_gpu_suite_cpu_smoke(train_env, tmp_path):
    out, results = tmp_path / "smoke.json", tmp_path / "RESULTS.md"
    ran = train_env.run(["python", str(SUITE), "--cpu-smoke", "--out", str(out), "--results", str(results)],
                        echo=False, timeout=300)  # fmt: skip
    assert ran.ok, ran.tail
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["matmul_ceiling_tflops"] > 0
    for case in ("lora", "skewed"):
        for side in ("baseline", "rdft"):
            assert report[case][side]["tokens_per_s"] > 0 and 0 < report[case][side]["mfu"] < 1
    # The planner's choice on the smoke's CPU budget: 64 rows of 64 tokens.
    assert report["skewed"]["rdft"]["plan"]["tokens_per_micro_batch"] == 64 * 64
    # Padding wastes much of the baseline's compute on skewed lengths; packing far less.
    base, ours = report["skewed"]["baseline"], report["skewed"]["rdft"]
    wasted_base = 1 - base["effective_tokens_per_s"] / base["tokens_per_s"]
    wasted_ours = 1 - ours["effective_tokens_per_s"] / ours["tokens_per_s"]
    assert wasted_base > 0.3 and wasted_ours < wasted_base - 0.2, (wasted_base, wasted_ours)
    assert report["full"]["rdft"]["tokens_per_s"] > 0
    assert report["qlora"] == {"skipped": "bitsandbytes and a CUDA GPU are needed", "wall_s": report["qlora"]["wall_s"]}
    assert report["score"]["baseline"]["generated"] == report["score"]["rdft"]["generated"] == 4 * 8
    assert set(report["ratios"]) >= {"lora_tokens_per_s", "skewed_effective_tokens_per_s", "score_rdft_hf"}
    table = results.read_text()
    assert "CPU smoke: figures mean nothing" in table
    assert re.search(r"^\| skewed_effective_tokens_per_s \| [\d.]+× \| ≥ 3.0× \|$", table, re.M)
