"""GDA: Gaussian discriminant analysis on frozen CLIP features, ensembled with zero-shot CLIP.

Wang et al., "A Hard-to-Beat Baseline for Training-free CLIP-based Adaptation", ICLR 2024
(github.com/mrflogs/ICLR24). Training-free: the few-shot train set, encoded in ``AUGMENT_EPOCH``
augmented passes (random resized crop of scale 0.5-1 and flip; every pass's features normalised
and kept, not averaged), gives class means μ_c and one covariance Σ shared by the classes; with
equal priors the Bayes classifier is linear::

    W = μ Σ⁻¹  [C, E]        b_c = log(1 / C) − ½ μ_c Σ⁻¹ μ_cᵀ
    logits = 100 · f W_zsᵀ + α · (f Wᵀ + b)

where W_zs is zero-shot CLIP's classifier and α is searched on val over
{1e-4, 1e-3, ..., 100} (the first best wins; 0.1 if none beats 0 %).

``COVARIANCE`` picks Σ⁻¹ as upstream's two scripts do:

* ``shrinkage`` (``main_few_shots.py``): with the centred features X (N rows, dimension D) and
  S = XᵀX, Σ⁻¹ = D · pinv(S + tr(S / (N − 1)) · I);
* ``class_mean`` (``main_base2new.py``): Σ⁻¹ = pinv(mean over classes of each class's unbiased
  covariance).

**Unseen classes** (base-to-new and cross-dataset evaluation; ``main_base2new.py``): for each new
class with zero-shot weight w, the ``NEW_TOPK`` training features most similar to w give its mean
μ = mean(those features and ``NEW_TEXT_COPIES`` copies of w) and a shrinkage precision
D · pinv((k − 1) · Σ_w + tr(Σ_w) · I), with Σ_w the covariance of those features around w itself;
the precisions are averaged over the new classes, and α is the one searched on the base classes.
The checkpoint therefore keeps the normalised training features (``train_features``, in fp16 as
upstream's GPU features are: 160 MB for ImageNet's 16 shots × 10 passes) beside W, b, α.

Departures from upstream, and why:

* val is Dassl's few-shot val split (min(shots, 4) images per class, CoOp's protocol), not the
  full val split of upstream's data loaders: the protocol of every other method here;
* pseudo-inverses are computed in float64 from fp32 features (upstream: fp32/fp16 on the GPU),
  for stable results across devices;
* ``NEW_TOPK`` is capped at the number of training features (upstream's 64 assumes a full-size
  dataset), and D is the backbone's embedding width (upstream writes 512, ViT-B's);
* the augmented passes are seeded draws from the feature cache, shared with Tip-Adapter.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .frozen_features import FrozenFeatureTrainer, accuracy, add_feature_keys, grid_search

ALPHAS = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0)  # upstream's search grid
ALPHA_WHEN_NONE_WINS = 0.1                              # upstream's initial best_alpha


def extend_cfg(cfg):
    add_feature_keys(cfg, "GDA", COVARIANCE="shrinkage", NEW_TOPK=64, NEW_TEXT_COPIES=16)


# --------------------------------------------------------------------------------------------
# The closed forms
# --------------------------------------------------------------------------------------------
def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.stack([features[labels == c].mean(dim=0) for c in range(num_classes)])


def shrinkage_precision(centred: torch.Tensor) -> torch.Tensor:
    """D · pinv(S + tr(S / (N − 1)) · I), S = XᵀX of centred rows X [N, D] (upstream's KS estimator)."""
    x = centred.double()
    n, d = x.shape
    scatter = x.t() @ x
    return (d * torch.linalg.pinv(scatter + (scatter.trace() / (n - 1)) * torch.eye(d, dtype=x.dtype))).float()


def class_mean_precision(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """pinv of the mean of the classes' unbiased covariances."""
    covariances = [torch.cov(features[labels == c].double().t()) for c in range(num_classes)]
    return torch.linalg.pinv(torch.stack(covariances).mean(dim=0)).float()


def linear_discriminant(means: torch.Tensor, precision: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) of the equal-prior Gaussian classifier with shared precision."""
    weight = means @ precision
    bias = torch.log(torch.tensor(1.0 / means.shape[0])) - 0.5 * (weight * means).sum(dim=-1)
    return weight, bias


def gda_logits(features, zero_shot, weight, bias, alpha) -> torch.Tensor:
    return 100.0 * features @ zero_shot.t() + alpha * (features @ weight.t() + bias)


def unseen_class_discriminant(train_features: torch.Tensor, zero_shot: torch.Tensor, topk: int,
                              text_copies: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(W, b) for classes never seen in training, from their zero-shot weights [C, D] and the
    training features [N, D] (upstream's ``main_base2new.py``, see the module docstring)."""
    k = min(topk, train_features.shape[0])
    d = train_features.shape[1]
    means: List[torch.Tensor] = []
    precisions: List[torch.Tensor] = []
    for w in zero_shot:
        nearest = train_features[torch.topk(train_features @ w, k=k).indices]
        means.append(torch.cat([nearest, w.expand(text_copies, -1)]).mean(dim=0))
        around_w = (nearest - w).double()
        covariance = around_w.t() @ around_w / (k - 1)
        eye = torch.eye(d, dtype=covariance.dtype)
        precisions.append(d * torch.linalg.pinv((k - 1) * covariance + covariance.trace() * eye))
    return linear_discriminant(torch.stack(means), torch.stack(precisions).mean(dim=0).float())


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class GDA(FrozenFeatureTrainer):
    CFG_NODE = "GDA"
    FITTED = ("weight", "bias", "alpha", "train_features")
    CHOICES = {"COVARIANCE": ("shrinkage", "class_mean")}

    def fit(self):
        passes, labels = self.train_passes(self.options.AUGMENT_EPOCH)
        features = F.normalize(torch.cat(passes), dim=-1)
        labels = labels.repeat(len(passes))
        num_classes = len(self.classnames)
        means = class_means(features, labels, num_classes)
        if self.options.COVARIANCE == "shrinkage":
            precision = shrinkage_precision(features - means[labels])
        else:
            precision = class_mean_precision(features, labels, num_classes)
        weight, bias = linear_discriminant(means, precision)
        val_features, val_labels = self.split_features("val")
        zero_shot = self.zero_shot_weights()
        alpha, val_acc = grid_search(
            ALPHAS, lambda a: accuracy(gda_logits(val_features, zero_shot, weight, bias, a), val_labels),
            initial=ALPHA_WHEN_NONE_WINS)
        print(f"GDA: alpha {alpha} (val accuracy {val_acc:.2f}%)")
        self.head.assign(weight=weight, bias=bias, alpha=torch.tensor(float(alpha)), train_features=features.half())

    def logits(self, features):
        head = self.head
        if self.fitted_on_these_classes():
            weight, bias = head.weight, head.bias
        else:
            print("GDA: unseen classes, synthesising their classifier from the training features (main_base2new)")
            weight, bias = unseen_class_discriminant(head.train_features.float(), self.zero_shot_weights(),
                                                     self.options.NEW_TOPK, self.options.NEW_TEXT_COPIES)
        return gda_logits(features, self.zero_shot_weights(), weight.float(), bias.float(), head.alpha.item())

