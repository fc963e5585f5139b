"""The shared half of the benchmark tests (tests/test_benchmarks.py, rdft's first families;
tests/test_benchmarks_upstream.py, the rest of RD-Agent's benchmarks): each benchmark's items
and registry dataset prepared from fixtures in their real schemas (exactly as a user's local
copies: `rdft benchmarks prepare --source`, `rdft datasets prepare --source`), then `rdft run`
with the offline planner, and what its log must show."""

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, clean_environ

from rdft.evaluation.benchmarks import get_benchmark

FIXTURES = REPO / "tests" / "fixtures"
GEN_TOKS = 32  # the tiny model's answers are checked for their flow, not their length
PARALLEL = 2  # runs side by side: most of a CPU run is process start-up, which overlaps well


@dataclass
class Loops:
    done: dict  # benchmark → (the finished or stopped process, its log folder)
    prepared: dict[str, str]  # dataset → what `rdft datasets prepare` printed
    benchmarks: dict[str, tuple[str, str]]  # benchmark → (the registry dataset its recipe reads, its items' fixture)
    full_loop: tuple  # the benchmarks whose run goes through training and scoring; the rest stop after coding
    samples: int = 2  # answers per scored item (--samples)


def answers(folder: Path) -> list[str]:
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    return [row["response"] for row in rows]


