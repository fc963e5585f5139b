"""Slurm, through its own commands: sbatch scripts for rdft's work, their submission, their state
(squeue while queued or running, then scontrol, then sacct once the controller forgot a job), scancel.

rdft hands Slurm the work and does not replace it: every script is a plain file a person can
read and resubmit (`sbatch <script>`); a run's script resumes the run when its log holds one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rdft.errors import RdftError

# File systems every node of a cluster can see; anything else is local to one machine.
SHARED_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs", "smb3", "glusterfs", "panfs",
             "wekafs", "fuse.sshfs", "fuse.juicefs", "fuse.glusterfs", "virtiofs", "9p")  # fmt: skip
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE")  # fmt: skip


def require_slurm() -> None:
    missing = [tool for tool in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(tool) is None]
    if missing:
        raise RdftError(
            f"{', '.join(missing)} not found: --executor slurm runs on a Slurm login node "
            "(load the Slurm module, or use --executor local)"
        )


def rdft_command() -> str:
    """How a job calls this rdft: the same interpreter, so a job runs the install that wrote it."""
    return f"{shlex.quote(sys.executable)} -m rdft"


def slurm_time(seconds: float) -> str:
    """Seconds as Slurm's D-HH:MM:SS (rounded up to a whole minute, Slurm's unit)."""
    minutes = max(1, -(-int(seconds) // 60))
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days}-{minutes // 60:02d}:{minutes % 60:02d}:00"


def filesystem_of(path: Path) -> str:
    """The type of the file system `path` lives on, from /proc/mounts (longest mount point)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def node_count() -> int:
    """Nodes the cluster has (sinfo), 0 when it cannot say."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%D"], capture_output=True, text=True, timeout=30).stdout
        return sum(int(n) for n in out.split() if n.isdigit())
    except (OSError, subprocess.TimeoutExpired):
        return 0


def check_shared(paths: dict[str, Path], *, shared_ok: bool) -> list[str]:
    """Jobs run on other nodes: FT_FILE_PATH and the log root must be where every node sees them.
    A network file system passes; a local one is refused on a multi-node cluster (one line, with
    the fix) and noted on a single-node one. Returns notes."""
    notes = []
    for label, path in paths.items():
        kind = filesystem_of(path)
        if kind in SHARED_FS or kind.startswith("fuse.") or shared_ok:
            continue
        nodes = node_count()
        if nodes > 1:
            raise RdftError(
                f"{label} {path} is on a local {kind} file system, but jobs run on any of {nodes} nodes; "
                "put it on shared storage (NFS, Lustre, ...) or pass --shared-ok if every node mounts it"
            )
        notes.append(f"{label} {path} is on a local {kind} file system: fine on this one-node cluster only")
    return notes


def submit(script: Path, extra: list[str] | None = None) -> str:
    result = subprocess.run(
        ["sbatch", "--parsable", *(extra or []), str(script)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RdftError(f"sbatch refused {script.name}: {_last_error(result).removeprefix('sbatch: error: ')}")
    return result.stdout.strip().split(";")[0]


@dataclass
class JobState:
    state: str  # PENDING, RUNNING, COMPLETED, TIMEOUT, ... or UNKNOWN
    reason: str = ""  # why it is pending
    node: str = ""
    exit_code: int | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL


def states(job_ids: list[str]) -> dict[str, JobState]:
    """Each job's state: squeue for jobs it lists, then scontrol while the controller remembers
    a finished job (MinJobAge, 5 minutes by default), then sacct where accounting runs."""
    out: dict[str, JobState] = {}
    if not job_ids:
        return out
    listed = subprocess.run(
        ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%N"], capture_output=True, text=True, timeout=60
    )
    for line in listed.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4 and parts[0] in job_ids:
            reason = "" if parts[2] in ("None", "(null)") else parts[2]
            out[parts[0]] = JobState(parts[1], reason, parts[3])
    for job in job_ids:
        if job not in out:
            out[job] = _finished_state(job)
    return out


def _finished_state(job: str) -> JobState:
    # The controller first: its exit codes are exact, while sacct (Slurm 22.05, measured on the
    # test cluster) reports an exit status above 128 less 128, so the clean TERM stop of a job
    # script (exit 143) reads 15 there.
    shown = subprocess.run(["scontrol", "show", "job", job, "-o"], capture_output=True, text=True, timeout=60)
    if shown.returncode == 0:
        fields = dict(re.findall(r"(\w+)=(\S*)", shown.stdout))
        return JobState(
            fields.get("JobState", "UNKNOWN"), "", fields.get("NodeList", ""), _exit(fields.get("ExitCode"))
        )
    acct = (
        subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", job, "-o", "State,ExitCode,NodeList"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if shutil.which("sacct")
        else None
    )
    if acct is not None and acct.returncode == 0 and acct.stdout.strip():
        state, code, node = [*acct.stdout.strip().splitlines()[-1].split("|"), "", "", ""][:3]
        return JobState(state.split()[0], "", node, _exit(code))
    return JobState("UNKNOWN")


def _exit(code: str | None) -> int | None:
    match = re.match(r"(\d+):(\d+)", code or "")
    return int(match.group(1)) if match else None


def release(job: str) -> None:
    """Let a job submitted with --hold start."""
    result = subprocess.run(["scontrol", "release", job], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RdftError(f"scontrol release {job} failed: {_last_error(result)}")


def _last_error(result: subprocess.CompletedProcess) -> str:
    return (result.stderr.strip().splitlines() or ["no output"])[-1]


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)


def environment_lines(variant: str) -> list[str]:
    """The settings a job needs to find the same files: exported in its script (sbatch also
    passes the submitting environment on by default; a cluster that disables it still works).
    The torch variant is always fixed: the envs are shared, and a job that chose its own (a CPU
    job on a node without GPUs) would rebuild them under the other jobs' feet."""
    lines = []
    for name in (
        "FT_FILE_PATH",
        "RDFT_ENVS_DIR",
        "RDFT_ENV_SPECS_DIR",
        "RDFT_USER_BENCHMARKS",
        "HF_HOME",
        "HF_ENDPOINT",
        "FT_Coder_CoSTEER_env_type",
    ):
        if os.environ.get(name):
            lines.append(f"export {name}={shlex.quote(os.environ[name])}")
    return [*lines, f"export RDFT_TORCH_VARIANT={variant}"]


