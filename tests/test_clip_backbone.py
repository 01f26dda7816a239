"""The shared CLIP backbone: loading paths, exact truncation, per-layer statistics, deep prompts."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP, convert_weights

from tools.kit.make_tiny_clip import write_tiny_clip
from numerics import assert_close, assert_differs
from trainers import clip_backbone as cb
from trainers.clip_backbone import ClipBackbone, load_clip, resolve_checkpoint

PROMPTS = ["a photo of a dog.", "cat", "X X X X american pit bull terrier.", "a centered satellite photo of a forest."]


@pytest.fixture(scope="module")
def backbone(tiny_clip_path) -> ClipBackbone:
    return ClipBackbone(load_clip("ViT-B/16", str(tiny_clip_path)), precision="fp16", device="cpu")


def test_state_dict_and_jit_archives_load_to_the_same_model(tmp_path):
    plain = load_clip("ViT-B/16", str(write_tiny_clip(tmp_path / "a.pt", "state_dict", seed=3)))
    jit = load_clip("ViT-B/16", str(write_tiny_clip(tmp_path / "b.pt", "jit", seed=3)))
    for key, value in plain.state_dict().items():
        assert torch.equal(value, jit.state_dict()[key]), key  # the same stored tensors: bitwise
    assert plain.visual.conv1.weight.dtype == torch.float16  # official loader semantics: fp16 weights


def test_weights_dir_env_is_searched_by_official_file_name(tmp_path, monkeypatch):
    write_tiny_clip(tmp_path / "ViT-B-16.pt")
    monkeypatch.setenv(cb.WEIGHTS_DIR_ENV, str(tmp_path))
    assert resolve_checkpoint("ViT-B/16") == str(tmp_path / "ViT-B-16.pt")


def test_offline_without_weights_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(cb.WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(cb, "DEFAULT_CACHE", str(tmp_path / "cache"))

    def offline(url, root):
        raise OSError("network is unreachable")

    monkeypatch.setattr(cb.clip.clip, "_download", offline)
    with pytest.raises(FileNotFoundError, match=r"ViT-B-16\.pt.*CLIP_WEIGHTS_DIR.*MODEL\.BACKBONE\.PATH"):
        resolve_checkpoint("ViT-B/16")


def test_bad_names_and_paths_are_explained(tmp_path):
    with pytest.raises(ValueError, match="Available: RN50"):
        resolve_checkpoint("ViT-Z/99")
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PATH"):
        resolve_checkpoint("ViT-B/16", str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="junk.pt"):
        load_clip("ViT-B/16", str(tmp_path / "junk.pt"))


def test_text_features_match_clip_encode_text_with_and_without_truncation(backbone):
    tokens = backbone.tokenize(PROMPTS)
    reference = backbone.clip.encode_text(tokens).float()
    embeddings, eot = backbone.embed_tokens(tokens), tokens.argmax(-1)
    full = backbone.encode_text(embeddings, eot, truncate=False)
    truncated = backbone.encode_text(embeddings, eot, truncate=True)
    chunked = backbone.encode_text(embeddings, eot, truncate=True, chunk_size=3)
    assert_close(full, reference, what="77-token features vs CLIP's encode_text")
    assert_close(truncated, reference, what="truncated features vs CLIP's encode_text")
    assert_close(chunked, truncated, what="chunked vs whole truncated features")


def test_checkpointed_text_gradients_equal_plain_ones(backbone):
    tokens = backbone.tokenize(PROMPTS)
    grads = []
    for checkpointing in (False, True):
        x = backbone.embed_tokens(tokens).requires_grad_(True)
        backbone.encode_text(x, tokens.argmax(-1), chunk_size=2, checkpointing=checkpointing).square().sum().backward()
        grads.append(x.grad)
    assert_close(grads[1], grads[0], what="text gradients with vs without checkpointing")


def test_image_features_and_layer_statistics(backbone):
    images = torch.randn(3, 3, 32, 32)
    out = backbone.encode_image(images, with_stats=True)
    assert_close(out.features, backbone.clip.encode_image(images).float(), what="image features vs CLIP's encode_image")
    layers, width = backbone.num_vision_layers, backbone.vision_width
    assert out.token_mean.shape == out.token_std.shape == (3, layers, width)

    recorded = []  # the same statistics read with forward hooks on the unmodified blocks (LND)
    hooks = [blk.register_forward_hook(lambda m, i, o: recorded.append(o.permute(1, 0, 2).float()))
             for blk in backbone.clip.visual.transformer.resblocks]
    backbone.clip.encode_image(images)
    for hook in hooks:
        hook.remove()
    for layer, tokens in enumerate(recorded):
        # statistics round like the tokens they are computed from
        scale = tokens.abs().max()
        assert_close(out.token_mean[:, layer], tokens.mean(1), what=f"token mean, layer {layer}", scale=scale)
        expected_std = torch.sqrt(tokens.var(1, unbiased=False) + 1e-8)
        assert_close(out.token_std[:, layer], expected_std, what=f"token std, layer {layer}", scale=scale)
    patch = backbone.encode_image(images, with_stats=True, stats_tokens="patch")
    assert_close(patch.token_mean[:, 0], recorded[0][:, 1:].mean(1), what="patch-token mean, layer 0",
                 scale=recorded[0].abs().max())


def test_deep_prompts_change_activations_of_both_towers(backbone):
    images = torch.randn(2, 3, 32, 32)
    tokens = backbone.tokenize(PROMPTS[:2])
    shallow = torch.randn(2, backbone.vision_width)
    deep_v = [torch.randn(2, backbone.vision_width) for _ in range(backbone.num_vision_layers - 1)]
    deep_t = [torch.randn(2, backbone.text_width) for _ in range(backbone.num_text_layers - 1)]
    plain = backbone.encode_image(images).features
    with_shallow = backbone.encode_image(images, shallow_prompts=shallow).features
    with_deep = backbone.encode_image(images, shallow_prompts=shallow, deep_prompts=deep_v).features
    assert_differs(with_shallow, plain, what="image features with a shallow prompt")
    assert_differs(with_deep, with_shallow, what="image features with deep prompts")
    x, eot = backbone.embed_tokens(tokens), tokens.argmax(-1)
    assert_differs(backbone.encode_text(x, eot, deep_prompts=deep_t), backbone.encode_text(x, eot),
                   what="text features with deep prompts")


def test_frozen_towers_get_no_gradients_and_stay_in_eval_mode(backbone):
    backbone.train()
    assert not backbone.clip.training
    assert not any(p.requires_grad for p in backbone.clip.parameters())


def test_resnet_backbones_refuse_token_statistics_with_a_clear_message():
    torch.manual_seed(0)
    model = CLIP(embed_dim=32, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                 vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                 transformer_heads=1, transformer_layers=1)
    convert_weights(model)
    backbone = ClipBackbone(model.eval(), "fp32", "cpu")
    images = torch.randn(2, 3, 32, 32)
    assert_close(backbone.encode_image(images).features, model.float().encode_image(images),
                 what="ResNet image features vs CLIP's encode_image")
    with pytest.raises(ValueError, match="ViT-B/16"):
        backbone.encode_image(images, with_stats=True)
    assert F.normalize(backbone.encode_tokens(backbone.tokenize(["a cat"])), dim=-1).shape == (1, 32)


def test_a_weights_folder_serves_each_backbone_its_file(kit):
    """The kit's MODEL.BACKBONE.PATH is a folder: MODEL.BACKBONE.NAME picks the tiny CLIP
    (ViT-B/16) or the wider one standing in for ViT-L/14; a name without a file is one clear error."""
    narrow, wide = (ClipBackbone(load_clip(name, str(kit.clip_dir))) for name in ("ViT-B/16", "ViT-L/14"))
    assert (narrow.embed_dim, narrow.vision_width) == (32, 64)
    assert (wide.embed_dim, wide.vision_width) == (48, 128)
    with pytest.raises(FileNotFoundError, match=r"without the weights of 'ViT-B/32'.*ViT-B-32\.pt.*ViT-B-16\.pt, ViT-L-14\.pt"):
        resolve_checkpoint("ViT-B/32", str(kit.clip_dir))
