"""Initial prompts with upstream's values for the same seed (IVLP, VPT, PromptSRC; MaPLe repository
family), and the draws of the extra CLIPs upstream builds (PromptSRC's teachers, ProGrad's).

Upstream's patched CLIP draws every deep prompt N(0, 0.02²) inside its own constructor, between
CLIP's default initialisations, before the prompt learner draws a random ``ctx``. Our CLIP is not
patched, so ``draw_prompts_in_upstream_order`` replays that construction from the generator state
CLIP was built from: the same seed gives bitwise upstream's initial prompts and leaves the generator
where upstream's is.
"""
from __future__ import annotations

import contextlib
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn

from .clip_backbone import ClipBackbone

PROMPT_STD = 0.02


def random_prompts(n: int, width: int) -> torch.Tensor:
    """One prompt tensor [n, width] ~ N(0, 0.02²), drawn on the CPU as upstream does."""
    return nn.init.normal_(torch.empty(n, width), std=PROMPT_STD)


@contextlib.contextmanager
def replaying_from(state: torch.Tensor):
    """Run a block on the CPU generator started from ``state``; restore the current state after."""
    current = torch.get_rng_state()
    torch.set_rng_state(state)
    try:
        yield
    finally:
        torch.set_rng_state(current)


def _redo_block_init(width: int) -> None:
    """The draws of one CLIP ``ResidualAttentionBlock`` constructor (attention, then the 4x MLP)."""
    nn.MultiheadAttention(width, 1)
    nn.Linear(width, 4 * width)
    nn.Linear(4 * width, width)


def _replay_blocks(num_blocks: int, width: int, n: int, depth: int) -> List[torch.Tensor]:
    """Replay the first ``num_blocks`` blocks of a tower: block j draws its weights, then (for
    1 <= j < depth) its prompts [n, width]. Returns the prompts."""
    prompts = []
    for j in range(num_blocks):
        _redo_block_init(width)
        if 1 <= j < depth:
            prompts.append(random_prompts(n, width))
    return prompts


def replay_clip_init(backbone: ClipBackbone, vision: Tuple[int, int] = (0, 0), text: Tuple[int, int] = (0, 0),
                     whole: bool = True) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Make the global CPU generator's draws of building an OpenAI ViT CLIP of ``backbone``'s
    shapes, with the prompts upstream's patched constructor draws in between; return them as
    (vision, text) lists.

    ``vision`` = (n_v, J_v) gives [VPT, VPT_shallow_1..J_v-1] (none for J_v = 0 or n_v = 0);
    ``text`` = (n_t, J_t) gives [VPT_shallow_1..J_t-1]. The order (MaPLe and PromptSRC repositories):

        vision: conv1 · VPT · class embedding · positional embedding
                · for block j: its weights, then VPT_shallow_j (1 <= j < J_v) · proj
        text:   for block j: its weights, then VPT_shallow_j (1 <= j < J_t)
        then:   token embedding · CLIP.initialize_parameters (text weights, text projection)

    Scratch modules of the same widths make the draws (one block at a time); the shapes come from
    the backbone interface, so any library's model of the same widths replays the same draws.
    ``whole=False`` stops after the last prompt.
    """
    (n_v, depth_v), (n_t, depth_t) = vision, text
    if not (n_v and depth_v):
        n_v = depth_v = 0
    if not (n_t and depth_t):
        n_t = depth_t = 0
    width_v, width_t, embed_dim = backbone.vision_width, backbone.text_width, backbone.embed_dim
    blocks_v, blocks_t = backbone.num_vision_layers, backbone.num_text_layers
    text_prompts_follow = whole or depth_t > 1

    nn.Conv2d(3, width_v, backbone.patch_size, backbone.patch_size, bias=False)
    vision_prompts = [random_prompts(n_v, width_v)] if depth_v else []
    torch.randn(width_v)                                   # class embedding
    torch.randn(backbone.num_image_tokens, width_v)        # positional embedding
    vision_prompts += _replay_blocks(blocks_v if text_prompts_follow else depth_v, width_v, n_v, depth_v)
    if not text_prompts_follow:
        return vision_prompts, []
    torch.randn(width_v, embed_dim)                        # proj
    text_prompts = _replay_blocks(blocks_t if whole else depth_t, width_t, n_t, depth_t)
    if whole:
        token_embedding = (backbone.vocab_size, width_t)
        nn.Embedding(*token_embedding)
        nn.init.normal_(torch.empty(token_embedding))                                   # initialize_parameters
        nn.init.normal_(torch.empty(backbone.context_length, width_t))
        for _ in range(blocks_t):  # in_proj, out_proj, c_fc, c_proj
            for shape in ((3 * width_t, width_t), (width_t, width_t), (4 * width_t, width_t), (width_t, 4 * width_t)):
                nn.init.normal_(torch.empty(shape))
        nn.init.normal_(torch.empty(width_t, embed_dim))
    return vision_prompts, text_prompts


def draw_prompts_in_upstream_order(backbone: ClipBackbone, rng_before_clip: Optional[torch.Tensor],
                                   vision: Tuple[int, int], text: Tuple[int, int]
                                   ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Initial prompts with upstream's values for the same seed: (vision, text) lists, as in
    ``replay_clip_init``.

    Upstream draws them inside its CLIP constructor, between CLIP's own initialisations. Our CLIP
    was built (the same draws minus the prompts) from ``rng_before_clip``: that construction is
    replayed from there up to the last prompt. The generator then continues from where it stood,
    advanced by the prompts' draws (a stream: their place does not change how much they consume),
    i.e. where upstream's stands when its prompt learner starts.
    """
    if rng_before_clip is None:  # CLIP was built elsewhere: upstream's order, not its values
        rng_before_clip = torch.get_rng_state()
    with replaying_from(rng_before_clip):
        vision_prompts, text_prompts = replay_clip_init(backbone, vision, text, whole=False)
    for prompt in vision_prompts + text_prompts:
        random_prompts(*prompt.shape)
    return vision_prompts, text_prompts


def replay_clip_construction(backbone: ClipBackbone, build_again: Callable[[], object]) -> None:
    """Advance the CPU generator as building one more CLIP like ``backbone``'s does, for upstream
    code that loads CLIP twice: ``replay_clip_init``'s scratch blocks for a ViT (no weights held),
    ``build_again()`` (which builds one, then drops it) for the other backbones."""
    if backbone.is_vit:
        replay_clip_init(backbone)
    else:
        build_again()
