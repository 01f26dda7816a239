"""Deep prompts of the MaPLe repository's family (IVLP, VPT, PromptSRC; MaPLe's context rule).

Independent vision-language prompts (methods spec §5.3, modern-baselines spec §2.1), with
n_t / n_v tokens and depths J_t / J_v:

    text:   [SOS] ctx_1..ctx_{n_t} <rest of CTX_INIT> <class> . [EOT]; before text block
            j = 1..J_t-1 positions 1..n_t are overwritten by that block's prompts [n_t, D_t]
    vision: ``VPT`` [n_v, D_v] appended after the patch tokens (before ln_pre); before vision block
            j = 1..J_v-1 the last n_v tokens are overwritten by that block's prompts [n_v, D_v]

All of it runs through ``ClipBackbone``'s shallow/deep prompt arguments (CLIP is not patched).
The learnable tensors live in modules named like upstream's whole-model checkpoints
(``prompt_learner.ctx``, ``image_encoder.VPT``,
``{image,text}_encoder.transformer.resblocks.<j>.VPT_shallow``), so those checkpoints load with
their frozen CLIP weights ignored.

Initial values in upstream's order: upstream's patched CLIP draws every prompt N(0, 0.02²) inside
its own constructor, between CLIP's default initialisations, before the prompt learner draws a
random ``ctx``. ``draw_prompts_in_upstream_order`` replays that construction from the generator
state CLIP was built from, so the same seed gives bitwise upstream's initial prompts (and leaves
the generator where upstream's is).
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from .clip_backbone import ClipBackbone
from .models import StaticPromptCLIP
from .prompts import PromptLearner, clean_classname, encode_class_prompts, init_context
from .trainer_base import ClipPromptTrainer

MAX_INIT_WORDS = 4  # upstream initialises ctx from CTX_INIT only for N_CTX <= 4
PROMPT_STD = 0.02


# --------------------------------------------------------------------------------------------
# Checks and the text context
# --------------------------------------------------------------------------------------------
def check_depth(depth: int, backbone: ClipBackbone, key: str) -> None:
    backbone.require_vit("Deep visual prompts")
    layers = min(backbone.num_vision_layers, backbone.num_text_layers)
    if not 1 <= depth <= layers:
        raise ValueError(f"{key}={depth} must lie in 1..{layers} (the number of transformer blocks of this backbone).")


def init_leading_context(backbone: ClipBackbone, n_ctx: int, ctx_init: str) -> Tuple[torch.Tensor, str]:
    """MaPLe/IVLP context: the first ``n_ctx`` words of ``ctx_init`` become learnable, the template
    keeps all of its words (so the later ones stay as fixed text). Without ``ctx_init``, or with
    ``n_ctx`` > 4 (upstream rule), ``n_ctx`` random vectors and the template "X X ... X"."""
    if not ctx_init or n_ctx > MAX_INIT_WORDS:
        if ctx_init:
            print(f"Note: N_CTX={n_ctx} > {MAX_INIT_WORDS}, so CTX_INIT {ctx_init!r} is not used (upstream rule).")
        return init_context(backbone, n_ctx)
    words = clean_classname(ctx_init).split(" ")
    if n_ctx > len(words):
        raise ValueError(f"N_CTX={n_ctx} context vectors cannot start from the {len(words)} words of CTX_INIT "
                         f"{ctx_init!r}: use N_CTX <= {len(words)}, a longer CTX_INIT, or CTX_INIT ''.")
    vectors, template = init_context(backbone, len(words), ctx_init)
    return vectors[:n_ctx].clone(), template


# --------------------------------------------------------------------------------------------
# Initial prompts, drawn as upstream's CLIP constructor draws them
# --------------------------------------------------------------------------------------------
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


def replay_clip_init(clip_model: nn.Module, vision: Tuple[int, int] = (0, 0), text: Tuple[int, int] = (0, 0),
                     whole: bool = True) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Make the global CPU generator's draws of building a ViT CLIP like ``clip_model``, with the
    prompts upstream's patched constructor draws in between; return them as (vision, text) lists.

    ``vision`` = (n_v, J_v) gives [VPT, VPT_shallow_1..J_v-1] (none for J_v = 0 or n_v = 0);
    ``text`` = (n_t, J_t) gives [VPT_shallow_1..J_t-1]. The order (MaPLe and PromptSRC repositories):

        vision: conv1 · VPT · class embedding · positional embedding
                · for block j: its weights, then VPT_shallow_j (1 <= j < J_v) · proj
        text:   for block j: its weights, then VPT_shallow_j (1 <= j < J_t)
        then:   token embedding · CLIP.initialize_parameters (text weights, text projection)

    Scratch modules of the same widths make the draws (one block at a time). ``whole=False`` stops
    after the last prompt.
    """
    visual = clip_model.visual
    (n_v, depth_v), (n_t, depth_t) = vision, text
    if not (n_v and depth_v):
        n_v = depth_v = 0
    if not (n_t and depth_t):
        n_t = depth_t = 0
    width_v, width_t = visual.conv1.out_channels, clip_model.ln_final.weight.shape[0]
    blocks_v, blocks_t = len(visual.transformer.resblocks), len(clip_model.transformer.resblocks)
    text_prompts_follow = whole or depth_t > 1

    conv = visual.conv1
    nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=False)
    vision_prompts = [random_prompts(n_v, width_v)] if depth_v else []
    torch.randn(visual.class_embedding.shape)
    torch.randn(visual.positional_embedding.shape)
    vision_prompts += _replay_blocks(blocks_v if text_prompts_follow else depth_v, width_v, n_v, depth_v)
    if not text_prompts_follow:
        return vision_prompts, []
    torch.randn(visual.proj.shape)
    text_prompts = _replay_blocks(blocks_t if whole else depth_t, width_t, n_t, depth_t)
    if whole:
        nn.Embedding(*clip_model.token_embedding.weight.shape)
        nn.init.normal_(torch.empty(clip_model.token_embedding.weight.shape))          # initialize_parameters
        nn.init.normal_(torch.empty(clip_model.positional_embedding.shape))
        for block in clip_model.transformer.resblocks:
            for weight in (block.attn.in_proj_weight, block.attn.out_proj.weight, block.mlp.c_fc.weight,
                           block.mlp.c_proj.weight):
                nn.init.normal_(torch.empty(weight.shape))
        nn.init.normal_(torch.empty(clip_model.text_projection.shape))
    return vision_prompts, text_prompts


