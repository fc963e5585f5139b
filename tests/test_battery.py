"""The reliability battery of 2026-12-04 (38 defects), answered: each case is named by its
battery id, drives the real CLI on a hand-made input, and checks the one-line refusal, the
skipped record or the cleared leftover the review asked for. No case runs a training loop;
where a run folder is needed its files are written here (what rdft/loop/layout.py reads).

Covered elsewhere (too heavy to repeat here): F8's refusal while a session trains
(test_loop::test_llm_loops_fix_code_survive_kill_and_resume), DF1 and F9
(test_run_args::test_a_full_disk_pauses_the_run_and_records_no_failed_experiment,
test_run_args::test_a_killed_sessions_work_counts_and_idle_time_does_not), TR01/TR03
(test_loop::test_a_resume_redoes_a_cut_record_and_keeps_it_aside), ED02
(test_env_venv::test_create_run_ensure_remove), V06 (test_eval::test_sigterm_stops_the_scoring_it_started),
S13/RP04 (test_bad_input)."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, one_line_error
from filelock import FileLock
from hub_server import HubServer

LEAK = "sk-LEAKTEST-0123456789abcdef"
GOOD_RECIPE = {"family": "demo", "benchmark": "demo_letter", "base_model": "tiny:llama", "gain": 0.5,
               "validation": 0.9, "hypothesis": "a recipe worth keeping", "train_yaml": "train: {epochs: 3}\n",
               "process_data_py": "print('rows')\n", "source": "run#Loop_0",
               "time": "2026-12-04T00:00:00+00:00"}  # fmt: skip
SCENARIO = {"benchmark": "demo_letter", "benchmark_family": "demo", "description": "the demo benchmark",
            "primary_metric": "accuracy",
            "base_model": {"name": "tiny:llama", "path": "/nonexistent/tiny-llama", "model_type": "llama",
                           "parameters": 205120, "context_length": 2048, "chat_template": True, "think_tokens": False},
            "hardware": {"gpu_count": 0, "gpus": [], "cpu_cores": 2}, "memory": "", "datasets": [],
            "upper_data_size_limit": 100, "budgets": {"total": None}, "demo": True}  # fmt: skip
PROPOSAL = {"hypothesis": "SFT on letters", "reason": "offline", "data_recipe": "rows", "training_recipe": "full",
            "datasets": []}  # fmt: skip


def jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def cut_in_a_character(record: dict) -> bytes:
    """A record's line as a crash mid-append leaves it: cut inside a two-byte UTF-8 character."""
    return json.dumps({**record, "hypothesis": "caf\u00e9"}, ensure_ascii=False).encode()[:-3]


def run_folder(root: Path) -> Path:
    """The files `rdft prompt`, `report` and `--resume` read of a run: its options, scenario and
    loop 0's proposal (a run stopped before loop 0's coding)."""
    log = root / "log" / "2026-12-04_00-00-00-000001"
    (log / "Loop_0" / "direct_exp_gen").mkdir(parents=True)
    (log / "run.json").write_text(json.dumps({"base_model": "tiny:llama", "benchmark": "demo_letter", "loop_n": 1}))
    (log / "scenario.json").write_text(json.dumps(SCENARIO))
    (log / "Loop_0" / "direct_exp_gen" / "proposal.json").write_text(json.dumps(PROPOSAL))
    return log


def assert_one_line(result, says: str, code: int | None = None) -> str:
    line = one_line_error(result)
    assert says in line, line
    assert code is None or result.returncode == code, result.output
    return line


# --- the knowledge store: cut and foreign records are skipped, never a traceback ------------------
STORES = {
    "K01 knowledge fixes.jsonl random bytes": ("fixes.jsonl", bytes(range(256)) * 2),
    "K02 knowledge fixes.jsonl line 5": ("fixes.jsonl", b"5\n"),
    "K03 knowledge recipes.jsonl line {}": ("recipes.jsonl", b"{}\n"),
    "K06 knowledge recipes.jsonl cut inside a UTF-8 character": ("recipes.jsonl", cut_in_a_character(GOOD_RECIPE)),
    "P08 knowledge recipe gain is a word": ("recipes.jsonl", json.dumps({**GOOD_RECIPE, "gain": "big"}).encode()),
    "P08 knowledge recipe validation is a word": (
        "recipes.jsonl",
        json.dumps({**GOOD_RECIPE, "validation": "high"}).encode(),
    ),
    "P09 knowledge recipes.jsonl last line cut": ("recipes.jsonl", cut_in_a_character(GOOD_RECIPE)),
}


