"""Write a tiny CLIP checkpoint: the real ``clip.model.CLIP`` architecture, few layers, small width.

The file goes through exactly the same loading path as the official OpenAI weights
(``trainers.clip_backbone.load_clip``), so tests and the demo exercise real code, just fast.

    python tools/make_tiny_clip.py OUT.pt [--format state_dict|jit] [--layers 3] [--seed 0]

Widths are multiples of 64 because ``clip.model.build_model`` derives the number of heads as
``width // 64``. The vocabulary keeps CLIP's 49,408 BPE tokens so ``clip.tokenize`` works unchanged.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
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


def build_tiny_clip(seed: int = 0, layers: int = 3, image_resolution: int = 32) -> CLIP:
    """A randomly initialised CLIP with the official architecture and tiny dimensions (fp16)."""
    torch.manual_seed(seed)
    kwargs = dict(TINY_DEFAULTS, vision_layers=layers, transformer_layers=layers,
                  image_resolution=image_resolution)
    model = CLIP(**kwargs)
    convert_weights(model)  # the official checkpoints store fp16 weights
    return model.eval()


def write_tiny_clip(path: str | Path, fmt: str = "state_dict", seed: int = 0, layers: int = 3,
                    image_resolution: int = 32) -> Path:
    """Save a tiny CLIP as a plain state dict (``torch.save``) or a TorchScript archive."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_tiny_clip(seed=seed, layers=layers, image_resolution=image_resolution)
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