def draw_prompts_in_upstream_order(clip_model: nn.Module, rng_before_clip: Optional[torch.Tensor],
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
        vision_prompts, text_prompts = replay_clip_init(clip_model, vision, text, whole=False)
    for prompt in vision_prompts + text_prompts:
        random_prompts(*prompt.shape)
    return vision_prompts, text_prompts


class DeepPromptTrainer(ClipPromptTrainer):
    """A ``ClipPromptTrainer`` that remembers the generator state CLIP was built from
    (``rng_before_clip``), which ``draw_prompts_in_upstream_order`` replays."""

    rng_before_clip: Optional[torch.Tensor] = None

    def build_model(self):
        self.rng_before_clip = torch.get_rng_state()
        super().build_model()

    def vl_prompts(self, backbone: ClipBackbone, classnames: Sequence[str]) -> "VLPrompts":
        """Independent prompts in both towers from this trainer's options (``build_vl_prompts``)."""
        return build_vl_prompts(backbone, classnames, self.options, self.CFG_NODE, self.rng_before_clip,
                                type(self).__name__)


# --------------------------------------------------------------------------------------------
# Modules (upstream key names)
# --------------------------------------------------------------------------------------------
class BlockPrompt(nn.Module):
    """The prompts one transformer block owns (``VPT_shallow``, as upstream names them)."""

    def __init__(self, prompts: torch.Tensor):
        super().__init__()
        self.VPT_shallow = nn.Parameter(prompts)


class DeepPromptTower(nn.Module):
    """Deep prompts of one tower: ``transformer.resblocks.<j>.VPT_shallow`` for blocks j = 1..depth-1,
    plus (vision only) the shallow prompts ``VPT`` appended before ``ln_pre``.

    ``prompts``: [VPT, VPT_shallow_1, ...] with ``shallow``, else [VPT_shallow_1, ...]; each [n, D].
    """

    def __init__(self, prompts: Sequence[torch.Tensor], shallow: bool):
        super().__init__()
        prompts = list(prompts)
        if shallow:
            self.VPT = nn.Parameter(prompts.pop(0))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleDict({str(j): BlockPrompt(p) for j, p in enumerate(prompts, start=1)})

    def shallow_prompts(self) -> Optional[torch.Tensor]:
        return getattr(self, "VPT", None)

    def deep_prompts(self) -> List[torch.Tensor]:
        return [block.VPT_shallow for block in self.transformer.resblocks.values()]


class VLPrompts(nn.Module):
    """The registered ``VLPromptLearner`` module (learnable tensors only, upstream key names)."""

    def __init__(self, prompt_learner: PromptLearner, image_encoder: Optional[DeepPromptTower],
                 text_encoder: DeepPromptTower):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder


def prompted_image_embedding(backbone: ClipBackbone, tower: Optional[DeepPromptTower], image: torch.Tensor) -> torch.Tensor:
    """normalize(f_v(x)) through a vision tower with (optional) shallow and deep prompts: [B, E]."""
    if tower is None:
        features = backbone.encode_image(image).features
    else:
        features = backbone.encode_image(image, shallow_prompts=tower.shallow_prompts(),
                                         deep_prompts=tower.deep_prompts()).features
    return F.normalize(features, dim=-1)


class IndependentVLCLIP(StaticPromptCLIP):
    """Frozen CLIP with independent deep prompts in both towers (``learnable``: a ``VLPrompts``)."""

    def text_features(self) -> torch.Tensor:
        prompts = self.learnable
        learner = prompts.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.text_encoding,
                                    deep_prompts=prompts.text_encoder.deep_prompts())                # [C, E]

    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        return prompted_image_embedding(self.backbone, self.learnable.image_encoder, image)          # [B, E]


