"""The rest of RD-Agent's benchmarks end to end on CPU, as tests/test_benchmarks.py runs rdft's
first families (tests/benchmark_loops.py holds what both check): MATH, MMLU, the code benchmarks,
TableBench, BioProBench, FinanceIQ and PANORAMA's CoT variants, each from fixtures in its real
schema, through `rdft run` with the offline planner. One benchmark per family runs its whole loop
(full data, training, scoring the trained model) in tox; the others stop after coding
(`--step-n 4`, every part that depends on the benchmark rather than its family) and are marked
`more_benchmarks`, which tox leaves out for CI's time.

Not run here: `panorama_par4pc_cot` and `panorama_pi4pc_cot`, whose datasets hold no reasoning,
so the offline recipe has no rows for them by design (tests/test_panorama_cot.py checks that it
says so)."""

import pytest
from benchmark_loops import Loops, check_loop, check_overlap, run_loops

# benchmark → (the registry dataset its offline recipe reads, its items' fixture): one per family,
# each through its whole loop (math and mmlu are families of their own; the first builds the tiny
# model, then FinanceIQ, the longest: its five-shot Chinese prompts are ~3,600 of the tiny model's
# tokens, so its dataset fixture holds one subject's training rows, 9).
BENCHMARKS = {
    "math": ("deepscaler", "math.jsonl"),
    "financeiq": ("financeiq", "financeiq.jsonl"),
    "mmlu": ("mmlu-auxiliary-train", "mmlu.jsonl"),
    "mbpp": ("mbpp", "mbpp.jsonl"),
    "tablebench_fact_checking": ("tableinstruct", "tablebench.jsonl"),
    "bioprobench_pqa": ("bioprobench-pqa", "bioprobench.jsonl"),
}
FULL_LOOP = tuple(BENCHMARKS)
# The other members of these families stop after coding, behind the `more_benchmarks` marker (CI's
# time: tox leaves them out; `tox -- -m more_benchmarks tests/test_benchmarks_upstream.py` runs them).
MORE = {
    "humaneval": ("mbpp", "humaneval.jsonl"),
    "tablebench_numerical_reasoning": ("tableinstruct", "tablebench.jsonl"),
    "tablebench_data_analysis": ("tableinstruct", "tablebench.jsonl"),
    "tablebench_visualization": ("tableinstruct", "tablebench.jsonl"),
    "bioprobench_ord": ("bioprobench-ord", "bioprobench.jsonl"),
    "bioprobench_err": ("bioprobench-err", "bioprobench.jsonl"),
    "bioprobench_gen": ("bioprobench-gen", "bioprobench.jsonl"),
    "panorama_noc4pc_cot": ("panorama-noc4pc", "panorama_noc4pc.jsonl"),
}
ROWS = {"mmlu-auxiliary-train": 36, "mbpp": 32, "tableinstruct": 36, "bioprobench-pqa": 32, "financeiq": 9}


@pytest.fixture(scope="module")
def runs(shared_dirs, data_env, eval_env, train_env, tmp_path_factory) -> Loops:
    # One greedy answer per item (tests/test_benchmarks.py covers sampled scoring): CI's time.
    return run_loops(shared_dirs, tmp_path_factory.mktemp("benchmarks-upstream"), BENCHMARKS, FULL_LOOP, samples=1)


@pytest.fixture(scope="module")
def more_runs(shared_dirs, data_env, eval_env, train_env, tmp_path_factory) -> Loops:
    return run_loops(shared_dirs, tmp_path_factory.mktemp("benchmarks-more"), MORE, ())


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_every_upstream_benchmark_runs_a_loop_end_to_end(benchmark, runs, data_env):
    check_loop(runs, benchmark, data_env)


@pytest.mark.more_benchmarks
@pytest.mark.parametrize("benchmark", MORE)
def test_the_other_upstream_benchmarks_run_until_coding(benchmark, more_runs, data_env):
    check_loop(more_runs, benchmark, data_env)


@pytest.mark.parametrize("dataset", ROWS)
def test_prepare_reports_each_datasets_overlap_with_the_benchmarks_it_serves(dataset, runs):
    check_overlap(runs, dataset, ROWS[dataset])
