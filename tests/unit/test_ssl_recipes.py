"""The published recipes (issue #27), each on the real task code: MoCo's key encoder never
normalises one view with the other's samples and its queue pointer stays on the host with
the loss unchanged; DINO's teacher temperature follows its warm-up, its prototypes layer
stays fixed in the first epoch and gradients are clipped per parameter; PALEO's strict
count leaves out BatchNorm and ReLU. BYOL's paper-scale loss: test_ssl_losses.py."""
import contextlib
import dataclasses
import math

import pytest
import torch
from makers import dino_loss_probe
from torch import nn

from engine import tasks
from engine.core.errors import ConfigError
from engine.core.settings import Settings, apply_overrides, settings_dict, settings_from_dict
from engine.measure.flops import count
from engine.perf import paleo
from engine.train.step import Stepper

N = 4  # images per batch: x holds 2N views


def _task(name, **opts):
    s = dataclasses.replace(Settings(), task=name, **opts)
    task = tasks.build(s)
    torch.manual_seed(0)
    # BatchNorm in train mode: what MoCo's leak is about
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    parts = nn.ModuleList(task.build(model, 6))
    return task, model.train(), parts.train()


def _views(seed=1):
    return torch.randn(2 * N, 3, 6, 6, generator=torch.Generator().manual_seed(seed))


def _key_outputs(task, model, x):
    """The key encoder's outputs, in call order, for one forward of the task."""
    got = []
    hook = task.key.register_forward_hook(lambda m, i, out: got.append(out.detach()))
    try:
        task.forward(model, x, None)
    finally:
        hook.remove()
    return torch.cat(got)


def test_moco_key_encoder_batchnorm_never_sees_the_other_view():
    task, model, _ = _task("moco", moco_hidden=8, moco_dim=4, moco_queue=64)
    x = _views()
    other = x.clone()
    other[N:] = _views(seed=2)[N:]  # the same first views, other second views
    state = {k: v.clone() for k, v in task.key.state_dict().items()}
    keys = _key_outputs(task, model, x)
    task.key.load_state_dict(state)
    keys_other = _key_outputs(task, model, other)
    # view 1's keys depend on view 1's samples only; view 2's keys did change
    torch.testing.assert_close(keys_other[:N], keys[:N], rtol=0, atol=0)
    assert not torch.allclose(keys_other[N:], keys[N:])
    # and the key encoder's BatchNorm statistics are those of each view on its own
    task.key.load_state_dict(state)
    _key_outputs(task, model, x)
    alone = nn.Sequential(*[m for m in task.key[0]]).train()
    alone.load_state_dict({k[len("0."):]: v for k, v in state.items() if k.startswith("0.")})
    with torch.no_grad():
        alone(x[:N]), alone(x[N:])
    torch.testing.assert_close(task.key[0][1].running_mean, alone[1].running_mean)
    torch.testing.assert_close(task.key[0][1].running_var, alone[1].running_var)


def test_moco_queue_pointer_is_a_host_int_and_the_loss_matches_lightlys_bank():
    """Batches of 2N = 8 keys into a queue of 20: the third wraps (fills up to the end,
    back to 0), exactly as lightly's own bank; the losses agree step by step."""
    from lightly.loss import NTXentLoss

    task, _, _ = _task("moco", moco_hidden=8, moco_dim=4, moco_queue=20)
    ours = task.criterion
    theirs = NTXentLoss(task.s.moco_temperature, memory_bank_size=(20, 4))
    theirs.memory_bank.bank.copy_(ours.memory_bank.bank)
    gen = torch.Generator().manual_seed(5)
    for step in range(6):
        q = torch.randn(2 * N, 4, generator=gen, requires_grad=True)
        k = torch.randn(2 * N, 4, generator=gen)
        assert ours(q, k).item() == pytest.approx(theirs(q, k).item(), abs=1e-6)
        assert isinstance(ours.memory_bank.ptr, int)
        assert ours.memory_bank.ptr == int(theirs.memory_bank.bank_ptr)
        torch.testing.assert_close(ours.memory_bank.bank, theirs.memory_bank.bank)
    fresh, _, _ = _task("moco", moco_hidden=8, moco_dim=4, moco_queue=20)
    state = task.state_dict()
    state["queue_ptr"] = torch.tensor([ours.memory_bank.ptr])  # as older checkpoints hold it
    fresh.load_state_dict(state)
    assert fresh.criterion.memory_bank.ptr == ours.memory_bank.ptr


