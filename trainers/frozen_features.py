"""The trainer base of methods that work on frozen CLIP features (GDA, Tip-Adapter, linear probe ...).

Such a method never runs the image tower on its own: ``FrozenFeatureTrainer`` gives it the features
of the few-shot train set (``train_passes``: one [N, E] tensor per augmented pass, as upstream's
``augment_epoch`` loops), of val and of test (``split_features``), all through the shared
``FeatureCache`` (trainers/feature_cache.py), and the zero-shot classifier of the evaluated classes
(``zero_shot_weights``: upstream's per-dataset template, the seven-template ensemble on ImageNet).

The Dassl life cycle stays: ``train.py`` calls ``train()``, which here *fits* (``fit()``: the
method's closed form or its short training on cached features), saves the fitted tensors the Dassl
way (``<OUTPUT_DIR>/<MODEL_NAME>/model.pth.tar-<MAX_EPOCH>``, a state dict of buffers) and tests;
``--eval-only --model-dir`` loads that file (``load_model``) and tests. Tests run on cached
features and print the standard ``* accuracy: X%`` lines through Dassl's evaluator.

A method implements ``fit()`` (filling ``self.head``, a ``FittedTensors``) and ``logits(features)``.
``grid_search`` is the validation search all of them share (upstream's: the first best value wins).
"""
from __future__ import annotations

import datetime
import hashlib
import os.path as osp
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.data.transforms import build_transform
from dassl.utils import load_checkpoint

from .clip_backbone import build_backbone
from .feature_cache import FeatureCache, add_cache_key, cache_folder, encode_split, pass_seed, split_key
from .templates import IMAGENET_TEMPLATES_SELECT, dataset_template, encode_templates
from .trainer_base import ClipPromptTrainer


def add_feature_keys(cfg, node_name: str, **defaults) -> CN:
    """``cfg.TRAINER.<node_name>`` of a frozen-feature method: PREC (the frozen tower's precision),
    AUGMENT_EPOCH (augmented passes over the train set) and the method's own keys; plus the shared
    ``TRAINER.FEATURE_CACHE_DIR``."""
    node = CN()
    node.PREC = "fp16"
    node.AUGMENT_EPOCH = 10
    for key, value in defaults.items():
        setattr(node, key, value)
    setattr(cfg.TRAINER, node_name, node)
    add_cache_key(cfg)
    return node


def classes_digest(classnames: Sequence[str]) -> torch.Tensor:
    """A 1-element int64 tensor naming a label space (its class names, in order): stored with the
    fitted tensors, so that an evaluation on other classes is recognised."""
    digest = hashlib.sha256("\n".join(classnames).encode()).digest()[:8]
    return torch.tensor([int.from_bytes(digest, "big", signed=True)], dtype=torch.int64)


