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

Test: the x branch only (ρ_f), one image-encoder pass per image.

Where the official code differs from the paper (methods spec §8.4), our default follows the paper
and each deviation has a switch under ``TRAINER.GOPRO``; ``OFFICIAL True`` sets all of them to the
official behaviour at once (``configs/trainers/GOPro/vit_b16_official.yaml``).
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .clip_backbone import ClipBackbone
from .components import ContentProjector, ImageProjector, LayerwiseLinear, StyleProjector  # noqa: F401 (LayerwiseLinear: old import path)
from .losses import on_global_batch, simclr_loss
from .prompting import (ClipPromptTrainer, InstancePromptCLIP, PromptLearner, add_prompt_keys, check_choices,
                        clip_logits, encode_class_prompts, init_context)
from .views import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, augmix_view, mocov3_view, wrapped_uint8_image

VIEWS = ("orig", "moco", "augmix")

# Official behaviour of every documented deviation (methods spec §8.4, D1-D14).
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


def resolve_options(node):
    """The effective GOPro options: ``OFFICIAL`` overrides every deviation switch; values checked."""
    options = node.clone()
    options.defrost()
    if options.OFFICIAL:
        for key, value in OFFICIAL_SWITCHES.items():
            setattr(options, key, value)
    check_choices(options, "GOPRO", CHOICES)
    unknown = [v for v in options.SEM_VIEWS if v not in VIEWS[1:]]
    if unknown:
        raise ValueError(f"TRAINER.GOPRO.SEM_VIEWS may hold 'moco' and 'augmix', got {list(options.SEM_VIEWS)}")
    options.freeze()
    return options


def active_views(options) -> List[str]:
    """Views the active losses need, in batch order (zero-weight branches are never computed)."""
    views = ["orig"]
    sem = options.SEM_VIEWS if options.W_SEM > 0 else []
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
    """Everything GOPro learns (the module saved in checkpoints as ``gopro``)."""

    def __init__(self, backbone: ClipBackbone, prompt_learner: PromptLearner, options):
        super().__init__()
        layers, d_v, d_t = backbone.num_vision_layers, backbone.vision_width, backbone.text_width
        self.prompt_learner = prompt_learner
        self.style = StyleProjector(layers, d_v, d_t, options.STYLE_STATS)
        self.content = ContentProjector(layers, d_v, d_t)
        self.frg = FRG()
        rho = lambda: PromptTokenGenerator(layers, prompt_learner.n_ctx, options.RHO_TOKENWISE, options.RHO_INIT)
        self.rho = nn.ModuleDict({v: rho() for v in VIEWS}) if options.RHO_PER_VIEW else nn.ModuleDict({"shared": rho()})
        self.image_projector = ImageProjector(backbone.embed_dim, options.PV_INIT)
        self.contrastive_bn = nn.BatchNorm1d(backbone.embed_dim) if options.CON_HEAD_BN else nn.Identity()

    def rho_for(self, view: str) -> PromptTokenGenerator:
        return self.rho[view] if view in self.rho else self.rho["shared"]


