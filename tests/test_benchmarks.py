"""Every benchmark end to end on CPU: its evaluation items and its registry dataset prepared from
fixtures in their real schemas (exactly as a user's local copies: `rdft benchmarks prepare
--source`, `rdft datasets prepare --source`), then `rdft run` with the offline planner: the base
model scored on validation and test, the data script proven on a debug run, the data-quality gate
passed — and the prompts the model trains on are the prompts it is scored with (the same
`doc_to_text`). One benchmark per family runs its whole loop (full data, training, scoring the
trained model); the others stop after coding (`--step-n 4`), which has run every part that
depends on the benchmark rather than its family."""

import subprocess
import time

import pytest
from benchmark_loops import FIXTURES, Loops, check_loop, check_overlap, cli, run_loops
from conftest import clean_environ

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
ROWS = {"deepscaler": 40, "panorama-par4pc": 40, "panorama-pi4pc": 40, "panorama-noc4pc": 40, "chemcot-mol_und": 34,
        "chemcot-mol_edit": 33, "chemcot-mol_opt": 31, "chemcot-rxn": 33}  # fmt: skip


@pytest.fixture(scope="module")
def runs(shared_dirs, data_env, eval_env, train_env, tmp_path_factory) -> Loops:
    """The nine `rdft run`s, two at a time."""
    return run_loops(shared_dirs, tmp_path_factory.mktemp("benchmarks"), BENCHMARKS, FULL_LOOP)


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_every_benchmark_runs_a_loop_end_to_end(benchmark, runs, data_env):
    check_loop(runs, benchmark, data_env)


@pytest.mark.parametrize("dataset", ROWS)
def test_prepare_reports_each_datasets_overlap_with_the_benchmarks_it_serves(dataset, runs):
    """The fixtures' training files hold no item of the benchmarks they serve (PANORAMA's
    validation and test files, which do, are removed by prepare), and prepare says so."""
    check_overlap(runs, dataset, ROWS[dataset])


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
