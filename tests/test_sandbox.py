"""The sandbox model-written code runs in (evaluation/tasks/sandbox.py): a program that loops
forever, forks without end, writes outside its folder, opens a socket, eats memory or reads
rdft's files costs one failed item, never the run — scored by the real `rdft score`, and each
program's outcome checked directly, with the kernel's namespaces where this host allows them and
with the guard alone."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO

from rdft.resources import evaluation_dir

FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped.is_set():
            try:
                connection, address = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(address)
            connection.close()

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.server.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def namespaces_allowed() -> bool:
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "true"]
    return unshare is not None and subprocess.run(probe, capture_output=True).returncode == 0


def fenced(code: str) -> str:
    return f"Here is the function:\n\n```python\n{code}\n```\n"


def test_bad_programs_cost_one_item_each(rdft, shared_dirs, eval_env, tmp_path, listener):
    docs = [json.loads(line) for line in (FIXTURES / "humaneval.jsonl").read_text().splitlines()][:12]
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("planted by the test")
    outside = tmp_path / "written-from-the-sandbox.txt"
    rdft_file = evaluation_dir() / "benchmarks.yaml"
    bad = {  # item → a completion that would pass (or hang, or take the host down) without the sandbox
        1: "def count_vowels(text):\n    while True:\n        pass",
        2: "import os, time\n\nfor _ in range(200):\n    if os.fork() == 0:\n        time.sleep(30)\n"
           "        os._exit(0)\n\ndef is_palindrome_number(n):\n    return str(n) == str(n)[::-1]",
        # a fork loop the guard cannot see (ctypes): the process limit stops it
        3: "import ctypes, os, time\n\nlibc = ctypes.CDLL(None)\nfor _ in range(200):\n    pid = libc.fork()\n"
           "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
           "    if pid < 0:\n        raise OSError('fork refused')\n\n"
           "def running_total(numbers):\n    out, total = [], 0\n    for x in numbers:\n        total += x\n"
           "        out.append(total)\n    return out",
        4: f"open({str(sentinel)!r}, 'w').write('overwritten')\n\n"
           "def second_largest(numbers):\n    d = sorted(set(numbers))\n    return d[-2] if len(d) > 1 else None",
        5: f"open({str(outside)!r}, 'w').write('escaped')\n\n"
           "def capitalize_words(sentence):\n"
           "    return ' '.join(w[:1].upper() + w[1:].lower() for w in sentence.split(' '))",
        6: f"import socket\n\ndef digit_sum(n):\n    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
           f"    s.connect(('127.0.0.1', {listener.port}))\n    return sum(int(d) for d in str(abs(n)))",
        7: "s = 'x'\nwhile True:\n    s += s\n\n"
           "def remove_adjacent_duplicates(items):\n"
           "    return [x for i, x in enumerate(items) if i == 0 or items[i - 1] != x]",
        8: f"SECRET = open({str(rdft_file)!r}).read()\n\n"
           "import itertools\n\ndef count_char_runs(text):\n    return len([k for k, _ in itertools.groupby(text)])",
    }  # fmt: skip
    # The others are right, and two pass only because the sandbox is there: nothing of the
    # scorer's environment (FT_FILE_PATH is set for it) reaches the program, HOME is its folder.
    good = {
        0: docs[0]["prompt"] + docs[0]["canonical_solution"],
        9: "import os\n\ndef merge_sorted(first, second):\n    assert 'FT_FILE_PATH' not in os.environ\n"
           "    assert os.environ['HOME'] == os.getcwd()\n    return sorted(first + second)",
        10: docs[10]["prompt"] + docs[10]["canonical_solution"],
        11: "import os\n\ndef alternate_case(text):\n"
            "    assert not {'RDFT_ENVS_DIR', 'VIRTUAL_ENV'} & set(os.environ)\n"
            "    return ''.join(c.upper() if i % 2 == 0 else c.lower() for i, c in enumerate(text))",
    }  # fmt: skip
    answers = {**bad, **good}
    docs_path = tmp_path / "docs.jsonl"
    docs_path.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"doc_id": i, "response": fenced(answers[i])}) + "\n" for i in range(12)))

    start = time.monotonic()
    scored = rdft("score", "--benchmark", "humaneval", "--docs", docs_path, "--predictions", predictions,
                  env=shared_dirs, timeout=300)  # fmt: skip
    elapsed = time.monotonic() - start
    assert scored.returncode == 0, scored.output
    summary = json.loads(scored.stdout)
    assert summary["primary"]["value"] == pytest.approx(4 / 12)
    # one item each: the loop timed out (HumanEval's 3 CPU seconds), the memory ran out (1 GB), and
    # the fork loops, the writes, the socket and the read were refused (PermissionError, or the
    # process limit for ctypes' fork)
    statuses = {"passed": 4, "failed": 6, "timeout": 1, "memory": 1, "killed": 0}
    assert summary["metrics"]["statuses"] == statuses and summary["metrics"]["n_unreadable"] == 0
    assert elapsed < 120  # bounded: the loop is one item's few seconds, not the run's
    assert sentinel.read_text() == "planted by the test" and not outside.exists()
    time.sleep(0.3)  # the listener's last accept() wait
    assert listener.accepted == []


CASES = {
    "ok": "print('ok')",
    "exit_code": "import sys\nsys.exit(3)",
    "loop": "while True:\n    pass",
    "sleep": "import time\ntime.sleep(60)",
    "memory": "s = 'x'\nwhile True:\n    s += s",
    "fork": "import os\nwhile True:\n    os.fork()",
    "ctypes_fork": "import ctypes, os, sys, time\nprint(os.getpgid(0), flush=True)\nlibc = ctypes.CDLL(None)\nn = 0\n"
                   "for _ in range(200):\n    pid = libc.fork()\n"
                   "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
                   "    if pid < 0:\n        sys.exit(f'fork refused after {n}')\n    n += 1\nprint(n)",
    "subprocess": "import subprocess\nsubprocess.run(['true'])",
    "write": "open(OUTSIDE, 'w').write('escaped')",
    "remove": "import os\nos.remove(SENTINEL)",
    "rename_in": "import os\nos.rename(SENTINEL, 'mine.txt')",
    "socket": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(('127.0.0.1', PORT))",
    "read_rdft": "print(open(RDFT_FILE).read()[:20])",
    "list_rdft": "import os\nprint(os.listdir(RDFT_DIR))",
    "env": "import json, os\nprint(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))",
    "files": "print(open('data/input.txt').read())",
    "network": "import socket\nprint(len(socket.if_nameindex()))",
}  # fmt: skip
RUNNER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from sandbox import run_python



def living(group):
    # processes of the group (the sandbox's own, outside a PID namespace) that are not dead
    # (zombies wait for their reaper), after up to 2 s for the kill to land
    for _ in range(20):
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    state, _, pgrp = handle.read().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == group and state != "Z":
                found.append(int(entry))
        if not found:
            break
        time.sleep(0.1)
    return found


cases, out = json.loads(sys.argv[2]), {}
for name, source in cases.items():
    start = time.monotonic()
    outcome = run_python(source, files={"data/input.txt": "given"}, timeout_s=3, cpu_s=1, memory_mb=256)
    out[name] = {"status": outcome.status, "returncode": outcome.returncode, "stdout": outcome.stdout,
                 "stderr": outcome.stderr[-400:], "isolation": outcome.isolation, "seconds": time.monotonic() - start}
    if name == "ctypes_fork" and outcome.stdout.split()[:1] not in ([], ["0"]):
        out[name]["group_left"] = living(int(outcome.stdout.split()[0]))
with open(sys.argv[3], "w") as handle:
    json.dump(out, handle)
"""


