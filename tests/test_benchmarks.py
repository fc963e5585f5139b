"""Every benchmark end to end on CPU: its evaluation items and its registry dataset prepared from
fixtures in their real schemas (exactly as a user's local copies: `rdft benchmarks prepare
--source`, `rdft datasets prepare --source`), then `rdft run` with the offline planner: the base
model scored on validation and test, the data script proven on a debug run, the data-quality gate
passed — and the prompts the model trains on are the prompts it is scored with (the same
`doc_to_text`). One benchmark per family runs its whole loop (full data, training, scoring the
trained model); the others stop after coding (`--step-n 4`), which has run every part that
depends on the benchmark rather than its family."""

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, clean_environ

from rdft.evaluation.benchmarks import get_benchmark

FIXTURES = REPO / "tests" / "fixtures"
# benchmark → (the registry dataset its offline recipe reads, its items' fixture)
BENCHMARKS = {
    "aime24": ("deepscaler", "aime24.jsonl"),
    "aime25": ("deepscaler", "aime25.jsonl"),
    "panorama_par4pc": ("panorama-par4pc", "panorama_par4pc.jsonl"),
    "panorama_pi4pc": ("panorama-pi4pc", "panorama_pi4pc.jsonl"),
    "panorama_noc4pc": ("panorama-noc4pc", "panorama_noc4pc.jsonl"),
    "chemcotbench_mol_und": ("chemcot-mol_und", "chemcotbench.jsonl"),
    "chemcotbench_mol_edit": ("chemcot-mol_edit", "chemcotbench.jsonl"),
    "chemcotbench_mol_opt": ("chemcot-mol_opt", "chemcotbench.jsonl"),
    "chemcotbench_reaction": ("chemcot-rxn", "chemcotbench.jsonl"),
}
FULL_LOOP = ("aime25", "panorama_pi4pc", "chemcotbench_mol_opt")  # one per family; the rest stop after coding
GEN_TOKS = 32  # the tiny model's answers are checked for their flow, not their length
PARALLEL = 2  # runs side by side: most of a CPU run is process start-up, which overlaps well
PREPARED: dict[str, str] = {}  # dataset → what `rdft datasets prepare` printed
ROWS = {"deepscaler": 40, "panorama-par4pc": 40, "panorama-pi4pc": 40, "panorama-noc4pc": 40, "chemcot-mol_und": 34,
        "chemcot-mol_edit": 33, "chemcot-mol_opt": 31, "chemcot-rxn": 33}  # fmt: skip


def answers(folder: Path) -> list[str]:
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    return [row["response"] for row in rows]


def cli(env: dict, *args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["rdft", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def runs(shared_dirs, data_env, eval_env, train_env, tmp_path_factory) -> dict:
    """The nine `rdft run`s, two at a time; benchmark → (the finished or stopped process, its log)."""
    root = tmp_path_factory.mktemp("benchmarks")
    env = clean_environ(**shared_dirs)

    for benchmark, (_, items) in BENCHMARKS.items():
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
    for dataset in dict.fromkeys(dataset for dataset, _ in BENCHMARKS.values()):
        prepared = cli(
            env, "datasets", "prepare", dataset, "--source", str(FIXTURES / "datasets" / dataset), "--force", cwd=root
        )
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        PREPARED[dataset] = prepared.stdout

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
            "2",
            *([] if benchmark in FULL_LOOP else ["--step-n", "4"]),  # items, base, proposal, coding
            cwd=root,
        )
        print(f"{benchmark}: {time.monotonic() - start:.0f} s")
        return proc, log

    first, *rest = sorted(BENCHMARKS, key=lambda b: b not in FULL_LOOP)  # full loops first: the longest
    # (the first run also builds the tiny model the others reuse)
    done = {first: run(first)}
    with ThreadPoolExecutor(PARALLEL) as pool:
        done.update(zip(rest, pool.map(run, rest), strict=True))
    return done


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_every_benchmark_runs_a_loop_end_to_end(benchmark, runs, data_env):
    proc, log = runs[benchmark]
    full = benchmark in FULL_LOOP
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
    # Two sampled answers per item (--samples 2), with the tiny model's sampling settings (its
    # generation config names none: 0.6/0.95); the split is the --eval-limit's 8 items.
    assert run_summary["scoring"] == {
        "items": 8,
        "samples": 2,
        "temperature": 0.6,
        "top_p": 0.95,
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
            assert record["n"] == 8 and record["samples"] == 2 and record["value"] == summary["primary"]["value"]
            assert (summary["max_gen_toks"], summary["standard"]) == (GEN_TOKS, False)

            # The trained weights are what was scored: with lm-eval's fixed seeds the base model
            # would give the same answers, and most differ.
            tuned, before = answers(loop / "running" / split), answers(base / split)
            assert len(tuned) == len(before) == 16 and sum(a != b for a, b in zip(tuned, before, strict=True)) >= 8
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
    dataset = BENCHMARKS[benchmark][0]
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


@pytest.mark.parametrize("dataset", ROWS)
def test_prepare_reports_each_datasets_overlap_with_the_benchmarks_it_serves(dataset, runs):
    """The fixtures' training files hold no item of the benchmarks they serve (PANORAMA's
    validation and test files, which do, are removed by prepare), and prepare says so."""
    served = [benchmark for benchmark, (name, _) in BENCHMARKS.items() if name == dataset]
    for benchmark in served:
        assert (
            f"  overlap with {benchmark}: 0 of {ROWS[dataset]} rows hold its validation or test items "
            "(exact 0, identifier 0, molecule 0, ngram 0)"
        ) in PREPARED[dataset].splitlines()


def test_a_prepare_waits_for_another_of_the_same_benchmark(shared_dirs, data_env, tmp_path):
    """Two `benchmarks prepare` of one benchmark at once (two tox workers, two users of one
    FT_FILE_PATH): the second waits for the first's lock instead of racing it to swap its copy
    into place (the loser's rename failed with "Directory not empty")."""
    from filelock import FileLock

    env = clean_environ(**{**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")})
    source = str(FIXTURES / "benchmarks" / "aime25.jsonl")
    first = cli(env, "benchmarks", "prepare", "aime25", "--source", source, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    items = tmp_path / "ft" / "benchmarks" / "aime25" / "items.jsonl"
    before = items.stat().st_ino
    with FileLock(tmp_path / "ft" / "benchmarks" / ".locks" / "aime25.lock"):  # as the first prepare holds it
        second = subprocess.Popen(
            ["rdft", "benchmarks", "prepare", "aime25", "--source", source, "--force"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)  # long enough for an unlocked prepare of 20 items to have swapped its copy in
        assert second.poll() is None and items.stat().st_ino == before
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "aime25: 20 items" in out and items.stat().st_ino != before
