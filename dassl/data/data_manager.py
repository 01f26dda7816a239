"""``DataManager`` (dataset + the four loaders), ``DatasetWrapper`` and ``build_data_loader``.

Single-process behaviour follows upstream Dassl 0.6.3 exactly: same loader construction order,
same ``drop_last`` / ``pin_memory`` rules, shuffling from torch's global RNG. Project additions, all inactive in a plain single-process run with
``NUM_WORKERS = 0``:

* distributed loaders (only when a process group exists, see ``build_data_loader``); a training
  loader that cannot be split across the processes fails only when training uses it, so
  ``--eval-only`` works with any number of processes (see ``UnusableTrainingLoader``);
* rank-aware seeding of DataLoader workers in distributed runs (see ``seed_worker``);
* ``DATALOADER.SKIP_CORRUPT``: skip unreadable images instead of failing (see ``DatasetWrapper``);
* seeded runs reseed every generator once the dataset is built (see ``_reseed_after_dataset``).
"""

from __future__ import annotations

import functools
import multiprocessing
import random
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset as TorchDataset, DistributedSampler
from torchvision import transforms as T

from dassl.utils import read_image, set_random_seed
from dassl.utils.distributed import get_rank, get_world_size, is_distributed

from .datasets import build_dataset
from .samplers import ShardedSequentialSampler, build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "seed_worker", "UnreadableImageError"]

# Config key (read defensively; the default tree may not define it): skip unreadable images.
SKIP_CORRUPT_KEY = "SKIP_CORRUPT"


class UnreadableImageError(OSError):
    """An image of the dataset cannot be read (missing, truncated or not an image)."""


def seed_worker(worker_id: int, rank: int = 0) -> None:
    """``worker_init_fn`` for distributed runs: per-worker ``random``/NumPy/torch streams that also
    differ between ranks.

    Background: since PyTorch 1.9 every DataLoader worker already seeds Python ``random``, NumPy
    and torch from ``base_seed + worker_id``, where ``base_seed`` is drawn from the global torch
    RNG when an epoch's iterator is created. With ``set_random_seed(SEED)`` that makes worker
    augmentation distinct per worker and per epoch and reproducible for a fixed SEED and
    NUM_WORKERS, so single-process loaders keep upstream's "no worker_init_fn" exactly. Under
    torchrun, however, all ranks share SEED, hence the same ``base_seed``: worker k of every rank
    would draw the same augmentation stream. This function mixes the rank into the seed (a
    deviation from upstream, which has no distributed mode). It draws nothing in the main
    process, so sampling order is unaffected.
    """
    seeds = np.random.SeedSequence([torch.initial_seed(), rank]).generate_state(4)
    random.seed(int(seeds[0]))
    np.random.seed(int(seeds[1]))
    torch.manual_seed((int(seeds[2]) << 32) | int(seeds[3]))


def _skip_corrupt_enabled(cfg) -> bool:
    return bool(cfg.DATALOADER.get(SKIP_CORRUPT_KEY, False))


