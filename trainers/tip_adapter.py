"""Tip-Adapter and Tip-Adapter-F: a cache model of the few-shot train set beside zero-shot CLIP.

Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification", ECCV 2022
(github.com/gaopengcuhk/Tip-Adapter). The cache keys K [N, E] are the train images' features,
averaged over ``AUGMENT_EPOCH`` augmented passes (random resized crop of scale 0.5-1, flip) and
normalised; the values L [N, C] are their one-hot labels. For normalised test features f::

    affinity A = f Kᵀ                 cache logits = exp(−β (1 − A)) L
    logits = 100 · f W_zsᵀ + α · exp(−β (1 − A)) L

β and α are searched on val over upstream's grids: β_i = 0.1 + i · (s_β − 0.1) / n_β for
i < n_β, the same for α, with the per-dataset scales (s_β, s_α) and steps (n_β, n_α) = (200, 20)
of upstream's configs (``SEARCH_SCALE`` / ``SEARCH_STEP`` override them); the first best pair wins.

``TipAdapterF`` fine-tunes the keys: a linear layer initialised with K, trained with
cross-entropy on the logits at upstream's initial β, α (per dataset, ``INIT_BETA`` /
``INIT_ALPHA`` override), AdamW (lr ``OPTIM.LR`` = 0.001, eps 1e-4), a cosine schedule over all
iterations, batch 256, ``OPTIM.MAX_EPOCH`` epochs (20; 100 for EuroSAT: config
``vit_b16_eurosat``); then β, α are searched on val with the fine-tuned keys.

Both save the keys, values, β and α (``adapter/model.pth.tar-N``). Upstream's own files load
with ``--eval-only --model-dir DIR`` where DIR holds upstream's cache (``keys_<S>shots.pt`` [E, N],
``values_<S>shots.pt`` [N, C], and for Tip-Adapter-F ``best_F_<S>shots.pt`` [N, E]); upstream saves
no β, α, so they are searched on this run's val split, as upstream does after loading its cache.

Departures from upstream, and why:

* val is Dassl's few-shot val split (min(shots, 4) per class, CoOp's protocol), not the full val
  split: every other method here is selected on it;
* Tip-Adapter-F keeps its last epoch; upstream keeps the epoch with the best *test* accuracy
  (selection on the test set);
* Tip-Adapter-F's epoch e trains on the e-th augmented pass of the feature cache (a seeded draw,
  shuffled by the run's seed) instead of drawing new augmentations inside the loop: the same
  distribution of views, encoded once and shared with Tip-Adapter and GDA (its first 10 passes are
  theirs);
* keys and values are fp32 (upstream: the backbone's fp16) and stored [N, E] (upstream [E, N]).
"""
from __future__ import annotations

import glob
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .frozen_features import FrozenFeatureTrainer, accuracy, add_feature_keys, classes_digest, grid_search

# Upstream configs/<dataset>.yaml: search_scale [beta, alpha] and init_alpha (init_beta is 1 everywhere).
UPSTREAM_SEARCH = {
    "Caltech101": ((12, 5), 3.0), "DescribableTextures": ((13, 13), 2.0), "EuroSAT": ((12, 10), 2.0),
    "FGVCAircraft": ((30, 30), 5.0), "Food101": ((10, 10), 1.17), "ImageNet": ((7, 3), 1.17),
    "OxfordFlowers": ((50, 50), 10.0), "OxfordPets": ((7, 3), 1.17), "StanfordCars": ((20, 10), 3.0),
    "SUN397": ((12, 10), 1.17), "UCF101": ((7, 3), 3.0),
}
DEFAULT_SEARCH = UPSTREAM_SEARCH["ImageNet"]  # datasets upstream has no config for


def extend_cfg(cfg):
    shared = dict(SEARCH_SCALE=[], SEARCH_STEP=[200, 20], INIT_BETA=1.0, INIT_ALPHA=-1.0)
    add_feature_keys(cfg, "TIPADAPTER", **shared)
    add_feature_keys(cfg, "TIPADAPTERF", **shared)


