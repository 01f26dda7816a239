"""Linear-probe CLIP: logistic regression on frozen image features (CoOp's ``lpclip/``).

Zhou et al.'s CoOp repository (github.com/KaiyangZhou/CoOp, ``lpclip/feat_extractor.py`` and
``lpclip/linear_probe.py``), after the CLIP paper's appendix A.3. The features are the image
tower's raw (not normalised) outputs of the test transform, for the train split too; the
classifier is scikit-learn's L2-regularised ``LogisticRegression`` (lbfgs, 1000 iterations). The
inverse regularisation C is searched on val as lpclip does:

1. fit C ∈ {1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6}; the first best on val is the peak c;
2. ``SEARCH_STEPS`` (8) rounds on [c / 10, 10 c]: fit both ends, keep the better one (the left on
   a tie), then halve the interval in log10 towards it;
3. the classifier of the last round is the result.

The checkpoint holds the weight [C, E], the bias [C] and the chosen C. Logits = f W^T + b.

Departures from upstream, and why:

* the few-shot train and val splits are Dassl's (the same splits as every other method here);
  lpclip draws its own from the full train and val features with NumPy's seed (the same sizes:
  its val has 1, 2, 4, 4, 4 images per class for 1, 2, 4, 8, 16 shots, Dassl's min(shots, 4));
* the features come from the shared feature cache (``trainers/feature_cache.py``), encoded once
  per split for every method that reads them;
* ``penalty="l2"`` is not passed: it is scikit-learn's default, and naming it is deprecated
  since scikit-learn 1.8;
* a binary problem (two classes) is stored as two logit rows (0 and the decision function), so
  every dataset has one row per class.
"""
from __future__ import annotations

import math
import warnings
from typing import List, Tuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from dassl.engine import TRAINER_REGISTRY

from .frozen_features import FrozenFeatureTrainer, accuracy, add_feature_keys

INITIAL_C = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)  # lpclip's first sweep


def extend_cfg(cfg):
    add_feature_keys(cfg, "LINEARPROBE", AUGMENT_EPOCH=0, SEARCH_STEPS=8, MAX_ITER=1000)


def fit_logistic(features: np.ndarray, labels: np.ndarray, c: float, max_iter: int) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # lpclip's sweep reaches C = 1e6 on purpose
        return LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(features, labels)


def classifier_tensors(model: LogisticRegression, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight [num_classes, E], bias [num_classes]) of a fitted model; classes absent from
    training get a zero row with bias −inf (never predicted)."""
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: the decision function scores classes_[1] against classes_[0]
        coef, intercept = np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = torch.zeros(num_classes, coef.shape[1])
    bias = torch.full((num_classes,), -math.inf)
    for row, label in enumerate(model.classes_):
        weight[label] = torch.from_numpy(coef[row]).float()
        bias[label] = float(intercept[row])
    return weight, bias


def search_c(fit_and_score, steps: int) -> Tuple[float, List[Tuple[float, float]]]:
    """lpclip's search of C (module docstring). ``fit_and_score(c)`` returns the val accuracy of
    the model fitted with C = c. Returns (the final C, the (C, accuracy) of every fit, in order)."""
    history: List[Tuple[float, float]] = []

    def score(c: float) -> float:
        history.append((c, fit_and_score(c)))
        return history[-1][1]

    scores = [score(c) for c in INITIAL_C]
    peak = INITIAL_C[int(np.argmax(scores))]
    left, right, final = 0.1 * peak, 10.0 * peak, peak
    for _ in range(steps):
        accuracy_left, accuracy_right = score(left), score(right)
        log_left, log_right = math.log10(left), math.log10(right)
        if accuracy_left < accuracy_right:
            final, log_left = right, 0.5 * (log_left + log_right)
        else:
            final, log_right = left, 0.5 * (log_left + log_right)
        left, right = 10.0 ** log_left, 10.0 ** log_right
    return final, history


@TRAINER_REGISTRY.register()
class LinearProbe(FrozenFeatureTrainer):
    CFG_NODE = "LINEARPROBE"
    FITTED = ("weight", "bias", "c")
    NORMALIZE_FEATURES = False  # lpclip fits the raw features
    USES_ZERO_SHOT = False      # image features only

    def fit(self):
        train_features, train_labels = self.split_features("train_x")
        val_features, val_labels = self.split_features("val")
        x, y = train_features.numpy(), train_labels.numpy()
        num_classes, max_iter = len(self.classnames), self.options.MAX_ITER

        def fit_and_score(c: float) -> float:
            weight, bias = classifier_tensors(fit_logistic(x, y, c, max_iter), num_classes)
            return accuracy(val_features @ weight.t() + bias, val_labels)

        c, history = search_c(fit_and_score, self.options.SEARCH_STEPS)
        print("LinearProbe: C search " + ", ".join(f"{value:.3g}: {acc:.2f}%" for value, acc in history))
        weight, bias = classifier_tensors(fit_logistic(x, y, c, max_iter), num_classes)
        print(f"LinearProbe: C = {c:.4g}")
        self.head.assign(weight=weight, bias=bias, c=torch.tensor(c, dtype=torch.float64))

    def logits(self, features):
        self.require_same_classes("LinearProbe")
        return features @ self.head.weight.float().t() + self.head.bias.float()

