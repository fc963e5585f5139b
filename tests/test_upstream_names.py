"""Every benchmark name RD-Agent's fine-tuning scenario maps (its BENCHMARK_CONFIG_DICT in
rdagent/scenarios/finetune/benchmark/data/adaptor.py, microsoft/RD-Agent main at 471eb30, 2026-03)
is one rdft knows: a benchmark row (under its own name or as its `upstream`), or a group of rows
(RD-Agent's aggregates), whose members all exist."""

import re

from conftest import one_line_error

from rdft.evaluation.benchmarks import benchmarks, groups

UPSTREAM = [
    "aime24", "aime25", "math", "mmlu", "humaneval", "mbpp",
    "panorama", "panorama_par4pc", "panorama_pi4pc", "panorama_noc4pc",
    "panorama_par4pc_cot", "panorama_pi4pc_cot", "panorama_noc4pc_cot",
    "chemcotbench", "chemcotbench_mol_und", "chemcotbench_mol_edit", "chemcotbench_mol_opt", "chemcotbench_reaction",
    "tablebench_data_analysis", "tablebench_fact_checking", "tablebench_numerical_reasoning",
    "tablebench_visualization", "tablebench_gen",
    "bioprobench_gen", "bioprobench_ord", "bioprobench_err", "bioprobench_pqa",
    "FinanceIQ_gen",
]  # fmt: skip


def test_benchmarks_list_shows_every_upstream_name(rdft):
    assert len(UPSTREAM) == len(set(UPSTREAM)) == 28
    listed = rdft("benchmarks", "list")
    assert listed.returncode == 0, listed.output
    rows = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    aliases = set(re.findall(r"\(RD-Agent: (\S+)\)", listed.stdout))
    missing = [name for name in UPSTREAM if name not in rows and name not in aliases]
    assert missing == []
    table = benchmarks()
    for group in groups().values():
        assert group.name not in table or not group.members  # a name is a row or a group, not both
        assert [m for m in group.members if m not in table] == [], group.name


def test_a_group_is_no_run_target(rdft):
    error = one_line_error(rdft("run", "--base-model", "tiny:llama", "--benchmark", "panorama"))
    assert "panorama is a group of benchmarks (panorama_par4pc, panorama_pi4pc, panorama_noc4pc)" in error
