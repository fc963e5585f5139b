"""Run model-written Python (HumanEval, MBPP, TableBench visualization) so that a bad program
costs one failed item, never the run.

    run_python(source, files={"data.csv": ...}, timeout_s=10, cpu_s=None, memory_mb=1024) -> Outcome

Every run gets its own process and a fresh temporary folder (`files`, then the program as
`program.py`, written there first; the folder is deleted after). The program runs there as
`python program.py` would (the folder first on sys.path, `__name__ == "__main__"`) with the
scorer's interpreter (`sys.executable`, isolated mode `-I`), in a process a small supervisor
forks, waits for and reports on (its exit status and CPU time, on a pipe of its own). `Outcome.status` is "passed" (exit
code 0 within the limits), "failed" (another exit code), "timeout" (the wall-clock or the CPU
limit), "memory" (MemoryError under the memory limit) or "killed" (any other signal); stdout and
stderr are tails of at most 4 KB.

What holds the program in, on every host:

- a new session (process group) in its own folder, with a cleared environment: PATH, LANG,
  HOME and TMPDIR pointing at the folder, one thread for numeric libraries; nothing inherited
  (no API keys, no rdft paths). stdin is empty;
- resource limits set in the program's process before it runs: RLIMIT_CPU (cpu_s, default
  timeout_s, in whole seconds: SIGXCPU, and SIGKILL a second later), and, hard and soft alike,
  RLIMIT_AS (memory_mb: an allocation beyond it is a MemoryError), RLIMIT_FSIZE (64 MB per file
  written), RLIMIT_NOFILE (256), RLIMIT_CORE 0 and RLIMIT_NPROC (64 more processes or threads);
  none above what the scorer itself may set;
- the wall-clock limit: at timeout_s the whole process group is killed (SIGKILL), and after
  every run too, so nothing the program started outlives it;
- a guard installed before the program runs (`sys.addaudithook`) that refuses, with
  PermissionError: sockets other than AF_UNIX, and any connect, bind or name lookup; fork, exec,
  spawn, system and subprocess; signals to other processes; opening for writing, creating,
  removing, renaming or changing any path outside the folder (/dev/null aside); reading or
  listing rdft's own files (the package or checkout holding evaluation/, FT_FILE_PATH,
  RDFT_ENVS_DIR, the scorer's working directory and the home folder, except the interpreter's
  own installation, which may live there); /proc of other processes; changing the limits.
  An audit hook is not a security boundary: code that loads C (ctypes, a compiled extension)
  can go around it. It stops what model-written code does by mistake or by habit, and it is
  the only network and file guard where the kernel features below are missing.

Where the host allows it (checked once per process by running a trivial program in it, which
must see a network namespace other than the scorer's), the program runs under
`unshare --user --map-root-user --net --pid --fork --kill-child [--mount-proc]`: its own network
namespace, whose only interface is a loopback that is down, so no connection reaches anything
(127.0.0.1 of the host included); its own PID namespace, so killing it kills every process the
program started, one in a new session too; and, for a user other than root, RLIMIT_NPROC counts
the namespace's processes only (Linux >= 5.14). Unprivileged user namespaces are what it needs
(most distributions allow them; some containers and hardened kernels do not); root without
them gets `unshare --net --pid` alone. RDFT_SANDBOX_NAMESPACES=0 turns them off (the guard and
the limits still apply). `Outcome.isolation` says which applied: "namespaces" or "guard", with
"+pids-cgroup" for root.

Root: the kernel does not apply RLIMIT_NPROC to root (in a user namespace either, where root
stays root), so for root each run gets a pids cgroup (pids.max 64) where one can be created
(cgroup v1's pids hierarchy, or v2 with the pids controller); without one, a fork bomb that goes
around the guard (ctypes) is stopped only by the wall-clock kill.

Runs in the eval env (and in the data env, where data scripts score rows); stdlib only,
imports nothing from rdft.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 4096
FILE_SIZE_MB = 64
OPEN_FILES = 256
EXTRA_PROCESSES = 64  # RLIMIT_NPROC headroom, and a root run's pids.max
PROGRAM = "program.py"


@dataclass
class Outcome:
    status: str  # passed | failed | timeout | memory | killed
    returncode: int | None
    stdout: str
    stderr: str
    cpu_s: float | None = None  # the program's CPU time, where the supervisor reported it
    isolation: str = ""  # how it ran: "namespaces" or "guard", "+pids-cgroup" for root


# The program's side. The supervisor (the process the parent starts; PID 1 of the namespace
# where there is one) forks the program's process, waits for it and reports its wait status and
# CPU time on the status pipe, so a signal's death is known exactly (unshare reports it as exit 1).
BOOTSTRAP = r"""
import json, os, resource, sys
config = json.loads(sys.argv[1])
status_fd = config["status_fd"]
if config.get("cgroup"):
    try:
        with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as handle:
            handle.write("0")
    except OSError:
        pass