def zero_shot_templates(dataset_name: str) -> List[str]:
    """Upstream Tip-Adapter / GDA: the seven-template ensemble for ImageNet and its variants, the
    dataset's hand-written template elsewhere."""
    if dataset_name.startswith("ImageNet"):
        return list(IMAGENET_TEMPLATES_SELECT)
    return [dataset_template(dataset_name)]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent (upstream's ``cls_acc``)."""
    return 100.0 * (logits.argmax(dim=-1) == labels).float().mean().item()


def grid_search(candidates: Iterable, score: Callable[..., float], initial) -> Tuple[object, float]:
    """(best candidate, its score) over ``candidates`` (values, or tuples passed as arguments), as
    upstream searches: a candidate wins only with a strictly higher score than every earlier one,
    and ``initial`` stands when none scores above 0."""
    best, best_score = initial, 0.0
    for candidate in candidates:
        value = score(*candidate) if isinstance(candidate, tuple) else score(candidate)
        if value > best_score:
            best, best_score = candidate, value
    return best, best_score


class FittedTensors(nn.Module):
    """The fitted tensors of a method, as buffers (so ``state_dict`` is the checkpoint).

    Their shapes depend on the data (classes, shots), so loading replaces them instead of copying
    into tensors of a fixed shape; the names must be the ones this method writes."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        self.names = tuple(names)
        for name in self.names:
            self.register_buffer(name, torch.empty(0))

    def assign(self, **tensors: torch.Tensor) -> None:
        for name, tensor in tensors.items():
            if name not in self.names:
                raise KeyError(f"{name} is not one of the fitted tensors {self.names}")
            setattr(self, name, tensor.detach().clone())

    def load_fitted(self, state_dict: Dict[str, torch.Tensor], path: str) -> None:
        missing = [n for n in self.names if n not in state_dict]
        if missing:
            raise RuntimeError(f"{path} does not hold this method's fitted tensors: missing {missing}, it holds "
                               f"{sorted(state_dict)[:8]}. Was it written by another trainer (TRAINER.NAME)?")
        self.assign(**{n: state_dict[n] for n in self.names})


class FrozenFeatureTrainer(ClipPromptTrainer):
    """Base of the frozen-feature methods (see the module docstring)."""

    MODEL_NAME = "adapter"
    FITTED: Tuple[str, ...] = ()  # the names of the tensors the checkpoint holds (besides ``classes``)
    NORMALIZE_FEATURES = True     # whether split_features (and so logits) sees unit-norm features
    USES_ZERO_SHOT = True         # whether fit / logits read zero_shot_weights (the text tower runs once;
                                  # tools/memory.py counts it in the method's GPU memory)

    # ---- model ---------------------------------------------------------------------------------
    def build_model(self):
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            raise ValueError(f"{type(self).__name__} fits on cached features in one process: run it without torchrun "
                             "(every process would encode and evaluate the whole data).")
        self.backbone = build_backbone(self.cfg, self.options.PREC, self.device)
        self.cache = FeatureCache(cache_folder(self.cfg))
        self.head = FittedTensors(("classes",) + tuple(self.FITTED))
        self.model = self.head
        self._zero_shot: Optional[torch.Tensor] = None
        self.register_model(self.MODEL_NAME, self.head, None, None)

    @property
    def classnames(self) -> List[str]:
        return list(self.dm.dataset.classnames)

    def zero_shot_weights(self) -> torch.Tensor:
        """Zero-shot CLIP's normalised class features [C, E] of the evaluated classes (fp32)."""
        if self._zero_shot is None:
            templates = zero_shot_templates(self.cfg.DATASET.NAME)
            self._zero_shot = encode_templates(self.backbone, self.classnames, templates).float().cpu()
        return self._zero_shot

    def zero_shot_logits(self, features: torch.Tensor) -> torch.Tensor:
        return 100.0 * F.normalize(features, dim=-1) @ self.zero_shot_weights().t()

    # ---- features ------------------------------------------------------------------------------
    def transform(self, is_train: bool):
        """Dassl's train (augmenting) or test transform of the config, built once."""
        built = self.__dict__.setdefault("_transforms", {})
        if is_train not in built:
            built[is_train] = build_transform(self.cfg, is_train=is_train)
        return built[is_train]

    def split_features(self, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """Features [N, E] (normalised unless ``NORMALIZE_FEATURES`` is False) and labels [N] of
        ``train_x``, ``val`` or ``test`` through the test transform. A dataset without a val split
        uses its test split, as Dassl's ``test(split="val")`` does."""
        dataset = self.dm.dataset
        if split == "val" and not dataset.val:
            split = "test"
        data_source = {"train_x": dataset.train_x, "val": dataset.val, "test": dataset.test}[split]
        transform = self.transform(is_train=False)
        key = split_key(self.cfg, self.backbone, split, data_source, transform)
        features, labels = self.cache.load_or_encode(
            key, lambda: encode_split(self.cfg, self.backbone, data_source, transform))
        return (F.normalize(features, dim=-1) if self.NORMALIZE_FEATURES else features), labels

    def train_passes(self, count: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Raw (not normalised) features of ``count`` augmented passes over the train set
        (each [N, E], same item order) and its labels [N]."""
        data_source = self.dm.dataset.train_x
        transform = self.transform(is_train=True)
        loaded = self.__dict__.setdefault("_train_passes", [])  # read once per run
        for index in range(len(loaded), count):
            key = split_key(self.cfg, self.backbone, "train_x", data_source, transform, augment_pass=index)
            seed = pass_seed(self.cfg.SEED, index)
            loaded.append(self.cache.load_or_encode(
                key, lambda: encode_split(self.cfg, self.backbone, data_source, transform, seed=seed)))
        return [features for features, _ in loaded[:count]], loaded[0][1]

    # ---- the Dassl life cycle --------------------------------------------------------------------
    def fit(self) -> None:
        raise NotImplementedError

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [N, C] of normalised features of the evaluated classes."""
        raise NotImplementedError

    def fitted_on_these_classes(self) -> bool:
        return bool(torch.equal(self.head.classes.cpu(), classes_digest(self.classnames)))

    def fit_head(self) -> None:
        """``fit()``, and record the classes the fitted tensors are for."""
        self.fit()
        self.head.assign(classes=classes_digest(self.classnames))

    def model_inference(self, input, *args, **kwargs):
        """Logits of a batch of images (the per-image path; ``test()`` reads cached features)."""
        features = self.backbone.encode_image(input).features.float().cpu()
        return self.logits(F.normalize(features, dim=-1) if self.NORMALIZE_FEATURES else features)

    def train(self):
        """Fit, save the fitted tensors as epoch ``MAX_EPOCH``'s checkpoint, test."""
        start = time.time()
        self.fit_head()
        self.epoch = self.max_epoch - 1
        self.save_model(self.epoch, self.output_dir)
        print(f"Feature cache: {self.cache.hits} read, {self.cache.misses} encoded, "
              f"{self.cache.seconds_saved:.2f} s of encoding saved")
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            print("Deploy the last-epoch model")
            self.test()
        print(f"Elapsed: {datetime.timedelta(seconds=round(time.time() - start))}")

    @torch.no_grad()
    def test(self, split=None):
        split = split or self.cfg.TEST.SPLIT
        features, labels = self.split_features(split)
        print(f"Evaluate on the *{split}* set")
        self.evaluator.reset()
        self.evaluator.process(self.logits(features), labels)
        return list(self.evaluator.evaluate().values())[0]

    def load_model(self, directory, epoch=None):
        """Load the fitted tensors of ``directory/<MODEL_NAME>/model.pth.tar-<epoch>``."""
        if not directory:
            raise ValueError(f"{type(self).__name__} evaluates fitted tensors: pass --model-dir (a training run).")
        filename = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        path = osp.join(directory, self.MODEL_NAME, filename)
        if not osp.exists(path):
            raise FileNotFoundError(f"No fitted tensors at {path}. Check --model-dir (a run of trainer "
                                    f"{self.cfg.TRAINER.NAME}) and --load-epoch.")
        self.head.load_fitted(load_checkpoint(path)["state_dict"], path)
        print(f"Load {path} to {self.MODEL_NAME}")

    def require_same_classes(self, method: str) -> None:
        """Stop with an explanation when the evaluated classes are not the fitted ones (a method
        whose classifier cannot name unseen classes)."""
        if not self.fitted_on_these_classes():
            raise ValueError(
                f"{method} was fitted on other classes than the ones evaluated here ({self.cfg.DATASET.NAME}, "
                f"SUBSAMPLE_CLASSES {self.cfg.DATASET.SUBSAMPLE_CLASSES}): its classifier is defined only on the "
                f"classes it was fitted on. Evaluate it on the same dataset and classes.")
