"""The local executor: each run is a detached process on this machine, and a queue
without a daemon (flock slots, released by the kernel when a process dies however it dies)
decides when it starts. No torch."""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from engine.core import rundir as rd
from engine.core.errors import RunError


def hostname() -> str:
    return socket.gethostname()


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid it names a process uniquely."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, start: str | None = None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is None:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc: the pid answering is all we can know
    # a reused pid is another process; a zombie (killed, not yet reaped) is gone for us
    return fields[19] == start and fields[0] != "Z"


# CUDA_VISIBLE_DEVICES as this process got it: a slot sets it for the run it starts, and
# a later run in the same process (a sweep, --with-deps) must choose among the original
# GPUs, not only the first run's
_INHERITED = os.environ.get("CUDA_VISIBLE_DEVICES")
_SET_HERE: list[str] = []  # the value this module last set, if any


def _visible_entries(value: str) -> list[str]:
    """CUDA's reading: entries up to the first invalid one ("-1" hides every GPU)."""
    out = []
    for v in (v.strip() for v in value.split(",")):
        if not (v.isdigit() or v.startswith(("GPU-", "MIG-"))):
            break
        out.append(v)
    return out


def gpu_indices(nvml=None) -> list[str]:
    """GPUs this process may use, read without initialising CUDA: indices in PCI order
    (CUDA_DEVICE_ORDER=PCI_BUS_ID is set beside them, so that CUDA's index is NVML's) and
    the MIG- UUID of each slice of a GPU in MIG mode."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if _SET_HERE and visible == _SET_HERE[-1]:
        visible = _INHERITED
    if visible is not None:
        return _visible_entries(visible)
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        try:
            out = []
            for i in range(nvml.nvmlDeviceGetCount()):
                slices = _mig_uuids(nvml, nvml.nvmlDeviceGetHandleByIndex(i))
                out.extend(slices or [str(i)])
            return out
        finally:
            nvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver, no library: no GPUs
        return []


def _mig_uuids(nvml, handle) -> list[str]:
    try:
        if nvml.nvmlDeviceGetMigMode(handle)[0] != 1:
            return []
    except nvml.NVMLError:
        return []
    out = []
    for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
        except nvml.NVMLError:  # an empty slot
            continue
        out.append(uuid.decode() if isinstance(uuid, bytes) else uuid)
    return out


def use_gpus(held: str) -> None:
    """The run started next sees these GPUs (indices in NVML's PCI order, or UUIDs)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = held
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    _SET_HERE.append(held)


@contextmanager
def ticket(runs_dir: Path):
    """The next queue ticket (1, 2, ...): runs/.slots/ticket, incremented under the flock
    of runs/.slots/ticket.lock, which is held until the block ends. The caller writes the
    ticket into status.json inside the block, so a run holding ticket N finds every lower
    ticket already written. A ticket taken by a process killed before writing it is only
    a gap."""
    lock_dir = Path(runs_dir) / ".slots"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "ticket.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = lock_dir / "ticket"
        try:
            n = int(path.read_text()) + 1
        except (OSError, ValueError):  # the first ticket, or the file lost: after every run's
            n = 1 + max((queue_order(r.status, "")[0] for r in rd.list_runs(runs_dir)),
                        default=0)
        rd.atomic_write_text(path, str(n))
        yield n


def queue_order(status: dict, run_id: str) -> tuple:
    """A run's place in the queue: its ticket; runs made before tickets existed (none) go
    first, by their queued_at."""
    t, at = status.get("ticket"), status.get("queued_at")
    return (t if isinstance(t, int) else 0, at if isinstance(at, (int, float)) else 0, run_id)


class LocalExecutor:
    name = "local"

    def __init__(self):
        self._slots = []  # the open lock files: the slots are ours until this process ends

    def submit(self, argv: list[str], runs_dir: Path, cwd: Path, tag: str) -> Path:
        """`python -m engine ARGV` in its own process session, so that it outlives the
        caller and an SSH hang-up; its output goes to runs/.launch/TAG.txt, never to our
        pipes."""
        return self._spawn(argv, runs_dir, cwd, tag, subprocess.DEVNULL)[1]

    def submit_made(self, make, runs_dir: Path, cwd: Path, tag: str) -> Path:
        """`engine job` over run directories made here, by `make(identity)`, before the
        launcher returns: their tickets are taken in launch order (two launches a moment
        apart cannot swap), and from the moment they exist they name the detached process
        that will run them, so none looks lost. That process waits on its stdin until
        they are made; when `make` fails (bad input), it is told nothing and exits."""
        proc, out = self._spawn(["job", "--stdin", "--quiet"], runs_dir, cwd, tag,
                                subprocess.PIPE)
        made = []
        try:
            made = make({"executor": self.name, "job_id": str(proc.pid), "host": hostname(),
                         "pid": proc.pid, "pid_start": process_start_time(proc.pid)})
        finally:
            try:
                proc.stdin.write("".join(f"{d}\n" for d in made).encode())
                proc.stdin.close()
            except BrokenPipeError:  # it died first; its output file says why
                pass
        return out

    def _spawn(self, argv: list[str], runs_dir: Path, cwd: Path, tag: str, stdin):
        launch_dir = Path(runs_dir) / ".launch"
        launch_dir.mkdir(parents=True, exist_ok=True)
        out = launch_dir / f"{tag}.txt"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["ROTUNDA_EXECUTOR"] = self.name
        project_root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = project_root + os.pathsep + env.get("PYTHONPATH", "")
        with open(out, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "engine", *argv],
                                    stdin=stdin, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=str(cwd), env=env)
        # Reap it when it ends, so that a long-lived launcher (the app) keeps no <defunct>
        # children; the daemon thread dies with the launcher, the job does not.
        threading.Thread(target=proc.wait, daemon=True, name=f"reap-{tag}").start()
        return proc, out

    def identity(self) -> dict:
        pid = os.getpid()
        return {"executor": self.name, "job_id": str(pid), "host": hostname(), "pid": pid,
                "pid_start": process_start_time(pid)}

    def alive(self, status: dict) -> bool | None:
        if status.get("host") != hostname():
            return None
        return process_alive(status.get("pid"), status.get("pid_start"))

    def cancel(self, status: dict) -> str:
        if status.get("host") != hostname():
            raise RunError(f"the run is on {status.get('host')}, not on this host: cancel it "
                           "there")
        os.kill(int(status["pid"]), signal.SIGTERM)
        return f"sent SIGTERM to pid {status['pid']}"

    def wait_for_slot(self, slots: dict, runs_dir: Path, run_dir: Path, device: str,
                      on_wait=None) -> str:
        """Queued runs start in ticket order, at most slots["per_gpu"] per GPU
        (slots["cpu"] without one). A run of slots["gpus"] = N processes takes a slot on
        each of N different GPUs at once (or waits holding none); on the CPU its N
        processes share one CPU slot. GPU slots pin the run to those GPUs through
        CUDA_VISIBLE_DEVICES. Returns the devices taken ("0,1" or "cpu")."""
        gpus = [] if device == "cpu" else gpu_indices()
        kind = "gpu" if gpus else "cpu"
        want = slots.get("gpus", 1) if gpus else 1
        if want > len(gpus or ["cpu"]):
            raise RunError(f"gpus = {want} but this machine has {len(gpus)} GPU(s) "
                           f"({', '.join(gpus)})")
        # slot index outer, GPU inner: runs spread over the GPUs before sharing one
        names = ([(g, f"{g}-{i}") for i in range(slots["per_gpu"]) for g in gpus] if gpus
                 else [("cpu", f"cpu-{i}") for i in range(slots["cpu"])])
        lock_dir = Path(runs_dir) / ".slots"
        lock_dir.mkdir(parents=True, exist_ok=True)
        rd.update_status(run_dir, waiting_for=kind)
        told = False
        while True:
            # Ahead: live local runs with a lower ticket that wait for this kind of slot,
            # or will at once (none yet: just made; a run waiting for an experiment or for
            # its sweep's earlier points says so in waiting_for).
            mine = queue_order(rd.read_json(run_dir / rd.STATUS) or {}, run_dir.name)
            ahead = [r for r in rd.list_runs(runs_dir, alive=self.alive)
                     if r.raw_state == "queued" and r.path != run_dir
                     and r.status.get("waiting_for") in (kind, None)
                     and (r.status.get("executor") or "local") == self.name
                     and queue_order(r.status, r.run_id) < mine and r.state == "queued"]
            if not ahead:
                held = self._take(lock_dir, names, want)
                if held:
                    if gpus:
                        use_gpus(held)
                    return held
            if on_wait and not told:
                on_wait(len(ahead))
                told = True
            time.sleep(0.5)

    def _take(self, lock_dir: Path, names: list[tuple[str, str]], want: int) -> str | None:
        """A free slot on each of `want` devices, all or none."""
        held: dict[str, object] = {}
        for dev, name in names:
            if dev in held:
                continue
            f = open(lock_dir / f"{name}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            held[dev] = f
            if len(held) == want:
                self._slots = list(held.values())
                return ",".join(held)
        for f in held.values():
            f.close()
        return None

    def release_slot(self) -> None:
        for f in self._slots:
            f.close()
        self._slots = []

    def stopping(self, signum: int) -> bool:
        return False  # nothing here runs a stopped run again: it ends cancelled


EXECUTOR = LocalExecutor()
