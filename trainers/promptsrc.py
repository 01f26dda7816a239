"""PromptSRC (Khattak et al., ICCV 2023): self-regulating prompts.

IVLP's independent deep prompts in both towers (``trainers/deep_prompts.py``), regulated by the
frozen CLIP they start from, and averaged over epochs:

    s     = 100 · v̂ t̂ᵀ                         prompted image v̂ [B, E], prompted text t̂ [C, E]
    s_zs  = 100 · v̂_zs t̂_zsᵀ                   frozen CLIP image feature v̂_zs [B, E]; t̂_zs [C, E] the
                                                normalised mean of the *raw* features of 60 templates
    L_CE     = CE(s, y)
    L_text   = λ_t · mean_{c,k} |t̂ − t̂_zs|        λ_t = TEXT_LOSS_WEIGHT (25)
    L_image  = λ_v · mean_{b,k} |v̂ − v̂_zs|        λ_v = IMAGE_LOSS_WEIGHT (10)
    L_logits = Σ_{b,c} p_zs (log p_zs − log p) / (B·C),   p = softmax(s), p_zs = softmax(s_zs)
    L        = L_CE + L_text + L_image + L_logits

Gaussian prompt aggregation (GPA): with N epochs, w_a ∝ exp(−(a − μ)² / 2σ²) for a = 1..N
(μ = GPA_MEAN, σ = GPA_STD, Σ w_a = 1). At the last step of epoch a, after the optimizer and the
scheduler stepped, S ← S + w_a · θ_a over the learnable prompts θ; at the end of epoch N the
prompts become S, so the last checkpoint and every evaluation use the aggregated prompts.

Interfaces as upstream (muzairkhattak/PromptSRC): trainer ``PromptSRC``, config node
``TRAINER.PROMPTSRC``, registered module ``VLPromptLearner`` with IVLP's keys (``prompt_learner.ctx``,
``image_encoder.VPT``, ``{image,text}_encoder.transformer.resblocks.<j>.VPT_shallow``).
Deliberate differences: GPA sums the learnable prompts in fp32 and leaves the
frozen CLIP untouched (upstream sums the whole fp16 state, moving frozen weights by ~1 ulp); the GPA
running sum is checkpointed (registered as ``GPA``) so an interrupted run resumes exactly; losses
run in fp32; the teachers are the frozen backbone itself (no second CLIP), and the 60-template text
teacher is encoded once, on the first training step, in the backbone's precision (upstream: fp32).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .deep_prompts import IndependentVLCLIP, VLPrompts
from .models import ModelOutput, class_level, clip_logits, extend_output
from .prompts import TextEncoding
from .templates import PROMPTSRC_TEMPLATES, encode_templates
from .trainer_base import DeepPromptTrainer, add_prompt_keys
from .upstream_init import replay_clip_init

GPA_MODEL_NAME = "GPA"


def extend_cfg(cfg) -> None:
    node = add_prompt_keys(cfg, "PROMPTSRC", CTX_INIT="a photo of a", PREC="fp16", N_CTX_VISION=4, N_CTX_TEXT=4,
                           PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25,
                           IMAGE_LOSS_WEIGHT=10, GPA_MEAN=15, GPA_STD=1)
    del node["N_CTX"]  # text and vision tokens are counted separately


# --------------------------------------------------------------------------------------------
# Model: prompted CLIP and its frozen teachers
# --------------------------------------------------------------------------------------------
@dataclass
class RegulatedOutput(ModelOutput):
    """The prompted model's output (s [B, C], v̂ [B, E], t̂ [C, E]) and, in training steps, the
    frozen teachers' it is regulated against (None in evaluation)."""

    zs_logits: Optional[torch.Tensor] = None                   # s_zs  [B, C] (no grad)
    zs_image_features: Optional[torch.Tensor] = None           # v̂_zs  [B, E] (no grad)
    zs_text_features: Optional[torch.Tensor] = class_level()   # t̂_zs  [C, E] (constant)


