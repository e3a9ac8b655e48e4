"""The Slurm executor: each run is its own sbatch job, made by the launcher with its run
directory already queued, so that a viewer sees it while Slurm keeps it pending. Slurm
decides the queue (no flock slots here); squeue, asked once per poll for every job, says
whether a job lives and what Slurm says of it; cancel is scancel. A job gets USR1
`warning_s` before its time limit (and from a preemption with a grace time): the trainer
stops after its step, the job requeues itself and resumes from last.pt. No torch, no
submitit: plain sbatch/squeue/scancel/scontrol (docs/design.md says why).
"""
from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.core import rundir as rd
from engine.core.config import Slurm
from engine.core.errors import RunError

# squeue's states of a job that still holds or waits for its allocation; any other (or
# none: Slurm forgot it) means the job is over
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
        "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
        "RESV_DEL_HOLD", "SPECIAL_EXIT"}
POLL_S = 1.0  # one squeue answer serves every reader within this long
WARNING = signal.SIGUSR1


def _slurm(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RunError(f"{cmd[0]} is not on PATH: executor = \"slurm\" needs Slurm's "
                       "client commands on this machine") from None
    except subprocess.TimeoutExpired:
        raise RunError(f"{cmd[0]} did not answer in {timeout:.0f} s") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


class Queue:
    """squeue's view of this user's jobs (recently ended ones included), asked at most
    once per POLL_S, and again at once for a job submitted after the last answer."""

    def __init__(self):
        self._jobs: dict[str, tuple[str, str, str]] = {}  # id -> (state, reason, nodes)
        self._asked = -1.0  # time.time() of the answer
        self._ok = False
        self._lock = threading.Lock()

    def get(self, job_id: str, since: float = 0.0) -> tuple[str, str, str] | None:
        """(state, reason, nodes) of a job; None when Slurm does not know it; raises
        RunError when squeue cannot be asked."""
        with self._lock:
            now = time.time()
            if now - self._asked > POLL_S or (job_id not in self._jobs and since
                                              and since >= self._asked - 0.5):
                self._refresh(now)
            if not self._ok:
                raise RunError("squeue failed")
            return self._jobs.get(job_id)

    def _refresh(self, now: float) -> None:
        self._asked = now
        try:
            got = _slurm(["squeue", "--noheader", "--me", "--states=all", "--array",
                          "--format=%i|%T|%r|%N"])
        except RunError:
            self._ok = False
            return
        self._ok = got.returncode == 0
        jobs = {}
        for line in got.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                jobs[parts[0]] = (parts[1], parts[2], parts[3])
        self._jobs = jobs

    def forget(self) -> None:
        with self._lock:
            self._asked = -1.0


def _script(command: list[str], nodes: int, points: list[Path] = ()) -> str:
    """The batch script. One node: exec, so the batch shell becomes the run and B:USR1
    reaches the trainer itself. Several: srun starts a task per process on every node
    (rendezvous() joins them), Slurm signals every task, and a task that fails ends the
    others. `points`: an array's run directories; each task runs the one at its index."""
    run = ["srun", "--kill-on-bad-exit=1", *command] if nodes > 1 else command
    if not points:
        return "#!/bin/sh\nexec " + shlex.join(run) + "\n"
    return (f"#!/bin/sh\nset -- {shlex.join(map(str, points))}\n"
            f'shift "$SLURM_ARRAY_TASK_ID"\nexec {shlex.join(run)} "$1" --quiet\n')


def _shape(run_dir: Path) -> tuple[int, int]:
    """(GPUs the run asks beyond [lab.slurm]'s: 0 for one, nodes) from its settings."""
    settings = rd.read_config(run_dir).get("settings", {})
    gpus, nodes = settings.get("gpus") or 0, settings.get("nodes") or 1
    return (gpus if isinstance(gpus, int) and gpus > 1 else 0,
            nodes if isinstance(nodes, int) else 1)


def _restart_count() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


class SlurmExecutor:
    name = "slurm"

    def __init__(self):
        self.queue = Queue()

    # -- the launcher's side ------------------------------------------------------------
    def sbatch_args(self, lab, tag: str, out: Path, cwd: Path, after: list[str],
                    gpus: int = 0, nodes: int = 1) -> list[str]:
        """sbatch's command line; `gpus`: the run's own (an experiment's `gpus = N` for
        a data-parallel run), when more than [lab.slurm]'s; `nodes`: machines, with a task
        per GPU on each (one on the CPU), which srun starts (_script)."""
        s = lab.slurm if lab is not None else Slurm()
        args = ["sbatch", "--parsable", f"--job-name=rotunda-{tag}", f"--output={out}",
                "--open-mode=append", f"--chdir={cwd}", "--requeue",
                # one node: to the batch shell, which is the run; several: to every task
                f"--signal={'B:' if nodes <= 1 else ''}USR1@{s.warning_s}"]
        for flag, value in (("--partition", s.partition), ("--account", s.account),
                            ("--time", s.time), ("--mem", s.memory),
                            ("--constraint", s.constraint)):
            if value:
                args.append(f"{flag}={value}")
        if nodes > 1:
            args += [f"--nodes={nodes}", f"--ntasks-per-node={max(1, gpus)}"]
        if max(s.gpus, gpus):
            args.append(f"--gpus{'-per-node' if nodes > 1 else ''}={max(s.gpus, gpus)}")
        if s.cpus:
            args.append(f"--cpus-per-task={s.cpus}")
        if after:
            args += [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"]
        return args + list(s.extra)

    def _sbatch(self, lab, argv: list[str], runs_dir: Path, cwd: Path, tag: str,
                after: list[str], gpus: int = 0, nodes: int = 1,
                points: list[Path] = ()) -> tuple[str, Path]:
        launch_dir = Path(runs_dir) / ".launch"
        launch_dir.mkdir(parents=True, exist_ok=True)
        out = launch_dir / (f"{tag}-%a.txt" if points else f"{tag}.txt")
        env = dict(os.environ, PYTHONUNBUFFERED="1", ROTUNDA_EXECUTOR=self.name)
        project_root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = project_root + os.pathsep + env.get("PYTHONPATH", "")
        script = _script([sys.executable, "-m", "engine", *argv], nodes, points)
        if not shutil.which("sbatch"):
            raise RunError('sbatch is not on PATH: executor = "slurm" needs Slurm\'s client '
                           "commands on this machine")
        args = self.sbatch_args(lab, tag, out, Path(cwd), after, gpus, nodes)
        if points:
            limit = lab.slurm.concurrency if lab is not None else 0
            args.insert(2, f"--array=0-{len(points) - 1}{f'%{limit}' if limit else ''}")
        got = subprocess.run(args, input=script, capture_output=True, text=True, env=env,
                             timeout=60)
        if got.returncode != 0:
            raise RunError(f"sbatch refused the job: {_first_line(got.stderr)}")
        return got.stdout.strip().split(";")[0], out

    def submit(self, argv: list[str], runs_dir: Path, cwd: Path, tag: str) -> Path:
        """`python -m engine ARGV` as one job (the protocol's generic form)."""
        return self._sbatch(None, argv, runs_dir, cwd, tag, [])[1]

    def submit_run(self, lab, run_dir: Path, runs_dir: Path, cwd: Path,
                   after: list[str] = ()) -> tuple[str, Path]:
        """One job for a prepared (queued) run directory, started after the jobs `after`
        succeed; its job id goes into status.json at once. Returns (job id, output file)."""
        run_dir = Path(run_dir)
        try:
            job, out = self._sbatch(lab, ["job", str(run_dir), "--quiet"], runs_dir, cwd,
                                    f"{run_dir.parent.name}-{run_dir.name}", list(after),
                                    *_shape(run_dir))
        except RunError as exc:  # the run will never start: say so where readers look
            _never_started([run_dir], str(exc))
            raise
        self._submitted(run_dir, job)
        return job, out

    def submit_array(self, lab, run_dirs: list[Path], runs_dir: Path, cwd: Path,
                     after: list[str] = ()) -> Path:
        """Prepared run directories (a sweep's points) as job arrays, one per shape (GPUs,
        nodes), started after the jobs `after` succeed: task i runs point i. Each point's
        status.json gets its task's id, JOB_i, as squeue and scancel name it. Returns
        where the tasks' early output goes (a glob)."""
        shapes: dict[tuple[int, int], list[Path]] = {}
        for run_dir in map(Path, run_dirs):
            shapes.setdefault(_shape(run_dir), []).append(run_dir)
        out = Path(runs_dir) / ".launch"
        for shape, points in shapes.items():
            try:
                job, out = self._sbatch(lab, ["job"], runs_dir, cwd,
                                        f"{points[0].parent.name}-{points[0].name}",
                                        list(after), *shape, points=points)
            except RunError as exc:
                _never_started(points, str(exc))
                raise
            for i, run_dir in enumerate(points):
                self._submitted(run_dir, f"{job}_{i}", array_job=job)
        return out.with_name(out.name.replace("%a", "*"))

    def _submitted(self, run_dir: Path, job: str, **fields) -> None:
        rd.update_status(run_dir, executor=self.name, job_id=job, host=None, pid=None,
                         pid_start=None, user=getpass.getuser(), submitted=time.time(),
                         waiting_for="slurm", **fields)

    # -- inside the job -----------------------------------------------------------------
    def rendezvous(self) -> dict:
        """In one task of a job step of several (srun's), torch.distributed's environment
        from Slurm's: rank and world from the step, the address of its first node (its
        NodeAddr, which Slurm itself reaches), a port derived from the job id and restart
        count. {} anywhere else (the batch shell of a one-node job)."""
        world = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS")
                    or 1)
        if "SLURM_STEP_ID" not in os.environ or world <= 1 or "WORLD_SIZE" in os.environ:
            return {}
        nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ["SLURM_JOB_NODELIST"]
        hosts = _slurm(["scontrol", "show", "hostnames", nodelist]).stdout.split()
        if not hosts:
            raise RunError(f"scontrol show hostnames {nodelist} named no host")
        got = _slurm(["scontrol", "show", "node", "--oneliner", hosts[0]])
        fields = dict(f.split("=", 1) for f in got.stdout.split() if "=" in f)
        job = int(os.environ.get("SLURM_JOB_ID") or 0)
        return {"RANK": os.environ.get("SLURM_PROCID", "0"), "WORLD_SIZE": str(world),
                "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0"),
                "LOCAL_WORLD_SIZE": str(max(1, world // len(hosts))),
                "MASTER_ADDR": fields.get("NodeAddr") or hosts[0],
                "MASTER_PORT": str(20000 + (job * 7 + _restart_count()) % 30000)}

    def identity(self) -> dict:
        job = os.environ.get("SLURM_JOB_ID")
        if os.environ.get("SLURM_ARRAY_TASK_ID"):  # as squeue and scancel name the task
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        return {"executor": self.name, "job_id": job,
                "host": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                "pid": os.getpid(), "pid_start": None, "user": getpass.getuser(),
                "restarts": _restart_count()}

    def wait_for_slot(self, slots: dict, runs_dir: Path, run_dir: Path, device: str,
                      on_wait=None) -> str:
        """Slurm queued the job and gave it its allocation: nothing to wait for."""
        rd.update_status(run_dir, waiting_for=None)
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return "cpu" if device == "cpu" or not gpus else gpus.split(",")[0]

    def release_slot(self) -> None:
        pass

    def stopping(self, signum: int) -> bool:
        """Whether the signal that stops the trainer means the job runs again: the
        warning signal (time limit, preemption), on which the job requeues itself, or a
        requeue by someone else (Slurm's SIGTERM, with the job's restart count raised)."""
        job = os.environ.get("SLURM_JOB_ID")
        if not job:
            return False
        if signum == WARNING:
            if os.environ.get("RANK", "0") != "0":  # every task got it; rank 0 requeues
                return True
            got = _slurm(["scontrol", "requeue", job])
            return got.returncode == 0
        if signum != signal.SIGTERM:
            return False
        got = _slurm(["scontrol", "show", "job", "--oneliner", job])
        fields = dict(f.split("=", 1) for f in got.stdout.split() if "=" in f)
        try:
            return int(fields.get("Restarts", "0")) > _restart_count()
        except ValueError:
            return False

    # -- any reader's side --------------------------------------------------------------
    def _job(self, status: dict) -> tuple[str, str, str] | None | bool:
        """squeue's entry for the run's job; False when it cannot be told from here."""
        job = status.get("job_id")
        if not job or (status.get("user") and status["user"] != getpass.getuser()):
            return False
        try:
            return self.queue.get(str(job), status.get("submitted") or 0.0)
        except RunError:
            return False

    def alive(self, status: dict) -> bool | None:
        entry = self._job(status)
        if entry is False:
            return None
        return entry is not None and entry[0] in LIVE

    def describe(self, status: dict) -> str | None:
        """Slurm's word on the job: "PENDING (Resources)", "RUNNING on node01"."""
        entry = self._job(status)
        if not entry:
            return None
        state, reason, nodes = entry
        if state == "PENDING":
            return f"PENDING ({reason})"
        if state in ("RUNNING", "COMPLETING") and nodes:
            return f"{state} on {nodes}"
        return state

    def cancel(self, status: dict) -> str:
        job = status.get("job_id")
        if not job:
            raise RunError("the run has no Slurm job id yet")
        entry = self._job(status)
        got = _slurm(["scancel", str(job)])
        if got.returncode != 0:
            raise RunError(f"scancel {job} failed: {_first_line(got.stderr)}")
        self.queue.forget()
        if entry and entry[0] == "PENDING":
            if status.get("run_dir"):
                _never_started([Path(status["run_dir"])], "cancelled while pending",
                               "cancelled")
            return f"scancel {job} (pending: it will not start)"
        return f"scancel {job} (Slurm sends SIGTERM; it checkpoints and ends cancelled)"

    def cancel_array(self, status: dict, runs_dir: Path) -> str:
        """scancel the whole job array the run is a task of; its pending points never
        start, so they are recorded cancelled here (the running ones record it)."""
        job = status.get("array_job")
        if not job:
            raise RunError("the run is not a task of a job array (a sweep's point)")
        points = [r for r in rd.list_runs(Path(runs_dir))
                  if r.status.get("array_job") == job and r.raw_state in rd.LIVE_STATES]
        pending = [r.path for r in points if (self._job(r.status) or ("",))[0] == "PENDING"]
        got = _slurm(["scancel", str(job)])
        if got.returncode != 0:
            raise RunError(f"scancel {job} failed: {_first_line(got.stderr)}")
        self.queue.forget()
        _never_started(pending, "cancelled while pending", "cancelled")
        return (f"scancel {job}: the array's {len(points)} live points "
                f"({len(pending)} pending will not start)")


def _never_started(run_dirs: list[Path], error: str, state: str = "failed") -> None:
    """Runs whose job will not start record that themselves: nothing else will."""
    for run_dir in run_dirs:
        rd.update_status(run_dir, state=state, ended=rd.now_iso(), error=error)


EXECUTOR = SlurmExecutor()
