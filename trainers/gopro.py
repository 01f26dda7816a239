"""GOPro: Generate and Optimize Prompts in CLIP using Self-Supervised Learning (BMVC 2023).

Frozen CLIP. Prompt tokens are *generated* per image from multi-scale visual primitives:

    style_l   = W^s_l · (μ_l + σ_l)/2        per-layer token statistics   → StyleProjector
    content_l = W^c_l · μ_l                  per-layer pooled tokens      → ContentProjector
    G         = FRG(style, content)          [B, L, D_t]                  → FRG
    R_v       = ρ_v(G)                       [B, M, D_t], v ∈ {f, mo, Au} → PromptTokenGenerator
    prompt    = [SOS] (ctx + R_v) <class> . [EOT]

and *optimised* with three losses over three views of each image (original x, MoCo-v3 view x1,
AugMix view x2):

    L_ce  = CE(100 · ⟨normalize(P_v(z)), t_f⟩, y)               CLIP cross-entropy (view x)
    L_sem = mean_{b,c} ‖t_f − t_mo‖² + ‖t_f − t_Au‖²              prompt consistency
    L_con = NT-Xent(BN(P_v(z)), BN(P_v(z1)); τ)                   visual contrastive loss

One forward (``GOProCLIP.forward``) serves training and evaluation: it takes x and the extra
views, returns the logits of x and what the losses read (``GOProOutput``); ``GOProLoss`` turns that
into L = W_CE·L_ce + W_SEM·L_sem + W_CON·L_con. Test: the x branch only (ρ_f), one image-encoder
pass per image; the official test cost (D12) passes the extra views to the same forward.

Where the official code differs from the paper (docs/DEVIATIONS.md: D1–D23, cited as D<n> below),
our default follows the paper and each deviation has a switch under ``TRAINER.GOPRO``; ``OFFICIAL True`` sets all of them to the
official behaviour at once (``configs/trainers/GOPro/vit_b16_official.yaml``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .distributed import world
from .components import ContentProjector, ImageProjector, LayerwiseLinear, StyleProjector  # noqa: F401 (LayerwiseLinear: old import path)
from .losses import on_global_batch, simclr_loss
from .models import InstancePromptCLIP, ModelOutput, StyleStatistics, class_level, clip_logits, in_image_groups
from .prompts import PromptLearner, TextEncoding, encode_class_prompts, init_context
from .trainer_base import ClipPromptTrainer, add_prompt_keys
from .views import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, augmix_view, mocov3_view, wrapped_uint8_image

VIEWS = ("orig", "moco", "augmix")

# Official behaviour of every deviation with a switch (docs/DEVIATIONS.md).
OFFICIAL_SWITCHES = dict(
    RHO_PER_VIEW=False,           # D1: one ρ shared by the three views
    RHO_TOKENWISE=False,          # D2: one Linear(L→1) repeated M times (M identical tokens)
    PV_IN_LOGITS=False,           # D4: logits from raw CLIP features; P_v only in L_con
    PV_INIT="default",            # D4: simproj's Linear keeps nn.Linear's default init (see ImageProjector)
    W_CE=1.0, W_SEM=1.0, W_CON=0.1,  # D5
    SEM_DIST="mse",               # D6: element-wise mean over B·C·E
    AUGMIX_FIRST_IMAGE_ONLY=True,  # D7: B AugMix views of image 0
    AUG_INPUT="official",         # D8: views from the normalised tensor through a wrapping uint8 cast
    MOCO_NORM="imagenet",         # D9
    TEST_BRANCHES="all",          # D12: test also runs the two augmentation branches (cost only)
    SELECT_ON_TEST=True,          # D14: test every epoch, keep the best-on-test checkpoint
)

CHOICES = dict(
    SEM_DIST=("sqeuclid", "euclid", "mse"), AUG_INPUT=("raw", "official"), MOCO_NORM=("clip", "imagenet"),
    STYLE_STATS=("avg", "concat"), STATS_TOKENS=("all", "patch"), TEST_BRANCHES=("orig", "all"),
    RHO_INIT=("default", "zeros"), PV_INIT=("identity", "default"),
)


def extend_cfg(cfg) -> None:
    add_prompt_keys(
        cfg, "GOPRO", N_CTX=4, CTX_INIT="a photo of a", PREC="fp16", OFFICIAL=False,
        RHO_PER_VIEW=True, RHO_TOKENWISE=True, RHO_INIT="default",
        PV_IN_LOGITS=True, PV_INIT="identity", CON_HEAD_BN=True, CON_TEMPERATURE=0.1,
        SEM_DIST="sqeuclid", SEM_VIEWS=["moco", "augmix"], W_CE=1.0, W_SEM=1.0, W_CON=1.0,
        AUG_INPUT="raw", MOCO_NORM="clip", AUGMIX_FIRST_IMAGE_ONLY=False, AUGMIX_SEVERITY=1,
        STYLE_STATS="avg", STATS_TOKENS="all", TEST_BRANCHES="orig", SELECT_ON_TEST=False,
    )


def semantic_views(options) -> List[str]:
    """The views whose class features L_sem compares with x's, in batch order (none if W_SEM = 0)."""
    return [v for v in VIEWS[1:] if v in options.SEM_VIEWS] if options.W_SEM > 0 else []


