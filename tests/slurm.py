"""A real single-node Slurm for the tests: installed from Debian's packages when sbatch is
missing (as root, with apt), started from a slurm.conf in a temporary folder without
systemd or cgroups, stopped by its pid files. `python tests/slurm.py start DIR` starts one
by hand (and prints the SLURM_CONF to export); `stop DIR` stops it."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.launch.local import process_alive, process_start_time

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET_DIR = Path("/run/munge")


class Unavailable(Exception):
    """Slurm cannot be had here; str() is the one-line reason."""


def _run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def install() -> None:
    """apt-get install the daemons and clients when sbatch is missing."""
    if shutil.which("sbatch") and Path("/usr/sbin/slurmctld").exists() \
            and Path("/usr/sbin/munged").exists():
        return
    if os.geteuid() != 0:
        raise Unavailable("Slurm is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        raise Unavailable("Slurm is not installed and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    got = _run(cmd, env=env)
    if got.returncode != 0:  # a fresh machine: no package lists yet
        _run(["apt-get", "update"], env=env)
        got = _run(cmd, env=env)
    if got.returncode != 0 or not shutil.which("sbatch"):
        last = (got.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"apt-get install {' '.join(PACKAGES)} failed: {last}")


def _memory_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kb // 1024 - 512  # leave the system some


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(root: Path, cpus: int | None = None) -> Path:
    """slurm.conf for one node, this machine, on ports free now (so that it never meets
    another cluster's daemons)."""
    cpus = cpus or os.cpu_count() or 1
    conf = root / "slurm.conf"
    for d in ("state", "spool"):
        (root / d).mkdir(parents=True, exist_ok=True)
    conf.write_text(f"""\
ClusterName=rotunda
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire+1 s before it may start again (the default 120 s would
# hold each requeue test two minutes); slurmd refuses a restart inside that window
AuthInfo=cred_expire=15
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerParameters=sched_interval=1
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    # with its start time, a zombie counts as gone: a daemon's parent is init, which here
    # may never reap it
    return process_alive(pid, process_start_time(pid)) if pid else False


def start(root: Path) -> dict:
    """Install if needed, start munged, slurmctld and slurmd, wait until the node is idle.
    Returns the environment the clients need (SLURM_CONF)."""
    if os.geteuid() != 0:
        raise Unavailable("starting slurmd and munged needs root")
    install()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    conf = write_conf(root)
    env = dict(os.environ, SLURM_CONF=str(conf))
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(128))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
    if _run(["munge", "-n"]).returncode != 0:  # no munged answering yet
        got = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
        if got.returncode != 0:
            raise Unavailable(f"munged did not start: {got.stderr.strip()[-200:]}")
        (root / "munged.ours").touch()  # stopped with the cluster
    for cmd in (["/usr/sbin/slurmctld", "-i", "-f", str(conf)],
                ["/usr/sbin/slurmd", "-N", "localhost", "-f", str(conf)]):
        got = _run(cmd, env=env)
        if got.returncode != 0:
            stop(root)
            raise Unavailable(f"{cmd[0]} did not start: {got.stderr.strip()[-200:]}")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        state = _run(["sinfo", "-h", "-o", "%T"], env=env, timeout=30).stdout.strip()
        if state == "idle":
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.3)
    log = (root / "slurmd.log").read_text(errors="replace")[-300:] \
        if (root / "slurmd.log").exists() else ""
    stop(root)
    raise Unavailable(f"the Slurm node did not become idle in 60 s: {log!r}")


def stop(root: Path) -> None:
    """Cancel what is still queued, stop slurmd and slurmctld by their pid files (and
    munged if start() started it), then end any slurmstepd of this cluster that outlived
    slurmd (found by its open files in ROOT)."""
    root = Path(root)
    env = dict(os.environ, SLURM_CONF=str(root / "slurm.conf"))
    if _alive(_pid(root / "slurmctld.pid")):
        try:
            jobs = _run(["squeue", "-h", "-o", "%i"], env=env, timeout=30).stdout.split()
            if jobs:
                _run(["scancel", *jobs], env=env, timeout=30)
            end = time.monotonic() + 30
            while jobs and time.monotonic() < end and _run(
                    ["squeue", "-h", "-o", "%i"], env=env, timeout=30).stdout.strip():
                time.sleep(0.2)
        except (OSError, subprocess.TimeoutExpired):
            pass
    pids = [_pid(root / name) for name in ("slurmd.pid", "slurmctld.pid")]
    if (root / "munged.ours").exists():
        pids.append(_pid(MUNGE_SOCKET_DIR / "munged.pid"))
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    for pid in _steps_of(root):
        os.kill(pid, signal.SIGKILL)


def _steps_of(root: Path) -> list[int]:
    """slurmstepd processes with a file open under ROOT (its slurmd.log)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "slurmstepd":
                continue
            if any(os.readlink(fd).startswith(str(root)) for fd in (entry / "fd").iterdir()):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python tests/slurm.py start|stop DIR")
    if sys.argv[1] == "stop":
        stop(Path(sys.argv[2]))
    else:
        try:
            print(f"export SLURM_CONF={start(Path(sys.argv[2]).resolve())['SLURM_CONF']}")
        except Unavailable as exc:
            sys.exit(f"no Slurm: {exc}")