def test_moco_momentum_rises_on_a_cosine_from_099_to_0999():
    task, _, _ = _task("moco", moco_hidden=8, moco_dim=4, moco_queue=16)
    assert (task.s.moco_momentum, task.s.moco_momentum_end) == (0.99, 0.999)
    assert task.momentum(0, 11) == pytest.approx(0.99)
    assert task.momentum(5, 11) == pytest.approx(0.9945)  # half way
    assert task.momentum(10, 11) == pytest.approx(0.999)


def _dino(**opts):
    return _task("dino", dino_hidden=8, dino_bottleneck=4, dino_out_dim=16, epochs=100, **opts)


def test_dino_teacher_temperature_follows_the_default_warm_up():
    task, _, _ = _dino()
    assert (task.s.dino_warmup_teacher_temp, task.s.dino_teacher_temp,
            task.s.dino_warmup_teacher_epochs) == (0.04, 0.07, 50)
    loss = dino_loss_probe(task.criterion, N)

    # linear over epochs 0..49 (the official code's np.linspace), then teacher_temp
    for epoch, temp in ((0, 0.04), (21, 0.04 + 0.03 * 21 / 49), (49, 0.07), (80, 0.07)):
        assert loss(epoch=epoch) == pytest.approx(loss(teacher_temp=temp), rel=1e-6)
    assert loss(epoch=0) != pytest.approx(loss(epoch=49))


def _dino_step(task, model, parts):
    opt = torch.optim.SGD([*model.parameters(), *parts.parameters()], lr=0.5, momentum=0.9,
                          weight_decay=5e-4)
    stepper = Stepper(model, task, False, print)
    return stepper(opt, _views(), None, contextlib.nullcontext())


def test_dino_prototypes_layer_is_frozen_in_the_first_epoch_only():
    task, model, parts = _dino()
    last = task.head.last_layer
    before = [p.detach().clone() for p in last.parameters()]
    others = [p.detach().clone() for p in task.head.layers.parameters()]
    _dino_step(task, model, parts)  # epoch 0
    assert all(p.grad is None for p in last.parameters())
    for a, p in zip(before, last.parameters()):
        assert torch.equal(a, p)
    assert any(not torch.equal(a, p) for a, p in zip(others, task.head.layers.parameters()))
    task.epoch = 1  # dino_freeze_last_layer = 1: from the second epoch it learns
    _dino_step(task, model, parts)
    assert any(not torch.equal(a, p) for a, p in zip(before, last.parameters()))


def test_dino_clips_each_parameters_gradient_on_its_own():
    task, model, parts = _dino(dino_clip_grad=0.01, dino_freeze_last_layer=0)
    loss = task.forward(model, _views(), None)[0]
    loss.backward()
    params = [p for m in (model, task.head) for p in m.parameters() if p.grad is not None]
    raw = [p.grad.clone() for p in params]
    task.after_backward(model)
    for g0, p in zip(raw, params):  # the official clip_gradients, parameter by parameter
        coef = 0.01 / (g0.norm() + 1e-6)
        torch.testing.assert_close(p.grad, g0 * coef if coef < 1 else g0)
    assert any(g0.norm() > 0.011 for g0 in raw)  # some were clipped
    assert not any(p.grad is not None for p in task.teacher.parameters())


def test_dino_head_normalises_its_hidden_layers_unless_told_not_to():
    def norms(task):
        return sum(isinstance(m, nn.BatchNorm1d) for m in task.head.modules())

    # lightly's CIFAR-10 head (without it the lab's short runs collapse to uniform output)
    assert norms(_dino()[0]) == 2
    assert norms(_dino(dino_head_bn=False)[0]) == 0  # the official head