def jobs_variant(configured: str, gpus: int) -> str:
    """The torch variant for jobs on other nodes: the setting, or `cuda` when the jobs get GPUs
    (this login node's own nvidia-smi says nothing about the nodes)."""
    return configured if configured != "auto" else ("cuda" if gpus else "cpu")


def train_script(workspace: Path, *, nodes: int, gpus_per_node: int, variant: str, cpus_per_gpu: int = 8) -> str:
    """sbatch + srun for `rdft train --slurm-nodes N`: first one step on one node builds the
    train env when it is missing (N nodes building it at once would race on the shared envs
    folder, where a file lock may not cross nodes), then one task per node runs the workspace's
    launch.sh in it; launch.sh reads Slurm's variables for the ranks."""
    header = [
        f"--job-name=rdft-train-{workspace.name}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--output={workspace / 'slurm-%j.out'}",
        f"--chdir={workspace}",
    ]
    if gpus_per_node:
        header += [f"--gpus-per-node={gpus_per_node}", f"--cpus-per-gpu={cpus_per_gpu}"]
    launch = shlex.quote(str(workspace / "launch.sh"))
    return (
        "#!/bin/bash\n"
        f"# Written by `rdft train --slurm-nodes {nodes}`: submit with `sbatch {workspace / 'train.sbatch'}`.\n"
        + "".join(f"#SBATCH {line}\n" for line in header)
        + "set -euo pipefail\n"
        + "".join(f"{line}\n" for line in environment_lines(variant))
        + "export RDFT_MAIN_PROCESS_PORT=${RDFT_MAIN_PROCESS_PORT:-29500}\n"
        + f"srun --nodes=1 --ntasks=1 {rdft_command()} env create train\n"
        + f"srun --kill-on-bad-exit=1 {rdft_command()} env run train -- bash {launch}\n"
    )
