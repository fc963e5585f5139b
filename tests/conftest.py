from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conda_channel import build_channel
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


# CI's time (issue 21). xdist hands whole modules to its two workers in collection order (tox.ini
# passes --no-loadscope-reorder; its default order is by test count), so the longest modules go
# first and the short ones fill the end: longest-processing-time-first. Replayed on CI's junit.xml
# (xdist's own hand-out rule), it cut the slower worker's span from 1,239 s to 1,192 s. Seconds
# are CI's (junit.xml of 2026-12-06, rounded): a module not named here is short, a wrong figure only costs balance.
# test_rl.py is not second: its first test waits for the demo run test_loop.py's first one makes.
MODULE_SECONDS = {
    "test_loop.py": 320, "test_training.py": 240, "test_benchmarks_upstream.py": 235, "test_rl.py": 230,
    "test_benchmarks.py": 200, "test_gpu_suite.py": 190, "test_slurm.py": 115, "test_operations.py": 100,
    "test_eval.py": 75, "test_custom.py": 60, "test_forgetting_and_tracking.py": 55, "test_live_report.py": 55,
    "test_env_conda.py": 55, "test_tablebench_family.py": 55, "test_tracking_train.py": 40,
    "test_planner.py": 35, "test_scoring.py": 30, "test_datatools.py": 25, "test_env_venv.py": 25,
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.path.name, 0))  # stable: a module's order is kept


def pytest_configure(config: pytest.Config) -> None:
    folder = os.environ.get("RDFT_TEST_ARTIFACTS")
    if folder and not os.environ.get("PYTEST_XDIST_WORKER"):  # the session's own, before its workers start
        (Path(folder) / "timeline.jsonl").unlink(missing_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):  # where the test runs: a worker, or the only process
    _timeline("start", item.nodeid)
    yield
    _timeline("end", item.nodeid)