@pytest.mark.parametrize("case", list(STORES))
def test_a_damaged_knowledge_store_is_read_around(case, rdft, tmp_path):
    """`rdft knowledge list` and the coder's prompt (`rdft prompt --stage coding`, which renders
    the family's best recipes) skip the bad line and show the good recipe beside it."""
    name, damage = STORES[case]
    store = tmp_path / "knowledge"
    store.mkdir()
    good = (json.dumps(GOOD_RECIPE) + "\n").encode()
    (store / "recipes.jsonl").write_bytes(good + damage if name == "recipes.jsonl" else good)
    if name == "fixes.jsonl":
        (store / name).write_bytes(damage)
    env = {"RDFT_KNOWLEDGE_DIR": str(store)}
    listed = rdft("knowledge", "list", env=env)
    assert listed.returncode == 0 and "Traceback" not in listed.output, listed.output
    assert listed.stdout.count("recipe  demo") == 1 and "a recipe worth keeping" in listed.stdout, listed.stdout
    log = run_folder(tmp_path)
    prompt = rdft("prompt", str(log), "--stage", "coding", "--loop", "0", env=env)
    assert prompt.returncode == 0 and "Traceback" not in prompt.output, prompt.output
    assert prompt.stdout.count("a recipe worth keeping") == 1, prompt.stdout


def test_s15_a_knowledge_dir_that_is_a_file_stops_the_run_before_it_starts(rdft, tmp_path):
    (tmp_path / "a-file").write_text("x")
    for folder in (tmp_path / "a-file", tmp_path / "a-file" / "knowledge"):
        refused = rdft("run", "--demo", env={"RDFT_KNOWLEDGE_DIR": str(folder)}, timeout=120)
        assert_one_line(refused, f"{tmp_path / 'a-file'} is a file, not a folder; point RDFT_KNOWLEDGE_DIR", 2)
    assert not (rdft.workdir / "log").exists()


# --- rdft run: a refused base model leaves no log folder -----------------------------------------
MODELS = {
    "R07 base model that is no Hub id": ("bad id!!/x y", "is neither a local folder nor a Hub id"),
    "R09 base model tiny:nosuch": ("tiny:nosuch", "--base-model tiny:nosuch is unknown; use tiny:llama or tiny:qwen2"),
    "R11 base model the Hub does not have": (
        "nonexistent-org-zz/nonexistent-model-zz",
        "is not a model repo on the Hub",
    ),
}


@pytest.mark.parametrize("case", list(MODELS))
def test_a_refused_base_model_leaves_no_log_folder(case, rdft, tmp_path):
    model, says = MODELS[case]
    with HubServer({}) as hub:  # the Hub stand-in answers 404 for every repo
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        refused = rdft(
            "run", "--base-model", model, "--benchmark", "demo_letter", "--loop-n", "1", env=env, timeout=120
        )
    assert_one_line(refused, says, 2)
    assert not (rdft.workdir / "log").exists()
    assert not list((tmp_path / "ft" / "models").rglob("config.json"))


