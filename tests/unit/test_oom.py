"""A CUDA out-of-memory error mid-run (raised on the CPU by the training step, as CUDA
would) ends the run failed with its batch size and a hint, keeping the last checkpoint."""
import torch

from engine.core import rundir as rd
from engine.core.settings import Settings
from engine.train import execute as train
from engine.train import step


def test_out_of_memory_in_epoch_two_is_one_line_with_a_hint(tmp_path, monkeypatch):
    s = Settings(dataset="synthetic", synthetic_train=64, synthetic_test=16, image_size=16,
                 model="lenet", epochs=3, batch_size=16, device="cpu", log_every=1,
                 warmup_epochs=0)
    real, calls = step.optimise, []

    def optimise(*args):
        calls.append(1)
        if len(calls) == 6:  # the second step of epoch 2 (4 steps an epoch)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(*args)

    monkeypatch.setattr(step, "optimise", optimise)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    state = train.execute(run_dir, s, echo=False)
    status = rd.read_json(run_dir / rd.STATUS)
    assert state == "failed" == status["state"]
    assert "out of memory at batch_size 16" in status["error"]
    assert "engine throughput" in status["error"] and "\n" not in status["error"]
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 1  # epoch 1's checkpoint kept
