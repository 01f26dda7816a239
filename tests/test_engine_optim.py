"""dassl.optim: optimizers, staged lr, schedulers (upstream Dassl 0.6.3's lr trajectories)."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, StepLR

from dassl.config import get_cfg_default
from dassl.optim import (
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
    build_optimizer,
)
from numerics import assert_close


def optim_cfg(**overrides):
    cfg = get_cfg_default().OPTIM
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def lr_trajectory(cfg, epochs=None):
    """The lr in effect during each epoch when the scheduler is stepped once per epoch."""
    model = nn.Linear(2, 2)
    optim = build_optimizer(model, cfg)
    sched = build_lr_scheduler(optim, cfg)
    lrs = []
    for _ in range(epochs or cfg.MAX_EPOCH):
        lrs.append(round(optim.param_groups[0]["lr"], 6))
        optim.step()
        sched.step()
    return lrs


SGD_COSINE = dict(NAME="sgd", LR=0.002, LR_SCHEDULER="cosine")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (dict(MAX_EPOCH=5, WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5),
         [1e-05, 0.002, 0.001809, 0.001309, 0.000691]),
        (dict(MAX_EPOCH=5, WARMUP_EPOCH=1, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5),
         [1e-05, 0.002, 0.001809, 0.001309, 0.000691]),
        (dict(MAX_EPOCH=8, WARMUP_EPOCH=3, WARMUP_TYPE="linear"),
         [1e-05, 0.000667, 0.001333, 0.002, 0.001924, 0.001707, 0.001383, 0.001]),
        (dict(MAX_EPOCH=5, WARMUP_EPOCH=-1), [0.002, 0.001809, 0.001309, 0.000691, 0.000191]),
    ],
)
def test_verified_lr_trajectories(overrides, expected):
    assert lr_trajectory(optim_cfg(**SGD_COSINE, **overrides)) == expected


def test_warmup_without_recount_continues_cosine_from_warmup_epoch():
    import math

    cfg = optim_cfg(**SGD_COSINE, MAX_EPOCH=8, WARMUP_EPOCH=3, WARMUP_RECOUNT=False, WARMUP_TYPE="constant")
    lrs = lr_trajectory(cfg)
    assert lrs[:3] == [1e-05] * 3 and lrs[3] == 0.002
    for e in range(4, 8):
        expected = 0.002 * (1 + math.cos(math.pi * e / 8)) / (1 + math.cos(math.pi * 3 / 8))
        assert lrs[e] == pytest.approx(expected, abs=1e-6)  # lr_trajectory rounds to 6 decimals


def test_single_step_default_is_constant_and_stepsize_rules():
    assert lr_trajectory(optim_cfg(NAME="sgd", LR=0.1)) == [0.1] * 10
    assert lr_trajectory(optim_cfg(NAME="sgd", LR=0.1, STEPSIZE=(9, 2), MAX_EPOCH=4)) == [0.1, 0.1, 0.01, 0.01]
    with pytest.raises(TypeError, match="integer"):
        lr_trajectory(optim_cfg(STEPSIZE=(1.5,)))


def test_multi_step_counts_post_warmup_epochs():
    cfg = optim_cfg(NAME="sgd", LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(2,), GAMMA=0.5, MAX_EPOCH=5,
                    WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=0.01)
    assert lr_trajectory(cfg) == [0.01, 1.0, 1.0, 0.5, 0.5]
    with pytest.raises(TypeError, match="list/tuple"):
        lr_trajectory(optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=3))


def test_scheduler_types_and_errors():
    optim = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert isinstance(build_lr_scheduler(optim, optim_cfg()), StepLR)
    sched = build_lr_scheduler(optim, optim_cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=2, WARMUP_TYPE="constant"))
    assert isinstance(sched, ConstantWarmupScheduler) and isinstance(sched.successor, CosineAnnealingLR)
    sched = build_lr_scheduler(optim, optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=(3,), WARMUP_EPOCH=2))
    assert isinstance(sched, LinearWarmupScheduler) and isinstance(sched.successor, MultiStepLR)
    with pytest.raises(ValueError, match="LR_SCHEDULER"):
        build_lr_scheduler(optim, optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        build_lr_scheduler(optim, optim_cfg(WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


def test_warmup_state_dict_is_plain_and_round_trips_weights_only():
    cfg = optim_cfg(**SGD_COSINE, MAX_EPOCH=6, WARMUP_EPOCH=2, WARMUP_TYPE="linear")
    model = nn.Linear(2, 2)
    optim = build_optimizer(model, cfg)
    sched = build_lr_scheduler(optim, cfg)
    for _ in range(3):
        optim.step()
        sched.step()
    state = sched.state_dict()
    assert isinstance(state["successor"], dict) and "optimizer" not in state

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored_state = torch.load(buffer, weights_only=True)

    optim2 = build_optimizer(model, cfg)
    sched2 = build_lr_scheduler(optim2, cfg)
    optim2.load_state_dict(optim.state_dict())  # resume restores both (torch's cosine is recursive in lr)
    sched2.load_state_dict(restored_state)
    assert sched2.successor.optimizer is optim2  # upstream bug 11.3: the successor kept a detached copy
    for _ in range(3):
        optim.step(), sched.step()
        optim2.step(), sched2.step()
        assert_close(sched2.get_last_lr(), sched.get_last_lr(), what="restored scheduler lr")
        # post-warmup updates reach the live optimizer
        assert_close(optim2.param_groups[0]["lr"], optim.param_groups[0]["lr"], what="restored optimizer lr")


def test_warmup_load_state_dict_accepts_upstream_pickled_successor():
    cfg = optim_cfg(**SGD_COSINE, MAX_EPOCH=6, WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    optim = build_optimizer(nn.Linear(2, 2), cfg)
    sched = build_lr_scheduler(optim, cfg)
    for _ in range(3):
        optim.step()
        sched.step()
    upstream_state = {k: v for k, v in sched.__dict__.items() if k != "optimizer"}
    upstream_state["verbose"] = False  # upstream-only attribute

    fresh_optim = build_optimizer(nn.Linear(2, 2), cfg)
    fresh = build_lr_scheduler(fresh_optim, cfg)
    fresh.load_state_dict(upstream_state)
    assert fresh.successor is not sched.successor and fresh.successor.optimizer is fresh_optim
    assert fresh.successor.last_epoch == sched.successor.last_epoch == 2
    assert not hasattr(fresh, "verbose")


def test_build_optimizer_kinds_and_hyperparameters():
    model = nn.Linear(2, 2)
    sgd = build_optimizer(model, optim_cfg(NAME="sgd", LR=0.01, MOMENTUM=0.8, SGD_NESTEROV=True))
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.01, 0.8, 5e-4, True)
    assert build_optimizer(model, optim_cfg(NAME="amsgrad")).param_groups[0]["amsgrad"] is True
    assert isinstance(build_optimizer(model, optim_cfg(NAME="adamw")), torch.optim.AdamW)
    assert build_optimizer(model, optim_cfg(NAME="rmsprop")).param_groups[0]["alpha"] == 0.99
    radam = build_optimizer(model, optim_cfg(NAME="radam"))  # torch's RAdam, upstream's decoupled decay
    assert isinstance(radam, torch.optim.RAdam) and radam.param_groups[0]["decoupled_weight_decay"] is True
    adam = build_optimizer(model, optim_cfg(ADAM_BETA1=0.5))
    assert adam.param_groups[0]["betas"] == (0.5, 0.999)
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(model, optim_cfg(NAME="lion"))
    # an iterable of tensors instead of a module
    assert len(build_optimizer([model.weight], optim_cfg()).param_groups[0]["params"]) == 1


def test_staged_lr_groups():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(2, 2)
            self.classifier = nn.Linear(2, 3)
            self.scale = nn.Parameter(torch.ones(1))  # root parameter: in neither group

    cfg = optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS="classifier", BASE_LR_MULT=0.1)
    optim = build_optimizer(Net(), cfg)
    base, new = optim.param_groups
    assert_close(base["lr"], 0.1 * 0.1, what="staged base lr")
    assert len(base["params"]) == 2
    assert new["lr"] == 0.1 and len(new["params"]) == 2
    with pytest.raises(TypeError):
        build_optimizer([torch.zeros(1, requires_grad=True)], cfg)
    with pytest.warns(UserWarning, match="ignored"):
        build_optimizer(Net(), cfg, param_groups=[{"params": Net().parameters()}])
