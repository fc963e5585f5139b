"""Beyond one host: `rdft batch --executor slurm` on a real single-node Slurm cluster started by
the test (Debian's slurmctld, slurmd and munge), the sbatch scripts field by field, and
multi-node launch.sh under Slurm's variables."""

import datetime
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import clean_environ, one_line_error, skip_without
from slurm_cluster import SlurmCluster, missing
from test_planner import lora_7b_config

from rdft.resources import recipes_dir


def sbatch_lines(script: str) -> list[str]:
    return re.findall(r"^#SBATCH (\S+)$", script, re.M)


def test_sbatch_scripts_for_a_two_task_four_gpu_plan(rdft, tmp_path):
    tasks = tmp_path / "tasks.json"
    tasks.write_text(
        json.dumps(
            {
                "tasks": [
                    {
                        "model": "Qwen/Qwen2.5-7B-Instruct",
                        "benchmark": "aime25",
                        "gpus": "0,1",
                        "timeout": "2h",
                        "partition": "h100",
                    },
                    {
                        "model": "Qwen/Qwen2.5-7B-Instruct",
                        "benchmark": "panorama_pi4pc",
                        "gpus": "2,3",
                        "loop_n": 3,
                        "sbatch": ["--constraint=nvlink"],
                    },
                ]
            }
        )
    )
    result = rdft(
        "batch",
        tasks,
        "--executor",
        "slurm",
        "--dry-run",
        "--partition",
        "a100",
        "--account",
        "proj",
        "--qos",
        "high",
        "--cpus",
        "12",
        "--mem-per-gpu",
        "120G",
        "--time-margin",
        "30m",
        "--requeue",
        "--sbatch=--mail-type=END",
        "--no-sync",
    )
    assert result.returncode == 0, result.output
    assert result.stdout.rstrip().endswith("dry run: 3 sbatch script(s), nothing submitted")
    envs, *scripts = re.split(r"^# task \d+: ", result.stdout, flags=re.M)
    assert len(scripts) == 2
    # No env is built yet: one job builds them first, on a node, for the tasks' variant (they have
    # GPUs: cuda, whatever this login node has), and the task jobs wait for it.
    envs_path = re.search(r"^# envs: (\S+) \(every task job waits for it: --dependency=afterok\)$", envs, re.M)
    assert envs_path and envs_path.group(1).endswith("/envs.sbatch")
    root = Path(envs_path.group(1)).parent
    assert sbatch_lines(envs) == [
        "--job-name=rdft-envs",
        f"--output={root}/envs.out",
        "--open-mode=append",
        f"--chdir={rdft.workdir}",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=12",
        "--time=0-01:00:00",
        "--partition=a100",
        "--account=proj",
        "--qos=high",
        "--mail-type=END",
    ]
    assert "export RDFT_TORCH_VARIANT=cuda\n" in envs
    assert re.search(r"^exec \S+ -m rdft env create train data eval$", envs, re.M)
    first_path, first = scripts[0].split("\n", 1)
    log1 = Path(first_path.removesuffix(".sbatch"))
    assert log1.name == "1-Qwen-Qwen2.5-7B-Instruct-aime25" and log1.parent.name.startswith("batch-")
    assert sbatch_lines(first) == [
        "--job-name=rdft-1-aime25",
        f"--output={log1}.out",
        "--open-mode=append",
        f"--chdir={rdft.workdir}",
        "--nodes=1",
        "--ntasks=1",
        "--gpus=2",
        "--cpus-per-gpu=12",
        "--mem-per-gpu=120G",
        "--time=0-02:30:00",
        "--signal=B:TERM@300",  # 2h timeout + 30m margin; TERM 5 min before the end
        "--partition=h100",
        "--account=proj",
        "--qos=high",
        "--requeue",
        "--mail-type=END",
    ]
    assert f"export LOG_TRACE_PATH={log1}" in first and "export RDFT_TORCH_VARIANT=cuda\n" in first
    assert "--dependency" not in first  # given to sbatch, not written: a resubmitted script waits for nothing
    assert re.search(
        rf"if \[ -f {re.escape(str(log1))}/run.json \]; then\n    set -- \S+ -m rdft run --resume "
        rf"{re.escape(str(log1))} --no-sync\n",
        first,
    )
    assert "run --base-model Qwen/Qwen2.5-7B-Instruct --benchmark aime25 --timeout 2h --no-sync" in first
    assert 'scontrol requeue "$SLURM_JOB_ID"' in first and "trap on_term TERM" in first
    second = scripts[1]
    lines = sbatch_lines(second)
    assert "--gpus=2" in lines and "--partition=a100" in lines and "--constraint=nvlink" in lines
    assert not any(line.startswith(("--time=", "--signal=")) for line in lines)  # no timeout: the partition's limit
    assert "--loop-n 3" in second
    assert not list(rdft.workdir.glob("log/batch-*/*.sbatch"))  # a dry run writes nothing
    assert not (tmp_path / "envs").exists()  # and builds nothing


