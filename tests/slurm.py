"""A real Slurm for the tests: installed from Debian's packages when sbatch is missing (as
root, with apt), started from a slurm.conf in a temporary folder without systemd or
cgroups, stopped by its pid files. `python tests/slurm.py start DIR [--nodes N]` starts one
by hand (and prints the SLURM_CONF to export); `stop DIR` stops it.

One node is this machine on 127.0.0.1. N nodes are N slurmd, each in a network namespace
made for it (`ip netns`), joined to a bridge in this one by a veth pair, on a /24 of
10.250.x.0 that no interface here uses: slurmctld on the bridge's .1, node i on .(i+1).
The namespaces have no default route, so nothing reaches beyond them and this machine."""
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


def write_conf(root: Path, cpus: int | None = None, net: "Net | None" = None) -> Path:
    """slurm.conf on ports free now (so that it never meets another cluster's daemons):
    one node, this machine, or the nodes of `net`, sharing this machine's cores."""
    cpus = cpus or os.cpu_count() or 1
    conf = root / "slurm.conf"
    names = ["localhost"] if net is None else net.nodes
    for d in ("state", *(f"spool-{n}" for n in names)):
        (root / d).mkdir(parents=True, exist_ok=True)
    if net is None:
        ctl, names = "localhost(127.0.0.1)", "localhost"
        nodes = [f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} "
                 f"RealMemory={_memory_mb()} State=UNKNOWN"]
    else:
        ctl, names = f"{socket.gethostname().split('.')[0]}({net.address(0)})", \
            ",".join(net.nodes)
        per = max(1, cpus // len(net.nodes))
        nodes = [f"NodeName={name} NodeAddr={net.address(i + 1)} CPUs={per} "
                 f"RealMemory={_memory_mb() // len(net.nodes)} State=UNKNOWN"
                 for i, name in enumerate(net.nodes)]
    node_lines = "\n".join(nodes)
    conf.write_text(f"""\
ClusterName=rotunda
SlurmctldHost={ctl}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire+1 s before it may start again (the default 120 s would
# hold each requeue test two minutes); slurmd refuses a restart inside that window
AuthInfo=cred_expire=15
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool-%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
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
{"SlurmdTimeout=20  # a node whose slurmd died is down (its job requeued) in ~20 s"
 if net else ""}
{node_lines}
PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


class Net:
    """The namespaces, veth pairs and bridge of a cluster of several nodes; its name is in
    ROOT/net (so that stop() finds it), and every name carries a tag of its own."""

    def __init__(self, root: Path, count: int):
        self.root, self.tag = root, f"{os.getpid() % 10000}"
        self.nodes = [f"n{i + 1}" for i in range(count)]
        self.subnet = _free_subnet()

    def address(self, index: int) -> str:  # 0: the bridge (slurmctld), i: node i
        return f"{self.subnet}.{index + 1}"

    def ns(self, node: str) -> str:
        return f"rot{self.tag}{node}"

    @property
    def bridge(self) -> str:
        return f"rotbr{self.tag}"

    def up(self) -> None:
        (self.root / "net").write_text(f"{self.bridge} {' '.join(map(self.ns, self.nodes))}\n")
        cmds = [["ip", "link", "add", self.bridge, "type", "bridge"],
                ["ip", "addr", "add", f"{self.address(0)}/24", "dev", self.bridge],
                ["ip", "link", "set", self.bridge, "up"]]
        for i, node in enumerate(self.nodes, 1):
            ns, host = self.ns(node), f"rv{self.tag}{node}"
            cmds += [["ip", "netns", "add", ns],
                     ["ip", "link", "add", host, "type", "veth", "peer", "name", "rot0",
                      "netns", ns],
                     ["ip", "link", "set", host, "master", self.bridge, "up"],
                     ["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "rot0"],
                     ["ip", "-n", ns, "link", "set", "rot0", "up"],
                     ["ip", "-n", ns, "link", "set", "lo", "up"]]
        for cmd in cmds:
            got = _run(cmd, timeout=30)
            if got.returncode != 0:
                down(self.root)
                raise Unavailable(f"{' '.join(cmd)} failed: {got.stderr.strip()[-200:]}")


def _free_subnet() -> str:
    used = _run(["ip", "-o", "-4", "addr"], timeout=30).stdout
    for x in range(1, 255):
        if f" 10.250.{x}." not in used:
            return f"10.250.{x}"
    raise Unavailable("no free 10.250.x.0/24 for the test cluster's network")


def down(root: Path) -> None:
    """Delete the namespaces (their veth ends go with them) and the bridge of ROOT's net."""
    try:
        bridge, *namespaces = (Path(root) / "net").read_text().split()
    except (OSError, ValueError):
        return
    for ns in namespaces:
        _run(["ip", "netns", "delete", ns], timeout=30)
    _run(["ip", "link", "delete", bridge], timeout=30)
    (Path(root) / "net").unlink()


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    # with its start time, a zombie counts as gone: a daemon's parent is init, which here
    # may never reap it
    return process_alive(pid, process_start_time(pid)) if pid else False


def start(root: Path, nodes: int = 1) -> dict:
    """Install if needed, start munged, slurmctld and a slurmd per node (in the nodes' own
    network namespaces when there are several), wait until every node is idle. Returns
    the environment the clients need (SLURM_CONF)."""
    if os.geteuid() != 0:
        raise Unavailable("starting slurmd and munged needs root")
    install()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    net = None
    if nodes > 1:
        if not shutil.which("ip"):
            raise Unavailable("a cluster of several nodes needs iproute2's ip")
        net = Net(root, nodes)
        net.up()
    conf = write_conf(root, net=net)
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
            stop(root)
            raise Unavailable(f"munged did not start: {got.stderr.strip()[-200:]}")
        (root / "munged.ours").touch()  # stopped with the cluster
    daemons = [["/usr/sbin/slurmctld", "-i", "-f", str(conf)]]
    daemons += [["/usr/sbin/slurmd", "-N", "localhost", "-f", str(conf)]] if net is None else [
        _slurmd(net.ns(node), node, conf) for node in net.nodes]
    for cmd in daemons:
        got = _run(cmd, env=env)
        if got.returncode != 0:
            stop(root)
            raise Unavailable(f"{' '.join(cmd[:5])} did not start: {got.stderr.strip()[-200:]}")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        states = _run(["sinfo", "-h", "-N", "-o", "%T"], env=env, timeout=30).stdout.split()
        if len(states) == nodes and set(states) == {"idle"}:
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.3)
    logs = "".join(p.read_text(errors="replace")[-300:] for p in root.glob("slurm*.log"))
    stop(root)
    raise Unavailable(f"the Slurm nodes did not become idle in 60 s: {logs!r}")


def _slurmd(ns: str, node: str, conf: Path) -> list[str]:
    # nsenter, not `ip netns exec`: that also remounts /sys, without its cgroup tree
    return ["nsenter", f"--net=/run/netns/{ns}", "/usr/sbin/slurmd", "-N", node, "-f", str(conf)]


def start_node(root: Path, node: str) -> None:
    """Start node's slurmd again (a test killed it: the node was lost) in its namespace."""
    ns = next(n for n in (Path(root) / "net").read_text().split()[1:] if n.endswith(node))
    got = _run(_slurmd(ns, node, Path(root) / "slurm.conf"),
               env=dict(os.environ, SLURM_CONF=str(Path(root) / "slurm.conf")))
    if got.returncode != 0:
        raise RuntimeError(f"slurmd {node} did not start: {got.stderr.strip()[-200:]}")


def stop(root: Path) -> None:
    """Cancel what is still queued, stop every slurmd and slurmctld by their pid files (and
    munged if start() started it), end any slurmstepd of this cluster that outlived
    slurmd (found by its open files in ROOT), then take down the nodes' network."""
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
    pids = [_pid(p) for p in (*root.glob("slurmd-*.pid"), root / "slurmctld.pid")]
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
    down(root)


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


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python tests/slurm.py")
    ap.add_argument("command", choices=("start", "stop"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--nodes", type=int, default=1, help="slurmd in as many namespaces")
    args = ap.parse_args(argv)
    if args.command == "stop":
        stop(args.dir)
        return
    try:
        print(f"export SLURM_CONF={start(args.dir.resolve(), args.nodes)['SLURM_CONF']}")
    except Unavailable as exc:
        sys.exit(f"no Slurm: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
