"""Frozen CLIP image features of a data split, encoded once and kept on disk.

Training-free and feature-level methods (GDA, Tip-Adapter, the linear probe, ...) see an image only
through the frozen image tower, so its features are the same for every such method that reads the
same images with the same transform. ``FeatureCache`` stores them under one folder
(``TRAINER.FEATURE_CACHE_DIR``; empty = ``<OUTPUT_DIR>/feature_cache``) so that the second method
on the same data reads them instead of running the tower again.

**The key** of an entry is everything that changes the features (``FeatureKey``): the backbone's
name, precision and a digest of its weights; the dataset, split, label subset, shot count and seed;
a digest of the split's items (image paths and labels, so an edited split file is a new key); the
transform (its printed form) and, for augmented passes, the pass index. Augmented passes are seeded
from the run's seed and the pass index, so an entry is a reproducible draw and Tip-Adapter's ten
passes are the first ten of Tip-Adapter-F's.

**A file** (``<sha256 of the key>.pt``) holds plain tensors and strings only, read with
``torch.load(weights_only=True)``: the features [N, E] (fp32, not normalised), the labels [N], the
key, the seconds its encoding took and a SHA-256 of the tensors' bytes. It is written atomically
(temporary file, then rename). A file that cannot be read, whose key is not the key asked for, or
whose tensors do not match their digest (truncated, edited) is encoded again and replaced, with a
warning: it is never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from dassl.data import DatasetWrapper

from .clip_backbone import ClipBackbone

CACHE_DIR_KEY = "FEATURE_CACHE_DIR"  # cfg.TRAINER.FEATURE_CACHE_DIR
DEFAULT_FOLDER = "feature_cache"     # under OUTPUT_DIR when the key is empty
FORMAT = 1                           # bumped when the file layout changes (old files are re-encoded)


def add_cache_key(cfg) -> None:
    """``cfg.TRAINER.FEATURE_CACHE_DIR``: where the cache lives (a path; not a setting of the run)."""
    if CACHE_DIR_KEY not in cfg.TRAINER:
        setattr(cfg.TRAINER, CACHE_DIR_KEY, "")


def cache_folder(cfg) -> str:
    return cfg.TRAINER.get(CACHE_DIR_KEY, "") or osp.join(cfg.OUTPUT_DIR, DEFAULT_FOLDER)


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------
_WEIGHT_DIGESTS: dict = {}


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, 0-dim included), in row-major order."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def weights_digest(backbone: ClipBackbone) -> str:
    """SHA-256 (16 hex digits) of the backbone's weights: names, dtypes, shapes and bytes, in order.
    Computed once per backbone object (about a second for ViT-B/16)."""
    known = _WEIGHT_DIGESTS.get(id(backbone))
    if known is not None and known[0] is backbone:
        return known[1]
    digest = hashlib.sha256()
    for name, tensor in backbone.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor_bytes(tensor))
    _WEIGHT_DIGESTS[id(backbone)] = (backbone, digest.hexdigest()[:16])
    return _WEIGHT_DIGESTS[id(backbone)][1]


def items_digest(data_source: Sequence) -> str:
    """SHA-256 (16 hex digits) of a split's (image path, label) list, in order."""
    digest = hashlib.sha256()
    for item in data_source:
        digest.update(f"{item.impath}\t{item.label}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class FeatureKey:
    """Everything that changes the features of one split (see the module docstring)."""

    backbone: str
    weights: str
    precision: str
    dataset: str
    split: str
    subsample: str
    shots: int
    seed: int
    items: str
    transform: str
    augment_pass: int = -1  # -1: the deterministic (test) transform; k >= 0: the k-th augmented pass

    def text(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)

    def filename(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:24] + ".pt"


def split_key(cfg, backbone: ClipBackbone, split: str, data_source: Sequence, transform,
              augment_pass: int = -1) -> FeatureKey:
    """The key of ``data_source`` (the run's ``split``) read through ``transform``."""
    return FeatureKey(
        backbone=cfg.MODEL.BACKBONE.NAME, weights=weights_digest(backbone), precision=str(backbone.dtype),
        dataset=cfg.DATASET.NAME, split=split, subsample=cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"),
        shots=int(cfg.DATASET.NUM_SHOTS), seed=int(cfg.SEED), items=items_digest(data_source),
        transform=" ".join(repr(transform).split()), augment_pass=augment_pass)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def tensors_digest(features: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in (features, labels):
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


class DamagedCacheFile(ValueError):
    """A cache file that is unreadable or does not hold what its name promises."""


class FeatureCache:
    """``load_or_encode(key, encode)``: the features of ``key`` from ``folder``, or ``encode()``'s
    (then stored). ``hits`` / ``misses`` / ``seconds_saved`` count what this object did."""

    def __init__(self, folder: str, log: Callable[[str], None] = print):
        self.folder = folder
        self.log = log
        self.hits = self.misses = 0
        self.seconds_saved = 0.0

    def path(self, key: FeatureKey) -> str:
        return osp.join(self.folder, key.filename())

    def load_or_encode(self, key: FeatureKey,
                       encode: Callable[[], Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
        path = self.path(key)
        if osp.exists(path):
            try:
                features, labels, seconds = self.read(path, key)
            except DamagedCacheFile as exc:
                warnings.warn(f"Feature cache: {exc}; encoding again")
            else:
                self.hits += 1
                self.seconds_saved += seconds
                self.log(f"Feature cache: read {key.split} features{_pass_text(key)} ({tuple(features.shape)}) from "
                         f"{path}, saving {seconds:.2f} s of encoding")
                return features, labels
        start = time.monotonic()
        features, labels = encode()
        seconds = time.monotonic() - start
        self.misses += 1
        self.write(path, key, features, labels, seconds)
        self.log(f"Feature cache: encoded {key.split} features{_pass_text(key)} ({tuple(features.shape)}) in "
                 f"{seconds:.1f} s, stored at {path}")
        return features, labels

    @staticmethod
    def read(path: str, key: FeatureKey) -> Tuple[torch.Tensor, torch.Tensor, float]:
        """(features, labels, encoding seconds) of a file, or ``DamagedCacheFile`` saying why not."""
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, not a torch file, not weights-only ...
            raise DamagedCacheFile(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None
        if not isinstance(entry, dict) or not {"features", "labels", "key", "digest", "seconds"} <= set(entry):
            raise DamagedCacheFile(f"{path} is not a feature cache file")
        if entry["key"] != key.text():
            raise DamagedCacheFile(f"{path} holds other features than its name says (key {entry['key']})")
        if tensors_digest(entry["features"], entry["labels"]) != entry["digest"]:
            raise DamagedCacheFile(f"{path} does not match its digest (damaged or edited)")
        return entry["features"], entry["labels"], float(entry["seconds"])

    def write(self, path: str, key: FeatureKey, features: torch.Tensor, labels: torch.Tensor, seconds: float) -> None:
        features, labels = features.detach().cpu().float().contiguous(), labels.detach().cpu().long().contiguous()
        entry = {"features": features, "labels": labels, "key": key.text(), "seconds": float(seconds),
                 "digest": tensors_digest(features, labels)}
        os.makedirs(self.folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(entry, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            if osp.exists(temporary):
                os.remove(temporary)
            raise


def _pass_text(key: FeatureKey) -> str:
    return f", augmented pass {key.augment_pass + 1}" if key.augment_pass >= 0 else ""


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_split(cfg, backbone: ClipBackbone, data_source: Sequence, transform,
                 seed: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Raw image features [N, E] (fp32) and labels [N] of ``data_source`` in its order.

    With ``seed`` the random transforms draw from a generator seeded with it, in the main
    process and in the DataLoader workers alike, so a pass is the same draw whenever it is made.
    """
    dataset = DatasetWrapper(cfg, data_source, transform=transform, is_train=False)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(dataset, batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, shuffle=False,
                        num_workers=cfg.DATALOADER.NUM_WORKERS, generator=generator, drop_last=False)
    features, labels = [], []
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for batch in loader:
            features.append(backbone.encode_image(batch["img"].to(backbone.device)).features.float().cpu())
            labels.append(batch["label"])
    return torch.cat(features), torch.cat(labels)


def pass_seed(seed: int, augment_pass: int) -> int:
    """The seed of augmented pass ``augment_pass`` of a run seeded with ``seed``."""
    return int(hashlib.sha256(f"{seed}:{augment_pass}".encode()).hexdigest()[:8], 16)