def build_data_loader(
    cfg,
    sampler_type: str = "SequentialSampler",
    data_source: Optional[Sequence] = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm=None,
    is_train: bool = True,
    dataset_wrapper=None,
) -> DataLoader:
    """A DataLoader over ``data_source`` wrapped in ``dataset_wrapper`` (default ``DatasetWrapper``).

    Single process (upstream): sampler from ``build_sampler``; ``drop_last`` only for training
    and only when the split holds at least one full batch; ``pin_memory`` when CUDA is used.

    Distributed (a process group exists): training loaders use ``DistributedSampler`` (shuffled
    for ``RandomSampler``, in order for ``SequentialSampler``; seed = SEED or 0; drop_last) with a
    per-rank batch of ``batch_size // world_size``, so the global batch equals the configured one.
    The trainer must call ``loader.sampler.set_epoch(epoch)`` each epoch for a new shuffle.
    Evaluation loaders shard with ``ShardedSequentialSampler`` (rank r gets r, r+W, ...) and keep
    the configured batch size, so every test image is evaluated exactly once.
    """
    if is_distributed():
        sampler, batch_size = _distributed_sampler(cfg, sampler_type, data_source, batch_size, is_train)
    else:
        sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size,
                                n_domain=n_domain, n_ins=n_ins)
    wrapper_cls = dataset_wrapper or DatasetWrapper
    num_workers = cfg.DATALOADER.NUM_WORKERS
    # Upstream rule: drop the incomplete last batch in training unless the split is smaller
    # than one batch. Distributed: the same rule on this process's share and batch.
    n_items = len(sampler) if is_distributed() else len(data_source)
    data_loader = DataLoader(
        wrapper_cls(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=is_train and n_items >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        worker_init_fn=_worker_init_fn(num_workers),
    )
    _check_has_batches(data_loader, data_source, batch_size, is_train)
    return data_loader


def _worker_init_fn(num_workers: int):
    """None in a single process (upstream; torch seeds workers itself), rank-aware when distributed."""
    if num_workers > 0 and is_distributed():
        return functools.partial(seed_worker, rank=get_rank())
    return None


class UnshardableSamplerError(NotImplementedError):
    """This training sampler cannot be split across processes."""


class IndivisibleBatchError(ValueError):
    """The training batch cannot be split evenly across processes."""


# Raised only for distributed *training* loaders: an evaluation-only run must not fail on them.
TRAINING_ONLY_ERRORS = (UnshardableSamplerError, IndivisibleBatchError)


class UnusableTrainingLoader:
    """Stands in for a training loader that this distributed run cannot build (see
    ``TRAINING_ONLY_ERRORS``). ``--eval-only`` never touches it; training fails at its first use
    (``len``, iteration or any attribute) with the original error."""

    def __init__(self, error: Exception):
        self._error = error

    def __len__(self) -> int:
        raise self._error

    def __iter__(self):
        raise self._error

    def __getattr__(self, name: str):
        if name.startswith("__"):  # copy/pickle protocol probes
            raise AttributeError(name)
        raise self._error


def _distributed_sampler(cfg, sampler_type, data_source, batch_size, is_train):
    world_size, rank = get_world_size(), get_rank()
    if not is_train:
        return ShardedSequentialSampler(data_source, num_replicas=world_size, rank=rank), batch_size
    if sampler_type not in ("RandomSampler", "SequentialSampler"):
        raise UnshardableSamplerError(
            f"{sampler_type} cannot be sharded across processes; use RandomSampler (or SequentialSampler) "
            "for distributed training"
        )
    if batch_size % world_size != 0:
        raise IndivisibleBatchError(
            f"The training batch size ({batch_size}) must be divisible by the number of processes "
            f"({world_size}) for distributed training; change DATALOADER.TRAIN_X (or TRAIN_U) BATCH_SIZE"
        )
    seed = cfg.SEED if cfg.SEED >= 0 else 0
    sampler = DistributedSampler(data_source, num_replicas=world_size, rank=rank,
                                 shuffle=sampler_type == "RandomSampler", seed=seed, drop_last=True)
    return sampler, batch_size // world_size


def _check_has_batches(data_loader: DataLoader, data_source, batch_size: int, is_train: bool) -> None:
    # A rank's evaluation shard may legitimately be empty (fewer items than processes).
    if is_distributed() and not is_train and len(data_source) > 0:
        return
    if len(data_loader) == 0:
        raise AssertionError(
            f"The data loader yields no batches ({len(data_source)} items, batch size {batch_size}, "
            f"train={is_train}); the split is empty - check the dataset folder and split files"
        )


class DatasetWrapper(TorchDataset):
    """Reads and transforms the items of a ``data_source`` (a list of ``Datum``).

    ``__getitem__`` returns ``label``, ``domain``, ``impath``, ``index``, ``img`` (``img2``,
    ``img3``, ... for a list of transforms; a list of ``K_TRANSFORMS`` views per key in
    training when K > 1; the raw PIL image when ``transform`` is None) and, with
    ``DATALOADER.RETURN_IMG0``, the un-augmented tensor ``img0``.

    Unreadable images raise ``UnreadableImageError`` naming the file. With
    ``DATALOADER.SKIP_CORRUPT = True`` (project key, not in upstream Dassl) the wrapper instead
    returns the next readable item (wrapping around; all keys, ``index`` included, then describe
    that item), warns once per bad file, and records it in a flag array shared with the
    DataLoader workers: ``num_skipped`` / ``skipped_impaths`` report the distinct bad files met
    so far.
    """

    def __init__(self, cfg, data_source, transform=None, is_train: bool = False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        # Augmenting an image K times makes sense only in training.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"Cannot augment the image {self.k_tfm} times because transform is None")

        to_tensor = [T.Resize(tuple(cfg.INPUT.SIZE), interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
                     T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

        self.skip_corrupt = _skip_corrupt_enabled(cfg)
        # One byte per item, in shared memory so that flags set in workers are seen everywhere.
        self._bad_flags = multiprocessing.RawArray("b", len(data_source)) if self.skip_corrupt else None

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> Dict:
        idx, img0 = self._read_first_readable(idx)
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views

    # --- unreadable images -------------------------------------------------------------------

    @property
    def num_skipped(self) -> int:
        """Distinct unreadable files skipped so far (0 unless ``DATALOADER.SKIP_CORRUPT``)."""
        return sum(self._bad_flags) if self._bad_flags is not None else 0

    @property
    def skipped_impaths(self) -> List[str]:
        if self._bad_flags is None:
            return []
        return [self.data_source[i].impath for i, bad in enumerate(self._bad_flags) if bad]

    def _read_first_readable(self, idx: int) -> Tuple[int, object]:
        n = len(self.data_source)
        for offset in range(n):
            j = (idx + offset) % n
            if self._bad_flags is not None and self._bad_flags[j]:
                continue
            impath = self.data_source[j].impath
            try:
                return j, read_image(impath)
            except OSError as err:
                if not self.skip_corrupt:
                    raise UnreadableImageError(
                        f'Cannot load image "{impath}" (item {j} of {n}): {str(err).rstrip(".")}. Fix or delete '
                        "the file and its split entry, or set DATALOADER.SKIP_CORRUPT True to skip unreadable images."
                    ) from err
                self._bad_flags[j] = 1
                warnings.warn(f'Skipping unreadable image "{impath}" (DATALOADER.SKIP_CORRUPT): {err}')
        raise UnreadableImageError(f"None of the {n} images of this split can be read (first tried: item {idx})")


def _training_loader(cfg, **kwargs):
    """``build_data_loader`` for training; in a distributed run a loader that cannot be split
    across processes becomes an ``UnusableTrainingLoader`` (eval-only runs do not need it)."""
    try:
        return build_data_loader(cfg, **kwargs)
    except TRAINING_ONLY_ERRORS as error:
        return UnusableTrainingLoader(error)


def _reseed_after_dataset(cfg) -> None:
    """Seeded runs: put Python, NumPy and torch back into the state ``SEED`` gives.

    Building a dataset draws from Python's ``random`` only when it creates a split (the few-shot
    subset, a missing split file) and not when it reads the cached file, so without this a seed's
    first run and its rerun would start training from different generator states (a transform
    such as ``random_translation`` then draws differently). The split itself is still drawn from
    the freshly seeded global generator, as upstream does, so it stays upstream's split.
    """
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)


class DataManager:
    """Builds the dataset named by ``cfg.DATASET.NAME`` and its train_x / train_u / val / test loaders."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        _reseed_after_dataset(cfg)
        if not dataset.test:
            raise ValueError(
                f"{cfg.DATASET.NAME}: the test split is empty; check the dataset folder under DATASET.ROOT "
                "(and DATASET.TARGET_DOMAINS for multi-domain datasets)"
            )

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train

        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        loader_cfg = cfg.DATALOADER
        train_loader_x = _training_loader(
            cfg,
            sampler_type=loader_cfg.TRAIN_X.SAMPLER,
            data_source=dataset.train_x,
            batch_size=loader_cfg.TRAIN_X.BATCH_SIZE,
            n_domain=loader_cfg.TRAIN_X.N_DOMAIN,
            n_ins=loader_cfg.TRAIN_X.N_INS,
            tfm=tfm_train,
            is_train=True,
            dataset_wrapper=dataset_wrapper,
        )

        train_loader_u = None
        if dataset.train_u:
            u_cfg = loader_cfg.TRAIN_X if loader_cfg.TRAIN_U.SAME_AS_X else loader_cfg.TRAIN_U
            train_loader_u = _training_loader(
                cfg,
                sampler_type=u_cfg.SAMPLER,
                data_source=dataset.train_u,
                batch_size=u_cfg.BATCH_SIZE,
                n_domain=u_cfg.N_DOMAIN,
                n_ins=u_cfg.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        def eval_loader(data_source):
            return build_data_loader(
                cfg,
                sampler_type=loader_cfg.TEST.SAMPLER,
                data_source=data_source,
                batch_size=loader_cfg.TEST.BATCH_SIZE,
                tfm=tfm_test,
                is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        val_loader = eval_loader(dataset.val) if dataset.val else None
        test_loader = eval_loader(dataset.test)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        print(tabulate(dataset_summary_rows(cfg, self.dataset)))


def dataset_summary_rows(cfg, dataset) -> List[List[str]]:
    """Rows of the summary table: name, domains (if any), class and split counts (if present)."""
    rows = [["Dataset", cfg.DATASET.NAME]]
    if cfg.DATASET.SOURCE_DOMAINS:
        rows.append(["Source", str(cfg.DATASET.SOURCE_DOMAINS)])
    if cfg.DATASET.TARGET_DOMAINS:
        rows.append(["Target", str(cfg.DATASET.TARGET_DOMAINS)])
    rows.append(["# classes", f"{dataset.num_classes:,}"])
    rows.append(["# train_x", f"{len(dataset.train_x):,}"])
    if dataset.train_u:
        rows.append(["# train_u", f"{len(dataset.train_u):,}"])
    if dataset.val:
        rows.append(["# val", f"{len(dataset.val):,}"])
    rows.append(["# test", f"{len(dataset.test):,}"])
    return rows
