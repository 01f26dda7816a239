"""Write a tiny CLIP checkpoint: the real ``clip.model.CLIP`` architecture, few layers, small width.

The file goes through exactly the same loading path as the official OpenAI weights
(``trainers.clip_backbone.load_clip``), so tests and the demo exercise real code, just fast.

    python -m tools.kit.make_tiny_clip OUT.pt [--format state_dict|jit] [--layers 3] [--seed 0]

Widths are multiples of 64 because ``clip.model.build_model`` derives the number of heads as
``width // 64``. The vocabulary keeps CLIP's 49,408 BPE tokens so ``clip.tokenize`` works unchanged.
"""
from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from clip.model import CLIP, convert_weights

TINY_DEFAULTS = dict(
    embed_dim=32,
    image_resolution=32,
    vision_layers=3,
    vision_width=64,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=3,
)


# A wider tiny CLIP, the kit's stand-in for a larger backbone (ViT-L/14: a distillation teacher).
TINY_WIDE = dict(embed_dim=48, vision_width=128, transformer_width=128, transformer_heads=2)


def build_tiny_clip(seed: int = 0, layers: int = 3, image_resolution: int = 32, **dims: int) -> CLIP:
    """A randomly initialised CLIP with the official architecture and tiny dimensions (fp16);
    ``dims`` replace entries of ``TINY_DEFAULTS`` (e.g. ``TINY_WIDE``)."""
    torch.manual_seed(seed)
    kwargs = dict(TINY_DEFAULTS, **dims, vision_layers=layers, transformer_layers=layers,
                  image_resolution=image_resolution)
    model = CLIP(**kwargs)
    convert_weights(model)  # the official checkpoints store fp16 weights
    return model.eval()


PRETRAIN_TEMPLATES = ["a photo of a {}.", "a photo of a {}, a type of pet.", "a {}.", "itap of a {}.", "{}"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pretrain_tiny_clip(model: CLIP, samples: Sequence[Tuple[str, str]], steps: int = 12, seed: int = 0) -> CLIP:
    """A short CLIP-style pre-training on (image path, class name) pairs, so that the tiny model
    "knows" those concepts the way the real CLIP knows the web: zero-shot prompts then beat chance
    and prompt learning has something to build on. Loss: cross-entropy of 100·cos(image, class
    caption) over the classes, captions drawn from a few templates."""
    from PIL import Image
    from torchvision import transforms as T
    import clip

    torch.manual_seed(seed)
    size = model.visual.input_resolution
    augment = T.Compose([T.RandomResizedCrop(size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(),
                         T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    names = sorted({name for _, name in samples})
    labels = torch.tensor([names.index(name) for _, name in samples])
    images = [Image.open(p).convert("RGB").resize((size, size)) for p, _ in samples]
    captions = clip.tokenize([t.format(n.replace("_", " ")) for t in PRETRAIN_TEMPLATES for n in names])

    def batch() -> Tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(images), (32,))
        return torch.stack([augment(images[i]) for i in index]), labels[index]

    return caption_pretrain(model, batch, captions.view(len(PRETRAIN_TEMPLATES), len(names), -1), steps)


def caption_pretrain(model: CLIP, batch: Callable[[], Tuple[torch.Tensor, torch.Tensor]], captions: torch.Tensor,
                     steps: int, lr: float = 1e-3, warmup: int = 0, truncate: bool = False) -> CLIP:
    """The pre-training loop: ``steps`` AdamW steps on the cross-entropy of 100·cos(image, caption)
    over all K captions of one template drawn per step. The learning rate is ``lr`` throughout, or
    with ``warmup`` > 0, a linear warm-up over that many steps and then a cosine decay to zero.

    ``batch()`` returns normalised images [B, 3, H, W] and their caption indices [B];
    ``captions`` holds token ids [templates, K, 77]. ``truncate`` cuts the captions after their
    longest end-of-text token (same result under the causal mask, several times faster).
    Returns the model in eval mode with fp16 weights, like the official checkpoints.
    """
    model = model.float().train()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # CLIP's trained temperature
    params = [p for n, p in model.named_parameters() if n != "logit_scale"]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * step / steps)) if warmup else 1.0)
    encode_text = encode_text_truncated if truncate else CLIP.encode_text
    for _ in range(steps):
        images, labels = batch()
        text = encode_text(model, captions[torch.randint(len(captions), ())])
        logits = 100.0 * F.normalize(model.encode_image(images), dim=-1) @ F.normalize(text, dim=-1).t()
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    convert_weights(model)
    return model


