"""bench/gpu_suite.py cannot rot: its CPU smoke runs every arm end to end on tiny shapes, in an
interpreter that stands in for a bare GPU host's (torch, transformers, peft and accelerate and
their own dependencies, without rdft's), with rdft's missing dependencies carried as wheels
that `--download-wheels` fetched."""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rdft.envs import pip_lock

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "bench" / "gpu_suite.py"  # bench/ lives in the tree, not the wheel
sys.path.insert(0, str(SUITE.parent))
from gpu_suite import CLI_WHEELS, KERNEL_WHEELS  # noqa: E402

HOST_STACK = ("torch", "transformers", "peft", "accelerate")  # what a bare GPU host's Python holds
# Carried wheels the lent H200 image lacks (../.library/device/KINDS.md lists typing-extensions
# and click there, no pydantic of any kind).
ABSENT_ON_THE_IMAGE = set(CLI_WHEELS) - {"typing-extensions", "click"}


def lock_entries(lock: Path) -> dict[str, tuple[str, set[str]]]:
    """name → (its lines in the pip lock, the names it is required by ("-r" for the spec))."""
    entries: dict[str, tuple[list[str], set[str]]] = {}
    name = None
    for line in lock.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            name = line.split("==")[0].lower()
            entries[name] = ([line], set())
        elif name and line.strip().startswith("--hash"):
            entries[name][0].append(line)
        elif name and line.strip().startswith("#"):
            via = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if via:
                entries[name][1].add("-r" if via.startswith("-r") else via.lower())
    return {k: ("\n".join(lines), parents) for k, (lines, parents) in entries.items()}


@pytest.fixture(scope="module")
def bare_host(train_env, tmp_path_factory) -> Path:
    """A venv with torch, transformers, peft, accelerate and what they require, from the train
    env's lock (so uv serves it from the cache the train env filled). The pydantic family is
    left out even where the locked transformers pulls it in (through typer): the lent H200
    image, with its older transformers, has none of it, and the suite must carry it."""
    entries = lock_entries(REPO / "envs" / "train.cpu.txt")
    kept, changed = set(HOST_STACK), True
    while changed:
        changed = False
        for name, (_, parents) in entries.items():
            if name not in kept and name not in ABSENT_ON_THE_IMAGE and parents & kept:
                kept.add(name)
                changed = True
    folder = tmp_path_factory.mktemp("bare-host")
    requirements = folder / "requirements.txt"
    requirements.write_text("\n".join(entries[name][0] for name in sorted(kept)) + "\n")
    import uv

    subprocess.run(
        [uv.find_uv_bin(), "venv", "--quiet", "--seed", "--python", sys.executable, str(folder / "venv")], check=True
    )
    python = folder / "venv" / "bin" / "python"
    sources = [part for link in pip_lock.find_links("cpu") for part in ("--find-links", link)]
    sources += [part for index in pip_lock.extra_indexes("cpu") for part in ("--extra-index-url", index)]
    subprocess.run(
        [
            uv.find_uv_bin(),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--require-hashes",
            "--no-deps",
            "--index-strategy",
            "unsafe-best-match",
            "-r",
            str(requirements),
            *sources,
        ],
        check=True,
    )
    # The lent H200 image has matplotlib (KINDS.md), which the loop case's report draws with.
    plots = f"matplotlib=={importlib.metadata.version('matplotlib')}"
    subprocess.run([uv.find_uv_bin(), "pip", "install", "--quiet", "--python", str(python), plots], check=True)
    return python


def wheel_of_installed(name: str, folder: Path) -> Path:
    """A wheel of a package installed here, from its own files: what `pip download` would give
    for this Python, made offline."""
    dist = importlib.metadata.distribution(name)
    assert dist.files, f"{name} has no RECORD of its files"
    stem = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}"
    path = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for file in dist.files:
            if file.suffix != ".pyc" and ".." not in file.parts:
                wheel.write(file.locate(), str(file))
    return path


