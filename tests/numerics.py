"""Float comparisons that hold on every CPU: one tolerance rule for the whole test suite.

Two results of *different computations* agree only up to rounding: batched vs looped, chunked vs
whole, truncated vs 77 tokens, cached vs recomputed, one process vs two ranks. How large the
rounding is depends on the CPU (AVX-512, AVX2 or the generic kernels pick different summation
orders and fused multiply-adds), on the thread count (how a reduction is split) and on the batch
shape (which kernel and blocking runs). So those comparisons use :func:`assert_close`, whose
tolerance is a number of machine epsilons of the compared dtype times the magnitude of the
compared values::

    |actual - expected| <= ulps · eps(dtype) · scale,    scale = max(|actual|, |expected|)

The tolerance is scale-invariant (logits = 100 · cosine pass or fail exactly like the cosines),
follows the dtype (fp16 gets eps = 1e-3, fp32 1.2e-7), and stays far below what a real bug does:
a dropped token or another class name moves the tiny CLIP's text features by ~2e6 fp32 epsilons
(``test_numerics.py`` checks both sides), while the in-process equivalences differ by at most ~20.

``torch.equal`` (bitwise) stays only where identity is guaranteed: values copied or left
untouched (frozen weights, checkpoint round trips, buffers kept on load) and the *same* code on
the *same* shapes with the same thread count on the same machine (the same seed draws the same
numbers; an interrupted and resumed run equals a straight one). Never across batch shapes,
thread counts or CPUs.

``GOPRO_NUMERICS_LOG=FILE`` appends each comparison's observed error, in units of
``eps · scale``, to FILE (``what<TAB>error``), to recalibrate on a new machine.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

__all__ = ["DEFAULT_ULPS", "assert_close", "assert_differs", "assert_accuracy_close", "tolerance"]

# Measured on an AMD EPYC (AVX2, no AVX-512), AVX2 and generic (ATEN_CPU_CAPABILITY=default)
# kernels, 1 and 2 threads: the in-process equivalences of the tiny CLIP differ by at most
# 11 eps x scale (GOPro's gradients 20); a dropped token or another class name by 1.8e6. 256 leaves a wide margin
# on both sides. Cross-process gradient sums need more (tests/test_distributed.py).
DEFAULT_ULPS = 256


def _as_tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.as_tensor(value, dtype=torch.float64)  # Python floats are doubles


def _scale(actual: torch.Tensor, expected: torch.Tensor, scale: Optional[float]) -> float:
    """Magnitude the rounding is relative to: the largest value compared, unless the caller knows
    better (a mean near 0 computed from values near 1 rounds like values near 1)."""
    if scale is not None:
        return float(scale)
    magnitudes = [t.abs().max().item() for t in (actual, expected) if t.numel()]
    return max(magnitudes, default=0.0)


def tolerance(actual, expected, *, ulps: float = DEFAULT_ULPS, scale: Optional[float] = None,
              dtype: Optional[torch.dtype] = None) -> float:
    """The absolute difference :func:`assert_close` allows between ``actual`` and ``expected``."""
    actual, expected = _as_tensor(actual), _as_tensor(expected)
    return ulps * torch.finfo(dtype or expected.dtype).eps * _scale(actual, expected, scale)


def _record(what: str, error: float, unit: float) -> None:
    path = os.environ.get("GOPRO_NUMERICS_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{what}\t{error / unit if unit else float(error > 0)}\n")


def max_difference(actual, expected) -> float:
    actual, expected = _as_tensor(actual), _as_tensor(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}")
    if not actual.numel():
        return 0.0
    return (actual.double() - expected.double()).abs().max().item()


def assert_close(actual, expected, *, what: str, ulps: float = DEFAULT_ULPS, scale: Optional[float] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
    """``actual`` equals ``expected`` up to rounding (see the module docstring for the rule).

    ``what`` names the comparison in the failure message. ``ulps`` is the number of epsilons of
    ``dtype`` allowed per unit of ``scale`` (default: the largest magnitude compared). ``dtype`` is
    the precision the computation rounded in, by default ``expected``'s; a half-precision forward
    whose fp32 outputs are compared with an fp32 reference passes ``torch.float16`` /
    ``torch.bfloat16``.
    """
    actual_t, expected_t = _as_tensor(actual), _as_tensor(expected)
    if actual_t.dtype != expected_t.dtype:
        raise AssertionError(f"{what}: dtypes differ: {actual_t.dtype} vs {expected_t.dtype}")
    rounding = dtype or expected_t.dtype
    error = max_difference(actual_t, expected_t)
    allowed = tolerance(actual_t, expected_t, ulps=ulps, scale=scale, dtype=rounding)
    _record(what, error, allowed / ulps)
    if not error <= allowed:  # also fails on NaN
        raise AssertionError(
            f"{what}: max |difference| {error:.3g} exceeds the rounding tolerance {allowed:.3g} "
            f"({ulps:g} eps({rounding}) x scale {allowed / ulps / torch.finfo(rounding).eps:.3g})")


def assert_differs(actual, expected, *, what: str, factor: float = 100.0, scale: Optional[float] = None) -> None:
    """``actual`` and ``expected`` differ by far more than rounding (``factor`` times what
    :func:`assert_close` would allow): a change that must have an effect did have one."""
    error = max_difference(actual, expected)
    allowed = factor * tolerance(actual, expected, scale=scale)
    if not error > allowed:
        raise AssertionError(f"{what}: max |difference| {error:.3g} is within {factor:g}x the rounding tolerance "
                             f"({allowed:.3g}); expected a real change")


def assert_accuracy_close(actual: float, expected: float, *, total: int, what: str) -> None:
    """Accuracies (in %) of two computations of the same model on ``total`` images.

    Each prediction is an argmax of logits that agree up to rounding, so the two agree except on
    an image whose two best classes tie within rounding: at most one such image is tolerated
    (plus 0.1 for accuracies read from a log, which prints one decimal).
    """
    allowed = 100.0 / total + 0.1
    if not abs(actual - expected) <= allowed:
        raise AssertionError(f"{what}: accuracy {actual} vs {expected} differs by more than one of {total} images")
