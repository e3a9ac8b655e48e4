"""Published ImageNet weights: found where torchvision caches them, read only through
weights_only=True with strict keys, checked against the hash in their name, a one-line
error for every way a file can be wrong, and never a network call in a test."""
import socket
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import write_lab

from engine import tasks
from engine.core import hub
from engine.core.config import load
from engine.core.errors import ConfigError, InitError
from engine.core.registry import MODELS
from engine.core.settings import PUBLISHED_INPUT, input_size
from engine.models import weights
from engine.models.zoo import build_model
from engine.train.step import trainable_model

HEADER = """
[defaults]
dataset = "synthetic"
device = "cpu"
"""


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails, as on a GPU box without network."""
    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def settings(tmp_path, body: str, name: str = "x"):
    return load(write_lab(tmp_path, HEADER + f"[experiment.{name}]\n" + body)) \
        .experiments[name].settings


def official_file(model: str, name: str = "IMAGENET1K_V1") -> tuple[Path, dict]:
    """A state dict with torchvision's layout for `model` (random values, 1000 classes),
    saved under the official file name in torch's cache."""
    state = torchvision.models.get_model(model, weights=None).state_dict()
    path = hub.published(model, name).cached
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path, state


def log_lines():
    lines = []
    return lines, lines.append


def test_cache_dir_is_torch_hubs(torch_home, monkeypatch):
    assert hub.checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(torch_home / "xdg"))
    assert hub.checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"


def test_weights_table_is_torchvisions():
    """The torch-free table the app and config read names exactly torchvision's weights
    and files (vgg16's features-only IMAGENET1K_FEATURES, whose classifier is not usable,
    left out), and every one takes 224-pixel input."""
    for name, spec in MODELS.items():
        if not spec.weights:
            continue
        tv = torchvision.models.get_model_weights(name)
        names = {w.name for w in tv} - {"IMAGENET1K_FEATURES"}
        assert set(spec.weights) == names, name
        for w in tv:
            if w.name in spec.weights:
                assert spec.weights[w.name] == w.url.rsplit("/", 1)[1]
                assert w.transforms().crop_size == [PUBLISHED_INPUT]
        assert hub.published(name, "DEFAULT").name == tv.DEFAULT.name


def test_cached_file_loads_offline_with_a_new_head(tmp_path, torch_home, no_network):
    path, state = official_file("resnet18")
    s = settings(tmp_path, 'model = "resnet18"\ninit = { pretrained = "IMAGENET1K_V1" }\n')
    lines, log = log_lines()
    model, _ = trainable_model(s, tasks.build(s), 7, torch.device("cpu"),
                               lambda m: log(weights.load_published(m, s, "", log)))
    got = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(got[key], value), key
    assert model.fc.out_features == 7
    assert str(path) in lines[-1]


def test_alexnet_takes_torchvisions_weights(tmp_path, torch_home, no_network):
    """Our AlexNet (seed 001's layer table, head named fc) maps torchvision's keys:
    classifier.6 is the head."""
    _, state = official_file("alexnet")
    s = settings(tmp_path, 'model = "alexnet"\ninit = { pretrained = "DEFAULT" }\n')
    model = build_model("alexnet", 10, input_size(s))
    weights.load_published(model, s, "", print)
    got = model.state_dict()
    assert torch.equal(got["classifier.4.weight"], state["classifier.4.weight"])
    assert torch.equal(got["features.10.bias"], state["features.10.bias"])
    assert model.fc.out_features == 10 and input_size(s) == 224


def test_weights_file_and_its_hash(tmp_path, no_network):
    import hashlib

    state = torchvision.models.resnet18().state_dict()
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    good = raw.rename(tmp_path / f"resnet18-{digest[:8]}.pth")
    s = settings(tmp_path, f'model = "resnet18"\ninit = {{ weights_file = "{good}" }}\n')
    model = build_model("resnet18", 3)
    weights.load_published(model, s, str(good), print)
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"],
                       state["layer4.1.conv2.weight"])
    bad = tmp_path / "resnet18-deadbeef.pth"
    bad.write_bytes(good.read_bytes())
    with pytest.raises(InitError) as exc:
        weights.load_published(build_model("resnet18", 3), s, str(bad), print)
    assert "sha256" in str(exc.value) and "\n" not in str(exc.value)


