"""Every registered method in half precision on the CPU: one real training step and an evaluation
with ``PREC fp16``, ``bf16`` and ``amp``, against the same step in fp32.

On a CPU the backbone normally runs fp32 whatever ``PREC`` says; ``$GOPRO_HALF_ON_CPU=1``
(``trainers.clip_backbone.HALF_ON_CPU_ENV``) makes it take the real dtypes, so the paths a GPU runs
(fp16 / bf16 towers, fp16 autocast) run here. The methods come from the registry, so a method added
later is covered without an edit here. Each case checks that the towers really are in the asked
dtype, that the loss, the updated learnable parameters and the evaluation logits are finite and
close to fp32's (tolerance: a number of epsilons of the dtype the towers rounded in, through
``tests/numerics.py``), and that everything the method learns stays fp32.
"""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_method_trainer
from numerics import assert_close
from runs.methods import METHODS
from trainers.clip_backbone import HALF_ON_CPU_ENV
from trainers.frozen_features import FrozenFeatureTrainer

# The dtype the towers round in under each PREC (amp: fp32 weights, fp16 autocast).
ROUNDING = {"fp16": torch.float16, "bf16": torch.bfloat16, "amp": torch.float16}
TOWER_DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16, "amp": torch.float32}
# Epsilons of that dtype per unit of magnitude. Measured on the tiny CLIP (3 blocks per tower, one
# step, every method): losses within 6, gradients (all learnable tensors as one vector, on the scale
# of the largest) within 41 (MaPLe fp16), evaluation logits within 5. A wrong dtype path raises, or
# gives NaN, or runs in fp32 (the dtype assertions).
LOSS_ULPS, GRAD_ULPS, LOGIT_ULPS = 32, 128, 32


def registry_cases():
    """(method key, PREC) for every registry method whose trainer is in this checkout; methods that
    fix their own precision (no ``PREC`` key: zero-shot CLIP, fp16) run once, as ``fp16``."""
    from dassl.engine import TRAINER_REGISTRY
    from runs import cli

    cli.setup_cfg(cli.build_parser().parse_args([]))  # registers every trainer module
    cases = []
    for key, method in METHODS.items():
        if not method.in_checkout():
            continue
        has_prec = bool(getattr(TRAINER_REGISTRY.get(method.trainer), "CFG_NODE", ""))
        cases += [(key, prec) for prec in (ROUNDING if has_prec else ("fp16",))]
    return cases


def build(kit, tmp_path, method, prec, half_on_cpu: bool, request):
    """The method's trainer as its training builds it on the kit, with the towers in ``prec``."""
    from dassl.engine import TRAINER_REGISTRY

    node = getattr(TRAINER_REGISTRY.get(method.trainer), "CFG_NODE", "")
    opts = (f"TRAINER.{node}.PREC", prec) if node else ()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(HALF_ON_CPU_ENV, "1" if half_on_cpu else "0")
        return make_method_trainer(kit, tmp_path / prec, method, *opts, request=request)


def one_step(trainer, batch) -> float:
    """The method's real training step (forward, loss, its update rule) on ``batch``; the loss."""
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10**9  # not the epoch's last batch: no LR step
    torch.manual_seed(0)
    return trainer.forward_backward(batch)["loss"]


def gradient_vector(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


def evaluation_logits(trainer, images: torch.Tensor) -> torch.Tensor:
    trainer.set_model_mode("eval")
    with torch.no_grad():
        return trainer.model_inference(images)


@pytest.mark.slow
@pytest.mark.parametrize("key,prec", registry_cases())
def test_half_precision_step_and_evaluation(kit, tmp_path, key, prec, request):
    method = METHODS[key]
    reference = build(kit, tmp_path, method, "fp32", half_on_cpu=True, request=request)
    half = build(kit, tmp_path, method, prec, half_on_cpu=reference.get_model_names() != [], request=request)
    if not reference.get_model_names():  # no PREC (zero-shot CLIP): its fp16 against the CPU fallback
        reference = build(kit, tmp_path, method, prec, half_on_cpu=False, request=request)
        half = build(kit, tmp_path, method, prec, half_on_cpu=True, request=request)
    assert reference.backbone.dtype == torch.float32
    assert half.backbone.dtype == TOWER_DTYPE[prec], f"PREC {prec} ran the towers in {half.backbone.dtype}"
    rounding = ROUNDING[prec]
    batch = next(iter(reference.train_loader_x))
    images = next(iter(reference.test_loader))["img"]

    if isinstance(reference, FrozenFeatureTrainer):  # fitted on frozen features: the fit is its training
        for trainer in (reference, half):
            trainer.fit_head()
    elif reference.get_model_names():
        learnable = half.model.learnable
        learnable.load_state_dict(reference.model.learnable.state_dict())
        assert all(p.dtype == torch.float32 for p in learnable.parameters()), "learnables must stay fp32"
        loss_fp32, loss_half = one_step(reference, copy.copy(batch)), one_step(half, copy.copy(batch))
        assert_close(torch.tensor(loss_half), torch.tensor(loss_fp32), what=f"{key} {prec} loss",
                     ulps=LOSS_ULPS, dtype=rounding, scale=max(1.0, abs(loss_fp32)))
        assert all(p.dtype == torch.float32 for p in learnable.parameters()), "learnables must stay fp32"
        # the gradients the step applied (ProGrad: its projected one), all tensors as one vector:
        # a tensor whose gradient is tiny next to the largest is compared on the largest's scale
        grads_fp32, grads_half = gradient_vector(reference.model.learnable), gradient_vector(learnable)
        assert_close(grads_half, grads_fp32, what=f"{key} {prec} gradients", ulps=GRAD_ULPS, dtype=rounding)

    logits_fp32, logits_half = evaluation_logits(reference, images), evaluation_logits(half, images)
    assert logits_half.dtype == torch.float32 and torch.isfinite(logits_half).all()
    assert_close(logits_half, logits_fp32, what=f"{key} {prec} evaluation logits", ulps=LOGIT_ULPS, dtype=rounding)
