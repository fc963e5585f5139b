import io
import os
import time

from rdft.runner import TIMEOUT_EXIT_CODE, base_environment, run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_streams_output_to_console_and_log(tmp_path):
    console = io.StringIO()
    log = tmp_path / "logs" / "run.log"
    result = run(["bash", "-c", "echo one; echo two >&2; sleep 0.3; exit 3"], log_path=log, console=console)
    assert result.returncode == 3 and not result.ok
    assert console.getvalue() == "one\ntwo\n"
    assert log.read_text() == "one\ntwo\n"
    assert result.tail == "one\ntwo\n"
    assert 0.3 <= result.duration_s < 10


def test_tail_keeps_the_end(tmp_path):
    result = run(["bash", "-c", "for i in $(seq 1 5000); do echo line$i; done"], echo=False, tail_chars=100)
    assert result.tail.endswith("line5000\n") and len(result.tail) <= 100
    assert "line1\n" not in result.tail


def test_timeout_kills_child_and_grandchildren(tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! >> {pids}; (sleep 300 & echo $! >> {pids}; wait) & echo $$ >> {pids}; wait"
    started = time.monotonic()
    result = run(["bash", "-c", script], timeout=1.5, echo=False)
    assert result.returncode == TIMEOUT_EXIT_CODE and result.timed_out
    assert time.monotonic() - started < 30
    spawned = [int(p) for p in pids.read_text().split()]
    assert len(spawned) == 3
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in spawned) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in spawned)


def test_term_ignoring_child_is_killed(tmp_path):
    result = run(["bash", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"], timeout=1, echo=False)
    assert result.returncode == TIMEOUT_EXIT_CODE


def test_working_directory_and_explicit_environment(tmp_path):
    result = run(
        ["bash", "-c", 'pwd; echo "X=$RDFT_X HOME_SET=${HOME:+yes}"'],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "RDFT_X": "42"},
        echo=False,
    )
    assert result.tail == f"{tmp_path}\nX=42 HOME_SET=\n"


def test_secrets_stay_out_of_children_and_logs(tmp_path, monkeypatch):
    secret = "sk-runner-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-abcdefgh")
    env = base_environment()
    assert "OPENAI_API_KEY" not in env and "SOME_SERVICE_TOKEN" not in env
    log = tmp_path / "run.log"
    # Not passed unless asked for:
    result = run(["bash", "-c", 'echo "key=${OPENAI_API_KEY:-unset}"'], env=env, log_path=log, echo=False)
    assert result.tail == "key=unset\n"
    # Asked for: the child gets it, but neither the log nor the console ever shows it.
    console = io.StringIO()
    passed = base_environment({"OPENAI_API_KEY": secret})
    result = run(["bash", "-c", 'echo "key=$OPENAI_API_KEY"'], env=passed, log_path=log, console=console)
    assert result.tail == "key=***\n"
    assert secret not in log.read_text() and secret not in console.getvalue()
    assert "key=***" in log.read_text()


def test_cuda_oom_is_flagged():
    result = run(
        ["bash", "-c", "echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'; exit 1"],
        echo=False,
    )
    assert result.oom
    assert not run(["true"], echo=False).oom


def test_missing_command_is_127():
    result = run(["rdft-no-such-command-xyz"], echo=False)
    assert result.returncode == 127 and "command not found" in result.tail