def encode_text_truncated(model: CLIP, text: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on token ids cut after the longest end-of-text token."""
    from trainers.clip_backbone import run_block

    eot = text.argmax(dim=-1)  # the end-of-text token has the largest id
    length = int(eot.max()) + 1
    x = model.token_embedding(text[:, :length]) + model.positional_embedding[:length]
    for block in model.transformer.resblocks:
        x = run_block(block, x, causal=True)
    x = model.ln_final(x)
    return x[torch.arange(len(x)), eot] @ model.text_projection


def write_tiny_clip(path: str | Path, fmt: str = "state_dict", seed: int = 0, layers: int = 3,
                    image_resolution: int = 32, pretrain_on: Optional[Sequence[Tuple[str, str]]] = None,
                    **dims: int) -> Path:
    """Save a tiny CLIP as a plain state dict (``torch.save``) or a TorchScript archive.

    ``pretrain_on``: optional (image path, class name) pairs for ``pretrain_tiny_clip``;
    ``dims``: widths replacing ``TINY_DEFAULTS`` (``build_tiny_clip``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_tiny_clip(seed=seed, layers=layers, image_resolution=image_resolution, **dims)
    if pretrain_on:
        model = pretrain_tiny_clip(model, pretrain_on, seed=seed)
    if fmt == "state_dict":
        torch.save(model.state_dict(), path)
    elif fmt == "jit":
        # The official files are traced TorchScript archives; trace both encoders the same way.
        model = model.float()
        image = torch.randn(1, 3, image_resolution, image_resolution)
        text = torch.zeros(1, 77, dtype=torch.long)
        text[0, 0], text[0, 1] = 49406, 49407
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            traced = torch.jit.trace_module(model, {"encode_image": image, "encode_text": text})
        traced.save(str(path))
    else:
        raise ValueError(f"Unknown format {fmt!r}: use 'state_dict' or 'jit'")
    return path


# A tiny model of open_clip's own architecture family (not OpenAI's): nn.GELU, layer scales, two
# heads per block, written as an open_clip model config, so the open_clip backbone runs code paths
# that OpenAI-format weights never reach.
TINY_OPEN_CLIP_ARCH = "tiny-ViT"


def tiny_open_clip_config(layers: int = 3, image_resolution: int = 32) -> dict:
    return {
        "embed_dim": 32,
        "quick_gelu": False,
        "vision_cfg": {"image_size": image_resolution, "layers": layers, "width": 64, "head_width": 32,
                       "patch_size": 8, "ls_init_value": 0.5},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": layers,
                     "ls_init_value": 0.5},
    }


def write_tiny_open_clip(folder: str | Path, seed: int = 0, layers: int = 3, image_resolution: int = 32
                         ) -> Tuple[Path, Path]:
    """Write ``<folder>/tiny-ViT.json`` (an open_clip model config) and ``<folder>/tiny-ViT.pt`` (the
    state dict of that model, randomly initialised by open_clip with ``seed``); return both paths.
    Runs use them as ``MODEL.BACKBONE.NAME open_clip:tiny-ViT:kit`` with ``MODEL.BACKBONE.PATH`` the
    weights and ``MODEL.BACKBONE.OPEN_CLIP_CONFIG`` the config."""
    import json

    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config, weights = folder / f"{TINY_OPEN_CLIP_ARCH}.json", folder / f"{TINY_OPEN_CLIP_ARCH}.pt"
    config.write_text(json.dumps(tiny_open_clip_config(layers, image_resolution), indent=2))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_OPEN_CLIP_ARCH)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # CLIP's trained temperature, as the tiny OpenAI model's
    torch.save(model.state_dict(), weights)
    return config, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output file, e.g. kit/tiny-clip.pt")
    parser.add_argument("--format", default="state_dict", choices=["state_dict", "jit"])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--image-resolution", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = write_tiny_clip(args.out, args.format, args.seed, args.layers, args.image_resolution)
    print(f"Tiny CLIP written to {path}")


if __name__ == "__main__":
    main()