# --- run folders: foreign, read-only, in use ----------------------------------------------------
def test_rp07_a_run_json_that_is_a_list_is_refused(rdft, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("[1, 2]")
    assert_one_line(rdft("report", str(tmp_path / "run")), "is not an rdft run folder (no readable run.json)", 2)


def test_f8_a_second_session_on_a_run_folder_is_refused(rdft, tmp_path):
    """The folder's session lock, held here as a live `rdft run --resume` holds it."""
    log = run_folder(tmp_path)
    with FileLock(str(log / ".session.lock")):
        (log / ".session.owner").write_text(f"{os.getpid()}\n")
        refused = rdft("run", "--resume", str(log), "--loop-n", "2", timeout=120)
    assert_one_line(refused, f"is in use by another rdft run (process {os.getpid()})", 2)


def namespace_works() -> bool:
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || exit 1"]
    return unshare is not None and subprocess.run(probe, capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not namespace_works(), reason="no user and mount namespaces (unshare -rm)")


def read_only(folder: Path) -> tuple[str, ...]:
    """A prefix that runs the command with `folder` bind-mounted read-only (its own namespace)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ("unshare", "-rm", "sh", "-c", script, str(folder))


def small_disk(folder: Path, size: str = "256k") -> tuple[str, ...]:
    """A prefix that runs the command with a `size` tmpfs mounted on `folder` (a nearly full disk)."""
    script = 'mount -t tmpfs -o size="$1" tmpfs "$0" && shift && exec "$@"'
    return ("unshare", "-rm", "sh", "-c", script, str(folder), size)


@needs_mounts
@pytest.mark.parametrize(
    "case",
    ["RO01 report of a read-only run", "RO03 logs sync up of a read-only run", "RO04 resume of a read-only run"],
)
def test_a_read_only_run_folder_is_one_line(case, rdft, tmp_path):
    log = run_folder(tmp_path)
    args, written = {  # and the file each writes first: named as itself, not as its temporary sibling
        "RO01": (["report", str(log)], "report.html"),
        "RO03": (["logs", "sync", "up", str(log), "--remote", (tmp_path / "remote").as_uri()], ".rdft-sync.json"),
        "RO04": (["run", "--resume", str(log), "--loop-n", "2"], ".session.lock"),
    }[case[:4]]
    refused = rdft(*args, prefix=read_only(log), timeout=120)
    assert_one_line(refused, f"{log / written}: Read-only file system; free space or fix that path")


@needs_mounts
@pytest.mark.parametrize(
    "case",
    ["D18 datasets add onto a full disk", "B16 benchmarks add onto a full disk", "SY07 sync up to a full remote"],
)
def test_a_full_disk_is_one_line(case, rdft, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    big = tmp_path / "big.jsonl"
    big.write_text(jsonl({"id": f"r{i}", "text": f"row {i} " + "x" * 200, "label": "a"} for i in range(3000)))
    env, prefix = {}, small_disk(disk)
    if case.startswith("SY07"):
        log = run_folder(tmp_path)
        shutil.copy(big, log / "big.jsonl")
        args = ["logs", "sync", "up", str(log), "--remote", disk.as_uri()]
    else:
        env = {"FT_FILE_PATH": str(disk / "ft")}
        if case.startswith("D18"):
            args = ["datasets", "add", "bigone", "--source", str(big)]
        else:
            args = ["benchmarks", "add", "bigone", "--docs", str(big), "--prompt-field", "text",
                    "--answer-field", "label", "--metric", "accuracy"]  # fmt: skip
    refused = rdft(*args, env=env, prefix=prefix, timeout=120)
    assert_one_line(refused, "No space left on device; free space or fix that path, then run it again", 1)


def test_sy01_sync_up_refuses_a_folder_that_is_no_run(rdft, tmp_path):
    (tmp_path / "notalog").mkdir()
    (tmp_path / "notalog" / "a.txt").write_text("hi")
    remote = tmp_path / "remote"
    refused = rdft("logs", "sync", "up", str(tmp_path / "notalog"), "--remote", remote.as_uri())
    assert_one_line(refused, "notalog is not an rdft run folder (no run.json)", 2)
    assert not remote.exists()


# --- rdft batch ------------------------------------------------------------------------------------
BATCHES = {
    "BA01 batch tasks file of random bytes": (None, [], "tasks.json is not UTF-8 text (byte 10); give a JSON tasks"),
    "BA05 batch task timeout forever": (
        {"tasks": [{"model": "tiny:llama", "benchmark": "demo_letter", "timeout": "forever"}]},
        [],
        "tasks.json: task 1: timeout 'forever' is not a positive duration",
    ),
    "BA05 batch task time -1h": (
        {"tasks": [{"model": "tiny:llama", "benchmark": "demo_letter", "time": "-1h"}]},
        [],
        "tasks.json: task 1: time '-1h' is not a positive duration",
    ),
    "BA09 batch --time-margin abc": (
        {"tasks": [{"model": "tiny:llama", "benchmark": "demo_letter"}]},
        ["--executor", "slurm", "--time-margin", "abc"],
        "--time-margin 'abc' is not a positive duration",
    ),
}


@pytest.mark.parametrize("case", list(BATCHES))
def test_a_bad_tasks_file_is_one_line_naming_its_source(case, rdft, tmp_path):
    tasks, options, says = BATCHES[case]
    path = tmp_path / "tasks.json"
    path.write_bytes(b'{"tasks": ' + bytes(range(128, 256)) if tasks is None else json.dumps(tasks).encode())
    refused = rdft("batch", str(path), "--dry-run", *options)
    line = assert_one_line(refused, says, 2)
    assert "--timeout" not in line


# --- rdft score and benchmarks add ----------------------------------------------------------------
PREDICTIONS = {
    "E01 score predictions line 2 cut": (
        '{"doc_id": 0, "response": "\\\\boxed{1}"}\n{"doc_id": 1, "respo\n',
        "pred.jsonl:2 is not valid JSON (Unterminated string starting at); fix or remove that line",
    ),
    "E03 score response is a number": (
        '{"doc_id": 0, "response": "\\\\boxed{1}"}\n{"doc_id": 1, "response": 5}\n',
        "pred.jsonl:2 has a response of type int; give each answer as text in response",
    ),
    "E03 score row is a list": ('{"doc_id": 0, "response": "x"}\n[1]\n', "pred.jsonl:2 is not a JSON object"),
    "E03 score row without response": ('{"doc_id": 0}\n', "pred.jsonl:1 has no response"),
    "E03 score doc_id is a word": ('{"doc_id": "x", "response": "a"}\n', "pred.jsonl:1: doc_id 'x' is not a doc's"),
}


@pytest.mark.parametrize("case", list(PREDICTIONS))
def test_bad_predictions_name_their_line(case, rdft, tmp_path):
    """Checked before the eval env is used: this test builds none."""
    text, says = PREDICTIONS[case]
    (tmp_path / "docs.jsonl").write_text(jsonl([{"problem": "p1", "answer": "1"}, {"problem": "p2", "answer": "2"}]))
    (tmp_path / "pred.jsonl").write_text(text)
    args = ["--docs", str(tmp_path / "docs.jsonl"), "--predictions", str(tmp_path / "pred.jsonl")]
    assert_one_line(rdft("score", "--benchmark", "aime25", *args), says, 2)
    assert not (tmp_path / "envs").exists()


SCORERS = {
    "B04 scorer without its key": ("return {'other': 1}", "returns no 'score' (its keys: other)"),
    "B05 scorer returning a string": ("return 'yes'", "returns a str, not a dict; return a dict of numbers"),
    "B09 tolerance nan": (None, "--tolerance must be a finite number, 0 or more"),
    "B11 items sharing one id": (None, "--docs items 1 and 2 share the id 'same'"),
}


@pytest.mark.parametrize("case", list(SCORERS))
def test_a_benchmark_that_would_score_right_answers_wrong_is_refused(case, rdft, shared_dirs, eval_env, tmp_path):
    body, says = SCORERS[case]
    same = case.startswith("B11")
    items = [{"id": "same" if same else f"e{i}", "text": f"item {i}", "label": str(i)} for i in range(4)]
    (tmp_path / "docs.jsonl").write_text(jsonl(items))
    args = ["benchmarks", "add", "mine", "--docs", str(tmp_path / "docs.jsonl"), "--prompt-field", "text",
            "--answer-field", "label"]  # fmt: skip
    if body is not None:
        (tmp_path / "scorer.py").write_text(f"def score(doc, response):\n    {body}\n")
        args += ["--scorer", str(tmp_path / "scorer.py")]
    else:
        args += ["--metric", "numeric_tolerance", *(["--tolerance", "nan"] if case.startswith("B09") else [])]
    environ = {"RDFT_ENVS_DIR": shared_dirs["RDFT_ENVS_DIR"]}  # its warm eval env; this test's own FT_FILE_PATH
    assert_one_line(rdft(*args, env=environ), says, 2)
    assert not (tmp_path / "ft" / "benchmarks" / "mine").exists()


# --- datasets add ---------------------------------------------------------------------------------
ROWS = {
    "D05 datasets add ragged CSV": ("ragged.csv", "id,text,label\nr1,good,pos\nr2,\"bad, film\",neg,EXTRA,MORE\n",
                                    "ragged.csv:3 has more fields than its header"),
    "D07 datasets add messages not a list": ("chat.jsonl", jsonl([{"messages": "not a list"}]),
                                             "row 1: messages is not a list"),
    "D07 datasets add unknown role": ("chat.jsonl", jsonl([{"messages": [{"role": "robot", "content": 5}]}]),
                                      "row 1: unknown role 'robot'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ROWS))
def test_malformed_rows_are_refused(case, rdft, tmp_path):
    name, text, says = ROWS[case]
    (tmp_path / name).write_text(text)
    assert_one_line(rdft("datasets", "add", "mine", "--source", str(tmp_path / name)), says, 2)
    assert not (tmp_path / "ft" / "datasets" / "mine").exists()


@pytest.mark.parametrize("registry", ["datasets", "benchmarks"])
def test_d17_a_killed_adds_staging_folder_is_cleared_by_the_next_call(registry, rdft, tmp_path):
    """Staging folders name their host and process: a dead process's goes, a live one's stays,
    another host's stays (shared storage), one that names no owner goes after a day."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    host = socket.gethostname()
    root = tmp_path / "ft" / registry
    folders = {
        f".staging-killed-{host}-{ended.pid}-ab12cd34": False,
        f".removed-old-{host}-{ended.pid}-": False,
        f".staging-live-{host}-{os.getpid()}-ab12cd34": True,
        f".staging-there-othernode-{ended.pid}-ab12cd34": True,
        ".staging-unowned-ab12cd34": True,
        ".staging-stale-zz99yy88": False,
    }
    for name in folders:
        (root / name).mkdir(parents=True)
        (root / name / "data.jsonl").write_text("{}\n")
    day_ago = time.time() - 2 * 86400
    os.utime(root / ".staging-stale-zz99yy88", (day_ago, day_ago))
    says = {"datasets": "no dataset 'nosuch' of yours", "benchmarks": "no benchmark 'nosuch' of yours"}[registry]
    assert_one_line(rdft(registry, "remove", "nosuch"), says, 2)
    assert {name: (root / name).exists() for name in folders} == folders


# --- train, eval, settings, envs ------------------------------------------------------------------
def test_t15_epochs_have_an_upper_bound(rdft, tmp_path):
    config = yaml.safe_load((REPO / "recipes" / "configs" / "tiny_cpu_lora.yaml").read_text())
    config["data"]["path"] = str(REPO / "recipes" / "configs" / "data" / "tiny_chat.jsonl")
    config["train"]["epochs"] = 10**15
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    refused = rdft("train", str(tmp_path / "train.yaml"), "--dry-run")
    assert_one_line(refused, "train.epochs: Input should be less than or equal to 1000 (got 1000000000000000)", 2)
    assert "train.epochs: int, default 1, >= 1, <= 1000" in rdft("train", "--schema").stdout


def test_v05_eval_samples_are_bounded(rdft, tmp_path):
    args = ["eval", "--model", "m", "--benchmark", "demo_letter", "--samples", "100000000", "--output", str(tmp_path)]
    assert_one_line(rdft(*args), "--samples': 100000000 is not in the range 1<=x<=64", 2)


@pytest.mark.parametrize(
    "case",
    ["S09 .env key without =", "S11 .env token with an open quote", "X10 a key in a numeric setting"],
)
def test_a_bad_setting_never_shows_the_secret(case, rdft):
    env = {}
    if case.startswith("S09"):
        (rdft.workdir / ".env").write_text(f"OPENAI_API_KEY {LEAK}\n")
    elif case.startswith("S11"):
        (rdft.workdir / ".env").write_text(f'X=1\nHF_TOKEN="{LEAK}\n')
    else:
        env = {"OPENAI_API_KEY": LEAK, "MAX_RETRY": LEAK}
    refused = rdft("doctor", env=env)
    assert_one_line(refused, "MAX_RETRY" if case.startswith("X10") else "is not KEY=VALUE")
    assert "LEAKTEST" not in refused.output


def test_ed03_a_lock_that_is_a_folder_is_one_line(rdft):
    (rdft.envs_dir / ".locks" / "data.lock").mkdir(parents=True)
    refused = rdft("env", "rebuild", "data", timeout=120)
    assert_one_line(refused, "data.lock: Is a directory; free space or fix that path", 1)