def cli(env: dict, *args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["rdft", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_loops(
    shared_dirs: dict, root: Path, benchmarks: dict[str, tuple[str, str]], full_loop: tuple, samples: int = 2
) -> Loops:
    """`rdft run` of each benchmark, two at a time, after its items and its dataset were prepared
    from the fixtures; the full loops first (the longest), the others stop after coding."""
    env = clean_environ(**shared_dirs)
    prepared_out: dict[str, str] = {}

    for benchmark, (_, items) in benchmarks.items():
        prepared = cli(
            env,
            "benchmarks",
            "prepare",
            benchmark,
            "--source",
            str(FIXTURES / "benchmarks" / items),
            "--force",
            cwd=root,
        )
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    for dataset in dict.fromkeys(dataset for dataset, _ in benchmarks.values()):
        prepared = cli(
            env, "datasets", "prepare", dataset, "--source", str(FIXTURES / "datasets" / dataset), "--force", cwd=root
        )
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        prepared_out[dataset] = prepared.stdout

    def run(benchmark: str) -> tuple[subprocess.CompletedProcess, Path]:
        log = root / "log" / benchmark
        start = time.monotonic()
        proc = cli(
            {**env, "LOG_TRACE_PATH": str(log)},
            "run",
            "--base-model",
            "tiny:llama",
            "--benchmark",
            benchmark,
            "--loop-n",
            "1",
            "--max-gen-toks",
            str(GEN_TOKS),
            "--eval-limit",
            "8",
            "--samples",
            str(samples),
            *([] if benchmark in full_loop else ["--step-n", "4"]),  # items, base, proposal, coding
            cwd=root,
        )
        print(f"{benchmark}: {time.monotonic() - start:.0f} s")
        return proc, log

    first, *rest = sorted(benchmarks, key=lambda b: b not in full_loop)  # full loops first: the longest
    # (the first run also builds the tiny model the others reuse)
    done = {first: run(first)}
    with ThreadPoolExecutor(PARALLEL) as pool:
        done.update(zip(rest, pool.map(run, rest), strict=True))
    return Loops(done, prepared_out, benchmarks, full_loop, samples)


def check_loop(loops: Loops, benchmark: str, data_env) -> None:
    """What every benchmark's run must show (the modules' docstrings say what)."""
    proc, log = loops.done[benchmark]
    full = benchmark in loops.full_loop
    assert proc.returncode == (0 if full else 3), (proc.stdout + proc.stderr)[-3000:]  # 3: stopped, resumable
    entry = get_benchmark(benchmark)
    loop = log / "Loop_0"
    coding = json.loads((loop / "coding" / "result.json").read_text())
    assert coding["ok"] and coding["rounds"][-1]["ok"]
    # The coder's data-quality gate passed the offline recipe's rows: reasoning where the benchmark
    # scores reasoned answers, every answer right by the scorer where the dataset holds the gold.
    gate = coding["rounds"][-1]["quality"]
    assert gate["reasons"] == [] and gate["stats"]["rows"] > 0
    if entry.reasoning:
        assert gate["stats"]["with_reasoning"] == gate["stats"]["rows"]
    if gate["stats"]["gold_checked"]:
        assert gate["stats"]["gold_correct"] == gate["stats"]["gold_checked"]
    run_summary = json.loads((log / "summary.json").read_text())
    # k sampled answers per item (--samples k), with the tiny model's sampling settings (its
    # generation config names none: 0.6/0.95), or one greedy answer; the split is the
    # --eval-limit's 8 items.
    sampled = loops.samples > 1
    assert run_summary["scoring"] == {
        "items": 8,
        "samples": loops.samples,
        "temperature": 0.6 if sampled else None,
        "top_p": 0.95 if sampled else None,
        "max_gen_toks": GEN_TOKS,
        "standard": False,
        "eval_limit": 8,
    }
    base = log / "baseline"
    for split in ("validation", "test"):
        summary = json.loads((base / split / "summary.json").read_text())
        assert summary["n"] == 8 and summary["primary"]["name"] == entry.primary.metric
        assert (summary["max_gen_toks"], summary["standard"]) == (GEN_TOKS, False)  # capped, and said so
    assert f"Non-standard scores: generation capped at {GEN_TOKS} tokens" in (log / "report.md").read_text()
    assert "id='non-standard'" in (log / "report.html").read_text()

    if full:
        node = json.loads((log / "trace.json").read_text())["nodes"][0]
        assert (node["loop"], node["status"], node["error_type"]) == (0, "done", None), node
        data = json.loads((loop / "running" / "data.json").read_text())
        assert data["samples"] > 0 and data["dropped_leakage"] == 0
        train = json.loads((loop / "running" / "train.json").read_text())
        assert train["steps"] > 0 and train["final_loss"] < train["first_loss"]
        for split in ("validation", "test"):
            record = json.loads((loop / "running" / f"{split}.json").read_text())
            summary = json.loads((loop / "running" / split / "summary.json").read_text())
            assert record["n"] == 8 and record["samples"] == loops.samples
            assert record["value"] == summary["primary"]["value"]
            assert (summary["max_gen_toks"], summary["standard"]) == (GEN_TOKS, False)

            # The trained weights are what was scored: with lm-eval's fixed seeds the base model
            # would give the same answers, and most differ.
            tuned, before = answers(loop / "running" / split), answers(base / split)
            answers_n = 8 * loops.samples
            assert len(tuned) == len(before) == answers_n
            assert sum(a != b for a, b in zip(tuned, before, strict=True)) >= answers_n // 2
        train_file, scored_dir, rows = (
            loop / "workspace" / "data.jsonl",
            loop / "running" / "validation",
            data["samples"],
        )
    else:
        assert not (loop / "running").exists()  # stopped after coding, as asked
        train_file, scored_dir = loop / "workspace" / ".debug" / "data.jsonl", base / "validation"
        rows = gate["stats"]["rows"]

    # The training rows' user turns are the benchmark's prompts of dataset rows, and lm-eval scored
    # each validation doc with the same function's prompt.
    dataset = loops.benchmarks[benchmark][0]
    samples = next((scored_dir / "lm_eval").rglob("samples_*_validation_*.jsonl"))
    from rdft.datasets.toolkit import data_env_variables
    from rdft.resources import evaluation_dir

    ft = Path(json.loads((log / "settings.json").read_text())["ft_file_path"])
    checked = data_env.run(
        [
            "python",
            str(REPO / "tests" / "in_env" / "check_prompts.py"),
            "--family",
            entry.family,
            "--benchmark",
            benchmark,
            "--tasks-dir",
            str(evaluation_dir() / "tasks"),
            "--dataset",
            str(ft / "datasets" / dataset),
            "--train",
            str(train_file),
            "--samples",
            str(samples),
        ],
        extra_env=data_env_variables(data_env.link.parent),
        echo=False,
    )
    assert checked.ok, checked.tail
    counts = json.loads(checked.tail.strip().splitlines()[-1])
    assert counts["train_rows"] == rows == counts["train_rows_with_the_benchmark_prompt"]
    assert counts["scored"] == 8 == counts["scored_with_doc_to_text"]


def check_overlap(loops: Loops, dataset: str, rows: int) -> None:
    """`rdft datasets prepare` said the dataset's `rows` hold no item of the benchmarks it serves."""
    served = [benchmark for benchmark, (name, _) in loops.benchmarks.items() if name == dataset]
    for benchmark in served:
        assert (
            f"  overlap with {benchmark}: 0 of {rows} rows hold its validation or test items "
            "(exact 0, identifier 0, molecule 0, ngram 0)"
        ) in loops.prepared[dataset].splitlines()
