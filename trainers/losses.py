"""Loss modules and loss terms shared by several methods.

A loss module maps a model's output and the labels to ``(loss, terms)``: the scalar to minimise
and its named parts for the log (``ClipPromptTrainer.summarize``).

* ``ClassificationLoss``: cross-entropy of the logits (CoOp, CoCoOp, MaPLe, IVLP, VPT, StyLIP);
* ``simclr_loss`` and ``on_global_batch``: the visual contrastive term of the self-supervised
  learners (GOPro, SLIP-style), over the global batch when distributed;
* ``knowledge_guidance_loss`` and ``KnowledgeGuidedLoss``: KgCoOp's pull of the learned class
  features towards zero-shot CLIP's, CE + W · (1 − mean cos) (KgCoOp, TCP).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributed import gather_with_grad, world


def on_global_batch(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` applied to the rows of all ranks; returns this rank's rows of the result.

    For heads with BatchNorm (GOPro's contrastive head, SLIP's SSL head): the statistics are those
    of the global batch on every rank, as in one process, i.e. what SyncBatchNorm does; unlike
    ``nn.SyncBatchNorm`` it also runs on CPU/gloo, and it keeps the plain ``BatchNorm1d`` modules
    (and checkpoint keys) of upstream. Gradients flow back to every rank's rows (the gather is
    differentiable), so with the engine's gradient averaging the update equals one process's.
    Every rank must pass the same number of rows. Single process: ``module(x)``.
    """
    rank, size = world()
    if size == 1:
        return module(x)
    return module(gather_with_grad(x)).chunk(size)[rank]


def simclr_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SLIP's NT-Xent between two views [B, E] (computed in fp32).

    For sample i the positive is the other view of i; negatives are every other sample of both
    views, gathered from all ranks (so the loss matches a single process with the global batch).
    """
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    rank, _ = world()
    all_a, all_b = gather_with_grad(a), gather_with_grad(b)
    labels = torch.arange(a.shape[0], device=a.device) + rank * a.shape[0]
    self_mask = F.one_hot(labels, all_a.shape[0]).to(a.dtype) * 1e9
    logits_aa = a @ all_a.t() / temperature - self_mask
    logits_bb = b @ all_b.t() / temperature - self_mask
    logits_ab = a @ all_b.t() / temperature
    logits_ba = b @ all_a.t() / temperature
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
    return (loss_a + loss_b) / 2


class ClassificationLoss(nn.Module):
    """CE(logits, y): the objective of the prompt learners trained on labels alone."""

    def forward(self, output, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        return F.cross_entropy(output.logits, label), {}


def knowledge_guidance_loss(text_features: torch.Tensor, clip_text_features: torch.Tensor) -> torch.Tensor:
    """L_kg = 1 − mean_c cos(ŵ_c, ŵ_c^clip) over the C classes ([C, E] each), in fp32."""
    cos = F.cosine_similarity(text_features.float(), clip_text_features.float(), dim=-1, eps=1e-7)
    return 1.0 - cos.mean()


class KnowledgeGuidedLoss(nn.Module):
    """L = CE(s, y) + W · L_kg, from a student's output (``text_features``) and its zero-shot
    teacher's class features (``teacher_text_features``, a ``teachers.GuidedOutput``)."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, output, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss_ce = F.cross_entropy(output.logits.float(), label)
        loss_kg = knowledge_guidance_loss(output.text_features, output.teacher_text_features)
        return loss_ce + self.weight * loss_kg, {"loss_ce": loss_ce, "loss_kg": loss_kg}
