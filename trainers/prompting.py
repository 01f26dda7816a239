"""What every CLIP prompt learner shares.

* config keys common to all methods (``add_prompt_keys``);
* the CoOp context: "<ctx words> <class name>." templates, SOS prefix / class suffix buffers,
  context initialised from ``CTX_INIT`` or N(0, 0.02²) (``init_context``, ``PromptLearner``);
* prompt assembly for class-shared, class-specific and per-image contexts, cut at the longest
  end-of-text token so the text tower only runs over the positions that matter;
* ``ClipPromptTrainer``: the Dassl ``TrainerX`` plumbing (backbone, precision policy, optimizer
  registration, batch parsing, loss/accuracy logging, upstream-compatible checkpoint loading).

Only the Dassl API that upstream Dassl also has is used here, so every trainer built on this runs
on upstream Dassl.pytorch unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.data import DataManager
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint

from .clip_backbone import PRECISIONS, ClipBackbone, build_backbone

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
def add_prompt_keys(cfg, node_name: str, **defaults) -> CN:
    """Create ``cfg.TRAINER.<node_name>`` with the keys every prompt learner has.

    Upstream keys: N_CTX, CTX_INIT, PREC. Ours (speed only, results unchanged):
    TRUNCATE_TEXT (run the text tower only where it matters: up to the EOT, in buckets of similar
    length, per-image prefixes once per image), TEXT_CHUNK (max sequences per text-tower call,
    0 = all at once), CHECKPOINT_TEXT (recompute text activations in backward).
    """
    node = CN()
    node.N_CTX = 16
    node.CTX_INIT = ""
    node.PREC = "fp16"
    node.TRUNCATE_TEXT = True
    node.TEXT_CHUNK = 0
    node.CHECKPOINT_TEXT = False
    for key, value in defaults.items():
        setattr(node, key, value)
    setattr(cfg.TRAINER, node_name, node)
    return node


def add_coop_keys(cfg, **extra) -> CN:
    """``cfg.TRAINER.COOP``: CoOp's node, which upstream KgCoOp and ProGrad read as well (KgCoOp adds
    ``W``). Every call keeps the keys earlier calls added, so the methods' hooks run in any order."""
    kept = dict(cfg.TRAINER.get("COOP", {}))
    return add_prompt_keys(cfg, "COOP", **{"CSC": False, "CLASS_TOKEN_POSITION": "end", **kept, **extra})


def check_choices(node: CN, node_name: str, choices: Dict[str, Sequence]) -> None:
    """Raise a ValueError naming ``TRAINER.<node_name>.<KEY>`` for the first value outside its choices."""
    for key, allowed in choices.items():
        if node[key] not in allowed:
            raise ValueError(f"TRAINER.{node_name}.{key} must be one of {tuple(allowed)}, got {node[key]!r}")


# --------------------------------------------------------------------------------------------
# Context vectors and class prompts
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