def active_views(options) -> List[str]:
    """Views the active losses need, in batch order (zero-weight branches are never computed)."""
    views, sem = ["orig"], semantic_views(options)
    if options.W_CON > 0 or "moco" in sem:
        views.append("moco")
    if "augmix" in sem:
        views.append("augmix")
    return views


# --------------------------------------------------------------------------------------------
# Modules named after the paper's ideas
# --------------------------------------------------------------------------------------------
class FRG(nn.Module):
    """Feature Rescaling GAP: global average of the style and content projections of each layer,
    G = (S + C)/2 [B, L, D_t] (parameter-free, as in the official code)."""

    def forward(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        return (style + content) / 2


class PromptTokenGenerator(nn.Module):
    """A meta-network ρ: mixes the L layer vectors of G into M prompt-token shifts [B, M, D_t].

    Token-wise (default): Linear(L → M) on the layer axis, one independent mix per token.
    Official: Linear(L → 1), repeated M times, so all M tokens are identical.
    """

    def __init__(self, layers: int, n_tokens: int, tokenwise: bool = True, init: str = "default"):
        super().__init__()
        self.n_tokens = n_tokens
        self.tokenwise = tokenwise
        self.mix = nn.Linear(layers, n_tokens if tokenwise else 1)
        if init == "zeros":  # initial prompt = CTX_INIT exactly
            nn.init.zeros_(self.mix.weight)
            nn.init.zeros_(self.mix.bias)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        tokens = self.mix(g.transpose(1, 2)).transpose(1, 2)      # [B, M or 1, D_t]
        return tokens if self.tokenwise else tokens.expand(-1, self.n_tokens, -1)


class GOProPrompter(nn.Module):
    """Everything GOPro learns (the module saved in checkpoints as ``gopro``).

    Built in this order (the order of the RNG draws): style and content projectors, ρ (one per view,
    or one ``shared``), P_v (``image_projector``), the contrastive BatchNorm.
    """

    def __init__(self, backbone: ClipBackbone, prompt_learner: PromptLearner, style_stats: str = "avg",
                 rho_per_view: bool = True, rho_tokenwise: bool = True, rho_init: str = "default",
                 pv_init: str = "identity", contrastive_bn: bool = True):
        super().__init__()
        layers, d_v, d_t = backbone.num_vision_layers, backbone.vision_width, backbone.text_width
        self.prompt_learner = prompt_learner
        self.style = StyleProjector(layers, d_v, d_t, style_stats)
        self.content = ContentProjector(layers, d_v, d_t)
        self.frg = FRG()
        rho = lambda: PromptTokenGenerator(layers, prompt_learner.n_ctx, rho_tokenwise, rho_init)
        self.rho = nn.ModuleDict({v: rho() for v in VIEWS}) if rho_per_view else nn.ModuleDict({"shared": rho()})
        self.image_projector = ImageProjector(backbone.embed_dim, pv_init)
        self.contrastive_bn = nn.BatchNorm1d(backbone.embed_dim) if contrastive_bn else nn.Identity()

    def rho_for(self, view: str) -> PromptTokenGenerator:
        return self.rho[view] if view in self.rho else self.rho["shared"]


# --------------------------------------------------------------------------------------------
# The model: frozen CLIP + prompter, one forward for training and evaluation
# --------------------------------------------------------------------------------------------
@dataclass
class GOProOutput(ModelOutput):
    """``GOProCLIP.forward``'s record. The base fields are those of the original view x:
    ``logits`` [B, C], ``image_features`` [B, E] (their image side, normalize(P_v(ẑ)) or ẑ) and
    ``text_features`` [B, C, E] (class features conditioned on x).

    Per view, batch axis first so that image groups concatenate (``concat_outputs``):
    ``frozen_features`` [B, V, E]: ẑ = normalize(f_v(·)) of every view in ``views`` (L_con projects
    them); ``view_text_features`` [B, V_t, C, E]: the class features conditioned on each of
    ``text_views`` ("orig" first; L_sem). ``primitives`` [B, L, D_t]: G of x.
    """

    views: Tuple[str, ...] = class_level(("orig",))
    frozen_features: Optional[torch.Tensor] = None
    text_views: Tuple[str, ...] = class_level(("orig",))
    view_text_features: Optional[torch.Tensor] = None
    primitives: Optional[torch.Tensor] = None

    def frozen(self, view: str) -> torch.Tensor:
        """ẑ of one view [B, E]."""
        return self.frozen_features[:, self.views.index(view)]

    def text(self, view: str) -> torch.Tensor:
        """Class features conditioned on one view [B, C, E]."""
        return self.view_text_features[:, self.text_views.index(view)]


class GOProCLIP(StyleStatistics, InstancePromptCLIP):
    """Frozen CLIP + ``GOProPrompter`` (``learnable``).

    ``pv_in_logits``: the logits' image side is normalize(P_v(ẑ)) (paper) or ẑ (official, D4);
    ``stats_tokens``: the tokens the layer statistics run over ("all" or "patch").
    """

    def __init__(self, backbone: ClipBackbone, prompter: GOProPrompter, text_encoding: TextEncoding = TextEncoding(),
                 pv_in_logits: bool = True, stats_tokens: str = "all"):
        backbone.require_vit("GOPro's multi-scale style/content features")
        super().__init__(backbone, prompter, prompter.prompt_learner, text_encoding)
        self.pv_in_logits = pv_in_logits
        self.stats_tokens = stats_tokens
        tokens = backbone.num_image_tokens - (stats_tokens == "patch")
        self.stats_eps = 2.3e-8 / tokens  # official σ = sqrt((Σ(h-μ)² + 2.3e-8) / n_tokens)

    # ---- the one forward -----------------------------------------------------------------
    def forward(self, image: torch.Tensor, extra_views: Optional[Mapping[str, torch.Tensor]] = None,
                text_views: Sequence[str] = ("orig",)) -> GOProOutput:
        """Logits of ``image`` (x, [B, 3, H, W]) and what GOPro's losses read.

        ``extra_views``: view name ("moco", "augmix") → its images [B, 3, H, W], in batch order;
        ``text_views``: the views whose class features are computed ("orig" first). Training
        passes the views its losses need; evaluation passes none (x only), or, at the official
        test cost (D12), every view, whose outputs are then unused.

        Without gradients (evaluation) the images run in groups of about ``text_encoding.chunk``
        text sequences, each image with all its views; with gradients the batch runs at once, as
        backward keeps every group's activations anyway (the text tower still chunks its calls).
        """
        if tuple(text_views[:1]) != ("orig",):
            raise ValueError(f"text_views must start with 'orig' (the logits' view), got {list(text_views)}")
        views = {"orig": image, **(extra_views or {})}
        if torch.is_grad_enabled():
            return self.forward_group(views, text_views)
        stacked = torch.stack(list(views.values()), dim=1)                                   # [B, V, 3, H, W]
        group = lambda part: self.forward_group(dict(zip(views, part.unbind(1))), text_views)
        return in_image_groups(group, stacked, self.num_classes * len(text_views), self.text_encoding.chunk)

    def forward_group(self, views: Mapping[str, torch.Tensor], text_views: Sequence[str]) -> GOProOutput:
        """``forward`` for one group of b images: ``views`` maps each view ("orig" first) to [b, 3, H, W]."""
        b, names = len(views["orig"]), tuple(views)
        z_hat, mean, std = self.encode_views(list(views.values()))                            # [V·b, ...]
        g = dict(zip(names, self.primitives(mean, std).split(b)))                           # view → [b, L, D_t]
        raw_text = self.text_features([g[v] for v in text_views], text_views, normalize=False)  # [V_t, b, C, E]
        text = F.normalize(raw_text, dim=-1)
        raw_image = self.raw_image_embedding(z_hat[:b])
        image_features = self.image_side(raw_image)
        return GOProOutput(clip_logits(self.backbone, image_features, text[0]), image_features, text[0],
                           raw_image_features=raw_image, raw_text_features=raw_text[0],
                           views=names, frozen_features=z_hat.view(len(names), b, -1).transpose(0, 1),
                           text_views=tuple(text_views), view_text_features=text.transpose(0, 1),
                           primitives=g["orig"])

    # ---- its parts -------------------------------------------------------------------------
    def encode_views(self, images: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ẑ [V·b, E] and layer statistics [V·b, L, D_v] of the views' images, one after another:
        one frozen image pass over all views."""
        return self.encode_with_stats(torch.cat(list(images)))

    def primitives(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """G = FRG(style, content): [N, L, D_t]."""
        p = self.learnable
        return p.frg(p.style(mean, std), p.content(mean))

    def text_features(self, g_per_view: Sequence[torch.Tensor], views: Sequence[str], normalize: bool = True
                      ) -> torch.Tensor:
        """Class text features conditioned on each view's image: [V, B, C, E], one batched text call
        (unnormalised if not ``normalize``)."""
        learner = self.learnable.prompt_learner
        shifts = [self.learnable.rho_for(v)(g) for g, v in zip(g_per_view, views)]         # V × [B, M, D_t]
        contexts = learner.ctx.unsqueeze(0) + torch.stack(shifts)                          # [V, B, M, D_t]
        features = self.encode_contexts(contexts.flatten(0, 1), normalize)                 # [V·B, C, E]
        return features.view(len(views), -1, *features.shape[1:])

    def encode_contexts(self, contexts: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Class features [N, C, E] of per-image contexts [N, M, D_t] (unnormalised if not ``normalize``)."""
        learner = self.learnable.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble_per_image(contexts), self.text_encoding,
                                    normalize=normalize)

    def raw_image_embedding(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Image side of the logits before normalisation: P_v(ẑ), or ẑ itself (official, D4)."""
        return self.learnable.image_projector(z_hat) if self.pv_in_logits else z_hat

    def image_side(self, raw_image: torch.Tensor) -> torch.Tensor:
        """The logits' image side from ``raw_image_embedding``: normalised, or ẑ as it is (already normalised)."""
        return F.normalize(raw_image, dim=-1) if self.pv_in_logits else raw_image

    @torch.no_grad()
    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        """normalize(P_v(f_v(x))): the embedding the logits use (``forward(x).image_features``,
        without the text side; Figure 3's t-SNE)."""
        return self.image_side(self.raw_image_embedding(self.encode_with_stats(image)[0]))


# --------------------------------------------------------------------------------------------
# Checkpoints of the official code (D3)
# --------------------------------------------------------------------------------------------
_OFFICIAL_LAYER_KEY = re.compile(r"(?:^|\.)(style|content)\.linear\.(\d+)\.(weight|bias)$")


def is_official_checkpoint(state_dict: Dict[str, torch.Tensor]) -> bool:
    """The official code keeps one nn.Linear per layer (``style.linear.<l>``); we keep one stacked
    tensor (``style.proj``)."""
    return any(_OFFICIAL_LAYER_KEY.search(key) for key in state_dict)


def _official_tensor(state_dict: Dict[str, torch.Tensor], pattern: str) -> torch.Tensor:
    matches = [key for key in state_dict if re.search(pattern, key)]
    if len(matches) != 1:
        raise RuntimeError(f"Official GOPro checkpoint: expected one tensor matching '{pattern}', found "
                           f"{matches or 'none'}")
    return state_dict[matches[0]]


def _official_simproj(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """simproj = Linear(E→E) then BatchNorm1d(E): (linear tensors, BN tensors) by parameter name."""
    modules: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if "simproj" in key.split("."):
            module, _, name = key.rpartition(".")
            modules.setdefault(module, {})[name] = value
    bn = [m for m in modules.values() if "running_mean" in m]
    linear = [m for m in modules.values() if "running_mean" not in m and m.get("weight", torch.empty(0)).dim() == 2]
    if len(bn) != 1 or len(linear) != 1:
        raise RuntimeError(f"Official GOPro checkpoint: expected simproj = Linear + BatchNorm1d, found modules "
                           f"{sorted(modules) or 'none'}")
    return linear[0], bn[0]


def official_prompter_state(state_dict: Dict[str, torch.Tensor], model: GOProCLIP) -> Dict[str, torch.Tensor]:
    """An official checkpoint (the whole CustomCLIP, registered as ``gopro``) in the names of
    ``model``'s GOProPrompter.

    ======================================  ===========================================================
    official                                ours
    ======================================  ===========================================================
    ``prompt_learner.ctx`` (fp16)           ``prompt_learner.ctx`` (fp32)
    ``style.linear.<l>.{weight,bias}``      ``style.proj.{weight,bias}[l]``
    ``content.linear.<l>.{weight,bias}``    ``content.proj.{weight,bias}[l]``
    ``rho`` Linear(L→1)                     every ρ head; repeated over the M tokens when token-wise,
                                            which is exact (the official M tokens are identical)
    ``simproj`` Linear, BatchNorm1d         ``image_projector``, ``contrastive_bn``
    ``meta_net``, frozen CLIP, class        dropped (meta_net is never used, D3)
    buffers
    ======================================  ===========================================================
    """
    if model.pv_in_logits:
        raise ValueError("This is an official GOPro checkpoint: its simproj was trained for the contrastive "
                         "head only, so its logits use raw CLIP features. Evaluate it with the official "
                         "config (--config-file configs/trainers/GOPro/vit_b16_official.yaml) or "
                         "TRAINER.GOPRO.PV_IN_LOGITS False.")
    own = model.learnable.state_dict()
    layers: Dict[Tuple[str, str], Dict[int, torch.Tensor]] = {}
    for key, value in state_dict.items():
        found = _OFFICIAL_LAYER_KEY.search(key)
        if found:
            part, layer, name = found.groups()
            layers.setdefault((part, name), {})[int(layer)] = value
    ours = {f"{part}.proj.{name}": torch.stack([per_layer[i] for i in sorted(per_layer)])
            for (part, name), per_layer in layers.items()}
    ours["prompt_learner.ctx"] = _official_tensor(state_dict, r"(?:^|\.)prompt_learner\.ctx$").float()
    for name in ("weight", "bias"):
        rho = _official_tensor(state_dict, rf"(?:^|\.)rho\.{name}$").float()
        for key in own:
            if key.startswith("rho.") and key.endswith(f".mix.{name}"):
                ours[key] = rho.expand_as(own[key]).clone() if rho.shape[0] == 1 else rho
    linear, bn = _official_simproj(state_dict)
    ours.update({f"image_projector.{name}": value.float() for name, value in linear.items()})
    if isinstance(model.learnable.contrastive_bn, nn.BatchNorm1d):  # CON_HEAD_BN
        ours.update({f"contrastive_bn.{name}": value for name, value in bn.items()})
    return ours


def semantic_consistency(t_ref: torch.Tensor, t_view: torch.Tensor, dist: str) -> torch.Tensor:
    """L_sem term between text features [B, C, E] conditioned on two views (fp32)."""
    t_ref, t_view = t_ref.float(), t_view.float()
    if dist == "mse":  # official: mean over B·C·E elements
        return F.mse_loss(t_ref, t_view)
    squared = (t_ref - t_view).pow(2).sum(-1)                                              # [B, C]
    return squared.mean() if dist == "sqeuclid" else squared.clamp_min(1e-12).sqrt().mean()


class GOProLoss(nn.Module):
    """L = W_CE·L_ce + W_SEM·L_sem + W_CON·L_con from a ``GOProOutput`` and the labels.

    L_sem compares x's class features with those of ``sem_views`` (``sem_dist``); L_con is the
    NT-Xent of the contrastive head BN(P_v(ẑ)) on x and its MoCo view. The head is the learnable
    ``image_projector`` and ``contrastive_bn`` of GOProPrompter (held here by reference, trained
    and saved with the prompter); its BatchNorm sees the global batch when distributed. A term
    whose weight is 0 is not computed (its views are not in the output either).
    """

    def __init__(self, image_projector: nn.Module, contrastive_bn: nn.Module, w_ce: float = 1.0, w_sem: float = 1.0,
                 w_con: float = 1.0, sem_views: Sequence[str] = ("moco", "augmix"), sem_dist: str = "sqeuclid",
                 temperature: float = 0.1):
        super().__init__()
        self.image_projector = image_projector
        self.contrastive_bn = contrastive_bn
        self.weights = {"loss_ce": w_ce, "loss_sem": w_sem, "loss_con": w_con}
        self.sem_views = tuple(sem_views) if w_sem > 0 else ()
        self.sem_dist = sem_dist
        self.temperature = temperature

    def contrastive_head(self, z_hat: torch.Tensor) -> torch.Tensor:
        """BN(P_v(ẑ)) [B, E], BN statistics over the global batch (SyncBN-like, see on_global_batch)."""
        return on_global_batch(self.contrastive_bn, self.image_projector(z_hat))

    def forward(self, output: GOProOutput, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        terms = {"loss_ce": F.cross_entropy(output.logits, label)}
        if self.sem_views:
            terms["loss_sem"] = sum(semantic_consistency(output.text_features, output.text(v), self.sem_dist)
                                    for v in self.sem_views)
        if self.weights["loss_con"] > 0:
            terms["loss_con"] = simclr_loss(self.contrastive_head(output.frozen("orig")),
                                            self.contrastive_head(output.frozen("moco")), self.temperature)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return loss, terms


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class GOPro(ClipPromptTrainer):
    CFG_NODE = "GOPRO"
    MODEL_NAME = "gopro"
    CHOICES = CHOICES
    CLIP_MODEL = GOProCLIP  # the model class (bench/official_gopro.py swaps in the official towers)

    @classmethod
    def resolve_options(cls, options):
        """The effective GOPro options: ``OFFICIAL`` overrides every deviation switch."""
        if not options.OFFICIAL:
            return options
        options = options.clone()
        options.defrost()
        options.update(OFFICIAL_SWITCHES)
        options.freeze()
        return options

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        sem_views = self.resolve_options(self.method_options(cfg)).SEM_VIEWS
        if any(v not in VIEWS[1:] for v in sem_views):
            raise ValueError(f"TRAINER.GOPRO.SEM_VIEWS may hold 'moco' and 'augmix', got {list(sem_views)}")

    def before_train(self):
        self.require_contrastive_pairs()
        super().before_train()

    def require_contrastive_pairs(self) -> None:
        """L_con contrasts every image with the others of the global batch, through a BatchNorm head
        (CON_HEAD_BN): one image per step has no negatives and no batch statistics. Said before the
        first step, instead of BatchNorm's "Expected more than 1 value per channel when training"
        (met by the ImageNet-size rehearsal at batch 1)."""
        _, processes = world()
        batch = self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        if self.options.W_CON > 0 and batch * processes < 2:
            raise ValueError(f"GOPro's contrastive loss needs at least 2 images per step (global batch), got "
                             f"DATALOADER.TRAIN_X.BATCH_SIZE {batch} on {processes} process(es). Use a batch size of 2 "
                             f"or more, or train without the loss: TRAINER.GOPRO.W_CON 0.")

    def train_transforms(self):
        """[standard, MoCo-v3, AugMix] views from the raw image, built in DataLoader workers."""
        views = active_views(self.options)
        if self.options.AUG_INPUT == "official" or views == ["orig"]:
            return None  # official: views are derived from the batch tensor (see official_views)
        size = self.cfg.INPUT.SIZE[0]
        makers = {"moco": lambda: mocov3_view(size, *self.moco_normalisation()),
                  "augmix": lambda: augmix_view(size, self.options.AUGMIX_SEVERITY, CLIP_MEAN, CLIP_STD)}
        return [build_transform(self.cfg, is_train=True)] + [makers[v]() for v in views[1:]]

    def moco_normalisation(self) -> Tuple[Sequence[float], Sequence[float]]:
        return (IMAGENET_MEAN, IMAGENET_STD) if self.options.MOCO_NORM == "imagenet" else (CLIP_MEAN, CLIP_STD)

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        print(f"GOPro options: official={options.OFFICIAL}, views={active_views(options)}, "
              f"weights ce/sem/con={options.W_CE}/{options.W_SEM}/{options.W_CON}, sem={options.SEM_DIST}")
        ctx, template = init_context(backbone, options.N_CTX, options.CTX_INIT)
        learner = PromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
        prompter = GOProPrompter(backbone, learner, options.STYLE_STATS, options.RHO_PER_VIEW, options.RHO_TOKENWISE,
                                 options.RHO_INIT, options.PV_INIT, options.CON_HEAD_BN)
        return self.CLIP_MODEL(backbone, prompter, TextEncoding.from_options(options),
                               pv_in_logits=options.PV_IN_LOGITS, stats_tokens=options.STATS_TOKENS)

    def build_criterion(self) -> GOProLoss:
        options, prompter = self.options, self.model.learnable
        return GOProLoss(prompter.image_projector, prompter.contrastive_bn, options.W_CE, options.W_SEM, options.W_CON,
                         semantic_views(options), options.SEM_DIST, options.CON_TEMPERATURE)

    # ---- training step: views → model → loss --------------------------------------------
    def model_inputs(self, batch) -> Tuple[tuple, torch.Tensor]:
        """((x, extra views by name, text views), labels) for the active views: the extra views
        come from the DataLoader workers (``img2``, ``img3``) or, official, from the batch tensor."""
        views = active_views(self.options)
        image, label = self.parse_batch_train(batch)
        if self.options.AUG_INPUT == "official":
            extra = self.official_views(image, views[1:])
        else:
            extra = [batch[f"img{i}"].to(self.device) for i in range(2, len(views) + 1)]
        return (image, dict(zip(views[1:], extra)), ["orig", *semantic_views(self.options)]), label

    def official_views(self, image: torch.Tensor, names: Sequence[str]) -> List[torch.Tensor]:
        """The official views (D7-D9): each normalised training tensor goes through a wrapping uint8
        cast back to PIL on the CPU, then MoCo-v3 / AugMix; AugMix may hold B views of image 0."""
        if not names:
            return []
        size = self.cfg.INPUT.SIZE[0]
        pils = [wrapped_uint8_image(x) for x in image]
        out = []
        if "moco" in names:
            moco = mocov3_view(size, *self.moco_normalisation())
            out.append(torch.stack([moco(p) for p in pils]))
        if "augmix" in names:
            augmix = augmix_view(size, self.options.AUGMIX_SEVERITY)
            sources = [pils[0]] * len(pils) if self.options.AUGMIX_FIRST_IMAGE_ONLY else pils
            out.append(torch.stack([augmix(p) for p in sources]))
        return [v.to(self.device) for v in out]

    def summarize(self, loss, terms, output: GOProOutput, label):
        if not getattr(self, "_shift_logged", False):
            self._shift_logged = True
            self.log_prompt_shift(output.primitives)
        return super().summarize(loss, terms, output, label)

    @torch.no_grad()
    def log_prompt_shift(self, g: torch.Tensor) -> None:
        """How far the first generated prompts are from CTX_INIT. A shift R much
        larger than ctx means the initial prompt is far from the hand-crafted one (then consider
        ``RHO_INIT zeros``, which starts from ctx exactly)."""
        prompter = self.model.learnable
        shift = prompter.rho_for("orig")(g).norm(dim=-1).mean().item()      # mean ‖R[b, m]‖
        ctx = prompter.prompt_learner.ctx.norm(dim=-1).mean().item()         # mean ‖ctx[m]‖
        print(f"Prompt shift at the first step: mean token norm |R| = {shift:.4g}, |ctx| = {ctx:.4g} "
              f"(ratio {shift / max(ctx, 1e-12):.3g})")

    def convert_checkpoint(self, state_dict):
        if not is_official_checkpoint(state_dict):
            return state_dict
        print("Official GOPro checkpoint: mapping its tensors to ours (trainers/gopro.py, official_prompter_state)")
        return official_prompter_state(state_dict, self.model)

    # ---- evaluation policy -----------------------------------------------------------------
    def model_inference(self, input, *args, **kwargs):
        """Logits of the original branch. ``TEST_BRANCHES all`` (official test cost, D12): the MoCo
        and AugMix branches run in the same forward and their outputs are unused."""
        if self.options.TEST_BRANCHES == "orig":
            return self.model(input).logits
        discarded = VIEWS[1:]
        extra = dict(zip(discarded, self.official_views(input, discarded)))
        return self.model(input, extra, text_views=VIEWS).logits

    def after_epoch(self):
        """Official checkpoint selection on the test split (D14, test-set leakage; parity only)."""
        if self.options.SELECT_ON_TEST and not self.cfg.TEST.NO_TEST:
            accuracy = self.test(split="test")
            if accuracy > self.best_result:
                self.best_result = accuracy
                self.save_model(self.epoch, self.output_dir, model_name="model-best.pth.tar")
            self.set_model_mode("train")
        super().after_epoch()