def _timeline(event: str, nodeid: str) -> None:
    """When each test started and ended, on which worker, and the CPU seconds its worker and the
    processes it waited for had used by then: what CI's time is made of, beside junit.xml's
    durations (RDFT_TEST_ARTIFACTS/timeline.jsonl)."""
    folder = os.environ.get("RDFT_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(usage.ru_utime + usage.ru_stime for usage in used)  # children: those waited for, and theirs
        line = json.dumps({"worker": worker, "event": event, "test": nodeid, "time": round(time.time(), 2),
                           "cpu_s": round(cpu, 2)})  # fmt: skip
        with open(Path(folder) / "timeline.jsonl", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")  # one short append per line: the two workers' lines never mix


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def clean_environ(**overrides: str) -> dict[str, str]:
    """The test process's environment without rdft/RD-Agent settings, so a developer's own
    .env or exports never leak into a test."""
    prefixes = ("FT_", "RDFT_", "OPENAI_", "HF_", "CHAT_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}
    env.update(overrides)
    return env


@pytest.fixture
def rdft(tmp_path):
    """Run the real `rdft` CLI in a fresh working directory with isolated folders."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    base = {
        "FT_FILE_PATH": str(tmp_path / "ft"),
        "RDFT_ENVS_DIR": str(tmp_path / "envs"),
    }

    def call(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, prefix=(), timeout=600
    ) -> CliResult:
        environ = clean_environ(**{**base, **(env or {})})
        rdft_bin = shutil.which("rdft", path=str(Path(sys.executable).parent)) or "rdft"
        proc = subprocess.run(
            [*prefix, rdft_bin, *args],
            cwd=cwd or workdir,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """The CLI started in the background, stdout and stderr piped as text, as a shell's
        background job starts it: with SIGINT ignored (a command that stops on Ctrl-C must say so
        itself; CI's own runner may start the tests that way)."""
        rdft_bin = shutil.which("rdft", path=str(Path(sys.executable).parent)) or "rdft"
        return subprocess.Popen(
            [rdft_bin, *args],
            cwd=workdir,
            env=clean_environ(**{**base, **(env or {})}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )

    call.workdir = workdir
    call.envs_dir = tmp_path / "envs"
    call.popen = popen
    return call


@pytest.fixture(scope="session")
def local_channel(tmp_path_factory) -> Path:
    return build_channel(tmp_path_factory.mktemp("channel"))


def offline_prefix() -> tuple[str, ...]:
    """`unshare -n` (a network namespace with no interfaces) where this host allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return (unshare, "-n")
    return ()


def one_line_error(result: CliResult) -> str:
    """The single error line of a failed command (asserting there is exactly one)."""
    assert result.returncode != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("rdft: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="session")
def shared_dirs(tmp_path_factory) -> dict[str, str]:
    """Envs and tiny models shared by the whole session (tox keeps them in .tox/ between runs)."""
    root = os.environ.get("RDFT_TEST_ENVS_DIR")
    envs = Path(root) if root else tmp_path_factory.mktemp("shared-envs")
    return {
        "RDFT_ENVS_DIR": str(envs),
        "FT_FILE_PATH": str(envs.parent / f"{envs.name}-ft"),
        "TORCH_EXTENSIONS_DIR": str(envs.parent / f"{envs.name}-torch-extensions"),
        "FT_Coder_CoSTEER_env_type": "venv",
        "RDFT_TORCH_VARIANT": "cpu",
    }


@pytest.fixture(scope="session")
def shared_settings(shared_dirs):
    from rdft.settings import Settings

    return Settings(
        _env_file=None,
        rdft_envs_dir=shared_dirs["RDFT_ENVS_DIR"],
        ft_file_path=shared_dirs["FT_FILE_PATH"],
        ft_coder_costeer_env_type="venv",
        rdft_torch_variant="cpu",
    )


@pytest.fixture(scope="session")
def train_env(shared_settings):
    from rdft.envs import EnvManager

    return EnvManager(shared_settings).ensure("train")


@pytest.fixture(scope="session")
def data_env(shared_settings):
    from rdft.envs import EnvManager

    return EnvManager(shared_settings).ensure("data")


@pytest.fixture(scope="session")
def eval_env(shared_settings):
    from rdft.envs import EnvManager

    return EnvManager(shared_settings).ensure("eval")


def small_scenario(
    model_path: Path | str,
    benchmark: str = "aime24",
    family: str = "aime",
    datasets=(),
    upper_data_size_limit: int = 10,
):
    """A Scenario of a 1-parameter llama-type model (what the prompts and the quality gate read)."""
    from rdft.loop.scenario import ModelFacts, Scenario

    facts = ModelFacts(
        name="m",
        path=str(model_path),
        model_type="llama",
        parameters=1,
        context_length=2048,
        chat_template=True,
        think_tokens=False,
    )
    return Scenario(
        benchmark=benchmark,
        benchmark_family=family,
        description="",
        primary_metric="accuracy",
        base_model=facts,
        hardware={},
        memory="",
        datasets=list(datasets),
        upper_data_size_limit=upper_data_size_limit,
        budgets={},
    )


# Qwen2.5-7B's published config.json (the fields the planner and the scoring plan read).
QWEN25_7B = {
    "model_type": "qwen2",
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}


def skip_without(reason: str) -> None:
    """Skip a test whose evidence needs something a user's machine may lack (../shared, chromium,
    Slurm); in CI (CI=true), which has them all, the same absence is a failure, never a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI must have it")
    pytest.skip(reason)


def log_dir_of(output: str) -> Path:
    return Path(re.search(r"^log: (.+)$", output, re.M).group(1))


@pytest.fixture(scope="session")
def demo_run(shared_dirs, data_env, eval_env, train_env, tmp_path_factory):
    """The README's `rdft run --demo`, once for the session (about 1.5 minutes on 2 cores): the
    loop's tests read it, GRPO and DPO start from its trained model. tox runs the tests on two
    workers (pytest-xdist): the first to ask runs it, the other waits on the lock and reads what
    it recorded."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    record = root / "demo-run.json"
    with FileLock(str(record) + ".lock"):
        if record.is_file():
            done = json.loads(record.read_text())
            return subprocess.CompletedProcess(done["args"], done["returncode"], done["stdout"], done["stderr"])
        workdir = root / "demo"
        shutil.rmtree(workdir, ignore_errors=True)  # what a worker that died running it left
        workdir.mkdir()
        start = time.monotonic()
        try:
            proc = subprocess.run(
                ["rdft", "run", "--demo"],
                cwd=workdir,
                env=clean_environ(**shared_dirs),
                capture_output=True,
                text=True,
                timeout=900,
            )
        except subprocess.TimeoutExpired as error:  # recorded, so the other worker fails the same way
            out = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
            proc = subprocess.CompletedProcess(error.cmd, -9, out, "rdft run --demo timed out after 900 s")
        print(f"rdft run --demo took {time.monotonic() - start:.0f} s")
        fields = {"args": proc.args, "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
        record.write_text(json.dumps(fields))
        return proc
