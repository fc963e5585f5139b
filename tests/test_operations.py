"""Operations: `rdft logs sync` (file:// and an S3-compatible server on 127.0.0.1) and
`rdft batch` (two tiny CPU runs side by side; bad task files; --dry-run)."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import clean_environ, one_line_error

SECRET = "sk-sync-secret-16180339"


def fake_run(root: Path, files: int = 5) -> Path:
    """A run's log folder as `rdft run` leaves it (its content does not matter to sync)."""
    log = root / "2026-11-28_10-00-00-000001"
    (log / "Loop_1" / "workspace" / "output" / "adapter").mkdir(parents=True)
    (log / "run.json").write_text(json.dumps({"base_model": "tiny:llama", "benchmark": "demo_letter", "loop_n": 1}))
    (log / "settings.json").write_text(json.dumps({"openai_api_key": "**********"}))
    (log / "Loop_1" / "workspace" / "output" / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    (log / "Loop_1" / "workspace" / "train.yaml").write_text("model: {path: tiny}\n")
    for i in range(files):
        (log / "Loop_1" / "coding" / f"round_{i}").mkdir(parents=True)
        (log / "Loop_1" / "coding" / f"round_{i}" / "evaluation.json").write_text(json.dumps({"round": i}) * 50)
    return log


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".rdft-sync.json"
    }


def expected(log: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(log).items() if not k.endswith(".safetensors")}