@pytest.mark.parametrize("namespaces", ["host default", "off"])
def test_each_program_outcome(eval_env, tmp_path, listener, namespaces):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("planted")
    outside = tmp_path / "outside.txt"
    names = {"OUTSIDE": str(outside), "SENTINEL": str(sentinel), "PORT": listener.port,
             "RDFT_FILE": str(evaluation_dir() / "benchmarks.yaml"), "RDFT_DIR": str(evaluation_dir())}  # fmt: skip
    prefix = "".join(f"{key} = {value!r}\n" for key, value in names.items())
    cases = {name: prefix + source for name, source in CASES.items()}
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    extra = {"FT_FILE_PATH": str(tmp_path / "ft"), "OPENAI_API_KEY": "sk-not-for-the-sandbox"}
    if namespaces == "off":
        extra["RDFT_SANDBOX_NAMESPACES"] = "0"
    report = tmp_path / "outcomes.json"
    command = ["python", str(runner), str(evaluation_dir() / "tasks"), json.dumps(cases), str(report)]
    result = eval_env.run(command, extra_env=extra, echo=False)
    assert result.ok, result.tail
    out = json.loads(report.read_text())
    status = {name: value["status"] for name, value in out.items()}
    assert status == {
        "ok": "passed", "exit_code": "failed", "loop": "timeout", "sleep": "timeout", "memory": "memory",
        "fork": "failed", "ctypes_fork": "failed", "subprocess": "failed", "write": "failed", "remove": "failed",
        "rename_in": "failed", "socket": "failed", "read_rdft": "failed", "list_rdft": "failed", "env": "passed",
        "files": "passed", "network": "passed",
    }, {name: value["stderr"] for name, value in out.items()}  # fmt: skip
    assert out["ok"]["stdout"] == "ok\n" and out["files"]["stdout"] == "given\n" and out["exit_code"]["returncode"] == 3
    assert out["loop"]["seconds"] < 3 and out["sleep"]["seconds"] < 5  # CPU limit first; the wall clock
    for name in ("fork", "subprocess", "write", "remove", "rename_in", "socket", "read_rdft", "list_rdft"):
        assert "PermissionError: sandbox:" in out[name]["stderr"], (name, out[name]["stderr"])
    assert "MemoryError" in out["memory"]["stderr"]
    # ctypes goes around the guard; the process limit (RLIMIT_NPROC, or root's pids cgroup) stops it
    assert "fork refused after" in out["ctypes_fork"]["stderr"]
    assert int(out["ctypes_fork"]["stderr"].split("after")[-1].split()[0]) <= 70
    assert out["ctypes_fork"].get("group_left", []) == []  # killed whole (a PID namespace: by the kernel)
    assert sentinel.read_text() == "planted" and not outside.exists()
    environment = json.loads(out["env"]["stdout"])
    assert environment["env"]["HOME"] == environment["cwd"] == environment["env"]["TMPDIR"]
    assert not {"FT_FILE_PATH", "OPENAI_API_KEY", "VIRTUAL_ENV"} & set(environment["env"])
    assert not Path(environment["cwd"]).exists()  # the folder is deleted after the run
    time.sleep(0.3)
    assert listener.accepted == []
    # Which isolation applies: the namespaces wherever this host allows them, unless turned off.
    isolation = out["ok"]["isolation"]
    expected = "namespaces" if namespaces != "off" and namespaces_allowed() else "guard"
    assert isolation.split("+")[0] == expected
    # a network namespace holds one interface (its loopback, down); the host has more or the same
    if expected == "namespaces":
        assert out["network"]["stdout"].strip() == "1"
    if os.geteuid() == 0:  # the kernel ignores RLIMIT_NPROC for root: a pids cgroup where one can be made
        print(f"isolation on this host: {isolation}")
