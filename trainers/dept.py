"""DePT (Zhang, Wu, Gao, Shen, Song, CVPR 2024, "DePT: Decoupled Prompt Tuning"), a plug-in.

DePT leaves the base method's prompts and loss alone and adds a second, decoupled head over the
same features: a channel-wise transformation (cwT) of the image and text features, then a linear
probe over the training (base) classes::

    v, t       = the base model's image features [B, E] and class features [C, E] (or per image [B, C, E])
                 before normalisation (``ModelOutput.raw_image_features`` / ``raw_text_features``)
    cwT(x)     = γ ⊙ x + β                         γ = 1, β = 0 at start; one cwT for images, one for text
    lp(x)      = W x + b                           nn.Linear(E, C_base)
    L_lp       = CE([lp(cwT_t(t_y)); lp(cwT_v(v))], [y; y])      text of the label and image, 2B rows
    L          = L_base − w · CE(s, y) + w · L_lp   s: the base's logits; i.e. the base's cross-entropy
                                                     becomes (1 − w) CE + w L_lp, its other terms stay
    evaluation: base classes  (1 − w) · s + w · lp(cwT_v(v))    (TEST_TIME_FUSION; False: lp alone)
                new classes   s                                  (the head knows only the base classes)

w = ``TRAINER.DEPT.WEIGHT`` (0.7), and the head learns at ``LR_MULT`` (6.5) times ``OPTIM.LR``.
Composed with any prompt learner by ``TRAINER.PLUGINS ['DePT']`` (``trainers/plugins.py``); the
configs ``configs/trainers/DePT/<base>_<upstream config>.yaml`` hold upstream's recipes.

Facts from upstream (Koorye/DePT: ``trainers/elp_{coop,cocoop,kgcoop,maple}.py``, ``train.py``,
``configs/``): cwT is its ``FiLM`` (``scale`` ones, ``bias`` zeros); the head's loss is fused with
the cross-entropy only (KgCoOp's ``W · L_kg`` is added unweighted); the head is built and used
when ``DATASET.SUBSAMPLE_CLASSES`` is ``base``, or ``all`` on ImageNet (cross-dataset source);
its staged learning rate gives the new layers ``LR · LR_EXP`` (6.5) and the prompts ``LR``; every
upstream recipe trains 10 epochs at batch 4 with LR 0.0035 (CoCoOp: batch 1, LR 0.002);
KgCoOp+DePT uses W = 2.0 (KgCoOp alone: 8). Upstream saves the whole model (frozen CLIP included)
as one file under ``PromptLearner/`` (CoOp, CoCoOp, KgCoOp) or ``MultiModalPromptLearner/``
(MaPLe), keys ``prompt_learner.*``, ``film_lp_img.{scale,bias}``, ``film_lp_text.{scale,bias}``,
``linear_probe_proj.{weight,bias}``: such a folder evaluates here (``split_upstream``).

Where we depart from upstream, and why:

* **One plug-in, not one copied trainer per base** (upstream: ``ExtrasLinearProbe<Base>`` classes
  re-implementing each base's forward). The base's own model and loss are reused unchanged, so
  DePT composes with every prompt learner here, PromptSRC and GOPro included (no upstream code:
  their configs are the base's own recipe plus DePT's defaults; documented in the configs).
* **What "unnormalised" is for bases upstream never composed**: upstream feeds cwT the towers'
  outputs before the normalisation of the cosine logits; here the head reads the same, the vector
  the base normalises for its logits: the prompted towers' outputs (CoOp, CoCoOp, KgCoOp, MaPLe,
  IVLP, PromptSRC, TCP), and for GOPro P_v(ẑ) (in ``OFFICIAL`` mode ẑ, which is already
  normalised there). A base that hands out no such features stops at the first step with a message.
* **cwT and the head run in fp32**; upstream casts them to CLIP's dtype (fp16 on a GPU).
* **Own checkpoint folder** ``DePT/`` (cwT and head) next to the base's unchanged folder, with its
  own optimizer and scheduler (``OPTIM`` at ``LR · LR_MULT``, the same schedule: the same updates
  as upstream's two parameter groups); the frozen CLIP is not saved.
* **The subtracted cross-entropy** is CE of the base output's logits in fp32; for a base whose
  classification term is weighted (GOPro's ``W_CE``) the fusion is exact for weight 1 (its default).
* **ImageNet-A / -R** (200 of ImageNet's classes): upstream slices the head's rows by folder
  names; here the head is not used there (similarity logits), as for any other target dataset.
  Upstream's ``LINEAR_PROBE.TYPE similarity`` and ``FILM.LINEAR_PROBE False`` (unused by its
  configs) are not offered. Training a DePT run where the head does not apply (few-shot on all
  classes of another dataset) stops with an error, as upstream's assertion does.
* **PromptSRC + DePT**: GPA aggregates PromptSRC's prompts only; the head keeps its last epoch.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from .plugins import Plugin, PluggedCLIP, register_plugin

# Datasets whose label space is ImageNet's 1000 classes: the head trained there applies to them.
IMAGENET_LABEL_SPACE = ("ImageNet", "ImageNetV2", "ImageNetSketch")
UPSTREAM_KEYS = ("film_lp_img.", "film_lp_text.", "linear_probe_proj.")


def extend_cfg(cfg) -> None:
    node = CN()
    node.WEIGHT = 0.7              # w: upstream TRAINER.LINEAR_PROBE.WEIGHT
    node.TEST_TIME_FUSION = True   # base classes: (1 − w) s + w lp; False: lp alone
    node.LR_MULT = 6.5             # the head's learning rate / OPTIM.LR: upstream OPTIM.LR_EXP
    cfg.TRAINER.DEPT = node


def head_applies(cfg) -> bool:
    """Whether the evaluated (or trained) classes are those the linear head is trained on."""
    subsample = cfg.DATASET.SUBSAMPLE_CLASSES
    return subsample == "base" or (subsample == "all" and cfg.DATASET.NAME in IMAGENET_LABEL_SPACE)


class ChannelTransform(nn.Module):
    """cwT: x ↦ γ ⊙ x + β per channel (upstream ``FiLM``), in fp32."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale + self.bias