# --------------------------------------------------------------------------------------------
# The cache model
# --------------------------------------------------------------------------------------------
def cache_logits(affinity: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    """exp(−β (1 − A)) L: [N_test, N_cache] affinities to [N_test, C] logits."""
    return torch.exp(-beta * (1.0 - affinity)) @ values


def tip_logits(features, zero_shot, keys, values, beta: float, alpha: float) -> torch.Tensor:
    return 100.0 * features @ zero_shot.t() + alpha * cache_logits(features @ keys.t(), values, beta)


def search_grid(scale: float, steps: int) -> List[float]:
    """Upstream's grid: 0.1 + i · (scale − 0.1) / steps, i = 0 ... steps − 1."""
    return [0.1 + i * (scale - 0.1) / steps for i in range(steps)]


def search_beta_alpha(features, labels, zero_shot, keys, values, scales: Sequence[float],
                      steps: Sequence[int]) -> Tuple[Tuple[float, float], float]:
    """((β, α), val accuracy), β in the outer loop as upstream; (0, 0) if no pair beats 0 %."""
    affinity = features @ keys.t()
    zero_shot_logits = 100.0 * features @ zero_shot.t()
    pairs = [(b, a) for b in search_grid(scales[0], steps[0]) for a in search_grid(scales[1], steps[1])]
    return grid_search(pairs, lambda b, a: accuracy(zero_shot_logits + a * cache_logits(affinity, values, b), labels),
                       initial=(0.0, 0.0))


def cache_model(passes: Sequence[torch.Tensor], labels: torch.Tensor, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(keys [N, E]: the normalised mean over passes of the raw features, values [N, C] one-hot)."""
    keys = F.normalize(torch.stack(list(passes)).mean(dim=0), dim=-1)
    return keys, F.one_hot(labels, num_classes).float()


# --------------------------------------------------------------------------------------------
# The trainers
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class TipAdapter(FrozenFeatureTrainer):
    CFG_NODE = "TIPADAPTER"
    FITTED = ("keys", "values", "beta", "alpha")

    def search_settings(self) -> Tuple[Tuple[float, float], Tuple[int, int], float]:
        """(search scales (β, α), steps, initial α) of this dataset: upstream's unless configured."""
        scales, init_alpha = UPSTREAM_SEARCH.get(self.cfg.DATASET.NAME, DEFAULT_SEARCH)
        options = self.options
        if options.SEARCH_SCALE:
            scales = tuple(options.SEARCH_SCALE)
        if options.INIT_ALPHA >= 0:
            init_alpha = options.INIT_ALPHA
        return scales, tuple(options.SEARCH_STEP), init_alpha

    def fit(self):
        passes, labels = self.train_passes(self.options.AUGMENT_EPOCH)
        keys, values = cache_model(passes, labels, len(self.classnames))
        keys = self.fine_tune(keys, values)
        self.search_and_assign(keys, values)

    def fine_tune(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Tip-Adapter is training-free: the keys as built."""
        return keys

    def search_and_assign(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        scales, steps, _ = self.search_settings()
        val_features, val_labels = self.split_features("val")
        (beta, alpha), val_acc = search_beta_alpha(val_features, val_labels, self.zero_shot_weights(), keys, values,
                                                   scales, steps)
        print(f"{type(self).__name__}: beta {beta:.2f}, alpha {alpha:.2f} (val accuracy {val_acc:.2f}%)")
        self.head.assign(keys=keys, values=values, beta=torch.tensor(float(beta)), alpha=torch.tensor(float(alpha)))

    def logits(self, features):
        self.require_same_classes(type(self).__name__)
        head = self.head
        return tip_logits(features, self.zero_shot_weights(), head.keys.float(), head.values.float(),
                          head.beta.item(), head.alpha.item())

    # ---- upstream's files --------------------------------------------------------------------
    UPSTREAM_KEYS = "keys_{}shots.pt"
    UPSTREAM_VALUES = "values_{}shots.pt"

    def load_model(self, directory, epoch=None):
        upstream = self.upstream_files(directory)
        if upstream is None:
            return super().load_model(directory, epoch)
        keys, values = self.load_upstream(upstream)
        print(f"Loaded upstream Tip-Adapter cache from {directory}; searching beta and alpha on val")
        self.search_and_assign(keys, values)
        self.head.assign(classes=classes_digest(self.classnames))

    def upstream_files(self, directory: str) -> Optional[dict]:
        """Upstream's cache files in ``directory`` for this run's shots (None: not an upstream folder)."""
        shots = self.cfg.DATASET.NUM_SHOTS
        found = {name: osp.join(directory or "", pattern.format(shots))
                 for name, pattern in self.upstream_patterns().items()}
        if not directory or not all(osp.isfile(p) for p in found.values()):
            if directory and glob.glob(osp.join(directory, "keys_*shots.pt")) and not osp.isdir(
                    osp.join(directory, self.MODEL_NAME)):
                missing = [osp.basename(p) for p in found.values() if not osp.isfile(p)]
                raise FileNotFoundError(
                    f"{directory} holds an upstream Tip-Adapter cache without {', '.join(missing)}, which "
                    f"{type(self).__name__} needs for DATASET.NUM_SHOTS {shots}. Use the cache of that shot count "
                    "(Tip-Adapter-F: the folder where its fine-tuning saved best_F_<shots>shots.pt).")
            return None
        return found

    def upstream_patterns(self) -> dict:
        return {"keys": self.UPSTREAM_KEYS, "values": self.UPSTREAM_VALUES}

    def load_upstream(self, files: dict) -> Tuple[torch.Tensor, torch.Tensor]:
        keys = _load_tensor(files["keys"]).float().t()   # upstream: [E, N]
        values = _load_tensor(files["values"]).float()   # [N, C]
        _check_shapes(keys, values, len(self.classnames), files)
        return keys, values


@TRAINER_REGISTRY.register()
class TipAdapterF(TipAdapter):
    CFG_NODE = "TIPADAPTERF"
    UPSTREAM_ADAPTER = "best_F_{}shots.pt"

    def fine_tune(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Train the keys (upstream's ``run_tip_adapter_F``; see the module docstring)."""
        epochs = self.max_epoch
        passes, labels = self.train_passes(epochs)
        _, _, init_alpha = self.search_settings()
        beta, alpha = self.options.INIT_BETA, init_alpha
        zero_shot = self.zero_shot_weights()
        adapter = torch.nn.Parameter(keys.clone())
        batch = self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        iterations = -(-labels.shape[0] // batch)
        optimizer = torch.optim.AdamW([adapter], lr=self.cfg.OPTIM.LR, eps=1e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * iterations)
        order = torch.Generator().manual_seed(self.cfg.SEED)
        for epoch in range(epochs):
            features = F.normalize(passes[epoch], dim=-1)
            permutation = torch.randperm(labels.shape[0], generator=order)
            losses, correct = [], 0
            for start in range(0, labels.shape[0], batch):
                index = permutation[start:start + batch]
                logits = tip_logits(features[index], zero_shot, adapter, values, beta, alpha)
                loss = F.cross_entropy(logits, labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                correct += (logits.argmax(-1) == labels[index]).sum().item()
            print(f"epoch [{epoch + 1}/{epochs}] loss {sum(losses) / len(losses):.4f} "
                  f"acc {100.0 * correct / labels.shape[0]:.2f} lr {scheduler.get_last_lr()[0]:.4e}")
        return adapter.detach()

    def upstream_patterns(self) -> dict:
        return {**super().upstream_patterns(), "adapter": self.UPSTREAM_ADAPTER}

    def load_upstream(self, files: dict) -> Tuple[torch.Tensor, torch.Tensor]:
        _, values = super().load_upstream(files)
        adapter = _load_tensor(files["adapter"]).float()  # upstream: the Linear's weight [N, E]
        _check_shapes(adapter, values, len(self.classnames), files)
        return adapter, values


def _load_tensor(path: str) -> torch.Tensor:
    tensor = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        raise ValueError(f"{path} is not one of upstream Tip-Adapter's 2-D cache tensors")
    return tensor.detach()


def _check_shapes(keys: torch.Tensor, values: torch.Tensor, num_classes: int, files: dict) -> None:
    if keys.shape[0] != values.shape[0] or values.shape[1] != num_classes:
        raise ValueError(
            f"Upstream Tip-Adapter files {sorted(files.values())} do not fit: keys for {keys.shape[0]} images, values "
            f"{tuple(values.shape)}, and this dataset has {num_classes} classes. Were they written for this dataset "
            "and shot count?")
