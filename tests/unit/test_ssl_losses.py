"""MoCo, BYOL and DINO on tiny modules: BYOL's loss against a hand computation and its
target following the online network by the scheduled momentum; MoCo's key encoder frozen
and its queue filling; DINO's teacher temperature warming up and its centre moving."""
import dataclasses
import math

import pytest
import torch
from makers import dino_loss_probe
from torch import nn

from engine import tasks
from engine.core.settings import Settings

N = 4  # images per batch: x holds 2N views


def _task(name, **opts):
    s = dataclasses.replace(Settings(), task=name, **opts)
    task = tasks.build(s)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6))
    parts = nn.ModuleList(task.build(model, 6))
    return task, model, parts


def _views():
    return torch.randn(2 * N, 3, 4, 4, generator=torch.Generator().manual_seed(1))


def test_byol_loss_is_the_papers_2_minus_2cos_summed_over_both_directions():
    task, _, _ = _task("byol", byol_hidden=8, byol_dim=2)
    # One image, two views: p = [p1; p2] predictions, z = [z1; z2] target projections.
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[3.0, 3.0], [0.0, -1.0]], requires_grad=True)
    # cos(p1, z2) = cos([1,0], [0,-1]) = 0; cos(p2, z1) = cos([0,2], [3,3]) = 1/sqrt(2)
    # Grill et al. eq. 2, summed both ways: (2 - 2 * 0) + (2 - 2 / sqrt(2))
    expected = (2 - 2 * 0.0) + (2 - 2 / math.sqrt(2))
    loss = task.pair_loss(p, z)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert not loss.requires_grad  # the target side is detached: nothing flows back


def test_byol_target_follows_the_online_network_by_the_cosine_momentum():
    task, model, _ = _task("byol", byol_hidden=8, byol_dim=4, byol_momentum=0.9)
    with torch.no_grad():  # move the online network away from the target copy
        for p in (*model.parameters(), *task.projection.parameters()):
            p.add_(1.0)
    online = [p.clone() for p in (*model.parameters(), *task.projection.parameters())]
    before = [p.clone() for p in task.target.parameters()]
    task.after_step(model, 3, 10)
    # cosine from 0.9 to 1 over steps 0..9: m = 1 - 0.1 * (cos(pi * 3/9) + 1) / 2 = 0.925
    m = 0.925
    assert task.momentum(3, 10) == pytest.approx(m)
    after = list(task.target.parameters())
    assert len(after) == len(online)
    for t0, o, t1 in zip(before, online, after):
        torch.testing.assert_close(t1, m * t0 + (1 - m) * o)
    assert not any(p.requires_grad for p in task.target.parameters())
    assert task.momentum(0, 10) == pytest.approx(0.9) and task.momentum(9, 10) == 1.0


def test_byol_and_dino_solarize_the_second_view_moco_not():
    assert tasks.build(dataclasses.replace(Settings(), task="byol")).solarize == 0.2
    assert tasks.build(dataclasses.replace(Settings(), task="dino")).solarize == 0.2
    assert tasks.build(dataclasses.replace(Settings(), task="moco")).solarize == 0.0


def test_moco_key_encoder_is_frozen_and_the_queue_fills_with_keys():
    task, model, parts = _task("moco", moco_hidden=8, moco_dim=4, moco_queue=16,
                               moco_momentum=0.5)
    assert not any(p.requires_grad for p in task.key.parameters())
    trainable = {id(p) for p in (*model.parameters(), *parts.parameters()) if p.requires_grad}
    assert not trainable & {id(p) for p in task.key.parameters()}
    bank = task.criterion.memory_bank
    queue0 = bank.bank.clone()
    loss, out, target = task.forward(model, _views(), None)
    loss.backward()
    assert out is None and target is None and torch.isfinite(loss)
    # Both views' keys went in (2N rows), normalised, and nothing else moved.
    assert bank.ptr == 2 * N
    assert not torch.equal(bank.bank[:2 * N], queue0[:2 * N])
    torch.testing.assert_close(bank.bank[2 * N:], queue0[2 * N:])
    torch.testing.assert_close(bank.bank[:2 * N].norm(dim=1), torch.ones(2 * N))
    # The key encoder follows the query encoder, and a resume restores the queue.
    key0 = task.key[0][1].weight.clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    task.after_step(model, 0, 10)
    torch.testing.assert_close(task.key[0][1].weight, 0.5 * key0 + 0.5 * model[1].weight)
    state = task.state_dict()
    fresh, _, _ = _task("moco", moco_hidden=8, moco_dim=4, moco_queue=16)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.criterion.memory_bank.bank, bank.bank)
    assert fresh.criterion.memory_bank.ptr == 2 * N
    torch.testing.assert_close(fresh.key[0][1].weight, task.key[0][1].weight)


def _dino(**opts):
    return _task("dino", dino_hidden=8, dino_bottleneck=4, dino_out_dim=16, epochs=4,
                 dino_warmup_teacher_temp=0.04, dino_teacher_temp=0.07,
                 dino_warmup_teacher_epochs=2, **opts)


def test_dino_teacher_temperature_warms_up_with_the_epoch():
    task, model, _ = _dino()
    loss = dino_loss_probe(task.criterion, N)

    assert loss(epoch=0) == pytest.approx(loss(teacher_temp=0.04))  # warm-up starts cold
    assert loss(epoch=2) == pytest.approx(loss(teacher_temp=0.07))  # and ends at teacher_temp
    assert loss(epoch=0) != pytest.approx(loss(epoch=2))
    # The task counts epochs from the steps (4 epochs of 2 steps): the next step's epoch.
    assert task.epoch == 0
    task.after_step(model, 1, 8)
    assert task.epoch == 1
    task.after_step(model, 3, 8)
    assert task.epoch == 2
    fresh, _, _ = _dino()
    fresh.load_state_dict(task.state_dict())
    assert fresh.epoch == 2


def test_dino_centre_moves_after_a_step_and_is_saved():
    task, model, _ = _dino()
    assert not any(p.requires_grad for p in task.teacher.parameters())
    assert torch.count_nonzero(task.criterion.center) == 0
    loss, _, _ = task.forward(model, _views(), None)
    loss.backward()
    assert torch.isfinite(loss)
    center = task.criterion.center.clone()
    assert torch.count_nonzero(center) > 0
    saved = [v for k, v in task.state_dict().items() if k.startswith("part")]
    assert any(torch.equal(sd.get("center", torch.empty(0)), center) for sd in saved)
    # Teacher and student start equal (a fresh head given the student's weights).
    torch.testing.assert_close(task.teacher[1].last_layer.weight_v,
                               task.head.last_layer.weight_v)