def check_one_line(exc_info, *words):
    text = str(exc_info.value)
    assert "\n" not in text and "Traceback" not in text
    for w in words:
        assert w in text, text


def test_truncated_file(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InitError) as exc:
        weights.read_state(path, check_hash=True)
    check_one_line(exc, "resnet18.pth", "truncated")


def test_missing_and_extra_keys(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    short = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    model = build_model("resnet18", 10)
    with pytest.raises(InitError) as exc:
        weights.apply_state(model, "resnet18", short, Path("short.pth"))
    check_one_line(exc, "lacks", "layer4.", "more")
    resnet50 = torchvision.models.resnet50().state_dict()
    with pytest.raises(InitError) as exc:
        weights.apply_state(model, "resnet18", resnet50, Path("r50.pth"))
    check_one_line(exc, "does not fit resnet18")


class Payload:
    """Unpickling this runs code: it makes a directory."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os
        return os.mkdir, (self.target,)


def test_a_pickle_carrying_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": Payload(str(marker))}, path)
    with pytest.raises(InitError) as exc:
        weights.read_state(path, check_hash=True)
    check_one_line(exc, "evil.pth", "not a plain weights file")
    assert not marker.exists()


def test_no_network_and_no_file_says_where_to_put_it(tmp_path, torch_home, no_network):
    s = settings(tmp_path, 'model = "resnet50"\ninit = { pretrained = "IMAGENET1K_V1" }\n')
    with pytest.raises(InitError) as exc:
        weights.load_published(build_model("resnet50", 5), s, "", lambda line: None)
    cache = torch_home / "hub" / "checkpoints"
    check_one_line(exc, str(cache), "resnet50-0676ba61.pth", "weights_file")
    assert not any(cache.iterdir())  # nothing half-downloaded left behind


def test_config_names_weights_one_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        settings(tmp_path, 'model = "resnet50"\ninit = { pretrained = "IMAGENET1K_V9" }\n')
    check_one_line(exc, "IMAGENET1K_V2", "IMAGENET1K_V1", "experiments.toml:7")
    with pytest.raises(ConfigError) as exc:
        settings(tmp_path, 'model = "resnet18_cifar"\ninit = { pretrained = "DEFAULT" }\n')
    check_one_line(exc, "no published weights", "resnet18")
    with pytest.raises(ConfigError) as exc:
        settings(tmp_path, 'train_val_split = 1.0\n')
    check_one_line(exc, "train_val_split")


def test_input_follows_the_weights(tmp_path):
    """Stored at 32 px, seen at 224 with the weights' normalisation; without published
    weights, the stored size and the dataset's statistics."""
    from engine.data.datasets import load_dataset

    s = settings(tmp_path, 'model = "resnet18"\ninit = { pretrained = "IMAGENET1K_V1" }\n'
                           "synthetic_train = 16\nsynthetic_test = 8\n")
    data = load_dataset(s)
    norm, line = weights.normalizer(s, data, torch.device("cpu"))
    x = next(data.train.batches(4, torch.device("cpu")))[0]
    out = norm(x)
    assert tuple(out.shape) == (4, 3, 224, 224) and x.shape[-1] == 32
    assert "IMAGENET1K_V1's mean/std" in line and "stored 32px" in line
    flat = torch.full((1, 3, 32, 32), 124, dtype=torch.uint8)  # 124/255 = ImageNet's red mean
    assert abs(norm(flat)[0, 0].mean().item() - (124 / 255 - 0.485) / 0.229) < 1e-4
    plain = settings(tmp_path, "synthetic_train = 16\nsynthetic_test = 8\n")
    norm, line = weights.normalizer(plain, data, torch.device("cpu"))
    assert norm(x).shape[-1] == 32 and "dataset's" in line


def test_a_feature_task_starts_from_published_weights(tmp_path, torch_home, no_network):
    """SimCLR from ImageNet weights: the head is Identity, the file's head is dropped."""
    _, state = official_file("resnet18")
    s = settings(tmp_path, 'model = "resnet18"\ninit = { pretrained = "IMAGENET1K_V1" }\n'
                           'task = "simclr"\nknn_every = 1\naugment = "none"\n')
    model, _ = trainable_model(s, tasks.build(s), 10, torch.device("cpu"),
                               lambda m: weights.load_published(m, s, "", print))
    assert isinstance(model.fc, torch.nn.Identity)
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])