# --------------------------------------------------------------------------------------------
# The model: frozen CLIP + prompter
# --------------------------------------------------------------------------------------------
class GOProCLIP(InstancePromptCLIP):
    LEARNABLE = "prompter"

    def __init__(self, backbone: ClipBackbone, prompter: GOProPrompter, options):
        backbone.require_vit("GOPro's multi-scale style/content features")
        super().__init__(backbone, prompter, options)
        tokens = backbone.clip.visual.positional_embedding.shape[0] - (options.STATS_TOKENS == "patch")
        self.stats_eps = 2.3e-8 / tokens  # official σ = sqrt((Σ(h-μ)² + 2.3e-8) / n_tokens)

    def primitives(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """G = FRG(style, content): [N, L, D_t]."""
        p = self.prompter
        return p.frg(p.style(mean, std), p.content(mean))

    def text_features(self, g_per_view: Sequence[torch.Tensor], views: Sequence[str]) -> torch.Tensor:
        """Class text features conditioned on each view's image: [V, B, C, E], one batched text call."""
        learner = self.prompter.prompt_learner
        shifts = [self.prompter.rho_for(v)(g) for g, v in zip(g_per_view, views)]          # V × [B, M, D_t]
        contexts = learner.ctx.unsqueeze(0) + torch.stack(shifts)                          # [V, B, M, D_t]
        prompts = learner.assemble_per_image(contexts.flatten(0, 1))                       # [V·B, C, T', D_t]
        features = encode_class_prompts(self.backbone, learner, prompts, self.options)    # [V·B, C, E]
        return features.view(len(views), -1, *features.shape[1:])

    def image_embedding(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Image side of the logits: normalize(P_v(ẑ)), or ẑ itself (official, D4)."""
        if not self.options.PV_IN_LOGITS:
            return z_hat
        return F.normalize(self.prompter.image_projector(z_hat), dim=-1)

    @torch.no_grad()
    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        """normalize(P_v(f_v(x))): the embedding the logits use (Figure 3's t-SNE)."""
        return self.image_embedding(self.encode_with_stats(image)[0])

    def image_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Evaluation: the original branch only (run in groups of images by ``forward``)."""
        z_hat, mean, std = self.encode_with_stats(image)
        text = self.text_features([self.primitives(mean, std)], ["orig"])[0]             # [B, C, E]
        return clip_logits(self.backbone, self.image_embedding(z_hat), text)


# --------------------------------------------------------------------------------------------
# Checkpoints of the official code (methods spec §8.2(n), D3)
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


def official_prompter_state(state_dict: Dict[str, torch.Tensor], prompter: "GOProPrompter",
                            options) -> Dict[str, torch.Tensor]:
    """An official checkpoint (the whole CustomCLIP, registered as ``gopro``) in GOProPrompter's names.

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
    if options.PV_IN_LOGITS:
        raise ValueError("This is an official GOPro checkpoint: its simproj was trained for the contrastive "
                         "head only, so its logits use raw CLIP features. Evaluate it with the official "
                         "config (--config-file configs/trainers/GOPro/vit_b16_official.yaml) or "
                         "TRAINER.GOPRO.PV_IN_LOGITS False.")
    own = prompter.state_dict()
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
    if options.CON_HEAD_BN:
        ours.update({f"contrastive_bn.{name}": value for name, value in bn.items()})
    return ours


def semantic_consistency(t_ref: torch.Tensor, t_view: torch.Tensor, dist: str) -> torch.Tensor:
    """L_sem term between text features [B, C, E] conditioned on two views (fp32)."""
    t_ref, t_view = t_ref.float(), t_view.float()
    if dist == "mse":  # official: mean over B·C·E elements
        return F.mse_loss(t_ref, t_view)
    squared = (t_ref - t_view).pow(2).sum(-1)                                              # [B, C]
    return squared.mean() if dist == "sqeuclid" else squared.clamp_min(1e-12).sqrt().mean()


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class GOPro(ClipPromptTrainer):
    CFG_NODE = "GOPRO"
    MODEL_NAME = "gopro"

    @property
    def options(self):
        if not hasattr(self, "_options"):
            self._options = resolve_options(self.method_cfg)
        return self._options

    def train_transforms(self):
        """[standard, MoCo-v3, AugMix] views from the raw image, built in DataLoader workers."""
        views = active_views(self.options)
        if self.options.AUG_INPUT == "official" or views == ["orig"]:
            return None  # official: views are derived from the batch tensor (see official_views)
        size = self.cfg.INPUT.SIZE[0]
        moco_norm = (IMAGENET_MEAN, IMAGENET_STD) if self.options.MOCO_NORM == "imagenet" else (CLIP_MEAN, CLIP_STD)
        makers = {"moco": lambda: mocov3_view(size, *moco_norm),
                  "augmix": lambda: augmix_view(size, self.options.AUGMIX_SEVERITY, CLIP_MEAN, CLIP_STD)}
        return [build_transform(self.cfg, is_train=True)] + [makers[v]() for v in views[1:]]

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        print(f"GOPro options: official={options.OFFICIAL}, views={active_views(options)}, "
              f"weights ce/sem/con={options.W_CE}/{options.W_SEM}/{options.W_CON}, sem={options.SEM_DIST}")
        ctx, template = init_context(backbone, options.N_CTX, options.CTX_INIT)
        learner = PromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
        return GOProCLIP(backbone, GOProPrompter(backbone, learner, options), options)

    # ---- training step -------------------------------------------------------------------
    def batch_views(self, batch) -> Tuple[List[str], torch.Tensor, torch.Tensor]:
        """(view names, images [V·B, 3, H, W], labels [B]) for the active views."""
        views = active_views(self.options)
        image, label = self.parse_batch_train(batch)
        if len(views) == 1:
            return views, image, label
        if self.options.AUG_INPUT == "official":
            extra = self.official_views(image, views[1:])
        else:
            keys = [f"img{i}" for i in range(2, len(views) + 1)]
            extra = [batch[k].to(self.device) for k in keys]
        return views, torch.cat([image, *extra]), label

    def official_views(self, image: torch.Tensor, names: Sequence[str]) -> List[torch.Tensor]:
        """The official views (D7-D9): each normalised training tensor goes through a wrapping uint8
        cast back to PIL on the CPU, then MoCo-v3 / AugMix; AugMix may hold B views of image 0."""
        size = self.cfg.INPUT.SIZE[0]
        pils = [wrapped_uint8_image(x) for x in image]
        out = []
        if "moco" in names:
            moco_norm = (IMAGENET_MEAN, IMAGENET_STD) if self.options.MOCO_NORM == "imagenet" else (CLIP_MEAN, CLIP_STD)
            moco = mocov3_view(size, *moco_norm)
            out.append(torch.stack([moco(p) for p in pils]))
        if "augmix" in names:
            augmix = augmix_view(size, self.options.AUGMIX_SEVERITY)
            sources = [pils[0]] * len(pils) if self.options.AUGMIX_FIRST_IMAGE_ONLY else pils
            out.append(torch.stack([augmix(p) for p in sources]))
        return [v.to(self.device) for v in out]

    def compute_loss(self, batch) -> Tuple[torch.Tensor, Dict[str, float]]:
        options, model = self.options, self.model
        views, images, label = self.batch_views(batch)
        b = label.shape[0]
        z_hat, mean, std = model.encode_with_stats(images)                                      # [V·B, ...]
        g = dict(zip(views, model.primitives(mean, std).split(b)))                        # view → [B, L, D_t]
        z = dict(zip(views, z_hat.split(b)))                                               # view → [B, E]
        text_views = ["orig"] + [v for v in views[1:] if options.W_SEM > 0 and v in options.SEM_VIEWS]
        text = dict(zip(text_views, model.text_features([g[v] for v in text_views], text_views)))
        if not getattr(self, "_shift_logged", False):
            self._shift_logged = True
            self.log_prompt_shift(g["orig"])

        logits = clip_logits(model.backbone, model.image_embedding(z["orig"]), text["orig"])  # [B, C]
        terms = {"loss_ce": F.cross_entropy(logits, label)}
        if len(text_views) > 1:
            terms["loss_sem"] = sum(semantic_consistency(text["orig"], text[v], options.SEM_DIST)
                                    for v in text_views[1:])
        if options.W_CON > 0:
            # BN statistics over the global batch when distributed (SyncBN-like, see on_global_batch)
            head = lambda x: on_global_batch(model.prompter.contrastive_bn, model.prompter.image_projector(x))
            terms["loss_con"] = simclr_loss(head(z["orig"]), head(z["moco"]), options.CON_TEMPERATURE)
        weights = {"loss_ce": options.W_CE, "loss_sem": options.W_SEM, "loss_con": options.W_CON}
        loss = sum(weights[k] * v for k, v in terms.items())
        summary = {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                   "acc": compute_accuracy(logits, label)[0].item()}
        return loss, summary

    @torch.no_grad()
    def log_prompt_shift(self, g: torch.Tensor) -> None:
        """Methods spec 8.3.5: how far the first generated prompts are from CTX_INIT. A shift R much
        larger than ctx means the initial prompt is far from the hand-crafted one (then consider
        ``RHO_INIT zeros``, which starts from ctx exactly)."""
        shift = self.model.prompter.rho_for("orig")(g).norm(dim=-1).mean().item()      # mean ‖R[b, m]‖
        ctx = self.model.prompter.prompt_learner.ctx.norm(dim=-1).mean().item()         # mean ‖ctx[m]‖
        print(f"Prompt shift at the first step: mean token norm |R| = {shift:.4g}, |ctx| = {ctx:.4g} "
              f"(ratio {shift / max(ctx, 1e-12):.3g})")

    def convert_checkpoint(self, state_dict):
        if not is_official_checkpoint(state_dict):
            return state_dict
        print("Official GOPro checkpoint: mapping its tensors to ours (trainers/gopro.py, official_prompter_state)")
        return official_prompter_state(state_dict, self.model.prompter, self.options)

    # ---- evaluation policy -----------------------------------------------------------------
    def model_inference(self, input, *args, **kwargs):
        if self.options.TEST_BRANCHES == "all":
            self._run_discarded_branches(input)
        return self.model(input)

    @torch.no_grad()
    def _run_discarded_branches(self, image: torch.Tensor) -> None:
        """Official test cost (D12): the MoCo and AugMix branches run and their outputs are unused."""
        views = ["moco", "augmix"]
        extra = torch.cat(self.official_views(image, views))
        _, mean, std = self.model.encode_with_stats(extra)
        self.model.text_features(list(self.model.primitives(mean, std).split(image.shape[0])), views)

    def after_epoch(self):
        """Official checkpoint selection on the test split (D14, test-set leakage; parity only)."""
        if self.options.SELECT_ON_TEST and not self.cfg.TEST.NO_TEST:
            accuracy = self.test(split="test")
            if accuracy > self.best_result:
                self.best_result = accuracy
                self.save_model(self.epoch, self.output_dir, model_name="model-best.pth.tar")
            self.set_model_mode("train")
        super().after_epoch()