class PromptSRCCLIP(IndependentVLCLIP):
    """IVLP's prompted CLIP plus the frozen teachers the prompts are regulated against."""

    def __init__(self, backbone: ClipBackbone, prompts: VLPrompts, classnames: Sequence[str],
                 text_encoding: TextEncoding = TextEncoding()):
        super().__init__(backbone, prompts, text_encoding)
        self.classnames = list(classnames)
        self._zs_text = None

    def zs_text_features(self) -> torch.Tensor:
        """t̂_zs [C, E]: normalised mean of the raw features of the 60 templates; encoded once."""
        if self._zs_text is None:
            self._zs_text = encode_templates(self.backbone, self.classnames, PROMPTSRC_TEMPLATES,
                                             normalize_each=False)
        return self._zs_text

    def forward(self, image: torch.Tensor) -> RegulatedOutput:
        output = extend_output(super().forward(image), RegulatedOutput)
        if self.learning:
            output.zs_text_features = self.zs_text_features()
            output.zs_image_features = self.frozen_embedding(image)
            output.zs_logits = clip_logits(self.backbone, output.zs_image_features, output.zs_text_features)
        return output


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
class SelfRegulatingLoss(nn.Module):
    """L_CE + λ_t·L1(t̂, t̂_zs) + λ_v·L1(v̂, v̂_zs) + KL(p_zs ‖ p)/(B·C); returns the loss and its terms."""

    def __init__(self, text_weight: float, image_weight: float):
        super().__init__()
        self.text_weight = text_weight
        self.image_weight = image_weight

    def forward(self, out: RegulatedOutput, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        terms = {
            "loss_ce": F.cross_entropy(out.logits, label),
            "loss_text": self.text_weight * F.l1_loss(out.text_features, out.zs_text_features),
            "loss_image": self.image_weight * F.l1_loss(out.image_features, out.zs_image_features),
            # sum over batch and classes, divided by B·C (not "batchmean": upstream's sum over numel)
            "loss_logits": F.kl_div(F.log_softmax(out.logits, dim=-1), F.log_softmax(out.zs_logits, dim=-1),
                                    reduction="sum", log_target=True) / out.logits.numel(),
        }
        return sum(terms.values()), terms


# --------------------------------------------------------------------------------------------
# Gaussian prompt aggregation
# --------------------------------------------------------------------------------------------
def gpa_weights(num_epochs: int, mean: float, std: float) -> torch.Tensor:
    """w_a ∝ exp(−(a − μ)² / 2σ²) for epochs a = 1..N (1-based), normalised to sum 1: [N] fp64.

    (Upstream normalises the Gaussian pdf; the constant cancels. A softmax of the exponents gives
    the same weights and no 0/0 when every epoch lies far from μ, e.g. short test runs.)"""
    if std <= 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}")
    epochs = torch.arange(1, num_epochs + 1, dtype=torch.float64)
    return torch.softmax(-(epochs - mean) ** 2 / (2 * std ** 2), dim=0)


class GaussianPromptAggregation(nn.Module):
    """The running sum S = Σ_{a' <= a} w_a' θ_a' (fp32, one buffer per learnable tensor) and the
    number of epochs it holds. Registered as a model of its own, so checkpoints carry it."""

    def __init__(self, prompts: nn.Module, weights: torch.Tensor):
        super().__init__()
        self.prompts = [prompts]  # a list: not a submodule, so not in this module's state_dict
        self.names = [name for name, p in prompts.named_parameters() if p.requires_grad]
        self.register_buffer("weights", weights, persistent=False)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        for i, name in enumerate(self.names):
            self.register_buffer(f"sum_{i}", torch.zeros_like(prompts.get_parameter(name), dtype=torch.float32))

    def running_sum(self) -> List[torch.Tensor]:
        return [getattr(self, f"sum_{i}") for i in range(len(self.names))]

    @torch.no_grad()
    def accumulate(self, epoch: int) -> None:
        """Add w_epoch · θ (``epoch`` 0-based); after the last epoch the prompts become S."""
        if int(self.epochs_done) != epoch:
            raise RuntimeError(f"GPA holds {int(self.epochs_done)} epochs but epoch {epoch + 1} ended: the running "
                               "sum does not belong to this run (resume from a checkpoint of the same run)")
        module, weight = self.prompts[0], float(self.weights[epoch])
        for name, total in zip(self.names, self.running_sum()):
            total.add_(module.get_parameter(name).float(), alpha=weight)
        self.epochs_done += 1
        if epoch + 1 == len(self.weights):
            for name, total in zip(self.names, self.running_sum()):
                module.get_parameter(name).copy_(total)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class PromptSRC(DeepPromptTrainer):
    CFG_NODE = "PROMPTSRC"
    MODEL_NAME = "VLPromptLearner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        return PromptSRCCLIP(backbone, self.vl_prompts(backbone, classnames), classnames,
                             TextEncoding.from_options(self.options))

    def build_criterion(self) -> SelfRegulatingLoss:
        return SelfRegulatingLoss(self.options.TEXT_LOSS_WEIGHT, self.options.IMAGE_LOSS_WEIGHT)

    def build_model(self):
        super().build_model()
        options = self.options
        weights = gpa_weights(self.cfg.OPTIM.MAX_EPOCH, options.GPA_MEAN, options.GPA_STD)
        self.gpa = GaussianPromptAggregation(self.model.learnable, weights).to(self.device)
        self.register_model(GPA_MODEL_NAME, self.gpa, None, None)

    def before_train(self):
        # Upstream's prompt learner builds two more CLIPs (its frozen teachers) after the prompts:
        # make the same draws, so that the same seed gives upstream's data order too. (Here, not
        # in build_model: evaluation-only runs do not need it.)
        for _ in range(2):
            replay_clip_init(self.backbone)
        super().before_train()

    def forward_backward(self, batch):
        summary = super().forward_backward(batch)  # steps the optimizer, and the scheduler on the last batch
        if (self.batch_idx + 1) == self.num_batches:
            self.gpa.accumulate(self.epoch)
        return summary

    def load_model(self, directory, epoch=None):
        """Evaluation loads the prompts only: the GPA sum matters to resuming (which restores every
        registered model), and upstream's files have none."""
        gpa = self._models.pop(GPA_MODEL_NAME)
        try:
            super().load_model(directory, epoch)
        finally:
            self._models[GPA_MODEL_NAME] = gpa