def test_launch_sh_under_a_simulated_two_node_slurm_job(rdft, tmp_path):
    workspace = tmp_path / "ws"
    config = lora_7b_config(tmp_path)
    result = rdft(
        "train", config, "--workspace", workspace, "--dry-run", "--assume-gpus", "4x80GiB", "--slurm-nodes", "2"
    )
    assert result.returncode == 0, result.output
    sbatch = (workspace / "train.sbatch").read_text()
    assert f"# {workspace / 'train.sbatch'}\n" in result.stdout and sbatch in result.stdout
    assert sbatch_lines(sbatch) == [
        f"--job-name=rdft-train-{workspace.name}",
        "--nodes=2",
        "--ntasks-per-node=1",
        f"--output={workspace}/slurm-%j.out",
        f"--chdir={workspace}",
        "--gpus-per-node=4",
        "--cpus-per-gpu=8",
    ]
    # One step on one node builds the train env when missing, then every node runs launch.sh in it.
    assert re.search(
        r"^export RDFT_TORCH_VARIANT=cuda\n(.*\n)?"
        r"srun --nodes=1 --ntasks=1 \S+ -m rdft env create train\n"
        rf"srun --kill-on-bad-exit=1 \S+ -m rdft env run train -- bash {workspace}/launch.sh\n\Z",
        sbatch,
        re.M,
    )
    assert not (tmp_path / "envs").exists()  # nothing built on this login node
    refused = rdft("train", config, "--workspace", tmp_path / "ws2", "--slurm-nodes", "2")
    assert refused.returncode != 0 and "Traceback" not in refused.output
    assert refused.stderr.strip().splitlines()[-1] == (
        "rdft: error: --slurm-nodes plans for the nodes' GPUs: add --assume-gpus NxMEM, e.g. --assume-gpus 8x80GiB"
    )
    # What the login node can check, it checks before submitting: a tiny test model, which only
    # a local train env builds, and a hub model whose config.json cannot be fetched.
    tiny = rdft(
        "train", recipes_dir() / "configs" / "tiny_cpu_lora.yaml", "--slurm-nodes", "2", "--assume-gpus", "4x80GiB"
    )
    assert one_line_error(tiny).startswith(
        "rdft: error: model.path tiny:llama is built locally for tests; give the nodes a real"
    )
    hub = yaml.safe_load(config.read_text())
    hub["model"]["path"] = "nobody/no-such-model"
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(hub))
    unreachable = rdft(
        "train", tmp_path / "hub.yaml", "--slurm-nodes", "2", "--assume-gpus", "4x80GiB", env={"HF_HUB_OFFLINE": "1"}
    )
    assert "cannot fetch config.json of 'nobody/no-such-model'" in one_line_error(unreachable)
    assert not list(tmp_path.glob("ft/workspaces/*/train.sbatch"))  # nothing written, nothing submitted
    accelerate = yaml.safe_load((workspace / "accelerate.yaml").read_text().split("\n", 1)[1])
    assert accelerate["num_machines"] == 2 and accelerate["num_processes"] == 8

    def launched(**slurm: str) -> str:
        env = clean_environ(RDFT_LAUNCH_PRINT="1", **slurm)
        env.pop("SLURM_CONF", None)  # no cluster here: launch.sh reads the node list itself
        proc = subprocess.run(["bash", str(workspace / "launch.sh")], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    nodes = {"SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    expected = (
        "accelerate launch --config_file accelerate.yaml --num_machines 2 --machine_rank {rank} "
        "--main_process_ip gpu07 --main_process_port 29500 --num_processes 8 sft.py --config train.resolved.yaml"
    )
    assert launched(**nodes, SLURM_NODEID="0") == expected.format(rank=0)
    assert launched(**nodes, SLURM_NODEID="1") == expected.format(rank=1)
    assert launched(SLURM_NNODES="2", SLURM_JOB_NODELIST="a1,b2", SLURM_NODEID="1", RDFT_MAIN_PROCESS_PORT="6000") == (
        expected.format(rank=1).replace("gpu07", "a1").replace("29500", "6000")
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    absent = missing()
    if absent:
        skip_without(
            f"Slurm is not installed here ({', '.join(absent)} missing); .ci/run installs slurmctld, "
            "slurmd and munge from Debian"
        )
    if os.geteuid() != 0:
        skip_without("the test Slurm cluster runs slurmd as root; run the tests as root (as CI does)")
    started = SlurmCluster(Path(tmp_path_factory.mktemp("slurm"))).start()
    yield started
    started.stop()


def job_field(cluster, job: str, field: str) -> str:
    shown = subprocess.run(
        ["scontrol", "show", "job", job, "-o"], capture_output=True, text=True, env={**os.environ, **cluster.env}
    ).stdout
    match = re.search(rf"\b{field}=(\S+)", shown)
    return match.group(1) if match else "UNKNOWN"


def job_state(cluster, job: str) -> str:
    return job_field(cluster, job, "JobState")


def test_slurm_batch_runs_resumes_and_cancels(cluster, shared_dirs, data_env, eval_env, train_env, tmp_path):
    # This envs folder lacks the data env (train and eval are the session's): the batch builds it
    # in one env job first, and the task jobs wait for that job.
    envs = tmp_path / "envs"
    envs.mkdir()
    for name in ("train", "eval"):
        (envs / name).symlink_to((Path(shared_dirs["RDFT_ENVS_DIR"]) / name).resolve())
    # 256 rows: Slurm's handling of the runs is tested, not how well they learn.
    env = clean_environ(**{**shared_dirs, "RDFT_ENVS_DIR": str(envs)}, **cluster.env, FT_UPPER_DATA_SIZE_LIMIT="256")
    tiny = {"model": "tiny:llama", "benchmark": "demo_letter", "loop_n": 1}
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"tasks": [tiny, {**tiny, "time": "20m"}]}))
    batch = subprocess.Popen(
        ["rdft", "batch", str(tasks), "--executor", "slurm", "--cpus", "1", "--no-sync"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The second is stopped as Slurm stops a job near its limit (TERM to the batch shell, what its
    # --signal=B:TERM@lead sends), sent once its loop is under way: deterministic on any host.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not list(tmp_path.glob("log/batch-*/2-*-demo_letter/Loop_0/running")):
        time.sleep(1)
    jobs = json.loads(next(tmp_path.glob("log/batch-*/jobs.json")).read_text())
    subprocess.run(["scancel", "--signal=TERM", "--batch", jobs["2"]], env=env, check=True)
    out, err = batch.communicate(timeout=1200)
    assert "is on a local" in out and "fine on this one-node cluster only" in out  # the shared-storage check
    assert re.search(r"^task 1: job \d+ ok; log ", out, re.M), out + err
    match = re.search(r"^task 2: job (\d+) .*resume: `sbatch --time=HH:MM:SS (\S+\.sbatch)`", out, re.M)
    assert match and batch.returncode == 1, out + err
    root = next((tmp_path / "log").glob("batch-*"))
    assert f"rdft: env job {jobs['envs']} builds data (cpu); the tasks wait for it" in out
    assert job_state(cluster, jobs["envs"]) == "COMPLETED" and (envs / "data").resolve().parent == envs
    assert "env data: ready" in (root / "envs.out").read_text()
    # The dependency held: neither task started before the env job ended.
    env_end = datetime.datetime.fromisoformat(job_field(cluster, jobs["envs"], "EndTime"))
    starts = [datetime.datetime.fromisoformat(job_field(cluster, jobs[n], "StartTime")) for n in ("1", "2")]
    assert all(start >= env_end for start in starts), (env_end, starts)
    first_log = next(root.glob("1-*-demo_letter"))
    assert (first_log / "Loop_0" / "feedback" / "feedback.json").is_file()
    assert f"rdft batch: job {jobs['1']} on " in first_log.with_suffix(".out").read_text()

    # The stopped run resumes when its script is resubmitted, and completes.
    # Stopped by the TERM (the script's clean exit 143), not killed (TIMEOUT, CANCELLED).
    stopped = subprocess.run(
        ["scontrol", "show", "job", match.group(1), "-o"], env=env, capture_output=True, text=True
    ).stdout
    assert "JobState=FAILED" in stopped and "ExitCode=143:0" in stopped, stopped
    script = Path(match.group(2))
    second_log = Path(str(script).removesuffix(".sbatch"))
    assert (second_log / "run.json").is_file() and not (second_log / "Loop_0" / "feedback").is_dir()
    job = subprocess.run(
        ["sbatch", "--parsable", "--time=20", str(script)], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    deadline = time.monotonic() + 900
    while (
        job_state(cluster, job) not in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED") and time.monotonic() < deadline
    ):
        time.sleep(2)
    assert job_state(cluster, job) == "COMPLETED", second_log.with_suffix(".out").read_text()[-3000:]
    assert (second_log / "Loop_0" / "feedback" / "feedback.json").is_file()  # the stopped loop, done
    assert f"-m rdft run --resume {second_log}" in second_log.with_suffix(".out").read_text()

    # Ctrl-C cancels a running job (--cancel-on-exit) and leaves nothing in the queue.
    third = tmp_path / "third"
    third.mkdir()
    (third / "tasks.json").write_text(json.dumps({"tasks": [{**tiny, "loop_n": 3}]}))
    proc = subprocess.Popen(
        ["rdft", "batch", "tasks.json", "--executor", "slurm", "--cpus", "1", "--no-sync", "--cancel-on-exit"],
        cwd=third,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(third.glob("log/batch-*/1-*/baseline")):
        time.sleep(1)
    jobs = json.loads(next(third.glob("log/batch-*/jobs.json")).read_text())
    assert job_state(cluster, jobs["1"]) == "RUNNING"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    assert f"cancelled job(s) {jobs['1']}" in output and "resume with `sbatch " in output
    assert jobs["1"] not in cluster.queue()
    assert job_state(cluster, jobs["1"]) == "CANCELLED"
    assert "envs" not in jobs and "env job" not in output  # every env is ready now: no env job


def test_slurm_batch_env_job_that_fails_cancels_its_tasks(cluster, shared_dirs, tmp_path):
    # Nodes that cannot reach the package index and hold no cache: the env job fails (a real
    # build), Slurm cancels the task jobs that wait for it, and nothing is left queued.
    offline = {"UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "PIP_NO_INDEX": "1"}
    env = clean_environ(**{**shared_dirs, "RDFT_ENVS_DIR": str(tmp_path / "envs")}, **cluster.env, **offline)
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [{"model": "tiny:llama", "benchmark": "demo_letter"}]}))
    batch = subprocess.run(
        ["rdft", "batch", "tasks.json", "--executor", "slurm", "--cpus", "1", "--no-sync"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = batch.stdout
    root = next((tmp_path / "log").glob("batch-*"))
    jobs = json.loads((root / "jobs.json").read_text())
    assert batch.returncode == 1, out + batch.stderr
    assert f"rdft: env job {jobs['envs']} builds train, data, eval (cpu)" in out
    assert f"env job {jobs['envs']}: FAILED (exit 1); see {root / 'envs.out'}" in out
    assert re.search(
        rf"^task 1: job {jobs['1']} not run: env job {jobs['envs']} ended FAILED \(fix it, then "
        r"`rdft batch ",
        out,
        re.M,
    )
    assert "could not install" in (root / "envs.out").read_text()
    assert job_state(cluster, jobs["1"]) == "CANCELLED" and not set(jobs.values()) & set(cluster.queue())
    assert not (tmp_path / "envs" / "train").exists() and not list(root.glob("1-*/run.json"))


def test_job_states_after_the_queue_from_scontrol_then_sacct(cluster, monkeypatch, tmp_path):
    """Once a job leaves the queue its state comes from scontrol while the controller remembers
    it, then from sacct (the test cluster runs slurmdbd on MariaDB when they are installed).
    Last in this module: it restarts the controller without its job state."""
    from rdft import slurm

    if not cluster.accounting:
        skip_without("slurmdbd or MariaDB is not installed; .ci/run installs them")
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    # --chdir: the jobs' slurm-N.out files go to tmp_path, not to wherever pytest runs.
    sbatch = ["sbatch", "--parsable", f"--chdir={tmp_path}", "--wrap"]
    jobs = {
        code: subprocess.run([*sbatch, f"exit {code}"], capture_output=True, text=True, check=True).stdout.strip()
        for code in (0, 3, 143)
    }
    deadline = time.monotonic() + 120
    while set(jobs.values()) & set(cluster.queue()) and time.monotonic() < deadline:
        time.sleep(0.5)
    expected = {jobs[0]: ("COMPLETED", 0, "localhost"), jobs[3]: ("FAILED", 3, "localhost"),
                jobs[143]: ("FAILED", 143, "localhost")}  # fmt: skip
    seen = slurm.states(list(jobs.values()))
    assert {job: (s.state, s.exit_code, s.node) for job, s in seen.items()} == expected

    cluster.restart_controller_forgetting_jobs()
    assert job_state(cluster, jobs[0]) == "UNKNOWN"  # scontrol no longer knows them; accounting does
    seen = slurm.states(list(jobs.values()))
    # sacct's exit codes above 128 are less 128 (Slurm 22.05): why scontrol is asked first.
    assert {job: (s.state, s.exit_code, s.node) for job, s in seen.items()} == {
        **expected,
        jobs[143]: ("FAILED", 15, "localhost"),
    }