def test_sync_to_a_file_remote_is_incremental_and_byte_identical(rdft, tmp_path):
    log = fake_run(tmp_path / "log")
    remote = f"file://{tmp_path / 'remote'}"
    first = rdft("logs", "sync", "up", str(log), "--remote", remote)
    assert first.returncode == 0, first.output
    assert "8 file(s) sent" in first.stdout  # weights stay local
    again = rdft("logs", "sync", "up", str(log), "--remote", remote)
    assert "0 file(s) sent" in again.stdout and "8 unchanged" in again.stdout
    (log / "summary.json").write_text("{}")  # a loop finished: only the new file goes
    assert "1 file(s) sent" in rdft("logs", "sync", "up", str(log), "--remote", remote).stdout

    down = tmp_path / "elsewhere" / log.name
    fetched = rdft("logs", "sync", "down", str(down), "--remote", remote)
    assert fetched.returncode == 0, fetched.output
    assert tree(down) == expected(log)

    # A file holding a secret stops the sync before anything is sent.
    (log / "leak.txt").write_text(f"key={SECRET}")
    error = one_line_error(
        rdft("logs", "sync", "up", str(log), "--remote", f"file://{tmp_path / 'r2'}", env={"OPENAI_API_KEY": SECRET})
    )
    assert "leak.txt holds a secret" in error and SECRET not in error
    assert not (tmp_path / "r2").exists()
    assert "no remote" in one_line_error(rdft("logs", "sync", "up", str(log)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    """moto's S3-compatible server on 127.0.0.1, in its own process."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    import s3fs

    s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint).mkdir("runs")
    yield env
    proc.kill()
    proc.wait()


def test_sync_to_s3_survives_an_interruption(rdft, tmp_path, s3_server):
    log = fake_run(tmp_path / "log", files=300)
    remote = "s3://runs/team"
    environ = clean_environ(**s3_server)
    proc = subprocess.Popen(
        ["rdft", "logs", "sync", "up", str(log), "--remote", remote],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = log / ".rdft-sync.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if len(json.loads(state.read_text())[remote]) >= 20:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sent_before = len(json.loads(state.read_text())[remote])
    assert 20 <= sent_before < 303, "the upload was not interrupted mid-way"

    resumed = rdft("logs", "sync", "up", str(log), "--remote", remote, env=s3_server)
    assert resumed.returncode == 0, resumed.output
    sent = int(resumed.stdout.split(": ")[1].split(" ")[0])
    assert sent <= 303 - sent_before + 1  # at most the file in flight is sent again
    assert "0 file(s) sent" in rdft("logs", "sync", "up", str(log), "--remote", remote, env=s3_server).stdout

    down = tmp_path / "down" / log.name
    fetched = rdft("logs", "sync", "down", str(down), "--remote", remote, env=s3_server)
    assert fetched.returncode == 0, fetched.output
    assert tree(down) == expected(log)


def descendants(root: int) -> list[int]:
    """Every live process below `root` (children, their children, …), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def alive_process(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def write_tasks(path: Path, tasks) -> Path:
    path.write_text(json.dumps({"tasks": tasks}) if not isinstance(tasks, str) else tasks)
    return path


# The tasks' loops train on at most 256 rows (a setting a user has too): these tests are about
# running tasks side by side, and the demo's 1,024 rows would only make them slower.
FEW_ROWS = {"FT_UPPER_DATA_SIZE_LIMIT": "256"}


def test_batch_validates_plans_and_runs_two_cpu_tasks(rdft, shared_dirs, data_env, eval_env, train_env, tmp_path):
    tiny = {"model": "tiny:llama", "benchmark": "demo_letter", "gpus": "", "loop_n": 1}
    bad = tmp_path / "bad.json"
    assert "not valid JSON" in one_line_error(rdft("batch", str(write_tasks(bad, '{"tasks": [')), env=shared_dirs))
    unknown = [{**tiny, "benchmark": "aime2025"}]
    assert "unknown benchmark 'aime2025'" in one_line_error(rdft("batch", str(write_tasks(bad, unknown))))
    overlap = [{**tiny, "gpus": "0,1"}, {**tiny, "gpus": "1"}]
    assert "both use GPU 1" in one_line_error(rdft("batch", str(write_tasks(bad, overlap))))
    assert "GPU 7 does not exist" in one_line_error(rdft("batch", str(write_tasks(bad, [{**tiny, "gpus": "7"}]))))
    assert "tasks.0.model" in one_line_error(rdft("batch", str(write_tasks(bad, [{"benchmark": "aime24"}]))))
    # "gpus": 4 was read as GPU index 4 (Slurm then gave one GPU): an integer is refused, both forms named.
    four = one_line_error(rdft("batch", str(write_tasks(bad, [{**tiny, "gpus": 4}]))))
    assert '4 is ambiguous: give GPU indices, "0,1,2,3" for 4 GPU(s)' in four

    misspelt = one_line_error(rdft("batch", str(write_tasks(bad, [{**tiny, "datasets": "demo-leter"}]))))
    assert "unknown dataset 'demo-leter'; did you mean 'demo-letter'?" in misspelt

    # Each task names its training data and may cap its scoring for a quick sweep (issue 27 item 18).
    quick = {**tiny, "datasets": "demo-letter", "eval_limit": 8, "samples": 1}
    tasks = write_tasks(tmp_path / "tasks.json", [quick, {**quick, "benchmark_description": "letters among digits"}])
    plan = rdft("batch", str(tasks), "--dry-run", env=shared_dirs)
    assert plan.returncode == 0 and "dry run: 2 task(s), nothing started" in plan.stdout
    assert "CUDA_VISIBLE_DEVICES=''" in plan.stdout and not (rdft.workdir / "log").exists()
    assert plan.stdout.count("--dataset demo-letter --loop-n 1 --eval-limit 8 --samples 1") == 2, plan.stdout

    result = rdft("batch", str(tasks), "--no-sync", env={**shared_dirs, **FEW_ROWS}, timeout=1200)
    assert result.returncode == 0, result.output[-4000:]
    logs = sorted(p for p in (rdft.workdir / "log").glob("batch-*/*") if p.is_dir())
    assert len(logs) == 2
    for log in logs:
        summary = json.loads((log / "summary.json").read_text())
        assert [row["loop"] for row in summary["loops"]] == [0] and summary["loops"][0]["decision"] != "running"
        assert (log / "report.html").is_file()
        run = json.loads((log / "run.json").read_text())
        assert (run["datasets"], run["eval_limit"], run["samples"]) == (["demo-letter"], 8, 1)
    assert json.loads((logs[1] / "scenario.json").read_text())["description"] == "letters among digits"
    assert result.stdout.count(": ok; log") == 2


def test_batch_ctrl_c_stops_every_task_and_each_resumes(rdft, shared_dirs, data_env, eval_env, train_env, tmp_path):
    tiny = {"model": "tiny:llama", "benchmark": "demo_letter", "gpus": "", "loop_n": 1, "eval_limit": 8, "samples": 1}
    tasks = write_tasks(tmp_path / "tasks.json", [tiny, tiny])
    proc = subprocess.Popen(
        ["rdft", "batch", str(tasks), "--no-sync"],
        cwd=rdft.workdir,
        env=clean_environ(**shared_dirs, **FEW_ROWS),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    started = []
    while len(started) < 2 and time.monotonic() < deadline:
        started = list((rdft.workdir / "log").glob("batch-*/*/baseline"))
        time.sleep(0.2)
    assert len(started) == 2, "the tasks did not start"
    running = descendants(proc.pid)  # both `rdft run`s and what they started (envs' processes)
    assert len(running) >= 2, running
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-3000:]
    resumes = re.findall(r"resume with `rdft run --resume (\S+)`", output)
    assert len(resumes) == 2, output[-3000:]
    alive = [pid for pid in running if alive_process(pid)]
    assert alive == [], f"still running after Ctrl-C: {alive}"
    resumed = rdft("run", "--resume", resumes[0], env={**shared_dirs, **FEW_ROWS}, timeout=900)
    assert resumed.returncode == 0, resumed.output[-3000:]
    summary = json.loads((Path(resumes[0]) / "summary.json").read_text())
    assert [row["loop"] for row in summary["loops"]] == [0] and summary["loops"][0]["decision"] != "running"
