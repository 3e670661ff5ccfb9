"""A real single-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd.

Everything lives in one temporary folder (its own munge key and socket, state, spool, logs and a
generated `slurm.conf` on free loopback ports), so it does not touch a Slurm or munge already
installed here. Client commands find it through `SLURM_CONF` (see `SlurmCluster.env`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel")
NODE_CPUS = 2


def unavailable_reason() -> str | None:
    """Why a Slurm cluster cannot be started here, or None when it can."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None
               and not Path("/usr/sbin", name).is_file()]
    if missing:
        return (f"Slurm/munge binaries not installed ({', '.join(missing)}): "
                "apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        return "the Slurm daemons (slurmd, munged as their own users) need root here"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def slurm_conf(root: Path, node: str) -> str:
    """The configuration of a one-node cluster on `node` (this machine) with state in `root`."""
    return "\n".join([
        "ClusterName=lora-test",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge.socket'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",  # CPUs are shared out, memory is not (tests ask 16G)
        "ReturnToService=2",
        "MpiDefault=none",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=5",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={_memory_mb()} "
        "State=UNKNOWN",
        f"PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


@dataclass
class SlurmCluster:
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose Slurm commands talk to this cluster."""
        return {**(os.environ if base is None else base), "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster; raises with its output if it fails."""
        run = subprocess.run(list(command), env=self.env(), capture_output=True, text=True,
                             **kwargs)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({run.returncode}):\n"
                               f"{run.stdout}{run.stderr}\n{self.logs()}")
        return run

    def queued_jobs(self) -> list[str]:
        """Ids of the jobs still pending or running (squeue: accounting is off here)."""
        return self.run("squeue", "--noheader", "--format=%i").stdout.split()

    def wait_until_idle(self, timeout: float) -> None:
        """Wait until no job is queued or running."""
        deadline = time.monotonic() + timeout
        while self.queued_jobs():
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still queued after {timeout:.0f} s: "
                                   f"{self.run('squeue').stdout}\n{self.logs()}")
            time.sleep(1)

    def logs(self) -> str:
        """The end of the daemons' logs (for failure messages)."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace")
                                                         .splitlines()[-15:]))
        return "\n".join(parts)

    def start(self) -> None:
        """Start munged, slurmctld and slurmd; return once the node takes jobs."""
        node = socket.gethostname()
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf.write_text(slurm_conf(self.root, node))
        self._daemon(_binary("munged"), "--foreground", "--force",
                     f"--socket={self.root / 'munge.socket'}", f"--key-file={key}",
                     f"--pid-file={self.root / 'munged.pid'}",
                     f"--log-file={self.root / 'munged.log'}",
                     f"--seed-file={self.root / 'munged.seed'}")
        self._wait_for(lambda: (self.root / "munge.socket").exists(), "munged's socket")
        self._daemon(_binary("slurmctld"), "-D", "-i", "-f", str(self.conf))
        self._daemon(_binary("slurmd"), "-D", "-f", str(self.conf), "-N", node)
        self._wait_for(self._node_idle, f"node {node} to be idle")

    def _node_idle(self) -> bool:
        run = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=self.env(),
                             capture_output=True, text=True)
        return run.returncode == 0 and run.stdout.strip() == "idle"

    def _daemon(self, *command: str) -> None:
        log = open(self.root / f"{Path(command[0]).name}.out", "w")
        self.processes.append(subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                               env=self.env(), start_new_session=True))
        log.close()

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"Slurm test cluster: gave up waiting for {what} "
                                   f"(exited: {dead or 'none'})\n{self.logs()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the jobs left, then stop every daemon started here (slurmd first)."""
        if self.processes and all(p.poll() is None for p in self.processes):
            jobs = self.queued_jobs()
            if jobs:
                subprocess.run(["scancel", *jobs], env=self.env(), capture_output=True)
                with suppress(TimeoutError, RuntimeError):
                    self.wait_until_idle(timeout=30)
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


@contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running test cluster; every daemon is stopped and its folder removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="slurm-"))  # short: munge's socket path is limited
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
