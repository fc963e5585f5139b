"""A real single-node Slurm cluster on 127.0.0.1, from Debian's packages (munge, slurmctld,
slurmd; with slurmdbd and MariaDB, accounting too, so `sacct` answers), started in a folder of
its own: its own munge key and socket, database, state, spool, logs and free ports, so it
touches nothing of the host's. `.ci/run` installs the packages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
ACCOUNTING = ("slurmdbd", "mariadbd", "mariadb-install-db", "mariadb", "sacctmgr", "sacct")


def missing() -> list[str]:
    return [name for name in (*DAEMONS, "sbatch", "squeue", "scancel", "scontrol") if shutil.which(name) is None]


def missing_accounting() -> list[str]:
    return [name for name in ACCOUNTING if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.accounting = not missing_accounting()

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), check=True, capture_output=True, text=True, env={**os.environ, **self.env})

    def _start_accounting(self, socket_path: Path, mysql_port: int, dbd_port: int) -> None:
        """MariaDB in the cluster's folder, slurmdbd on it, the cluster registered (slurm.conf,
        which sacctmgr reads, is written by then)."""
        root = self.root
        db = root / "mariadb"
        self._run(
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={db}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        )
        sock = root / "mariadb.sock"
        subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={db}",
                f"--socket={sock}",
                f"--port={mysql_port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={root / 'mariadb.pid'}",
                f"--log-error={root / 'log' / 'mariadb.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self._run(
            "mariadb",
            "--no-defaults",
            f"--socket={sock}",
            "-uroot",
            "-e",
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'rdft-test'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';",
        )
        dbd_conf = root / "slurmdbd.conf"  # slurmdbd reads it next to SLURM_CONF
        dbd_conf.write_text(
            "\n".join(
                [
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={socket_path}",
                    "DbdHost=localhost",
                    "DbdAddr=127.0.0.1",
                    f"DbdPort={dbd_port}",
                    "SlurmUser=root",
                    "StorageType=accounting_storage/mysql",
                    "StorageHost=127.0.0.1",
                    f"StoragePort={mysql_port}",
                    "StorageUser=slurm",
                    "StoragePass=rdft-test",
                    "StorageLoc=slurm_acct_db",
                    f"PidFile={root / 'slurmdbd.pid'}",
                    f"LogFile={root / 'log' / 'slurmdbd.log'}",
                ]
            )
            + "\n"
        )
        dbd_conf.chmod(0o600)
        self._run("slurmdbd")
        deadline = time.monotonic() + 60
        while True:  # slurmdbd answers once it has made its tables
            added = subprocess.run(
                ["sacctmgr", "-i", "add", "cluster", "rdfttest"],
                capture_output=True,
                text=True,
                env={**os.environ, **self.env},
            )
            if added.returncode == 0 or "already exists" in added.stdout + added.stderr:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"slurmdbd did not come up: {added.stderr.strip()}; see {root / 'log'}")
            time.sleep(0.5)

    def start(self) -> SlurmCluster:
        root = self.root
        for name in ("munge", "state", "spool", "log"):
            (root / name).mkdir(parents=True, exist_ok=True)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = root / "munge" / "munge.sock"
        subprocess.run(
            [
                "munged",
                "--force",
                f"--key-file={key}",
                f"--socket={socket_path}",
                f"--pid-file={root / 'munge' / 'munged.pid'}",
                f"--log-file={root / 'munge' / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'seed'}",
            ],
            check=True,
            capture_output=True,
        )
        cpus = os.cpu_count() or 1
        mysql_port, dbd_port = _free_port(), _free_port()
        accounting = (
            [
                "AccountingStorageType=accounting_storage/slurmdbd",
                "AccountingStorageHost=localhost",
                f"AccountingStoragePort={dbd_port}",
                f"AccountingStoragePass={socket_path}",  # its munge socket
                "JobAcctGatherType=jobacct_gather/none",
            ]
            if self.accounting
            else [
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",  # no slurmdbd: sacct is off, scontrol answers
            ]
        )
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=rdfttest",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={socket_path}",
                    "CredType=cred/munge",
                    f"StateSaveLocation={root / 'state'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",  # no cgroups in a container
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    *accounting,
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "MinJobAge=3600",  # finished jobs stay visible to scontrol for the test
                    "KillWait=10",
                    f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                ]
            )
            + "\n"
        )
        if self.accounting:
            self._start_accounting(socket_path, mysql_port, dbd_port)
        for daemon in ("slurmctld", "slurmd"):
            self._run(daemon, "-f", str(self.conf))
        self._wait_idle()
        return self

    def restart_controller_forgetting_jobs(self) -> None:
        """slurmctld again, from a clean state (-c): finished jobs are gone from scontrol, as after
        MinJobAge, and only accounting still knows them."""
        pid = int((self.root / "slurmctld.pid").read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self._run("slurmctld", "-c", "-f", str(self.conf))
        self._wait_idle()

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env={**os.environ, **self.env}
            )
            if state.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the test Slurm cluster did not come up; see {self.root / 'log'}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], capture_output=True, env={**os.environ, **self.env})
        for pid_file in (
            self.root / "slurmd.pid",
            self.root / "slurmctld.pid",
            self.root / "slurmdbd.pid",
            self.root / "mariadb.pid",
            self.root / "munge" / "munged.pid",
        ):
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                pass

    def queue(self) -> list[str]:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env={**os.environ, **self.env}
        ).stdout
        return out.split()