def build_vl_prompts(backbone: ClipBackbone, classnames: Sequence[str], options: CN, node: str,
                     rng_before_clip: Optional[torch.Tensor], method: str) -> VLPrompts:
    """IVLP-style prompts from ``TRAINER.<node>`` (N_CTX_TEXT/VISION, PROMPT_DEPTH_TEXT/VISION,
    CTX_INIT), initialised in upstream's order: the towers' prompts, then ``ctx``."""
    depth_t, depth_v = options.PROMPT_DEPTH_TEXT, options.PROMPT_DEPTH_VISION
    check_depth(depth_t, backbone, f"TRAINER.{node}.PROMPT_DEPTH_TEXT")
    if depth_v:
        check_depth(depth_v, backbone, f"TRAINER.{node}.PROMPT_DEPTH_VISION")
    n_v = options.N_CTX_VISION if depth_v else 0
    vision, text = draw_prompts_in_upstream_order(backbone.clip, rng_before_clip, (n_v, depth_v),
                                                  (options.N_CTX_TEXT, depth_t))
    ctx, template = init_leading_context(backbone, options.N_CTX_TEXT, options.CTX_INIT)
    print(f'{method}: text template "{template}", {ctx.shape[0]} text tokens to depth {depth_t}, '
          f"{n_v if n_v else 0} vision tokens to depth {depth_v}")
    learner = PromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
    return VLPrompts(learner, DeepPromptTower(vision, shallow=True) if vision else None,
                     DeepPromptTower(text, shallow=False))
