"""Class prompts and the learnable context: what turns class names into text-tower input.

    [SOS] ctx_1 .. ctx_M <class name tokens> . [EOT] <pad>

* ``ClassPrompts``: the frozen part of a template "<words> <class name>." embedded once per class:
  the SOS buffer, the class-name/EOT buffer, and how a context [M, D] (shared), [C, M, D]
  (class-specific) or [B, M, D] (per image) is placed between them;
* ``PromptLearner``: ``ClassPrompts`` plus the learnable context ``ctx`` (CoOp's module, upstream
  key names ``ctx``, ``token_prefix``, ``token_suffix``);
* ``init_context`` / ``coop_context``: the initial context, from ``CTX_INIT`` words or N(0, 0.02²);
* ``TextEncoding`` and ``encode_class_prompts``: the text tower's speed settings (results
  unchanged) and the call that encodes assembled prompts with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .clip_backbone import ClipBackbone

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


# --------------------------------------------------------------------------------------------
# Initial context
# --------------------------------------------------------------------------------------------
def clean_classname(name: str) -> str:
    return name.replace("_", " ")


def init_context(backbone: ClipBackbone, n_ctx: int, ctx_init: str = "",
                 num_copies: int = 0) -> Tuple[torch.Tensor, str]:
    """Initial context vectors and the template words they stand in for.

    Upstream rule: a non-empty ``ctx_init`` wins and ``n_ctx`` becomes its number of words (the
    vectors are the words' token embeddings); otherwise ``n_ctx`` vectors are drawn from
    N(0, 0.02²) and the template is "X X ... X". ``num_copies`` > 0 draws one set per class (CSC).
    Returns fp32 vectors [n_ctx, D] (or [num_copies, n_ctx, D]) and the template prefix.
    """
    if ctx_init:
        words = clean_classname(ctx_init).split(" ")
        if n_ctx != len(words):
            print(f"Note: CTX_INIT {ctx_init!r} has {len(words)} words, so N_CTX={n_ctx} is ignored "
                  f"and {len(words)} context vectors are used (upstream rule).")
        if num_copies:
            raise ValueError("Class-specific context (CSC) is initialised randomly upstream: set CTX_INIT ''")
        prefix = " ".join(words)
        tokens = backbone.tokenize([prefix])
        vectors = backbone.embed_tokens(tokens)[0, 1:1 + len(words)].clone()
        return vectors, prefix
    if n_ctx < 1:
        raise ValueError(f"N_CTX must be >= 1 without CTX_INIT, got {n_ctx}")
    shape = (num_copies, n_ctx, backbone.text_width) if num_copies else (n_ctx, backbone.text_width)
    vectors = torch.empty(shape, device=backbone.device)
    nn.init.normal_(vectors, std=0.02)
    return vectors, " ".join(["X"] * n_ctx)


def coop_context(backbone: ClipBackbone, options, num_classes: int, ctx_init: Optional[str] = None
                 ) -> Tuple[torch.Tensor, str]:
    """``init_context`` with the keys of a ``TRAINER.COOP`` node (CoOp, KgCoOp, ProGrad): N_CTX,
    CTX_INIT (unless ``ctx_init`` overrides it) and CSC (one context per class)."""
    ctx_init = options.CTX_INIT if ctx_init is None else ctx_init
    return init_context(backbone, options.N_CTX, ctx_init, num_copies=num_classes if options.CSC else 0)


# --------------------------------------------------------------------------------------------
# Class prompts
# --------------------------------------------------------------------------------------------
class ClassPrompts(nn.Module):
    """The frozen part of "<template_prefix> <class name>." for every class, and prompt assembly.

    ``n_ctx`` leading template words are context slots (filled by ``assemble*``); the buffers are
    the embedded rest: ``token_prefix`` (SOS, [C, 1, D]) and ``token_suffix`` (positions
    1 + n_ctx .. T-1, [C, T-1-n_ctx, D]). ``template_prefix`` may hold more words than there are
    slots (MaPLe keeps "of a" of "a photo of a" as fixed text). Nothing here learns; subclasses add
    what does (``PromptLearner``'s ``ctx``).
    """

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], n_ctx: int, template_prefix: str,
                 class_token_position: str = "end", truncate: bool = True, class_specific: bool = False):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}, got {class_token_position!r}")
        names = [clean_classname(n) for n in classnames]
        self.n_cls = len(names)
        self.n_ctx = n_ctx
        self.class_token_position = class_token_position
        self.truncate = truncate
        self.class_specific = class_specific
        # Token counts of the names place them in "front"/"middle" prompts only. At the default
        # "end" they are not needed, and at ImageNet's 1000 classes encoding every name a second
        # time cost as much as tokenising the prompts (tools/rehearsal.py --profile).
        self.name_lens = [len(backbone.bpe_tokens(n)) for n in names] if class_token_position != "end" else None
        tokens = backbone.tokenize([f"{template_prefix} {name}." for name in names])   # [C, T]
        embedding = backbone.embed_tokens(tokens)                                        # [C, T, D]
        self.register_buffer("token_prefix", embedding[:, :1].clone())                    # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:].clone())            # CLS, EOT
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        self.register_buffer("eot", tokens.argmax(dim=-1), persistent=False)             # [C]
        self.common_prefix = common_prefix_length(tokens)

    @property
    def length(self) -> int:
        """Sequence length the text tower needs: up to the longest EOT, or the full context."""
        return int(self.eot.max()) + 1 if self.truncate else self.tokenized_prompts.shape[1]

    @property
    def shared_prefix(self) -> int:
        """Leading positions that all class prompts of one context have in common: SOS, the context
        and template words before the class name (the text tower runs them once per context).
        0 when the class name is not last or every class has its own context (CSC)."""
        return self.common_prefix if self.class_token_position == "end" and not self.class_specific else 0

    def suffix(self) -> torch.Tensor:
        return self.token_suffix[:, : self.length - 1 - self.n_ctx]

    def assemble(self, ctx: torch.Tensor) -> torch.Tensor:
        """Prompts [C, T', D] for a class-shared [M, D] or class-specific [C, M, D] context."""
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.suffix()
        ctx = ctx.to(prefix.dtype)
        if self.class_token_position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        return torch.stack([self._place_class_tokens(prefix[i], ctx[i], suffix[i], self.name_lens[i])
                            for i in range(self.n_cls)])

    def _place_class_tokens(self, prefix, ctx, suffix, name_len):
        name, rest = suffix[:name_len], suffix[name_len:]
        if self.class_token_position == "front":
            return torch.cat([prefix, name, ctx, rest])
        half = self.n_ctx // 2  # "middle": ctx halves around the class name
        return torch.cat([prefix, ctx[:half], name, ctx[half:], rest])

    def assemble_per_image(self, ctx: torch.Tensor) -> torch.Tensor:
        """Prompts [B, C, T', D] for a per-image context [B, M, D] (CoCoOp, GOPro, StyLIP)."""
        b = ctx.shape[0]
        prefix = self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1)
        suffix = self.suffix().unsqueeze(0).expand(b, -1, -1, -1)
        ctx = ctx.to(prefix.dtype).unsqueeze(1).expand(-1, self.n_cls, -1, -1)
        return torch.cat([prefix, ctx, suffix], dim=2)


class PromptLearner(ClassPrompts):
    """CoOp's prompts: ``ClassPrompts`` whose context slots hold the learnable ``ctx``.

    ``ctx_vectors`` [M, D] (shared) or [C, M, D] (class-specific, CSC) sets M and the initial
    values. Names and shapes equal upstream CoOp's, so checkpoints are interchangeable.
    """

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], ctx_vectors: torch.Tensor,
                 template_prefix: str, class_token_position: str = "end", truncate: bool = True):
        super().__init__(backbone, classnames, ctx_vectors.shape[-2], template_prefix, class_token_position,
                         truncate, class_specific=ctx_vectors.dim() == 3)
        self.ctx = nn.Parameter(ctx_vectors.float())

    def assemble(self, ctx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Prompts [C, T', D] for ``ctx`` (default: the learned context)."""
        return super().assemble(self.ctx if ctx is None else ctx)


def common_prefix_length(tokens: torch.Tensor) -> int:
    """Number of leading token ids [C, T] that all rows share, capped so every EOT stays after it."""
    differs = (tokens != tokens[:1]).any(dim=0)
    common = int(differs.int().argmax()) if bool(differs.any()) else tokens.shape[1]
    return min(common, int(tokens.argmax(dim=-1).min()))


# --------------------------------------------------------------------------------------------
# Encoding prompts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextEncoding:
    """How the text tower runs over prompts: speed and memory only, the features are the same.

    ``truncate``: only up to the longest EOT, in buckets of similar length, the positions the C
    prompts of one image share once per image; ``chunk``: at most this many sequences per call
    (0 = all at once); ``checkpointing``: recompute activations in backward.
    """

    truncate: bool = True
    chunk: int = 0
    checkpointing: bool = False

    @classmethod
    def from_options(cls, options) -> "TextEncoding":
        """From a method's ``TRUNCATE_TEXT``, ``TEXT_CHUNK`` and ``CHECKPOINT_TEXT`` keys."""
        return cls(options.TRUNCATE_TEXT, options.TEXT_CHUNK, options.CHECKPOINT_TEXT)


def encode_class_prompts(backbone: ClipBackbone, template: ClassPrompts, prompts: torch.Tensor,
                         encoding: TextEncoding, deep_prompts=None, normalize: bool = True) -> torch.Tensor:
    """Text features for prompts [..., C, T', D] → [..., C, E], normalised unless ``normalize`` is False.

    Per-image prompts [B, C, T', D] (CoCoOp, GOPro, StyLIP) cost B·C sequences; with
    ``encoding.truncate`` the positions the C prompts of one image share (SOS + context,
    ``template.shared_prefix``) run once per image instead of C times.
    Class-shared prompts [C, T', D] run once per step, where sharing would save little.
    """
    lead = prompts.shape[:-2]
    flat = prompts.reshape(-1, *prompts.shape[-2:])
    eot = template.eot.repeat(flat.shape[0] // template.n_cls)
    per_image = prompts.dim() > 3
    features = backbone.encode_text(flat, eot, deep_prompts=deep_prompts, truncate=encoding.truncate,
                                    chunk_size=encoding.chunk, checkpointing=encoding.checkpointing,
                                    shared_prefix=template.shared_prefix if encoding.truncate and per_image else 0,
                                    group_size=template.n_cls)
    return (F.normalize(features, dim=-1) if normalize else features).reshape(*lead, -1)
