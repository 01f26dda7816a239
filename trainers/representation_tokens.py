"""CLIP's towers with tokens inserted in their higher blocks (MMRL's representation tokens).

``layer_tokens`` maps a 0-based block index to K tokens [K, D]: before the first of these blocks
the K tokens are inserted right after the first token (CLS / SOS), so every later block sees K more
tokens; before each later one they overwrite positions 1..K. The inserted tokens get no positional
embedding (they enter after it was added). The text tower stays causal over the longer sequence
(the K tokens see SOS; the prompt sees them), so its end-of-text token moves K positions on.

``ClipBackbone``'s deep prompts only overwrite existing positions; inserting changes the sequence
length, so these passes run the blocks themselves with the backbone's ``run_block``.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from .clip_backbone import ClipBackbone, replace_tokens, run_block


def check_token_layers(layers, num_blocks: int, key: str) -> None:
    """``layers`` (1-based block numbers, as upstream counts them) must rise strictly inside 1..num_blocks."""
    layers = list(layers)
    if not layers or layers != sorted(set(layers)) or layers[0] < 1 or layers[-1] > num_blocks:
        raise ValueError(f"{key}={layers} must be increasing block numbers in 1..{num_blocks} "
                         f"(this backbone's blocks, counted from 1), e.g. [6, 7, ..., 12] for ViT-B/16.")


def _enter(x: torch.Tensor, tokens: torch.Tensor, first: bool) -> torch.Tensor:
    """Insert ``tokens`` [K, D] after position 0 of every sequence (``first``), else overwrite 1..K."""
    if not first:
        return replace_tokens(x, 1, tokens)
    tokens = tokens.to(x.dtype).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :1], tokens, x[:, 1:]], dim=1)


def _run_blocks(blocks, x: torch.Tensor, layer_tokens: Dict[int, torch.Tensor], causal: bool) -> torch.Tensor:
    first = min(layer_tokens) if layer_tokens else None
    for index, block in enumerate(blocks):
        if index in layer_tokens:
            x = _enter(x, layer_tokens[index], first=index == first)
        x = run_block(block, x, causal=causal)
    return x


def encode_text_with_tokens(backbone: ClipBackbone, prompts: torch.Tensor, eot: torch.Tensor,
                            layer_tokens: Dict[int, torch.Tensor]) -> torch.Tensor:
    """Text features [N, E] (fp32) of prompt embeddings [N, T, D_t] with ``layer_tokens`` inserted.

    Only the positions up to the longest EOT run (exact under the causal mask)."""
    length = int(eot.max()) + 1 if backbone.text_causal else prompts.shape[1]
    shift = next(iter(layer_tokens.values())).shape[0] if layer_tokens else 0
    with backbone.autocast():
        x = backbone.text_input(prompts, length)
        x = _run_blocks(backbone.text_blocks, x, layer_tokens, causal=backbone.text_causal)
        x = backbone.text_output(x, eot.to(x.device) + shift)
    return x.float()


def encode_image_with_tokens(backbone: ClipBackbone, images: torch.Tensor, layer_tokens: Dict[int, torch.Tensor]
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(class-token features [B, E] through CLIP's frozen ``proj``, the inserted tokens' outputs
    after ``ln_post`` [B, K, D_v]), both fp32, of a ViT with ``layer_tokens`` inserted."""
    backbone.require_vit("Representation tokens")
    k = next(iter(layer_tokens.values())).shape[0]
    with backbone.autocast():
        x, num_image_tokens = backbone.image_input(images)
        x = _run_blocks(backbone.vision_blocks, x, layer_tokens, causal=False)
        features = backbone.pool_image(x, num_image_tokens)  # the CLS token (inserted tokens follow it)
        inserted = backbone.image_token_norm(x[:, 1:1 + k])
    return features.float(), inserted.float()
