"""[lab.slurm] validation and the sbatch command it becomes (no Slurm needed)."""
from pathlib import Path

import pytest
from conftest import TINY, write_lab

from engine.core.config import load
from engine.core.errors import ConfigError
from engine.launch.slurm import EXECUTOR


def lab(tmp_path, text: str):
    return load(write_lab(tmp_path, text + TINY)).lab


def test_slurm_table_becomes_the_sbatch_options(tmp_path):
    got = lab(tmp_path, '[lab]\nexecutor = "slurm"\n[lab.slurm]\npartition = "gpu"\n'
                        'account = "vision"\ntime = "4:00:00"\ngpus = 1\ncpus = 8\n'
                        'memory = "32G"\nconstraint = "a100"\nextra = ["--qos=high"]\n'
                        'warning_s = 300\n')
    assert got.executor == "slurm"
    args = EXECUTOR.sbatch_args(got, "part1-x", Path("/r/.launch/x.txt"), Path("/p"), ["12"])
    for want in ("--partition=gpu", "--account=vision", "--time=4:00:00", "--gpus=1",
                 "--cpus-per-task=8", "--mem=32G", "--constraint=a100", "--qos=high",
                 "--signal=B:USR1@300", "--requeue", "--dependency=afterok:12",
                 "--output=/r/.launch/x.txt", "--open-mode=append", "--chdir=/p"):
        assert want in args, want
    plain = EXECUTOR.sbatch_args(lab(tmp_path, ""), "t", Path("o"), Path("/p"), [])
    assert not any(a.startswith(("--partition", "--gpus", "--dependency")) for a in plain)
    # a data-parallel run's own GPU count wins over the table's
    assert "--gpus=4" in EXECUTOR.sbatch_args(got, "t", Path("o"), Path("/p"), [], gpus=4)


@pytest.mark.parametrize("text, message", [
    ('[lab.slurm]\npartiton = "x"\n', "unknown key 'partiton' (did you mean \"partition\"?)"),
    ('[lab.slurm]\ntime = "soon"\n', "is not a Slurm time limit"),
    ('[lab.slurm]\ngpus = -1\n', "gpus must be 0 or more"),
    ('[lab.slurm]\nmemory = 16\n', "memory must be a string"),
    ('[lab.slurm]\nmemory = "lots"\n', "is not a Slurm size"),
    ('[lab.slurm]\nextra = ["qos"]\n', "extra holds sbatch options"),
    ('[lab.slurm]\nwarning_s = 0\n', "warning_s must be from 1 to 65535"),
    ('[lab]\nexecutor = "pbs"\n', "executor = 'pbs' is not one of local, slurm"),
])
def test_bad_slurm_settings_are_one_line_with_the_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        lab(tmp_path, text)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'experiments.toml'}:")