class DecoupledHead(nn.Module):
    """DePT's learnable part under upstream's names: cwT of images and text, and the linear probe
    over ``num_classes`` classes (None: no probe, for label spaces it was not trained on)."""

    def __init__(self, dim: int, num_classes: Optional[int]):
        super().__init__()
        self.film_lp_img = ChannelTransform(dim)
        self.film_lp_text = ChannelTransform(dim)
        self.linear_probe_proj = nn.Linear(dim, num_classes) if num_classes else None

    def image_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """lp(cwT_v(v)) [B, C]."""
        return self.linear_probe_proj(self.film_lp_img(image_features))

    def text_logits(self, text_features: torch.Tensor) -> torch.Tensor:
        """lp(cwT_t(t)) for text feature rows [N, E] -> [N, C]."""
        return self.linear_probe_proj(self.film_lp_text(text_features))


def label_text_features(text_features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The class features of each image's label [B, E], from [C, E] or per image [B, C, E]."""
    if text_features.dim() == 2:
        return text_features[label]
    return text_features[torch.arange(label.shape[0], device=label.device), label]


def linear_probe_loss(head: DecoupledHead, image_features: torch.Tensor, text_features: torch.Tensor,
                      label: torch.Tensor) -> torch.Tensor:
    """L_lp = CE over the 2B rows [lp(cwT_t(t_y)); lp(cwT_v(v))] with labels [y; y]."""
    logits = torch.cat([head.text_logits(label_text_features(text_features, label)), head.image_logits(image_features)])
    return F.cross_entropy(logits, torch.cat([label, label]))


def raw_features(output) -> Tuple[torch.Tensor, torch.Tensor]:
    """The base output's image and class features before normalisation, which the head reads."""
    if output.raw_image_features is None or output.raw_text_features is None:
        raise ValueError(
            f"DePT's head reads the base model's unnormalised image and class features, which this model's "
            f"{type(output).__name__} does not carry (raw_image_features / raw_text_features are None). Compose DePT "
            "with a prompt learner that hands them out (CoOp, CoCoOp, KgCoOp, MaPLe, IVLP, PromptSRC, TCP, GOPro), "
            "or fill them in the model's forward (trainers/models.py: similarity_output).")
    return output.raw_image_features, output.raw_text_features


class DePTLoss(nn.Module):
    """L = L_base + w · (L_lp − CE(s, y)): the base's cross-entropy becomes (1 − w) CE + w L_lp."""

    def __init__(self, base: nn.Module, head: DecoupledHead, weight: float):
        super().__init__()
        self.base = base
        self.head = head
        self.weight = weight

    def forward(self, output, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss, terms = self.base(output, label)
        loss_sim = F.cross_entropy(output.logits.float(), label)
        loss_lp = linear_probe_loss(self.head, *raw_features(output), label)
        return loss + self.weight * (loss_lp - loss_sim), {**terms, "loss_lp": loss_lp}


class DePTCLIP(PluggedCLIP):
    """The base model; in evaluation on the head's classes its logits are fused with the head's."""

    def __init__(self, base: nn.Module, head: DecoupledHead, weight: float, fusion: bool):
        super().__init__(base, head)
        self.weight = weight
        self.fusion = fusion

    def extend(self, output):
        head = self.plugin
        if self.learning or head.linear_probe_proj is None:
            return output
        probe = head.image_logits(raw_features(output)[0])
        logits = (1 - self.weight) * output.logits.float() + self.weight * probe if self.fusion else probe
        return dataclasses.replace(output, logits=logits)


@register_plugin
class DePT(Plugin):
    NAME = "DePT"
    CFG_NODE = "DEPT"

    def compose(self, model: nn.Module, criterion: nn.Module) -> Tuple[nn.Module, nn.Module]:
        options = self.options
        self.module = DecoupledHead(model.backbone.embed_dim, len(self.classnames) if head_applies(self.cfg) else None)
        print(f"DePT: w = {options.WEIGHT}, head lr × {options.LR_MULT}, "
              f"linear probe {'over ' + str(len(self.classnames)) + ' classes' if self.module.linear_probe_proj else 'off (similarity only)'}")
        return (DePTCLIP(model, self.module, options.WEIGHT, options.TEST_TIME_FUSION),
                DePTLoss(criterion, self.module, options.WEIGHT))

    def lr_multiplier(self) -> float:
        return float(self.options.LR_MULT)

    def check_training(self) -> None:
        if self.module.linear_probe_proj is None:
            raise ValueError(
                f"DePT trains its linear head on the training classes, which it supports for DATASET.SUBSAMPLE_CLASSES "
                f"base (base-to-new) or all on ImageNet (cross-dataset source), as upstream; got "
                f"{self.cfg.DATASET.SUBSAMPLE_CLASSES} on {self.cfg.DATASET.NAME}. Train the base method without "
                "TRAINER.PLUGINS for this protocol.")

    def upstream_folder(self) -> Optional[str]:
        # Upstream's DePT trainers register the whole model; where the base registered its prompt
        # learner alone (``prompt_learner``), they name it ``PromptLearner``.
        return "PromptLearner" if self.base_model_name == "prompt_learner" else None

    def split_upstream(self, state_dict):
        if not any(k.startswith(UPSTREAM_KEYS) for k in state_dict):
            return state_dict, {}
        own = {k: v for k, v in state_dict.items() if k.startswith(UPSTREAM_KEYS)}
        rest = {k: v for k, v in state_dict.items() if not k.startswith(UPSTREAM_KEYS)}
        if self.base_model_name == "prompt_learner":  # the base's module is the whole model's prompt_learner
            rest = {k[len("prompt_learner."):]: v for k, v in rest.items() if k.startswith("prompt_learner.")}
        return rest, own