child = os.fork()
if child:
    _, status, usage = os.wait4(child, 0)
    os.write(status_fd, json.dumps({"status": status, "cpu": usage.ru_utime + usage.ru_stime}).encode())
    os._exit(0)
os.close(status_fd)
folder = config["folder"]
os.chdir(folder)
nproc = config["nproc"]
if nproc is None:  # no namespace: the limit counts every process of this user
    uid, nproc = os.getuid(), 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                nproc += int(fields["Threads"])
        except (OSError, ValueError, KeyError):
            pass
    nproc += config["extra_processes"]
for name, value in (("RLIMIT_NPROC", nproc), *config["limits"].items()):
    soft, hard = (value, value) if isinstance(value, int) else value
    limit = getattr(resource, name)
    ceiling = resource.getrlimit(limit)[1]
    if ceiling != resource.RLIM_INFINITY:  # never above what this process may set
        hard = min(hard, ceiling)
        soft = min(soft, hard)
    resource.setrlimit(limit, (soft, hard))

real = os.path.realpath
SEP = os.sep
own = real(folder)
allowed = {own: True}
for root in config["protect"]:
    allowed.setdefault(real(root), False)
for root in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
    allowed[real(root)] = True  # the interpreter's own files, wherever they live
ROOTS = sorted(allowed, key=len, reverse=True)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
DEVICES = {"/dev/null", "/dev/stdout", "/dev/stderr"}
PID = os.getpid()


def inside(path, root):
    return path == root or path.startswith(root + SEP) or root == SEP


def as_path(value):
    return os.fsdecode(os.fspath(value))


def refuse(what):
    raise PermissionError(f"sandbox: {what} is not allowed here")


def check_read(value):
    path = as_path(value)
    if path.startswith("/proc/"):
        head = path.split("/")[2]
        if head.isdigit() and int(head) != PID:
            refuse(f"reading {path}")
    resolved = real(path)
    for root in ROOTS:
        if inside(resolved, root):
            if not allowed[root]:
                refuse(f"reading {path}")
            return


def check_write(value):
    path = as_path(value)
    if path in DEVICES or inside(real(path), own):
        return
    refuse(f"writing {path}")


REFUSED = {
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile",
    "subprocess.Popen", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "resource.setrlimit",
    "resource.prlimit", "os.killpg",
}
WRITES = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
          "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod", "shutil.rmtree"}
AF_UNIX = 1


