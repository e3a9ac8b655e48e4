"""experiments.toml's validated form: the frozen dataclasses every other module receives
(engine/core/config.py builds them; nothing else reads the raw file). No torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import ConfigError
from engine.core.settings import FromExperiment, Settings, suggest

METRICS = ("test_acc_at_best", "final_test_acc", "best_test_acc")
EXPERIMENT_KEYS = {"title", "group", "description", "expect", "reference"}
SWEEP_KINDS = ("transfer", "forecast", "optimus")  # the kinds whose rows come from sweeps
TABLES = ("lab", "defaults", "experiment", "compare", "sweep", "ablation")


@dataclass(frozen=True)
class Expect:
    metric: str
    value: float


@dataclass(frozen=True)
class Reference:
    """A published figure to show beside ours, with where it comes from."""

    value: float
    source: str
    wall_s: float | None = None  # the published run's wall time, where it says


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    group: str
    description: str
    settings: Settings
    overrides: dict  # the keys this experiment itself set, for display
    expect: Expect | None = None
    reference: Reference | None = None

    @property
    def needs(self) -> str | None:
        """The experiment whose checkpoint this one starts from, if any."""
        return needs(self.settings)


@dataclass(frozen=True)
class Compare:
    name: str
    title: str
    kind: str
    experiments: tuple
    finetune: str = ""  # kind "ssl": the sweep of fine-tunes with few labels
    sweeps: tuple = ()  # kinds "transfer", "forecast": sweeps whose points join the table
    holdout: str = ""  # kind "optimus": the model (or point) whose curve is predicted


@dataclass(frozen=True)
class Slurm:
    """[lab.slurm]: what each run's sbatch job asks for (executor = "slurm")."""

    partition: str = ""
    account: str = ""
    time: str = ""  # the job's time limit in Slurm's format ("4:00:00", "1-00:00:00")
    gpus: int = 0  # per run (--gpus)
    cpus: int = 0  # per run (--cpus-per-task); 0: the cluster's default
    memory: str = ""  # per run (--mem), e.g. "16G"
    constraint: str = ""  # node features, e.g. a GPU type
    extra: tuple = ()  # further sbatch options, one per item: ["--qos=high"]
    warning_s: int = 120  # the warning signal (USR1) this long before the time limit
    concurrency: int = 0  # a sweep's points running at once (--array=0-K%M); 0: no limit


@dataclass(frozen=True)
class Lab:
    runs_dir: str = "runs"
    runs_per_gpu: int = 1
    runs_on_cpu: int = 1
    executor: str = "local"
    slurm: Slurm = Slurm()


@dataclass(frozen=True)
class Config:
    path: Path
    lab: Lab
    defaults: Settings
    experiments: dict = field(default_factory=dict)  # name -> Experiment, in file order
    compares: dict = field(default_factory=dict)  # name -> Compare
    sweeps: dict = field(default_factory=dict)  # name -> Sweep
    ablations: dict = field(default_factory=dict)  # name -> Ablation

    def plan(self, name: str):
        """A sweep or an ablation: anything that expands into (label, base, overrides)."""
        return self.sweeps.get(name) or self.ablations.get(name)

    @property
    def root(self) -> Path:
        return self.path.parent

    def runs_dir(self, override: str | Path | None = None) -> Path:
        if override:
            return Path(override).resolve()
        return (self.root / self.lab.runs_dir).resolve()

    def experiment(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise ConfigError(f"no experiment named {name!r}{suggest(name, self.experiments)}"
                              f" (python -m engine list shows them)", str(self.path))
        return self.experiments[name]

    def groups(self) -> dict[str, list[Experiment]]:
        out: dict[str, list[Experiment]] = {}
        for exp in self.experiments.values():
            out.setdefault(exp.group, []).append(exp)
        return out


def needs(s: Settings) -> str | None:
    """The experiment a run with these settings starts from, if any."""
    return s.init.experiment if isinstance(s.init, FromExperiment) else None
