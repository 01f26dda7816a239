"""SLIP-style baseline: frozen CLIP, hand-crafted class prompts, and a light image-side module
trained with SLIP's multi-task objective (CLIP cross-entropy + SimCLR).

This is an *interpretation* of the "SLIP" rows of GOPro's tables: the paper
text that would define them could not be read. Released SLIP models are far weaker than the
reported row, which sits just above zero-shot CLIP, so we read it as frozen OpenAI CLIP plus a
learnable projection trained SLIP-style on the few-shot data:

    ẑ_k    = normalize(f_v(v_k))          three views: v_0 standard, v_1/v_2 SSL views  (frozen)
    u_k    = P_v(ẑ_k)                     Linear(E → E), identity init: epoch 0 = zero-shot CLIP
    L_clip = CE(100 · ⟨normalize(u_0), W⟩, y)     W: frozen template features of the label space
    L_ssl  = NT-Xent(g(u_1), g(u_2); τ = SSL_TEMP)  g = SSL head *on top of* P_v
    L      = L_clip + SSL_SCALE · L_ssl

``CLIP_LOSS in_batch`` replaces L_clip by SLIP's symmetric image↔caption loss over the B captions
of the batch (rank-local). Test: logits from normalize(P_v(ẑ)) and W; no text-encoder passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .components import ImageProjector
from .losses import on_global_batch, simclr_loss
from .models import FixedTextCLIP, ModelOutput, clip_logits
from .templates import dataset_template, encode_templates
from .trainer_base import ClipPromptTrainer
from .views import mocov3_view, slip_view

CHOICES = dict(SSL_HEAD=("linear_bn", "mlp3"), SSL_AUG=("slip", "mocov3"), PV_INIT=("identity", "default"),
               CLIP_LOSS=("all_classes", "in_batch"))
SSL_VIEWS = {"slip": slip_view, "mocov3": mocov3_view}
MLP3_WIDTH, MLP3_OUT = 4096, 256  # SLIP's SSL head: 4096-4096-256


def extend_cfg(cfg) -> None:
    node = CN()
    node.PREC = "fp16"
    node.SSL_SCALE = 1.0
    node.SSL_TEMP = 0.1
    node.SSL_HEAD = "linear_bn"
    node.SSL_AUG = "slip"
    node.PV_INIT = "identity"
    node.TEMPLATE = "custom"  # "custom" = the dataset's hand-crafted template; or e.g. "a photo of a {}."
    node.CLIP_LOSS = "all_classes"
    cfg.TRAINER.SLIP = node


def ssl_head(kind: str, dim: int) -> nn.Module:
    """g: ``linear_bn`` = Linear + BN (GOPro's contrastive head); ``mlp3`` = SLIP's 3-layer MLP."""
    if kind == "linear_bn":
        return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))
    return nn.Sequential(
        nn.Linear(dim, MLP3_WIDTH), nn.BatchNorm1d(MLP3_WIDTH), nn.ReLU(inplace=True),
        nn.Linear(MLP3_WIDTH, MLP3_WIDTH), nn.BatchNorm1d(MLP3_WIDTH), nn.ReLU(inplace=True),
        nn.Linear(MLP3_WIDTH, MLP3_OUT),
    )


class SLIPHead(nn.Module):
    """Everything the SLIP-style baseline learns (saved in checkpoints as ``slip``): P_v and the
    SSL head g on top of it."""

    def __init__(self, dim: int, pv_init: str = "identity", ssl_head_kind: str = "linear_bn"):
        super().__init__()
        self.image_projector = ImageProjector(dim, pv_init)
        self.ssl_head = ssl_head(ssl_head_kind, dim)


@dataclass
class SLIPOutput(ModelOutput):
    """``SLIPCLIP.forward``'s record: the base fields for the standard view (``image_features`` =
    normalize(u_0) [B, E], ``text_features`` = W [C, E]) and ``ssl_features``, u_k = P_v(ẑ_k) [B, E]
    of each SSL view (none at test)."""

    ssl_features: Tuple[torch.Tensor, ...] = ()


class SLIPCLIP(FixedTextCLIP):
    """Frozen CLIP, fixed class features W [C, E] and the learnable ``SLIPHead`` (P_v + SSL head)."""

    def project(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.learnable.image_projector(z_hat)

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """P_v(ẑ): the image side of the logits before normalisation [B, E]."""
        return self.project(self.frozen_embedding(image))

    def forward(self, image: torch.Tensor, *ssl_views: torch.Tensor) -> SLIPOutput:
        """Logits of ``image`` [B, 3, H, W] and the projections of the SSL views (training), from one
        frozen image pass over all of them."""
        u = self.project(self.frozen_embedding(torch.cat([image, *ssl_views]))).split(len(image))   # per view [B, E]
        image_features = F.normalize(u[0], dim=-1)
        return SLIPOutput(clip_logits(self.backbone, image_features, self.class_features), image_features,
                          self.class_features, ssl_features=u[1:])


def in_batch_clip_loss(image_features: torch.Tensor, caption_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """SLIP's symmetric CLIP loss over B (image, caption) pairs; features normalised [B, E]."""
    logits = scale * image_features @ caption_features.t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