def guard(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        writing = (mode is not None and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
        if writing:
            if mode is None and not os.path.isabs(as_path(path)):
                refuse("os.open of a relative path for writing")  # its dir_fd is not audited
            check_write(path)
        else:
            check_read(path)
    elif event in REFUSED:
        refuse(event)
    elif event == "socket.__new__":
        if args[1] != AF_UNIX:
            refuse("a network socket")
    elif event == "os.kill":
        if args[0] != PID:
            refuse("signalling another process")
    elif event in WRITES:
        if not isinstance(args[0], int):
            check_write(args[0])
    elif event in ("os.rename", "os.link"):  # a hard link to an outside file would write it
        check_write(args[0])
        check_write(args[1])
    elif event == "os.symlink":  # writes through a link are checked where it points
        check_write(args[1])
    elif event in ("os.listdir", "os.scandir"):
        if args[0] is not None and not isinstance(args[0], int):
            check_read(args[0])


import runpy  # noqa: E402  (before the guard: its own imports are the scorer's, not the program's)
sys.argv = [PROGRAM]
sys.path.insert(0, folder)
sys.addaudithook(guard)
runpy.run_path(PROGRAM, run_name="__main__")
""".replace("PROGRAM", repr(PROGRAM))

_WRAPPERS = (
    ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"),
    ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"),
    ("--net", "--pid", "--fork", "--kill-child", "--mount-proc"),  # root where user namespaces are off
)
_probe_lock = threading.Lock()
_counter_lock = threading.Lock()
_wrapper: tuple[str, ...] | None = None
_probed = False
_counter = 0


def _protected() -> list[str]:
    """rdft's own folders: the package or checkout holding evaluation/ (this file is
    evaluation/tasks/sandbox.py, or a copy beside a run's task YAMLs), its work and env folders,
    the scorer's working directory and the home folder. "/" is never one."""
    roots = [Path(__file__).resolve().parents[2], Path.cwd()]
    try:
        roots.append(Path.home())
    except RuntimeError:  # no HOME and no passwd entry
        pass
    roots += [Path(os.environ[name]) for name in ("FT_FILE_PATH", "RDFT_ENVS_DIR") if os.environ.get(name)]
    return sorted({str(root.expanduser().resolve()) for root in roots} - {"/"})


def _namespace_wrapper() -> tuple[str, ...]:
    """The unshare prefix this host allows (its first candidate whose trivial run is in another
    network namespace), or () — found once per process."""
    global _wrapper, _probed
    with _probe_lock:
        if _probed:
            return _wrapper or ()
        _probed = True
        unshare = shutil.which("unshare") or shutil.which("unshare", path="/usr/bin:/bin")
        if os.environ.get("RDFT_SANDBOX_NAMESPACES", "1") == "0" or unshare is None:
            return ()
        try:
            ours = os.stat("/proc/self/ns/net").st_ino
        except OSError:  # no network namespaces here (not Linux)
            return ()
        probe = "import os; print(os.stat('/proc/self/ns/net').st_ino)"
        for flags in _WRAPPERS:
            outcome = _run(probe, {}, 10.0, 10.0, 256, (unshare, *flags))
            if outcome.status == "passed" and outcome.stdout.strip() not in ("", str(ours)):
                _wrapper = (unshare, *flags)
                break
        return _wrapper or ()


def _pids_cgroup() -> Path | None:
    """A fresh pids cgroup (pids.max EXTRA_PROCESSES) for a root run, or None where none can be
    made: the kernel does not apply RLIMIT_NPROC to root."""
    global _counter
    if os.geteuid() != 0:
        return None
    try:
        mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
        own = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, keys, path = line.split(":", 2)
            own.update(dict.fromkeys(keys.split(","), path))
    except (OSError, ValueError):
        return None
    parents = []
    for _, point, kind, options, *_ in mounts:
        if kind == "cgroup" and "pids" in options.split(",") and "pids" in own:
            parents.append(Path(point) / own["pids"].lstrip("/"))
        elif kind == "cgroup2" and "" in own:
            base = Path(point) / own[""].lstrip("/")
            try:
                if "pids" in (base / "cgroup.subtree_control").read_text().split():
                    parents.append(base)
            except OSError:
                pass
    with _counter_lock:
        _counter += 1
        name = f"rdft-sandbox-{os.getpid()}-{_counter}"
    for parent in parents:
        folder = parent / name
        try:
            folder.mkdir()
        except OSError:
            continue
        try:
            (folder / "pids.max").write_text(str(EXTRA_PROCESSES))
            return folder
        except OSError:
            _remove_cgroup(folder)
    return None


def _remove_cgroup(folder: Path) -> None:
    """Kill what is left in it, then remove it."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)
    try:
        folder.rmdir()
    except OSError:
        pass


def _tail(handle) -> str:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - TAIL_BYTES))
    return handle.read().decode("utf-8", errors="replace")


def _environment(folder: str) -> dict[str, str]:
    single = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"), "1")
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": folder, **single}  # fmt: skip


def _run(source: str, files: dict, timeout_s: float, cpu_s: float, memory_mb: int, wrapper: tuple) -> Outcome:
    folder = tempfile.mkdtemp(prefix="rdft-sandbox-")
    cgroup = _pids_cgroup()
    isolation = ("namespaces" if wrapper else "guard") + ("+pids-cgroup" if cgroup else "")
    read_end = write_end = None
    try:
        for name, content in {**files, PROGRAM: source}.items():
            target = Path(folder, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        read_end, write_end = os.pipe()
        cpu = max(1, int(-(-cpu_s // 1)))  # whole seconds, rounded up
        config = {
            "folder": folder,
            "status_fd": write_end,
            "cgroup": str(cgroup) if cgroup else None,
            # in a user namespace the count starts there (the supervisor and the program)
            "nproc": 2 + EXTRA_PROCESSES if wrapper and "--user" in wrapper else None,
            "extra_processes": EXTRA_PROCESSES,
            "limits": {
                "RLIMIT_CPU": [cpu, cpu + 1],  # SIGXCPU, then SIGKILL a second later
                "RLIMIT_AS": memory_mb * 1024 * 1024,
                "RLIMIT_FSIZE": FILE_SIZE_MB * 1024 * 1024,
                "RLIMIT_NOFILE": OPEN_FILES,
                "RLIMIT_CORE": 0,
            },
            "protect": _protected(),
        }
        command = [*wrapper, sys.executable, "-I", "-c", BOOTSTRAP, json.dumps(config)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                command, cwd=folder, env=_environment(folder), stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, pass_fds=(write_end,), start_new_session=True,
            )  # fmt: skip
            os.close(write_end)
            write_end = None
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:  # the whole group, always: nothing the program started outlives it
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
            os.set_blocking(read_end, False)
            try:
                report = json.loads(os.read(read_end, 4096) or b"null")
            except (OSError, ValueError):
                report = None
            stdout, stderr = _tail(out), _tail(err)
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)
        if cgroup:
            _remove_cgroup(cgroup)
        shutil.rmtree(folder, ignore_errors=True)
    used = report["cpu"] if report else None
    if timed_out:
        return Outcome("timeout", None, stdout, stderr, used, isolation)
    if report is None:  # the supervisor itself died
        return Outcome("killed", proc.returncode, stdout, stderr, used, isolation)
    code = os.waitstatus_to_exitcode(report["status"])
    if code < 0:
        over_cpu = -code == signal.SIGXCPU or (-code == signal.SIGKILL and used is not None and used >= cpu)
        status = "timeout" if over_cpu else "killed"
    elif code == 0:
        status = "passed"
    else:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        status = "memory" if last.startswith("MemoryError") else "failed"
    return Outcome(status, code, stdout, stderr, used, isolation)


def run_python(
    source: str,
    *,
    files: dict[str, str | bytes] | None = None,
    timeout_s: float = 10.0,
    cpu_s: float | None = None,
    memory_mb: int = 1024,
) -> Outcome:
    """Run `source` as a Python program in its own process and temporary folder, within the
    limits (see the module docstring); `files` (relative path → text or bytes) are written into
    the folder first. Safe to call from several threads at once."""
    for name in files or {}:
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts or name == PROGRAM:
            raise ValueError(f"sandbox: file name {name!r} must be a relative path inside the folder, not {PROGRAM}")
    return _run(source, dict(files or {}), timeout_s, cpu_s or timeout_s, memory_mb, _namespace_wrapper())
