"""Shared prompt-learner machinery: context init, prompt assembly, checkpoint adaptation."""
from __future__ import annotations

import pytest
import torch

from numerics import assert_close, assert_differs
from trainers.clip_backbone import ClipBackbone, load_clip
from trainers.prompts import PromptLearner, TextEncoding, encode_class_prompts, init_context
from trainers.trainer_base import adapt_state_dict

CLASSES = ["abyssinian", "american_bulldog", "great_pyrenees"]



@pytest.fixture(scope="module")
def backbone(tiny_clip_path) -> ClipBackbone:
    return ClipBackbone(load_clip("ViT-B/16", str(tiny_clip_path)), precision="fp32", device="cpu")


def test_ctx_init_sets_the_number_of_vectors_and_copies_word_embeddings(backbone, capsys):
    ctx, template = init_context(backbone, n_ctx=16, ctx_init="a photo of a")
    assert template == "a photo of a" and ctx.shape == (4, backbone.text_width)
    assert "N_CTX=16 is ignored" in capsys.readouterr().out
    tokens = backbone.tokenize(["a photo of a"])
    assert torch.equal(ctx, backbone.embed_tokens(tokens)[0, 1:5])  # a copy: bitwise
    random_ctx, template = init_context(backbone, n_ctx=3)
    assert template == "X X X" and random_ctx.shape == (3, backbone.text_width)
    assert 0.01 < random_ctx.std().item() < 0.03
    csc, _ = init_context(backbone, n_ctx=2, num_copies=5)
    assert csc.shape == (5, 2, backbone.text_width)


def test_prompt_learner_buffers_match_upstream_names_and_shapes(backbone):
    ctx, template = init_context(backbone, 4, "a photo of a")
    learner = PromptLearner(backbone, CLASSES, ctx, template)
    state = learner.state_dict()
    assert set(state) == {"ctx", "token_prefix", "token_suffix"}
    assert state["token_prefix"].shape == (3, 1, backbone.text_width)
    assert state["token_suffix"].shape == (3, 77 - 1 - 4, backbone.text_width)
    # with the initial context, the assembled prompts are exactly the embedded template
    full = PromptLearner(backbone, CLASSES, ctx, template, truncate=False).assemble()
    expected = backbone.embed_tokens(backbone.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]))
    assert torch.equal(full, expected)  # copies of the same embeddings: bitwise
    assert learner.assemble().shape[1] == learner.length == int(learner.eot.max()) + 1 < 77


def test_class_token_positions_front_and_middle(backbone):
    ctx, template = init_context(backbone, 4)
    marked = torch.arange(4, dtype=torch.float32)[:, None].expand(4, backbone.text_width) + 100
    for position in ("front", "middle"):
        learner = PromptLearner(backbone, CLASSES, marked.clone(), template, class_token_position=position)
        prompts = learner.assemble()
        name_len = learner.name_lens[1]
        start = 1 + name_len if position == "front" else 1
        got = prompts[1, start:start + (4 if position == "front" else 2), 0]
        assert got.tolist() == ([100, 101, 102, 103] if position == "front" else [100, 101])


def test_class_names_are_encoded_once_when_they_end_the_prompt(backbone, monkeypatch):
    """At the default "end" position the prompts are tokenised once and the names are not encoded
    again for their lengths (at 1000 classes that doubled the tokenisation time of every build)."""
    import clip.simple_tokenizer

    encoded = []
    encode = clip.simple_tokenizer.SimpleTokenizer.encode
    monkeypatch.setattr(clip.simple_tokenizer.SimpleTokenizer, "encode",
                        lambda self, text: encoded.append(text) or encode(self, text))
    ctx, template = init_context(backbone, 4, "a photo of a")
    encoded.clear()
    learner = PromptLearner(backbone, CLASSES, ctx, template)
    assert encoded == [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES] and learner.name_lens is None
    encoded.clear()
    PromptLearner(backbone, CLASSES, ctx, template, class_token_position="front")
    assert len(encoded) == 2 * len(CLASSES)  # the prompts, and the names for their lengths


def test_per_image_prompts_and_features(backbone):
    ctx, template = init_context(backbone, 4, "a photo of a")
    learner = PromptLearner(backbone, CLASSES, ctx, template)
    shift = torch.randn(2, 4, backbone.text_width)
    prompts = learner.assemble_per_image(ctx + shift)
    assert prompts.shape == (2, 3, learner.length, backbone.text_width)
    assert torch.equal(prompts[1], learner.assemble(ctx + shift[1]))  # element-wise sums and copies: bitwise
    features = encode_class_prompts(backbone, learner, prompts, TextEncoding())
    assert features.shape == (2, 3, backbone.embed_dim)
    assert_close(features.norm(dim=-1), torch.ones(2, 3), what="class feature norms")
    assert_differs(features[0], features[1], what="class features of two images")  # image-dependent


def test_adapt_state_dict_drops_class_buffers_and_frozen_weights_and_explains_mismatches(backbone):
    ctx, template = init_context(backbone, 4, "a photo of a")
    learner = PromptLearner(backbone, CLASSES, ctx, template)
    upstream = {"ctx": torch.zeros(4, backbone.text_width), "token_prefix": torch.zeros(9, 1, 1),
                "token_suffix": torch.zeros(9, 2, 1), "image_encoder.conv1.weight": torch.zeros(1)}
    assert set(adapt_state_dict(upstream, learner, "ckpt")) == {"ctx"}
    with pytest.raises(RuntimeError, match=r"ctx: checkpoint \(16, 64\) vs model \(4, 64\)"):
        adapt_state_dict({"ctx": torch.zeros(16, 64)}, learner, "ckpt")
    with pytest.raises(RuntimeError, match="missing \\['ctx'\\].*another trainer"):
        adapt_state_dict({"meta_net.linear1.weight": torch.zeros(1)}, learner, "ckpt")