class SLIPLoss(nn.Module):
    """L = L_clip + SSL_SCALE · L_ssl from a ``SLIPOutput`` and the labels.

    L_clip: cross-entropy over all classes, or (``in_batch``) SLIP's symmetric loss over the B
    captions of the batch at ``logit_scale``; L_ssl: NT-Xent of g(u_1), g(u_2) with the learnable
    SSL head g (held here by reference), whose BatchNorm sees the global batch when distributed.
    """

    def __init__(self, ssl_head: nn.Module, logit_scale: torch.Tensor, clip_loss: str = "all_classes",
                 ssl_scale: float = 1.0, temperature: float = 0.1):
        super().__init__()
        self.ssl_head = ssl_head
        self.logit_scale = logit_scale
        self.clip_loss = clip_loss
        self.ssl_scale = ssl_scale
        self.temperature = temperature

    def forward(self, output: SLIPOutput, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if self.clip_loss == "in_batch":
            captions = output.text_features[label]
            terms = {"loss_clip": in_batch_clip_loss(output.image_features, captions, self.logit_scale)}
        else:
            terms = {"loss_clip": F.cross_entropy(output.logits, label)}
        if self.ssl_scale > 0:
            u1, u2 = output.ssl_features
            head = lambda u: on_global_batch(self.ssl_head, u)
            terms["loss_ssl"] = simclr_loss(head(u1), head(u2), self.temperature)
        loss = terms["loss_clip"] + self.ssl_scale * terms.get("loss_ssl", 0.0)
        return loss, terms


@TRAINER_REGISTRY.register()
class SLIP(ClipPromptTrainer):
    CFG_NODE = "SLIP"
    MODEL_NAME = "slip"
    CHOICES = CHOICES

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        options = self.method_options(cfg)
        if options.TEMPLATE != "custom" and "{}" not in options.TEMPLATE:
            raise ValueError(f"TRAINER.SLIP.TEMPLATE must be 'custom' or contain '{{}}' for the class name, "
                             f"got {options.TEMPLATE!r}")

    @property
    def uses_ssl(self) -> bool:
        return self.options.SSL_SCALE > 0

    def train_transforms(self):
        """[standard, SSL view, SSL view], built from the raw image in DataLoader workers."""
        if not self.uses_ssl:
            return None
        size = self.cfg.INPUT.SIZE[0]
        make_view = SSL_VIEWS[self.options.SSL_AUG]
        return [build_transform(self.cfg, is_train=True), make_view(size), make_view(size)]

    def template(self) -> str:
        template = self.options.TEMPLATE
        return dataset_template(self.cfg.DATASET.NAME) if template == "custom" else template

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options, template = self.options, self.template()
        print(f'SLIP-style: class prompts "{template}", SSL head {options.SSL_HEAD} on P_v, '
              f"SSL views {options.SSL_AUG}, weight {options.SSL_SCALE}, CLIP loss {options.CLIP_LOSS}")
        class_features = encode_templates(backbone, classnames, [template])
        return SLIPCLIP(backbone, SLIPHead(backbone.embed_dim, options.PV_INIT, options.SSL_HEAD), class_features)

    def build_criterion(self) -> SLIPLoss:
        options = self.options
        return SLIPLoss(self.model.learnable.ssl_head, self.backbone.logit_scale, options.CLIP_LOSS,
                        options.SSL_SCALE, options.SSL_TEMP)

    def model_inputs(self, batch) -> Tuple[tuple, torch.Tensor]:
        """((image, SSL view, SSL view), labels); the image alone when L_ssl is off."""
        image, label = self.parse_batch_train(batch)
        ssl_views = [batch["img2"].to(self.device), batch["img3"].to(self.device)] if self.uses_ssl else []
        return (image, *ssl_views), label
