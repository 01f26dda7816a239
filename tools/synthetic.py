"""Synthetic stand-ins for what a run reads from disk: CLIP of a named architecture with random
weights, a label space of N real class names, and batches of random images.

Shared by the benchmarks (``bench/``), the memory predictor (``tools/memory.py``) and the
ImageNet-size rehearsal: speed and memory depend on shapes, not on weights or pixels.
"""
from __future__ import annotations

import os
import os.path as osp
from pathlib import Path
from typing import Dict, List

import torch

from tools.kit.make_tiny_clip import TINY_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
IMAGENET_CLASSNAMES = REPO / "bench" / "imagenet_classnames.txt"
LABEL_SPACE_DATASET = "BenchClassNames"

def clip_vit(embed_dim: int, image_resolution: int, vision_layers: int, vision_width: int, vision_patch_size: int,
             transformer_width: int, transformer_heads: int) -> dict:
    """``clip.model.CLIP`` constructor arguments of a ViT CLIP with OpenAI's 12-block, 77-token text tower."""
    return dict(embed_dim=embed_dim, image_resolution=image_resolution, vision_layers=vision_layers,
                vision_width=vision_width, vision_patch_size=vision_patch_size, context_length=77, vocab_size=49408,
                transformer_width=transformer_width, transformer_heads=transformer_heads, transformer_layers=12)


# The official ViTs (read off their state dicts, as clip.model.build_model does), and two small
# ones. Widths are multiples of 64 (64-wide heads).
ARCHS: Dict[str, dict] = {
    "ViT-B/32": clip_vit(512, 224, 12, 768, 32, 512, 8),
    "ViT-B/16": clip_vit(512, 224, 12, 768, 16, 512, 8),
    "ViT-L/14": clip_vit(768, 224, 24, 1024, 14, 768, 12),
    "ViT-L/14@336px": clip_vit(768, 336, 24, 1024, 14, 768, 12),
    # 12 blocks like ViT-B/16 (MaPLe's depth-9 prompts need them), narrower, 7x7 patches of 32 px.
    "quick": clip_vit(256, 224, 12, 256, 32, 256, 4),
    # The kit's tiny CLIP (tools/kit/make_tiny_clip.py: 3 blocks 64 wide, 32 px images).
    "tiny": TINY_DEFAULTS,
}


def read_classnames(count: int = 1000) -> List[str]:
    """The first ``count`` ImageNet class names (``bench/imagenet_classnames.txt``)."""
    names = [line.strip() for line in IMAGENET_CLASSNAMES.read_text().splitlines() if line.strip()]
    if count > len(names):
        raise ValueError(f"{IMAGENET_CLASSNAMES} has {len(names)} names, {count} were asked for")
    return names[:count]


def class_names(count: int) -> List[str]:
    """``count`` distinct class names: ImageNet's, numbered again past 1000 (token lengths stay real)."""
    base = read_classnames()
    return [base[i % len(base)] + ("" if i < len(base) else f" {i // len(base)}") for i in range(count)]


def write_random_clip(path: str, arch: str) -> str:
    """A ``clip.model.CLIP`` of architecture ``arch`` with random weights, saved as the official
    loader stores them (fp16 state dict), so it goes through ``trainers.clip_backbone.load_clip``."""
    from clip.model import CLIP, convert_weights

    torch.manual_seed(0)
    model = CLIP(**ARCHS[arch])
    convert_weights(model)
    torch.save(model.state_dict(), path)
    return path


def write_label_space(root: str, names: List[str]) -> str:
    """``root/classnames.txt`` + one image, read by the ``BenchClassNames`` dataset, and one
    description per class where CoPrompt looks for them."""
    from PIL import Image

    from trainers.descriptions import default_path, write_descriptions

    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, "classnames.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    write_descriptions(default_path(root, "BenchClassNames"), {name: [f"A photo of a {name}."] for name in names})
    Image.new("RGB", (32, 32), (128, 128, 128)).save(osp.join(root, "image.jpg"))
    return root


def register_bench_dataset() -> None:
    """Dataset ``BenchClassNames``: the label space of ``DATASET.ROOT/classnames.txt`` (one image per
    class; the callers feed synthetic batches, the dataset only defines the classes)."""
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum

    if LABEL_SPACE_DATASET in DATASET_REGISTRY.registered_names():
        return

    @DATASET_REGISTRY.register()
    class BenchClassNames(DatasetBase):
        def __init__(self, cfg):
            root = cfg.DATASET.ROOT
            with open(osp.join(root, "classnames.txt")) as f:
                names = [line.strip() for line in f if line.strip()]
            image = osp.join(root, "image.jpg")
            items = [Datum(image, label=i, classname=name) for i, name in enumerate(names)]
            super().__init__(train_x=items, test=items)


def normalised_images(count: int, resolution: int, generator: torch.Generator) -> torch.Tensor:
    """Random images in [0, 1], CLIP-normalised like the real transforms' output."""
    from trainers.views import CLIP_MEAN, CLIP_STD

    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    return (torch.rand(count, 3, resolution, resolution, generator=generator) - mean) / std


def fit_prompt_depths(node, arch: str) -> None:
    """Deep prompts of a config node (``PROMPT_DEPTH*`` keys, 9 or 12 in the paper configs) through
    at most all blocks of a smaller CLIP, whichever trainer the keys belong to; TCP's class-aware
    tokens (``TKE_BLOCK``, 9) at its last block at the latest; MMRL's ``REP_LAYERS`` (6..12) moved
    down to end at its last block, those that still exist."""
    layers = min(ARCHS[arch]["vision_layers"], ARCHS[arch]["transformer_layers"])
    for key in [k for k in node if k.startswith("PROMPT_DEPTH") or k == "TKE_BLOCK"]:
        node[key] = min(node[key], layers)
    if "REP_LAYERS" in node:
        shift = max(0, max(node.REP_LAYERS) - layers)
        node.REP_LAYERS = [block - shift for block in node.REP_LAYERS if block - shift >= 1]
