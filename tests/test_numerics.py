"""The tolerance rule of ``tests/numerics.py``: it passes rounding and catches real bugs."""
from __future__ import annotations

import pytest
import torch

from numerics import DEFAULT_ULPS, assert_accuracy_close, assert_close, assert_differs, tolerance
from trainers.clip_backbone import ClipBackbone, load_clip


@pytest.fixture(scope="module")
def backbone(tiny_clip_path) -> ClipBackbone:
    return ClipBackbone(load_clip("ViT-B/16", str(tiny_clip_path)), precision="fp32", device="cpu")


def test_tolerance_follows_magnitude_and_dtype():
    x = torch.linspace(-1, 1, 10)
    assert tolerance(100 * x, 100 * x) == pytest.approx(100 * tolerance(x, x))  # logits pass like their cosines
    assert tolerance(x.half(), x.half()) > 1000 * tolerance(x, x)
    assert tolerance(x, x) == DEFAULT_ULPS * torch.finfo(torch.float32).eps


def test_reordered_sums_pass_and_perturbations_fail():
    values = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    values[0] = 1.0  # a typical term (the terms' mean magnitude is 0.8)
    forward, blocked = values.sum(), values.view(64, 64).sum(1).sum()  # another summation order
    assert_close(blocked, forward, what="blocked sum", scale=values.abs().sum())
    with pytest.raises(AssertionError, match="sum without its first term: max \\|difference\\|"):
        assert_close(values[1:].sum(), forward, what="sum without its first term", scale=values.abs().sum())
    with pytest.raises(AssertionError, match="nan"):
        assert_close(torch.tensor([float("nan")]), torch.tensor([0.0]), what="nan")
    with pytest.raises(AssertionError, match="dtypes differ"):
        assert_close(values.double(), values, what="dtype")


def test_a_dropped_token_or_another_prompt_is_far_outside_the_tolerance(backbone):
    def features(texts, **kw):
        tokens = backbone.tokenize(texts)
        return backbone.encode_text(backbone.embed_tokens(tokens), tokens.argmax(-1), **kw)

    texts = ["a photo of a dog.", "a photo of a great white shark."]
    reference = features(texts, truncate=False)
    assert_close(features(texts, truncate=True, chunk_size=1), reference, what="truncated, one prompt per call")
    for changed in (["a photo of dog.", texts[1]], [texts[0], "a photo of a great white sharks."]):
        with pytest.raises(AssertionError, match="exceeds the rounding tolerance"):
            assert_close(features(changed), reference, what=str(changed))
        assert_differs(features(changed), reference, what=str(changed), factor=100)


def test_accuracy_may_differ_by_one_near_tie_at_most():
    assert_accuracy_close(42.0, 40.0, total=50, what="one flipped image")
    with pytest.raises(AssertionError, match="more than one of 50 images"):
        assert_accuracy_close(44.0, 40.0, total=50, what="two flipped images")