def test_dino_loss_at_ln_of_its_prototypes_after_the_first_epoch_is_a_collapse():
    task = _dino()[0]  # 16 prototypes
    uniform = math.log(16)
    assert "uniform over the prototypes" in task.collapsed(3, uniform * 1.0005)
    assert task.collapsed(1, uniform) is None  # the first epoch starts there
    assert task.collapsed(3, uniform - 0.1) is None  # learning
    assert tasks.build(Settings(task="simclr")).collapsed(3, uniform) is None


def test_a_run_recorded_before_a_recipe_setting_resumes_as_it_was_made():
    old = settings_dict(Settings(task="dino"))
    for key in ("dino_head_bn", "dino_freeze_last_layer", "dino_clip_grad"):
        del old[key]
    s = settings_from_dict(old, "config.toml")
    assert (s.dino_head_bn, s.dino_freeze_last_layer, s.dino_clip_grad) == (False, 0, 0.0)
    moco = settings_dict(Settings(task="moco", moco_momentum=0.995))
    del moco["moco_momentum_end"]  # its key momentum was constant
    assert settings_from_dict(moco, "config.toml").moco_momentum_end == 0.995
    # another task's recorded settings are not changed by it (a rerun is not forced)
    other = settings_dict(Settings(task="simclr"))
    for key in ("dino_head_bn", "moco_momentum_end"):
        del other[key]
    assert settings_from_dict(other, "config.toml") == Settings(task="simclr")


def test_ema_decays_and_temperatures_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="moco_momentum_end is an EMA decay in"):
        apply_overrides(Settings(), ["moco_momentum_end=1.5"])
    with pytest.raises(ConfigError, match="dino_teacher_temp is a softmax temperature"):
        apply_overrides(Settings(), ["dino_teacher_temp=0"])


def test_paleo_strict_count_on_a_model_with_batchnorm_is_its_conv_linear_pool_sum():
    report = count("resnet20", 32, 4, 10)
    layers = report.layers
    assert {x.type for x in layers} >= {"Conv2d", "BatchNorm2d", "ReLU", "Linear"}
    peak, bw = 1e12, 1e11
    kept = [(i, x) for i, x in enumerate(layers) if x.type in paleo.STRICT_TYPES]
    assert {x.type for _, x in kept} == {"Conv2d", "Linear", "AdaptiveAvgPool2d"}
    fwd = sum(paleo.forward_time(x, peak, bw) for _, x in kept)
    bwd = sum(paleo.backward_time(x, peak, bw, first=i == 0) for i, x in kept)
    assert paleo.network_time(layers, peak, bw) == pytest.approx((fwd, bwd))
    # the variant that charges every leaf (BatchNorm, ReLU, ...) is larger
    every = paleo.network_time(layers, peak, bw, "all_layers")
    assert every[0] > fwd and every[1] > bwd


def test_paleo_backward_reads_dy_in_both_kernels_and_the_first_layer_writes_no_dx():
    layer = paleo.Layer("l", "Conv2d", "1", 1, 10, flops_fwd=2e9, flops_bwd=4e9,
                        in_bytes=1e6, out_bytes=2e6, weight_bytes=3e6)
    peak, bw = 1e12, 1e9
    # dX kernel: reads dY and W, writes dX; dW kernel: reads X and dY, writes dW
    assert paleo.backward_time(layer, peak, bw) == pytest.approx(
        (2e6 + 3e6 + 1e6 + 2e6) / bw + 4e-3 + (1e6 + 3e6) / bw)
    assert paleo.backward_time(layer, peak, bw, first=True) == pytest.approx(
        (2e6 + 3e6 + 1e6 + 2e6) / bw + 4e-3 + 3e6 / bw)
    pool = dataclasses.replace(layer, type="MaxPool2d", params=0, weight_bytes=0.0)
    # no weights: one kernel, dY read once
    assert paleo.backward_time(pool, peak, bw) == pytest.approx((2e6 + 1e6) / bw + 4e-3
                                                                + 1e6 / bw)
