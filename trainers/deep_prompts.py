"""Deep prompts of the MaPLe repository's family (IVLP, VPT, PromptSRC; MaPLe's context rule).

Independent vision-language prompts (IVLP, as in the MaPLe repository's ``trainers/independentVL.py``), with
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

MaPLe's coupled prompts (``MultiModalPromptLearner``, ``MaPLeCLIP``: text prompts projected into the
vision tower) live here too, for MaPLe and CoPrompt.

Initial values in upstream's order come from ``upstream_init.py``; the trainer base that remembers
the generator state they replay is ``trainer_base.DeepPromptTrainer``.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from .clip_backbone import ClipBackbone
from .models import StaticPromptCLIP
from .prompts import PromptLearner, clean_classname, encode_class_prompts, init_context
from .upstream_init import draw_prompts_in_upstream_order, random_prompts

MAX_INIT_WORDS = 4  # upstream initialises ctx from CTX_INIT only for N_CTX <= 4


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


def prompted_image_features(backbone: ClipBackbone, tower: Optional[DeepPromptTower], image: torch.Tensor) -> torch.Tensor:
    """f_v(x) through a vision tower with (optional) shallow and deep prompts, unnormalised: [B, E]."""
    if tower is None:
        return backbone.encode_image(image).features
    return backbone.encode_image(image, shallow_prompts=tower.shallow_prompts(), deep_prompts=tower.deep_prompts()).features


class IndependentVLCLIP(StaticPromptCLIP):
    """Frozen CLIP with independent deep prompts in both towers (``learnable``: a ``VLPrompts``)."""

    def raw_text_features(self) -> torch.Tensor:
        prompts = self.learnable
        learner = prompts.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.text_encoding,
                                    deep_prompts=prompts.text_encoder.deep_prompts(), normalize=False)   # [C, E]

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        return prompted_image_features(self.backbone, self.learnable.image_encoder, image)              # [B, E]


def build_vl_prompts(backbone: ClipBackbone, classnames: Sequence[str], options: CN, node: str,
                     rng_before_clip: Optional[torch.Tensor], method: str) -> VLPrompts:
    """IVLP-style prompts from ``TRAINER.<node>`` (N_CTX_TEXT/VISION, PROMPT_DEPTH_TEXT/VISION,
    CTX_INIT), initialised in upstream's order: the towers' prompts, then ``ctx``."""
    depth_t, depth_v = options.PROMPT_DEPTH_TEXT, options.PROMPT_DEPTH_VISION
    check_depth(depth_t, backbone, f"TRAINER.{node}.PROMPT_DEPTH_TEXT")
    if depth_v:
        check_depth(depth_v, backbone, f"TRAINER.{node}.PROMPT_DEPTH_VISION")
    n_v = options.N_CTX_VISION if depth_v else 0
    vision, text = draw_prompts_in_upstream_order(backbone, rng_before_clip, (n_v, depth_v),
                                                  (options.N_CTX_TEXT, depth_t))
    ctx, template = init_leading_context(backbone, options.N_CTX_TEXT, options.CTX_INIT)
    print(f'{method}: text template "{template}", {ctx.shape[0]} text tokens to depth {depth_t}, '
          f"{n_v if n_v else 0} vision tokens to depth {depth_v}")
    learner = PromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
    return VLPrompts(learner, DeepPromptTower(vision, shallow=True) if vision else None,
                     DeepPromptTower(text, shallow=False))


# --------------------------------------------------------------------------------------------
# MaPLe's coupled prompts (MaPLe, CoPrompt)
# --------------------------------------------------------------------------------------------
class MultiModalPromptLearner(PromptLearner):
    """ctx [n, D_t], F_0 ``proj``, deep text prompts ``compound_prompts_text`` (J-1 × [n, D_t]) and
    their couplings ``compound_prompt_projections`` (J-1 × Linear), named and shaped as upstream.

    The J-1 couplings start as copies of one randomly initialised Linear (upstream does the same).
    """

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], ctx_vectors: torch.Tensor,
                 template_prefix: str, depth: int, truncate: bool = True):
        super().__init__(backbone, classnames, ctx_vectors, template_prefix, truncate=truncate)
        n, d_t, d_v = self.n_ctx, backbone.text_width, backbone.vision_width
        self.proj = nn.Linear(d_t, d_v)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(random_prompts(n, d_t)) for _ in range(depth - 1)])
        coupling = nn.Linear(d_t, d_v)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(coupling) for _ in range(depth - 1)])

    def deep_text_prompts(self) -> List[torch.Tensor]:
        return list(self.compound_prompts_text)

    def vision_prompts(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Coupled visual prompts: shallow F_0(ctx) [n, D_v] and deep F_j(P_t^j), j = 1..J-1."""
        deep = [f(p) for f, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


class MultiModalPrompts(nn.Module):
    """The registered module: only learnable tensors, under upstream's ``prompt_learner.`` prefix,
    so upstream checkpoints (the whole CustomCLIP) load with their frozen CLIP keys ignored."""

    def __init__(self, prompt_learner: MultiModalPromptLearner):
        super().__init__()
        self.prompt_learner = prompt_learner


class MaPLeCLIP(StaticPromptCLIP):
    """Frozen CLIP with MaPLe's coupled prompts (``learnable``: ``MultiModalPrompts``)."""

    def raw_text_features(self) -> torch.Tensor:
        learner = self.learnable.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.text_encoding,
                                    deep_prompts=learner.deep_text_prompts(), normalize=False)   # [C, E]

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Image features through the prompted vision tower, unnormalised [B, E]."""
        shallow, deep = self.learnable.prompt_learner.vision_prompts()
        return self.backbone.encode_image(image, shallow_prompts=shallow, deep_prompts=deep).features


def build_maple_learner(backbone: ClipBackbone, classnames: Sequence[str], options: CN, node: str
                        ) -> Tuple[MultiModalPromptLearner, str]:
    """MaPLe's prompt learner from ``TRAINER.<node>`` (N_CTX, CTX_INIT, PROMPT_DEPTH, TRUNCATE_TEXT),
    and the template its context starts from."""
    check_depth(options.PROMPT_DEPTH, backbone, f"TRAINER.{node}.PROMPT_DEPTH")
    ctx, template = init_leading_context(backbone, options.N_CTX, options.CTX_INIT)
    learner = MultiModalPromptLearner(backbone, classnames, ctx, template, options.PROMPT_DEPTH,
                                      truncate=options.TRUNCATE_TEXT)
    return learner, template
