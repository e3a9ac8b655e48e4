"""Published ImageNet weights into a model, by a path we control: torch's cache (or a
download into it) or a file the user names, always read with weights_only=True and
checked key by key; the head is left new for the dataset's classes. Also the input the
weights expect (size, normalisation), from torchvision's metadata.

torchvision's own loader unpickles a cached file without weights_only, so it is not
used to read one.
"""
from __future__ import annotations

import hashlib
import pickle
import socket
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from engine.core import hub
from engine.core.errors import InitError
from engine.core.registry import MODELS
from engine.core.settings import (
    Pretrained,
    Settings,
    WeightsFile,
    input_size,
    published_init,
)
from engine.data.splits import Normalizer

DOWNLOAD_TIMEOUT_S = 30


def _published(s: Settings) -> hub.Published:
    name = s.init.weights if isinstance(s.init, Pretrained) else "DEFAULT"
    try:
        return hub.published(s.model, name)
    except ValueError as exc:
        raise InitError(str(exc)) from None


def normalizer(s: Settings, data, device: torch.device,
               channels_last: bool = False) -> tuple[Normalizer, str]:
    """The model's input from a uint8 batch, and a line for the log: the size and
    normalisation of the weights' metadata when the run starts from published weights,
    else the dataset's statistics; resized per batch when stored at another size."""
    size, mean, std, stats = input_size(s), data.mean, data.std, "the dataset's mean/std"
    if published_init(s):
        pub = _published(s)
        meta = tvm.get_model_weights(s.model)[pub.name].transforms()
        mean, std, stats = tuple(meta.mean), tuple(meta.std), f"{pub.name}'s mean/std"
    norm = Normalizer(mean, std, device, channels_last, s.image_size, size)
    resized = (f" (stored {s.image_size}px, resized per batch on the device)"
               if size != s.image_size else "")
    return norm, f"input: {size}px{resized}, {stats}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_state(path: Path, check_hash: bool) -> dict:
    """A state dict of tensors from `path`, or InitError with one line. With check_hash, a
    name that carries a sha256 prefix (torch.hub's NAME-<hex>.pth) must match the file."""
    path = Path(path)
    if not path.is_file():
        raise InitError(f"weights file {path} does not exist")
    prefix = hub.hash_prefix(path) if check_hash else None
    if prefix:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if not digest.hexdigest().startswith(prefix):
            raise InitError(f"{path.name}: its sha256 starts {digest.hexdigest()[:len(prefix)]}, "
                            f"not {prefix} as its name says: a damaged or partial copy (copy it "
                            "again; rename it if that part of the name is not a hash)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InitError(f"{path} is not a plain weights file (refused to unpickle: "
                        f"{_first_line(exc)})") from None
    except Exception as exc:  # truncated zip, not a torch file at all, unreadable
        raise InitError(f"cannot read weights file {path}: {_first_line(exc)} (truncated or "
                        "not a PyTorch file? copy it again)") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or \
            not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InitError(f"{path} holds no state dict of tensors")
    return state


def _fetch(pub: hub.Published, log) -> Path:
    """The cached file, downloaded first where it is missing (checked against the hash in
    its name, as torchvision does, written to a temporary name and renamed)."""
    path = pub.cached
    if path.is_file():
        return path
    log(f"init: {pub.file} is not in {path.parent}; downloading {pub.url}")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(pub.url, str(path), hash_prefix=hub.hash_prefix(path),
                                       progress=False)
    except Exception as exc:  # no network, a proxy, a full disk, a bad hash
        raise InitError(pub.missing_line(f"the download failed ({type(exc).__name__}: "
                                         f"{_first_line(exc)})")) from None
    finally:
        socket.setdefaulttimeout(old)
    return path


def load_published(model: nn.Module, s: Settings, weights_file: str, log) -> str:
    """Load the run's published weights into `model` (whose head already has the
    dataset's classes). Returns a line for the log."""
    if isinstance(s.init, WeightsFile):
        path, checked = Path(weights_file), True
    else:
        path, checked = _fetch(_published(s), log), False
    apply_state(model, s.model, read_state(path, checked), path)
    return f"init: {s.init} from {path}; new head {MODELS[s.model].head}"


def apply_state(model: nn.Module, model_name: str, state: dict, path: Path) -> None:
    """Every parameter and buffer but the head's from `state`, strictly: a missing,
    unexpected or mis-shaped key is an InitError naming the first few."""
    spec = MODELS[model_name]
    for old, new in spec.rename:
        state = {new + k[len(old):] if k.startswith(old) else k: v for k, v in state.items()}
    head = spec.head + "."
    own = model.state_dict()
    # BatchNorm fills in num_batches_tracked for files saved before it existed
    missing = [k for k in own if k not in state and not k.startswith(head)
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.startswith(head)]
    shapes = [f"{k} {tuple(state[k].shape)} against {tuple(v.shape)}" for k, v in own.items()
              if k in state and not k.startswith(head) and state[k].shape != v.shape]
    for what, keys in (("lacks", missing), ("has keys this model lacks:", unexpected),
                       ("has mis-shaped", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise InitError(f"{path.name} does not fit {model_name}: it {what} "
                            f"{', '.join(keys[:3])}{more}")
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)},
                          strict=False)