def test_gpu_suite_cpu_smoke_on_a_bare_host(bare_host, data_env, eval_env, tmp_path):
    check = "import torch, transformers, peft, accelerate, click; import pydantic"
    probe = subprocess.run([str(bare_host), "-c", check], capture_output=True, text=True)
    assert "No module named 'pydantic'" in probe.stderr, probe.stderr  # the stack is there, rdft's needs are not
    out, results = tmp_path / "smoke.json", tmp_path / "RESULTS.md"
    smoke = [str(bare_host), str(SUITE), "--cpu-smoke", "--out", str(out), "--results", str(results)]

    # Without the wheels: one line that says how to carry them, and no report.
    bare = subprocess.run(smoke, capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0 and "Traceback" not in bare.stderr, bare.stderr
    assert "No module named 'pydantic'" in bare.stderr and "--download-wheels DIR" in bare.stderr, bare.stderr
    assert not out.exists()

    # --download-wheels, pointed by pip's own variables at a folder standing in for PyPI: the
    # CLI's wheels at the versions installed here, the kernels left out with a line each.
    index = tmp_path / "index"
    index.mkdir()
    for name in CLI_WHEELS:
        wheel_of_installed(name, index)
    carried = tmp_path / "wheels"
    pip_env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}
    fetched = subprocess.run(
        [
            sys.executable,
            str(SUITE),
            "--download-wheels",
            str(carried),
            "--python-version",
            f"{sys.version_info.major}.{sys.version_info.minor}",
        ],
        capture_output=True,
        text=True,
        env=pip_env,
        timeout=300,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert sorted(p.name for p in carried.glob("*.whl")) == sorted(p.name for p in index.glob("*.whl"))
    for name in KERNEL_WHEELS:
        assert re.search(rf"{name}==[\d.]+ could not be downloaded .*; the suite runs without it", fetched.stderr)
    assert "lm-eval's wheels could not be downloaded (" in fetched.stderr
    assert "; the loop case needs --eval-python" in fetched.stderr

    # The loop case's data and eval envs: rdft's own, adopted (this bare host has no lm-eval).
    loop_envs = ["--data-python", str(data_env.python), "--eval-python", str(eval_env.python)]
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    ran = subprocess.run(
        [*smoke, "--wheels", str(carried), *loop_envs], capture_output=True, text=True, timeout=1200, cwd=started_in
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert list(started_in.iterdir()) == []  # nothing written where the suite was started (the loop's run: its logs)
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["matmul_ceiling_tflops"] > 0
    assert report["wheels"] == sorted(p.name for p in carried.glob("*.whl"))
    # The interpreter was adopted as the train env, and every arm ran through `rdft env run
    # train`, each in its own process: rdft's runner wrote each arm's log, result line included.
    assert report["env"] == f"{bare_host}, adopted as rdft's train env (cpu)"
    assert f"Interpreter: {bare_host}, adopted as rdft's train env (cpu)" in results.read_text()
    ran_arms = {
        (case, arm)
        for case, arms in report.items()
        if isinstance(arms, dict)
        for arm, r in arms.items()
        if isinstance(r, dict) and "log" in r
    }
    assert ran_arms == {
        ("lora", "baseline"),
        ("lora", "rdft"),
        ("skewed", "baseline"),
        ("skewed", "rdft"),
        ("score", "baseline"),
        ("score", "rdft"),
        ("full", "rdft"),
        ("skewed_sdpa", "rdft"),
        ("compile", "rdft"),
        ("loop", "rdft"),
    }
    # The agent loop through the adopted interpreters: the base model scored, one loop trained,
    # scored and decided, each stage timed from the run's own records.
    loop = report["loop"]["rdft"]
    assert loop["loop"]["status"] == "done" and loop["loop"]["error"] is None, loop
    assert loop["baseline"]["validation"] == 0.0 and loop["baseline"]["seconds"] > 0  # untrained: no \\boxed{}
    assert loop["loop"]["validation"] is not None and loop["loop"]["test"] is not None
    assert set(loop["seconds"]) == {"direct_exp_gen", "coding", "running", "feedback"}
    assert loop["seconds"]["coding"] > 0 and loop["seconds"]["running"] > 0  # the offline proposal takes ~0 s
    # On a CPU: sdpa, no Liger; the tiny model takes a full fine-tune (no adapter to merge).
    assert loop["training"]["attention"]["chosen"] == "sdpa" and loop["training"]["liger"] is False
    assert loop["training"]["steps"] > 0 and loop["training"]["final_loss"] < loop["training"]["first_loss"]
    assert Path(loop["log"]) == tmp_path / "smoke-logs" / "loop-rdft.log"
    assert [p.name for p in (tmp_path / "smoke-logs").glob("loop-run-*/Loop_0")] == ["Loop_0"]
    row = r"^\| loop \| rdft \| [\d,]+ \| — \| [\d.—]+ \| — \| base 0.0 / 0.0 \(scored in [\d.]+ s\) → loop 0 done: "
    row += r"validation [\d.]+, test [\d.]+, confirmed (True|False); direct_exp_gen [\d.]+ s, coding "
    assert re.search(row, results.read_text(), re.M), results.read_text()
    for case, arm in ran_arms - {("loop", "rdft")}:
        log = Path(report[case][arm]["log"])
        assert log == tmp_path / "smoke-logs" / f"{case}-{arm}.log" and "gpu_suite result: {" in log.read_text()
    assert report["qlora"]["rdft"] == {"skipped": "bitsandbytes and a CUDA GPU are needed"}
    assert report["score"]["vllm"] == {"skipped": "vLLM and a CUDA GPU are needed"}
    for case in ("lora", "skewed"):
        for side in ("baseline", "rdft"):
            # MFU is computed (its value on tiny CPU shapes under a loaded CI host means nothing)
            assert report[case][side]["tokens_per_s"] > 0 and report[case][side]["mfu"] > 0
    # The planner's choice on the smoke's CPU budget: 64 rows of the longest sample (128 tokens),
    # so the packed side trains on every sample the padded side does.
    assert report["skewed"]["rdft"]["plan"]["tokens_per_micro_batch"] == 64 * 128
    assert "packed rows of 128" in report["skewed"]["rdft"]["setup"]
    # Padding wastes much of the baseline's compute on skewed lengths; packing far less.
    base, ours = report["skewed"]["baseline"], report["skewed"]["rdft"]
    wasted_base = 1 - base["effective_tokens_per_s"] / base["tokens_per_s"]
    wasted_ours = 1 - ours["effective_tokens_per_s"] / ours["tokens_per_s"]
    assert wasted_base > 0.3 and wasted_ours < wasted_base - 0.2, (wasted_base, wasted_ours)
    # Useful FLOPs per token, by hand for the tiny shape (hidden 64, intermediate 128, 2 layers,
    # 4 heads of 16, 2 KV heads, vocab 512): matmul weights per layer q 64·64 + k 64·32 + v 64·32
    # + o 64·64 + 3·64·128 = 36,864, so 73,728 + lm_head 32,768 = 106,496; LoRA r16 on those
    # seven linears, 16·(in + out) each: 16·(128 + 96 + 96 + 128 + 3·192) = 16,384 per layer,
    # 32,768. 4N = 557,056; causal attention on samples of 64 tokens, 2·layers·hidden·64 = 16,384
    # forward and twice that backward: 3·16,384. Skewed samples are shorter on average.
    assert report["lora"]["rdft"]["flops_per_token"] == report["lora"]["baseline"]["flops_per_token"] == 606_208
    assert report["skewed"]["rdft"]["flops_per_token"] < 606_208
    assert report["full"]["rdft"]["tokens_per_s"] > 0 and report["compile"]["rdft"]["compiled_graphs"] >= 1
    # On a CPU both sides are SDPA (flex has no CPU backward): the arm and its ratio only have to run.
    assert "sdpa" in report["skewed"]["rdft"]["setup"] and "sdpa" in report["skewed_sdpa"]["rdft"]["setup"]
    assert "skewed_flex_vs_sdpa" in report["ratios"]
    # Batch 1 is timed on the first 2 prompts, rdft's planned batch (4 on a CPU) on all 4.
    assert (report["score"]["baseline"]["generated"], report["score"]["rdft"]["generated"]) == (2 * 8, 4 * 8)
    assert set(report["ratios"]) >= {
        "lora_tokens_per_s",
        "skewed_effective_tokens_per_s",
        "score_rdft_hf",
        "lora_compile_vs_eager",
    }
    table = results.read_text()
    assert "CPU smoke: figures mean nothing" in table
    assert re.search(r"^\| skewed_effective_tokens_per_s \| [\d.]+× \| ≥ 3.0× \|$", table, re.M)

    # A run cut off from outside keeps its JSON; --table-from makes its table.
    again = tmp_path / "again.md"
    made = subprocess.run(
        [sys.executable, str(SUITE), "--table-from", str(out), "--results", str(again)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert again.read_text() == table


def test_gpu_suite_budget_timeouts_and_a_partial_report(bare_host, tmp_path):
    """A spent --budget marks the arms left skipped with the rerun to use; an arm over its time
    is stopped (exit 124 through rdft's runner) and reported with its log's tail; --cases runs
    only the cases named, and --table-from tabulates such a partial report."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in CLI_WHEELS:
        wheel_of_installed(name, wheels)
    common = ["--cpu-smoke", "--results", str(tmp_path / "R.md"), "--wheels", str(wheels)]
    out = tmp_path / "cut.json"
    ran = subprocess.run(
        [str(bare_host), str(SUITE), *common, "--cases", "score,full", "--budget", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {
        case
        for case in report
        if case in ("loop", "lora", "skewed", "score", "full", "skewed_sdpa", "qlora", "compile")
    } == {"score", "full"}
    spent = "the suite's --budget of 1 s was spent; rerun with --cases"
    assert report["score"]["baseline"]["skipped"] == f"{spent} score"
    assert report["full"]["rdft"]["skipped"] == f"{spent} full"

    # The ceiling arm needs seconds to import torch; a 1 s limit stops every arm.
    slow = tmp_path / "slow.json"
    timed = subprocess.run(
        [str(bare_host), str(SUITE), *common, "--cases", "full", "--case-timeout", "1", "--out", str(slow)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert timed.returncode != 0 and timed.stderr.strip().splitlines()[-1] == (
        f"gpu_suite: full/rdft failed; see {slow}"
    )
    stopped = json.loads(slow.read_text())
    assert stopped["full"]["rdft"]["error"] == "timed out after 1 s"
    assert stopped["full"]["rdft"]["log"] == str(tmp_path / "slow-logs" / "full-rdft.log")
    # Killed before it printed: rdft's runner made its log, empty, and its tail is in the report.
    assert Path(stopped["full"]["rdft"]["log"]).is_file() and stopped["full"]["rdft"]["log_tail"] == ""
    assert stopped["device"] == "unknown (the ceiling arm failed)" and stopped["matmul_ceiling_tflops"] is None
    table = tmp_path / "partial.md"
    made = subprocess.run(
        [sys.executable, str(SUITE), "--table-from", str(slow), "--results", str(table)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert "| full | rdft | — | — | — | — | timed out after 1 s |" in table.read_text()

    bad = subprocess.run(
        [str(bare_host), str(SUITE), "--cpu-smoke", "--cases", "lora,bogus"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and bad.stderr.strip() == (
        "gpu_suite: unknown case(s) bogus; choose from loop, qlora, compile, lora, skewed, score, full, skewed_sdpa"
    )


def test_gpu_suite_bad_arguments_are_one_line(tmp_path):
    """Refused before anything runs, and nothing appended to the results file."""
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "a-file").write_text("")
    results = tmp_path / "RESULTS.md"
    cases = {
        ("--budget", "-5"): "--budget and --case-timeout are seconds above 0",
        ("--case-timeout", "0"): "--budget and --case-timeout are seconds above 0",
        ("--cases", ","): "unknown case(s) (none given); choose from loop, qlora, compile, lora",
        ("--cases", "lora,bogus"): "unknown case(s) bogus; choose from",
        ("--wheels", str(tmp_path / "none")): "is not a folder; make it with --download-wheels DIR",
        ("--table-from", str(tmp_path / "none.json")): "cannot be read ([Errno 2] No such file",
        ("--table-from", str(tmp_path / "broken.json")): "cannot be read (Expecting property name",
        ("--table-from", str(tmp_path / "empty.json")): "is not a report of this suite",
        ("--download-wheels", str(tmp_path / "a-file")): "is a file; give a folder",
    }
    for args, says in cases.items():
        proc = subprocess.run(
            [sys.executable, str(SUITE), *args, "--results", str(results)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and says in proc.stderr, (args, proc.stderr)
    assert not results.exists()
