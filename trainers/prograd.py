"""ProGrad (Zhu, Niu, Han, Wu, Zhang, ICCV 2023): CoOp, updated only along directions that do not
contradict zero-shot CLIP.

    s      = 100 · f̂(x) · ŵᵀ                     [B, C]   CoOp prompts, ctx [N_CTX, D_t]
    s_T    = 100 · f̂(x) · ŵ_Tᵀ                   [B, C]   zero-shot CLIP, one template per dataset
    L_ce   = (1/B) Σ_b CE(s_b, y_b)
    L_kd   = (1/B) Σ_b Σ_c −softmax(s_T,b / τ)_c · log softmax(s_b / τ)_c · τ²       τ = LOSS.T
    g_ce   = ∇ L_ce,  g_kd = ∇ L_kd                       (per learnable tensor)
    g      = g_ce − λ · (⟨g_ce, g_kd⟩ / ‖g_kd‖²) · g_kd    if ⟨g_ce, g_kd⟩ < 0     λ = LOSS.LAMBDA
           = g_ce                                           otherwise

SGD (momentum, weight decay) then steps on g: g_kd is never added, only the component of g_ce
that conflicts with it is removed (with λ = 1, g ⊥ g_kd). Evaluation is CoOp's (s only).

Context init: with a non-empty ``CTX_INIT`` the dataset's ProGrad template without " {}." gives a
phrase of k words; the last k of the N_CTX vectors are the embeddings of its first k BPE tokens,
the others are zero, and the prompt text is "X … X <phrase> <class>.". A comma is a BPE token of
its own, so for "a type of pet, a photo of a {}." the final "a" stays fixed text after the context.
An empty ``CTX_INIT`` gives CoOp's random context (CSC allowed).

Upstream interface kept: ``TRAINER.COOP`` (N_CTX, CTX_INIT, CSC, CLASS_TOKEN_POSITION) and
``LOSS.{NAME, T, LAMBDA}``; registered name ``prompt_learner`` with ``ctx``, ``token_prefix``,
``token_suffix``.

Choices where upstream leaves one:

* ``LOSS.NAME`` must be "prograd" (upstream raises otherwise); "" (our ``train.py`` default, kept
  for GOPro's command lines) means "prograd" too. A client without a ``LOSS`` node gets τ = λ = 1.
* The teacher shares the student's frozen image features (upstream runs a second, fp32 CLIP on the
  same batch: the same weights, so only rounding differs) and encodes its class features once with
  the same frozen text tower, on first use.
* Same seed, same start: upstream loads CLIP twice (the student's, then the teacher's) before the
  prompt learner draws a random context, and the data loader's first shuffle comes after both. Our
  teacher needs no second CLIP, so that load's random draws are replayed where upstream makes them
  (``replay_clip_construction``): the same seed gives upstream's initial context and data order,
  with ``CTX_INIT`` empty or not.
* ``CLASS_TOKEN_POSITION`` "middle" works here (upstream crashes on it).
* Distributed: g_ce and g_kd are each averaged over processes before the projection, so a step
  equals one process's on the global batch.
* ViT-B/16 recipe (not in the sources): CoOp's base-to-new schedule (batch 32, lr 0.002, 200
  epochs, ImageNet and cross-dataset 50) with N_CTX 16, template init, λ = τ = 1, last epoch.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone, load_clip
from .distributed import all_reduce_mean_
from .prompts import CLASS_TOKEN_POSITIONS, PromptLearner, TextEncoding, coop_context
from .templates import CUSTOM_TEMPLATES
from .trainer_base import ClipPromptTrainer, add_coop_keys
from .teachers import GuidedOutput, GuidedPromptCLIP, ZeroShotClassifier, template_of
from .upstream_init import replay_clip_construction

# The teacher's template per dataset (also the context init): the category phrase comes first.
TEACHER_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}
LOSS_NAMES = ("prograd", "")


def extend_cfg(cfg) -> None:
    add_coop_keys(cfg)  # LOSS.{NAME, T, LAMBDA} are defined by train.py (as by upstream's)


def template_context(backbone: ClipBackbone, n_ctx: int, template: str) -> Tuple[torch.Tensor, str]:
    """Context [n_ctx, D_t] ending with the embedded phrase of ``template`` (zeros before it), and
    the prompt prefix "X … X <phrase>" it stands in for."""
    if not template.endswith(" {}."):
        raise ValueError(f"ProGrad's context init needs a template ending in ' {{}}.', got {template!r}")
    phrase = template[: -len(" {}.")]
    k = len(phrase.split(" "))
    if k > n_ctx:
        raise ValueError(f"TRAINER.COOP.N_CTX is {n_ctx}, but the template phrase {phrase!r} has {k} words: "
                         f"set N_CTX >= {k} or CTX_INIT ''")
    words = backbone.embed_tokens(backbone.tokenize([phrase]))[0, 1:1 + k]               # [k, D_t]
    ctx = torch.zeros(n_ctx, backbone.text_width, device=words.device)
    ctx[n_ctx - k:] = words.float()
    return ctx, " ".join(["X"] * (n_ctx - k) + [phrase])


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_kd: soft-target cross-entropy against the teacher at temperature τ, times τ² ([B, C] → scalar)."""
    target = F.softmax(teacher_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(target * log_p).sum(-1).mean() * temperature ** 2


def project_conflicting(g_ce: torch.Tensor, g_kd: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """g_ce without λ times its component along g_kd when the two conflict (⟨g_ce, g_kd⟩ < 0)."""
    dot = torch.sum(g_ce * g_kd)
    if dot >= 0:
        return g_ce
    return g_ce - strength * dot / torch.sum(g_kd * g_kd) * g_kd


def mean_over_processes(grads: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """Each gradient averaged over the processes of a distributed run (unchanged in one process)."""
    all_reduce_mean_(grads)
    return grads


class ProGradLoss(nn.Module):
    """ProGrad's two objectives from one forward: L_ce, the loss whose gradient the update follows
    (logged as "loss"), and L_kd, whose gradient only decides what of it is removed
    (``ProGrad.update``). Returns (L_ce, {"loss_kd": L_kd})."""

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    def forward(self, output: GuidedOutput, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss_ce = F.cross_entropy(output.logits.float(), label)
        loss_kd = distillation_loss(output.logits, output.teacher_logits, self.temperature)
        return loss_ce, {"loss_kd": loss_kd}


@TRAINER_REGISTRY.register()
class ProGrad(ClipPromptTrainer):
    CFG_NODE = "COOP"
    MODEL_NAME = "prompt_learner"
    CHOICES = {"CLASS_TOKEN_POSITION": CLASS_TOKEN_POSITIONS}

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        name = cfg.get("LOSS", {}).get("NAME", "prograd")
        if name not in LOSS_NAMES:
            raise ValueError(f"LOSS.NAME must be 'prograd' for the ProGrad trainer, got {name!r}")

    @property
    def temperature(self) -> float:
        return float(self.cfg.get("LOSS", {}).get("T", 1.0))

    @property
    def strength(self) -> float:
        """λ of the projection (LOSS.LAMBDA)."""
        return float(self.cfg.get("LOSS", {}).get("LAMBDA", 1.0))

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        template = template_of(self.cfg.DATASET.NAME, TEACHER_TEMPLATES)
        backbone_cfg = self.cfg.MODEL.BACKBONE
        replay_clip_construction(backbone, lambda: load_clip(backbone_cfg.NAME, backbone_cfg.PATH))  # the teacher's
        if options.CTX_INIT:
            ctx, prefix = template_context(backbone, options.N_CTX, template)
        else:
            ctx, prefix = coop_context(backbone, options, len(classnames), ctx_init="")
        learner = PromptLearner(backbone, classnames, ctx, prefix, options.CLASS_TOKEN_POSITION,
                                truncate=options.TRUNCATE_TEXT)
        print(f'Initial context: "{prefix}"; teacher prompt: "{template}"; '
              f"tau = {self.temperature}, lambda = {self.strength}")
        teacher = ZeroShotClassifier(backbone, classnames, template)
        return GuidedPromptCLIP(backbone, learner, teacher, TextEncoding.from_options(options))

    def build_criterion(self) -> ProGradLoss:
        return ProGradLoss(self.temperature)

    def update(self, loss_ce: torch.Tensor, terms: Dict[str, torch.Tensor]) -> None:
        """ProGrad's update rule: the optimizer steps on g = g_ce without its component against
        g_kd (``project_conflicting``), each gradient averaged over processes first."""
        loss_kd = terms["loss_kd"]
        self.detect_anomaly(loss_ce + loss_kd)
        self.model_zero_grad()
        params = [p for p in self.model.learnable.parameters() if p.requires_grad]
        g_kd = mean_over_processes(torch.autograd.grad(loss_kd, params, retain_graph=True))
        g_ce = mean_over_processes(torch.autograd.grad(loss_ce, params))
        for param, ce, kd in zip(params, g_ce, g_kd):
            param.grad = project_conflicting(ce, kd, self.strength)
        self.model_update()
