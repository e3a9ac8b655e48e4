"""python -m engine bench (issue #6): a CPU smoke run of the real command, and the check
that its conventional pipeline sees the same pixels as the engine's."""
import json

import torch
from test_data_models import _write_cifar, _write_folder

from conftest import TINY, engine
from engine.bench import conventional_dataset
from engine.data import load_dataset
from engine.settings import Settings
from engine.splits import Normalizer


def test_bench_measures_three_paths_and_writes_table_and_json(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(TINY)
    proc = engine("bench", "rot", "scratch", "--steps", "2", "--warmup", "1", "--workers", "1",
                  "--profile", "--config", path, check=True)
    assert "conventional" in proc.stdout and "/model" in proc.stdout
    reports = tmp_path / "reports"
    result = json.loads((reports / "bench.json").read_text())
    assert result["machine"]["torch"] == torch.__version__ and result["steps"] == 2
    assert set(result["experiments"]) == {"rot", "scratch"}
    rot = result["experiments"]["rot"]
    assert rot["images_per_step"] == 4 * 32  # all four rotations of a batch of 32
    rows = {r["mode"]: r for r in rot["rows"]}
    assert list(rows) == ["model", "engine", "data", "conventional"]
    for r in rows.values():
        assert r["images_per_s"] > 0 and r["step_ms"] > 0
    assert abs(rows["engine"]["vs_conventional"]
               - rows["engine"]["images_per_s"] / rows["conventional"]["images_per_s"]) < 1e-9
    assert abs(rows["engine"]["vs_model"]
               - rows["engine"]["images_per_s"] / rows["model"]["images_per_s"]) < 1e-9
    assert rows["conventional"]["note"].startswith("1 workers")
    assert "| rot | engine |" in (reports / "bench.md").read_text()
    assert "engine steps of rot" in (reports / "bench-profile-rot.txt").read_text()
    assert json.loads((reports / "bench-trace-rot.json").read_text())


def test_bench_unknown_experiment_is_one_line(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(TINY)
    proc = engine("bench", "nosuch", "--config", path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nosuch" in proc.stderr


def test_conventional_pipeline_sees_the_engines_pixels(tmp_path):
    """Without augmentation, the torchvision ImageFolder + PIL + ToTensor + Normalize item
    equals the engine's normalised uint8 image: both paths train on the same inputs."""
    _write_folder(tmp_path, size=(16, 16))
    s = Settings(dataset="cifar10", data_dir=str(tmp_path), image_size=16, augment="none",
                 device="cpu")
    data = load_dataset(s)
    ds, how = conventional_dataset(s, data, data.mean, data.std)
    assert how.startswith("ImageFolder") and len(ds) == len(data.train)
    norm = Normalizer(data.mean, data.std, torch.device("cpu"), False)
    for i in (0, 5, 11):
        x, y = ds[i]
        assert y == int(data.train.y[i])
        assert torch.allclose(x, norm(data.train.x[i:i + 1])[0], atol=1e-5)

    _write_cifar(tmp_path / "pickles")
    s = Settings(dataset="cifar10", data_dir=str(tmp_path / "pickles"), augment="none")
    data = load_dataset(s)
    ds, how = conventional_dataset(s, data, data.mean, data.std)
    norm = Normalizer(data.mean, data.std, torch.device("cpu"), False)
    x, y = ds[7]
    assert y == int(data.train.y[7])
    assert torch.allclose(x, norm(data.train.x[7:8])[0], atol=1e-5)