class PromptLearner(nn.Module):
    """CoOp-style prompts: [SOS] ctx_1 .. ctx_M <class name tokens> . [EOT] <pad>.

    Holds the learnable ``ctx`` and two frozen buffers taken from the embedded template
    "<template_prefix> <class name>.": ``token_prefix`` (SOS, [C, 1, D]) and ``token_suffix``
    (positions 1 + M .. T-1, [C, T-1-M, D]). Names and shapes equal upstream CoOp's, so
    checkpoints are interchangeable. ``template_prefix`` may hold more words than there are
    context vectors (MaPLe keeps "of a" of "a photo of a" as fixed text).
    """

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], ctx_vectors: torch.Tensor,
                 template_prefix: str, class_token_position: str = "end", truncate: bool = True):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}, got {class_token_position!r}")
        names = [clean_classname(n) for n in classnames]
        self.n_cls = len(names)
        self.n_ctx = ctx_vectors.shape[-2]
        self.class_token_position = class_token_position
        self.truncate = truncate
        self.name_lens = [len(bpe_tokens(n)) for n in names]
        tokens = backbone.tokenize([f"{template_prefix} {name}." for name in names])   # [C, T]
        embedding = backbone.embed_tokens(tokens)                                        # [C, T, D]
        self.ctx = nn.Parameter(ctx_vectors.float())
        self.register_buffer("token_prefix", embedding[:, :1].clone())                    # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx:].clone())       # CLS, EOT
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        self.register_buffer("eot", tokens.argmax(dim=-1), persistent=False)             # [C]
        self.class_specific = ctx_vectors.dim() == 3
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

    def assemble(self, ctx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Prompts [C, T', D] for a class-shared [M, D] or class-specific [C, M, D] context."""
        ctx = self.ctx if ctx is None else ctx
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


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from clip.simple_tokenizer import SimpleTokenizer
    return SimpleTokenizer()


def bpe_tokens(text: str) -> List[int]:
    """BPE ids of ``text`` without SOS/EOT (to locate class-name tokens inside a prompt)."""
    return _tokenizer().encode(text)


def common_prefix_length(tokens: torch.Tensor) -> int:
    """Number of leading token ids [C, T] that all rows share, capped so every EOT stays after it."""
    differs = (tokens != tokens[:1]).any(dim=0)
    common = int(differs.int().argmax()) if bool(differs.any()) else tokens.shape[1]
    return min(common, int(tokens.argmax(dim=-1).min()))


def encode_class_prompts(backbone: ClipBackbone, learner: PromptLearner, prompts: torch.Tensor,
                         options: CN, deep_prompts=None) -> torch.Tensor:
    """Normalised text features for prompts [..., C, T', D] → [..., C, E].

    Per-image prompts [B, C, T', D] (CoCoOp, GOPro, StyLIP) cost B·C sequences; with
    ``TRUNCATE_TEXT`` the positions the C prompts of one image share (SOS + context,
    ``learner.shared_prefix``) run once per image instead of C times (methods spec §11.4, item 2).
    Class-shared prompts [C, T', D] run once per step, where sharing would save little.
    """
    lead = prompts.shape[:-2]
    flat = prompts.reshape(-1, *prompts.shape[-2:])
    eot = learner.eot.repeat(flat.shape[0] // learner.n_cls)
    per_image = prompts.dim() > 3
    features = backbone.encode_text(flat, eot, deep_prompts=deep_prompts, truncate=options.TRUNCATE_TEXT,
                                    chunk_size=options.TEXT_CHUNK, checkpointing=options.CHECKPOINT_TEXT,
                                    shared_prefix=learner.shared_prefix if options.TRUNCATE_TEXT and per_image else 0,
                                    group_size=learner.n_cls)
    return F.normalize(features, dim=-1).reshape(*lead, -1)


def clip_logits(backbone: ClipBackbone, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """100·cos logits. ``image_features`` [B, E] normalised; text [C, E] or per image [B, C, E]."""
    scale = backbone.logit_scale
    if text_features.dim() == 2:
        return scale * image_features @ text_features.t()
    return scale * torch.einsum("be,bce->bc", image_features, text_features)


def in_image_groups(forward, image: torch.Tensor, num_classes: int, text_chunk: int) -> torch.Tensor:
    """``forward`` applied to groups of images, outputs concatenated along the batch.

    For image-conditioned prompts (CoCoOp, StyLIP) one image costs ``num_classes`` text sequences;
    groups of max(1, ``text_chunk`` // ``num_classes``) images keep a call at about ``text_chunk``
    sequences (0 = the whole batch at once).
    """
    group = max(1, text_chunk // num_classes) if text_chunk > 0 else image.shape[0]
    return torch.cat([forward(part) for part in image.split(group)])


class TextFeatureCache:
    """Mixin for models whose class text features do not depend on the image (ZS-CLIP, CoOp, MaPLe).

    While caching is switched on (during ``test()``), ``cached(compute)`` encodes the prompts once
    and reuses them for every test batch; otherwise it recomputes (training needs gradients).
    """

    _cache_on = False
    _cache = None

    def cached(self, compute):
        if not self._cache_on:
            return compute()
        if self._cache is None:
            self._cache = compute()
        return self._cache

    @contextlib.contextmanager
    def caching(self):
        self._cache_on, self._cache = True, None
        try:
            yield
        finally:
            self._cache_on, self._cache = False, None


# --------------------------------------------------------------------------------------------
# Models: frozen CLIP + the module of everything a method learns
# --------------------------------------------------------------------------------------------
class PromptedCLIP(nn.Module):
    """Frozen CLIP (``backbone``) plus one module holding all a method learns.

    That module sits under the attribute named by ``LEARNABLE`` (upstream's name, e.g.
    ``prompt_learner``) and is exposed as ``learnable``: ``ClipPromptTrainer`` optimises and
    checkpoints it, and never saves the frozen CLIP. Subclasses define how images become logits.
    """

    LEARNABLE = "prompt_learner"
    stats_eps: float  # added to the token variance in ``encode_with_stats``; set by the methods using it

    def __init__(self, backbone: ClipBackbone, learnable: nn.Module, options: Optional[CN] = None):
        super().__init__()
        self.backbone = backbone
        setattr(self, self.LEARNABLE, learnable)
        self.options = options

    @property
    def learnable(self) -> nn.Module:
        return getattr(self, self.LEARNABLE)

    @torch.no_grad()
    def frozen_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP image features, normalised [N, E]."""
        return F.normalize(self.backbone.encode_image(images).features, dim=-1)

    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        """The image side of the logits: frozen CLIP unless a method overrides it, [B, E]."""
        return self.frozen_embedding(image)

    @torch.no_grad()
    def encode_with_stats(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen pass for style-conditioned prompts (StyLIP, GOPro): normalised features ẑ [N, E]
        and per-layer token mean/std [N, L, D_v] over ``options.STATS_TOKENS``."""
        out = self.backbone.encode_image(images, with_stats=True, stats_tokens=self.options.STATS_TOKENS,
                                         stats_eps=self.stats_eps)
        return F.normalize(out.features, dim=-1), out.token_mean, out.token_std


class StaticPromptCLIP(TextFeatureCache, PromptedCLIP):
    """Prompts that do not depend on the image (CoOp, MaPLe, IVLP): C text sequences per step, and
    one encoding of them per evaluation (``TextFeatureCache``)."""

    def text_features(self) -> torch.Tensor:
        """Normalised class features [C, E]."""
        raise NotImplementedError

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return clip_logits(self.backbone, self.visual_embedding(image), self.cached(self.text_features))


class FixedTextCLIP(PromptedCLIP):
    """Class features encoded once when the model is built (VPT, SLIP-style): nothing learnable
    on the text side. The buffer is not saved: it is rebuilt from the class names."""

    def __init__(self, backbone: ClipBackbone, learnable: nn.Module, class_features: torch.Tensor,
                 options: Optional[CN] = None):
        super().__init__(backbone, learnable, options)
        self.register_buffer("class_features", class_features, persistent=False)    # [C, E]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return clip_logits(self.backbone, self.visual_embedding(image), self.class_features)


class InstancePromptCLIP(PromptedCLIP):
    """Prompts conditioned on each image (CoCoOp, StyLIP, GOPro): B·C text sequences per batch.

    Subclasses give ``image_logits`` (logits of a group of images [b, C]); evaluation runs the
    images in groups of about ``TEXT_CHUNK`` text sequences.
    """

    @property
    def num_classes(self) -> int:
        """C, from the prompt learner (the learnable module itself, or its ``prompt_learner``)."""
        learnable = self.learnable
        return getattr(learnable, "prompt_learner", learnable).n_cls

    def image_logits(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return in_image_groups(self.image_logits, image, self.num_classes, self.options.TEXT_CHUNK)


# --------------------------------------------------------------------------------------------
# Trainer plumbing
# --------------------------------------------------------------------------------------------
class ClipPromptTrainer(TrainerX):
    """Base ``TrainerX`` for CLIP prompt learners.

    Subclasses set ``CFG_NODE`` (e.g. ``"COOP"``) and ``MODEL_NAME`` (the registered name, as
    upstream), and implement ``build_clip_model(backbone, classnames)`` returning an ``nn.Module``
    with a ``learnable`` attribute (the module saved in checkpoints; the frozen CLIP never is) and
    ``compute_loss(batch) -> (loss, summary)``. Evaluation calls ``self.model(image)``.
    """

    CFG_NODE = ""
    MODEL_NAME = "prompt_learner"
    CHOICES: Dict[str, Sequence] = {}  # TRAINER.<CFG_NODE>.<KEY> → allowed values, checked with PREC

    @property
    def method_cfg(self) -> CN:
        """``cfg.TRAINER.<CFG_NODE>``, completed by ``method_options``."""
        if getattr(self, "_method_cfg", None) is None:
            self._method_cfg = self.method_options(self.cfg)
        return self._method_cfg

    @classmethod
    def method_options(cls, cfg) -> CN:
        """``cfg.TRAINER.<CFG_NODE>`` with every key this trainer reads (a frozen copy).

        Our ``train.py`` adds all keys (each trainer module's ``extend_cfg``). An upstream client's
        ``train.py`` defines only its own (CoOp's TRAINER.COOP has no TRUNCATE_TEXT; GOPro's
        TRAINER.GOPRO has N_CTX, CTX_INIT and PREC only), or no node at all for methods it does
        not know: there the missing keys take this trainer's defaults, and the given ones win.
        """
        scratch = CN()
        scratch.TRAINER = CN()
        hook = _nearest_extend_cfg(cls)
        if hook is not None:
            hook(scratch)
        options = scratch.TRAINER.get(cls.CFG_NODE, CN())
        for key, value in cfg.TRAINER.get(cls.CFG_NODE, CN()).items():
            options[key] = value
        options.freeze()
        return options

    def check_cfg(self, cfg):
        check_choices(self.method_options(cfg), self.CFG_NODE, dict(PREC=PRECISIONS, **self.CHOICES))

    def train_transforms(self):
        """Training transforms for ``DataManager``: None = Dassl's standard one; a list gives the
        extra views as ``img2``, ``img3``, ... (built from the raw image in the workers)."""
        return None

    def build_data_loader(self):
        """Dassl's ``SimpleTrainer.build_data_loader`` with this trainer's training transforms."""
        self.dm = DataManager(self.cfg, custom_tfm_train=self.train_transforms())
        for name in ("train_loader_x", "train_loader_u", "val_loader", "test_loader", "num_classes",
                     "num_source_domains", "lab2cname"):
            setattr(self, name, getattr(self.dm, name))

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.backbone = build_backbone(cfg, self.method_cfg.PREC, self.device)
        print(f"Building custom CLIP ({self.__class__.__name__})")
        self.model = self.build_clip_model(self.backbone, classnames).to(self.device)
        learnable = self.model.learnable
        if cfg.MODEL.INIT_WEIGHTS:
            from dassl.utils import load_pretrained_weights
            load_pretrained_weights(learnable, cfg.MODEL.INIT_WEIGHTS)
        trainable = sum(p.numel() for p in learnable.parameters() if p.requires_grad)
        print(f"# learnable params: {trainable:,}")
        self.optim = build_optimizer(learnable, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.MODEL_NAME, learnable, self.optim, self.sched)

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        raise NotImplementedError

    def compute_loss(self, batch) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Default: cross-entropy of ``self.model(image)`` logits."""
        image, label = self.parse_batch_train(batch)
        logits = self.model(image)
        loss = F.cross_entropy(logits, label)
        return loss, {"loss": loss.item(), "acc": compute_accuracy(logits, label)[0].item()}

    def forward_backward(self, batch):
        loss, summary = self.compute_loss(batch)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    @torch.no_grad()
    def test(self, split=None):
        """Dassl's test loop; image-independent text features are encoded once per evaluation."""
        caching = self.model.caching() if isinstance(self.model, TextFeatureCache) else contextlib.nullcontext()
        with caching:
            return super().test(split)

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Hook: rename the tensors of a checkpoint written by another implementation of this
        method to this trainer's names (default: unchanged)."""
        return state_dict

    def load_model(self, directory, epoch=None):
        """Load learnable weights saved by us or by upstream (CoOp/CoCoOp/MaPLe layouts).

        The class-name buffers ``token_prefix``/``token_suffix`` are dropped (the evaluation label
        space may differ from training, e.g. new classes), as upstream does; frozen CLIP weights in
        upstream files are ignored. Anything else must match by name and shape, and a mismatch is
        reported by name instead of a raw state-dict traceback.
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given (ignore this if it's done on purpose)")
            return
        filename = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, filename)
            if not osp.exists(path):
                raise FileNotFoundError(
                    f"No model at {path}. Check --model-dir (it must hold a '{name}' folder, i.e. a run "
                    f"of trainer {self.cfg.TRAINER.NAME}) and --load-epoch (files there: "
                    f"{', '.join(_list_checkpoints(osp.join(directory, name))) or 'none'}).")
            checkpoint = load_checkpoint(path)
            state_dict = self.convert_checkpoint(checkpoint["state_dict"])
            state_dict = adapt_state_dict(state_dict, self._models[name], path)
            print(f'Load {path} to {name} (epoch={checkpoint.get("epoch")})')
            self._models[name].load_state_dict(state_dict, strict=False)


def _nearest_extend_cfg(cls):
    """``extend_cfg`` of the module defining ``cls`` (or, failing that, its nearest base), or None."""
    for klass in cls.__mro__:
        hook = getattr(sys.modules.get(klass.__module__), "extend_cfg", None)
        if callable(hook):
            return hook
    return None


def _list_checkpoints(folder: str) -> List[str]:
    return sorted(f for f in os.listdir(folder) if f.startswith("model")) if osp.isdir(folder) else []


def _is_class_buffer(key: str) -> bool:
    return key.split(".")[-1] in ("token_prefix", "token_suffix")


def adapt_state_dict(state_dict: Dict[str, torch.Tensor], module: nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """Keep the entries of ``state_dict`` that ``module`` owns; explain any mismatch."""
    own = module.state_dict()
    kept = {k: v for k, v in state_dict.items() if k in own and not _is_class_buffer(k)}
    missing = [k for k in own if k not in state_dict and not _is_class_buffer(k)]
    if missing:
        found = [k for k in state_dict if not _is_class_buffer(k)][:8]
        raise RuntimeError(
            f"Checkpoint {path} does not fit this model: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}; it holds {found}. Was it written by another trainer "
            f"or configuration (TRAINER.NAME, N_CTX, PROMPT_DEPTH, backbone)?")
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in kept.items() if v.shape != own[k].shape]
    if wrong:
        raise RuntimeError(
            f"Checkpoint {path} has tensors of other shapes than this model: {'; '.join(wrong[:8])}. "
            f"It was trained with another backbone or prompt configuration (N_CTX, CSC, depth).")
    return kept

