"""Provenance pieces that need no training: the git state of a folder, the data
fingerprint, and what `engine diff` reports of two run directories."""
import shutil
import subprocess

import numpy as np
from makers import write_folder, write_run
from PIL import Image

from engine.core import provenance
from engine.core.settings import Settings
from engine.data.datasets import load_dataset
from engine.report.diff import diff_table, varying
from engine.train import environment


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "PATH": "/usr/bin:/bin",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd)})


def test_git_state_commit_dirty_and_patch(tmp_path):
    (tmp_path / "experiments.toml").write_text("[defaults]\nlr = 0.1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "experiments.toml")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    code, patch = provenance.git_state(tmp_path)
    assert code["commit"] == head and code["dirty"] is False and patch == ""
    (tmp_path / "experiments.toml").write_text("[defaults]\nlr = 0.3\n")
    code, patch = provenance.git_state(tmp_path)
    assert code["commit"] == head and code["dirty"] is True
    assert "+lr = 0.3" in patch and code["patch_sha1"]


def test_outside_a_repository_there_is_none(tmp_path):
    code, patch = provenance.git_state(tmp_path)
    assert code == {"repo": None, "commit": None, "dirty": None} and patch == ""


def fingerprint(root):
    s = Settings(dataset="imagefolder", data_dir=str(root), image_size=12)
    return environment.fingerprint(load_dataset(s))


def test_data_fingerprint_tells_one_image_apart(tmp_path):
    write_folder(tmp_path / "one", classes=("a", "b"), per_class=3, size=(12, 12), seed=0)
    shutil.copytree(tmp_path / "one", tmp_path / "copy")
    shutil.copytree(tmp_path / "one", tmp_path / "changed")
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "changed/train/b/1.png")
    one, copy, changed = (fingerprint(tmp_path / n) for n in ("one", "copy", "changed"))
    assert one["hash"] == copy["hash"] != changed["hash"]
    assert one["sizes"] == {"train": 6, "test": 6} == changed["sizes"]


def fake_run(root, name, settings, provenance_, summary):
    return write_run(root, "e", name, config={"run": {"experiment": "e"}, "settings": settings},
                     summary=summary, files={provenance.PROVENANCE: provenance_})


def test_diff_shows_only_what_differs(tmp_path):
    base = {"lr": 0.1, "seed": 0, "epochs": 3, "train_layers": ["all"]}
    env = {"code": {"commit": "a" * 40, "dirty": False}, "environment": {"torch": "2.14"},
           "data": {"source": "x", "hash": "h1", "sizes": {"train": 5}}}
    a = fake_run(tmp_path, "a", base, env, {"test_acc_at_best": 0.5, "wall_s": 10})
    b = fake_run(tmp_path, "b", {**base, "lr": 0.2, "seed": 3},
                 {**env, "environment": {"torch": "2.15"}},
                 {"test_acc_at_best": 0.6, "wall_s": 12})
    assert varying([a, b]) == ["lr", "seed"]
    rows = diff_table(a, b).rows
    assert [r[1] for r in rows if r[0] == "settings"] == ["lr", "seed"]
    assert [r[1:4] for r in rows if r[0] == "environment and code"] == [
        ["torch", "2.14", "2.15"]]
    assert not [r for r in rows if r[0] == "data"]
    acc = next(r for r in rows if r[1] == "acc@best")
    assert acc[2:] == ["50.00%", "60.00%", "+10.00 points"]
