"""CLIP-LoRA: low-rank updates of the attention projections of both CLIP encoders.

Zanella & Ben Ayed, "Low-Rank Few-Shot Adaptation of Vision-Language Models", CVPRW 2024
(github.com/MaxZanella/CLIP-LoRA). Every attention block chosen by ``POSITION`` (default ``all``)
of the encoders chosen by ``ENCODER`` (default ``both``) gets, for each projection in ``PARAMS``
(default q, k, v; ``o`` = the output projection), W x + (α / √r) · B A dropout(x), with rank
r = ``R`` = 2, α = ``ALPHA`` = 1, dropout ``DROPOUT`` = 0.25 on the update's input only (training),
A [r, in] drawn like ``nn.Linear``'s weight (Kaiming-uniform, a = √5) and B [out, r] zero, so
training starts at zero-shot CLIP. Logits are 100 · cos(image, text) with the text of the dataset's
first template (CoOp's per-dataset template), encoded with its LoRA at every step. AdamW
(lr ``OPTIM.LR`` = 2e-4, weight decay 0.01, betas 0.9 / 0.999), a cosine schedule to 1e-6 over
``N_ITERS`` × shots iterations (500 × shots; with all images, shots = images per class), batch 32, random resized crop (0.08-1) and flip.

Positions (upstream's tables for 12 blocks, the same rule for other depths L): ``all``,
``bottom`` / ``mid`` / ``up`` (thirds), ``half-bottom`` / ``half-up``, ``top`` (last block),
``top3`` (last three).

The checkpoint (``lora/model.pth.tar-N``) holds the LoRA tensors only. Upstream's file
(``lora_weights.pt``: ``{"weights": {"layer_<i>": {"q_proj": {"w_lora_A", "w_lora_B"}, ...}},
"metadata": {"r", "alpha", "encoder", "params", "position"}}``, layers numbered text blocks first,
then vision blocks) evaluates with ``--eval-only --model-dir DIR`` where DIR holds it; its metadata
must match this run's options.

Departures from upstream, and why:

* LoRA is added without replacing CLIP's attention modules: the update rides on the unmodified
  ``nn.MultiheadAttention`` as its ``qkv_adaptation`` submodule, which the shared backbone adds to
  the fused q/k/v projection (``trainers/clip_backbone.py``); ``o`` wraps the output projection;
* training is counted in iterations as upstream (its loop draws batches from the shuffled train
  set, pass after pass, until the last iteration); in Dassl's terms the iterations are split into
  ``OPTIM.MAX_EPOCH`` epochs (default 1: one epoch of 500 × shots iterations, so a killed run
  resumes from its start), the scheduler steps every iteration;
* the LoRA matrices and their update are fp32; the frozen towers run in ``PREC`` (upstream: fp16
  autocast with a gradient scaler, with the LoRA'd q/k/v projections in fp32);
* the initial A matrices are drawn in our order (text blocks, then vision; q, k, v), not in
  upstream's, whose replaced layers also draw ``nn.Linear`` weights that are then overwritten;
* ImageNet trains on Dassl's augmented training transform like every other dataset (upstream's
  ImageNet loader keeps the test transform).
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone, build_backbone
from .losses import ClassificationLoss
from .models import ModelOutput, PromptedCLIP, TextFeatureCache
from .prompts import clean_classname
from .templates import dataset_template
from .trainer_base import ClipPromptTrainer

UPSTREAM_FILE = "lora_weights.pt"
UPSTREAM_NAMES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "proj"}
LOGIT_SCALE = 100.0  # upstream's fixed scale
MIN_LR = 1e-6        # upstream's eta_min


def extend_cfg(cfg):
    cfg.TRAINER.CLIPLORA = CN(dict(PREC="fp16", R=2, ALPHA=1.0, DROPOUT=0.25, PARAMS=["q", "k", "v"],
                                   POSITION="all", ENCODER="both", N_ITERS=500))


POSITIONS = {
    "all": lambda depth: range(depth),
    "bottom": lambda depth: range(0, depth // 3),
    "mid": lambda depth: range(depth // 3, 2 * depth // 3),
    "up": lambda depth: range(2 * depth // 3, depth),
    "half-bottom": lambda depth: range(depth // 2),
    "half-up": lambda depth: range(depth // 2, depth),
    "top": lambda depth: range(depth - 1, depth),
    "top3": lambda depth: range(depth - 3, depth),
}


# --------------------------------------------------------------------------------------------
# LoRA modules
# --------------------------------------------------------------------------------------------
class LowRankUpdate(nn.Module):
    """(α / √r) · B A dropout(x), x [..., in] → [..., out], computed in fp32."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / math.sqrt(rank)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x.float(), self.dropout, self.training)
        return (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


class QKVUpdate(nn.ModuleDict):
    """The updates of some of q, k, v, laid out like the fused projection: [..., 3 D]."""

    def __init__(self, width: int, params: Sequence[str], rank: int, alpha: float, dropout: float):
        super().__init__({p: LowRankUpdate(width, width, rank, alpha, dropout) for p in "qkv" if p in params})
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zeros = None
        parts = []
        for p in "qkv":
            if p in self:
                parts.append(self[p](x))
            else:
                zeros = zeros if zeros is not None else x.new_zeros(*x.shape[:-1], self.width, dtype=torch.float32)
                parts.append(zeros)
        return torch.cat(parts, dim=-1)


class UpdatedLinear(nn.Module):
    """A frozen linear layer plus a low-rank update (the output projection's ``o``)."""

    def __init__(self, base: nn.Linear, update: LowRankUpdate):
        super().__init__()
        self.base, self.update = base, update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.update(x).to(x.dtype)


def tower_blocks(backbone: ClipBackbone, encoder: str) -> List[nn.Module]:
    if encoder == "text":
        return list(backbone.text_blocks)
    backbone.require_vit("CLIP-LoRA on the image encoder")
    return list(backbone.vision_blocks)


def attach_lora(backbone: ClipBackbone, options: CN) -> nn.ModuleDict:
    """Add the updates to the chosen attention blocks; return them keyed ``<encoder>_<block>``
    (text blocks first, as upstream numbers its layers)."""
    encoders = ("text", "vision") if options.ENCODER == "both" else (options.ENCODER,)
    updates = nn.ModuleDict()
    for encoder in encoders:
        blocks = tower_blocks(backbone, encoder)
        for index in POSITIONS[options.POSITION](len(blocks)):
            attn = blocks[index].attn
            width = attn.embed_dim
            layer = nn.Module()
            if set(options.PARAMS) & set("qkv"):
                layer.qkv = QKVUpdate(width, options.PARAMS, options.R, options.ALPHA, options.DROPOUT)
                attn.add_module("qkv_adaptation", layer.qkv)
            if "o" in options.PARAMS:
                layer.o = LowRankUpdate(width, width, options.R, options.ALPHA, options.DROPOUT)
                attn.out_proj = UpdatedLinear(attn.out_proj, layer.o)
            updates[f"{encoder}_{index}"] = layer
    return updates.to(backbone.device)


# --------------------------------------------------------------------------------------------
# Upstream's file
# --------------------------------------------------------------------------------------------
def from_upstream(data: dict, options: CN, updates: nn.ModuleDict, path: str) -> Dict[str, torch.Tensor]:
    """Our state dict of ``updates`` from upstream's saved dictionary."""
    metadata, weights = data.get("metadata", {}), data.get("weights", {})
    asked = dict(r=options.R, alpha=options.ALPHA, encoder=options.ENCODER, params=list(options.PARAMS),
                 position=options.POSITION)
    differing = [f"{k}: file {metadata.get(k)!r} vs TRAINER.CLIPLORA {v!r}" for k, v in asked.items()
                 if metadata.get(k) != v and not (k == "alpha" and metadata.get(k) == int(v))]
    if differing:
        raise ValueError(f"{path} was trained with other LoRA settings: {'; '.join(differing)}. Set TRAINER.CLIPLORA "
                         "(R, ALPHA, ENCODER, PARAMS, POSITION) to the file's.")
    if len(weights) != len(updates):
        raise ValueError(f"{path} holds {len(weights)} LoRA layers, this backbone and POSITION give {len(updates)}.")
    state = {}
    for i, name in enumerate(updates):
        layer = weights[f"layer_{i}"]
        for p in options.PARAMS:
            ours = f"{name}.qkv.{p}" if p in "qkv" else f"{name}.o"
            state[f"{ours}.lora_A"] = layer[UPSTREAM_NAMES[p]]["w_lora_A"]
            state[f"{ours}.lora_B"] = layer[UPSTREAM_NAMES[p]]["w_lora_B"]
    return state


# --------------------------------------------------------------------------------------------
# Model and trainer
# --------------------------------------------------------------------------------------------
class LoRACLIP(TextFeatureCache, PromptedCLIP):
    """CLIP with LoRA'd towers: 100 · cos(image, class text), text re-encoded while it learns."""

    def __init__(self, backbone: ClipBackbone, updates: nn.ModuleDict, class_tokens: torch.Tensor):
        super().__init__(backbone, updates)
        self.register_buffer("class_tokens", class_tokens, persistent=False)

    def text_features(self) -> torch.Tensor:
        tokens = self.class_tokens
        return F.normalize(self.backbone.encode_text(self.backbone.embed_tokens(tokens), tokens.argmax(dim=-1)), dim=-1)

    def forward(self, image: torch.Tensor) -> ModelOutput:
        image_features = F.normalize(self.backbone.encode_image(image).features, dim=-1)
        text_features = self.cached(self.text_features)
        return ModelOutput(LOGIT_SCALE * image_features @ text_features.t(), image_features, text_features)


class IterationLoader:
    """A training loader whose epochs are ``length`` batches long, drawn from ``loader`` pass after
    pass (each pass reshuffles, like upstream's loop over epochs until the last iteration)."""

    def __init__(self, loader, length: int):
        self.loader, self.length = loader, length
        self._batches = None

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        for _ in range(self.length):
            try:
                batch = next(self._batches)
            except (StopIteration, TypeError):  # a pass ended, or none started
                self._batches = iter(self.loader)
                batch = next(self._batches)
            yield batch

    def __getattr__(self, name):  # sampler, dataset: the wrapped loader's
        return getattr(self.__dict__["loader"], name)


@TRAINER_REGISTRY.register()
class CLIPLoRA(ClipPromptTrainer):
    CFG_NODE = "CLIPLORA"
    MODEL_NAME = "lora"
    CHOICES = {"ENCODER": ("text", "vision", "both"), "POSITION": tuple(POSITIONS)}

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        params = list(self.method_options(cfg).PARAMS)
        if not params or any(p not in UPSTREAM_NAMES for p in params):
            raise ValueError(f"TRAINER.CLIPLORA.PARAMS must be a non-empty list of q, k, v, o; got {params}")

    def build_data_loader(self):
        super().build_data_loader()
        shots = self.cfg.DATASET.NUM_SHOTS
        if shots < 1:  # all images: as many "shots" as the train set has images per class
            shots = math.ceil(len(self.dm.dataset.train_x) / self.dm.dataset.num_classes)
        self.total_iters = self.options.N_ITERS * shots
        per_epoch = math.ceil(self.total_iters / self.cfg.OPTIM.MAX_EPOCH)
        print(f"{self.total_iters} iterations ({self.options.N_ITERS} x {shots} shots) in "
              f"{self.cfg.OPTIM.MAX_EPOCH} epoch(s) of {per_epoch}; {len(self.train_loader_x)} batches per pass")
        self.train_loader_x = IterationLoader(self.train_loader_x, per_epoch)

    def build_model(self):
        cfg, options = self.cfg, self.options
        self.backbone = build_backbone(cfg, options.PREC, self.device)
        updates = attach_lora(self.backbone, options)
        template = dataset_template(cfg.DATASET.NAME)
        print(f"Prompt: {template}; LoRA on {len(updates)} blocks ({options.ENCODER}, {options.POSITION}, "
              f"{''.join(options.PARAMS)}, r={options.R})")
        tokens = self.backbone.tokenize([template.format(clean_classname(c)) for c in self.dm.dataset.classnames])
        self.model = LoRACLIP(self.backbone, updates, tokens).to(self.device)
        self.criterion = ClassificationLoss()
        print(f"# learnable params: {sum(p.numel() for p in updates.parameters()):,}")
        self.optim = torch.optim.AdamW(updates.parameters(), lr=cfg.OPTIM.LR, weight_decay=cfg.OPTIM.WEIGHT_DECAY,
                                       betas=(0.9, 0.999))
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.optim, self.total_iters, eta_min=MIN_LR)
        self.register_model(self.MODEL_NAME, updates, self.optim, self.sched)

    @property
    def iterations_done(self) -> int:
        return self.sched.last_epoch  # stepped once per iteration, restored on resume

    def forward_backward(self, batch):
        if self.iterations_done >= self.total_iters:
            return {}  # the rest of the last epoch (iterations not divisible by epochs): past the last iteration
        return super().forward_backward(batch)

    def update(self, loss, terms):
        self.model_backward_and_update(loss)
        self.sched.step()

    def update_lr(self, names=None):
        """The schedule is per iteration (``update``), not per epoch."""

    def load_model(self, directory, epoch=None):
        path = osp.join(directory or "", UPSTREAM_FILE)
        if not directory or not osp.isfile(path):
            return super().load_model(directory, epoch)
        data = torch.load(path, map_location="cpu", weights_only=True)
        updates = self._models[self.MODEL_NAME]
        updates.load_state_dict(from_upstream(data, self.options, updates, path))
        print(f"Loaded upstream CLIP-LoRA weights from {path}")
