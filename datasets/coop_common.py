"""What every CoOp-style benchmark dataset shares.

* locating ``DATASET.ROOT/<dataset_dir>`` with errors that say what is missing and where to look;
* the split JSON (``split_zhou_<Name>.json``): read with validation, write atomically;
* the two split-creation procedures used when that JSON is absent (80/20 trainval split and the
  50/20/30 class-folder split);
* the few-shot subset and its cache ``split_fewshot/shot_{K}-seed_{S}.json``;
* base/new class subsampling (``DATASET.SUBSAMPLE_CLASSES``);
* ``CoOpDataset``: the constructor recipe of the trainable benchmarks, and ``ImageNetVariant``, the
  recipe of the four test-only ImageNet variants. Both carry ``DatasetFacts`` (``facts.py``), the
  class attributes the dataset tools read.

Project choices (deviations from the upstream loaders, all deliberate):

* A missing ``DATASET.ROOT`` or dataset folder is an error naming the expected path and
  DATASETS.md; upstream silently created the folder. ``split_fewshot/`` is still created inside an
  existing dataset folder.
* Every image a split or annotation file refers to is checked up front; the error names the first
  missing file and how many are missing (upstream failed on the first one with an AssertionError).
* The few-shot cache is JSON with paths relative to the image folder, never pickle: a ``.pkl`` cache
  left by upstream code is ignored with a note and never unpickled. The cache records a fingerprint
  of the full lists it was drawn from and is regenerated when they change (upstream silently kept a
  stale cache).
* Class-folder listings are sorted, so the same seed gives the same split on every machine
  (upstream used the filesystem order). Paper numbers need the published split files anyway.
* Stray files next to class folders are skipped with a note instead of crashing.
* Asking for more shots than a class has in train keeps all of its items (upstream) and warns.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from dassl.data.datasets import Datum, DatasetBase
from dassl.utils import listdir_nohidden, mkdir_if_missing

from .facts import COPY_IMAGENET_CLASSNAMES, DatasetFacts, imagenet_subset_problems

DATASETS_DOC = "DATASETS.md"
FEWSHOT_DIRNAME = "split_fewshot"
SUBSAMPLE_CHOICES = ("all", "base", "new")
SPLIT_KEYS = ("train", "val", "test")

# (absolute image path, label, class name): what a Datum is built from.
Record = Tuple[str, int, str]


class DatasetLayoutError(FileNotFoundError):
    """A folder or file a dataset needs is missing or misplaced; the message says how to fix it."""


class DatasetFormatError(ValueError):
    """A split, annotation or class-name file cannot be used as it is; the message names the file."""


# --------------------------------------------------------------------------------------------------
# Locating things on disk


def how_to_fix(dataset_name: str, root: str) -> str:
    """The sentence every layout error ends with."""
    return (f"See {DATASETS_DOC} (section '{dataset_name}') for the download and the expected tree, "
            f"then check it with: python -m tools.data.check_datasets {root} {dataset_name}")


def dataset_root(cfg) -> str:
    """``DATASET.ROOT`` as an absolute path; it must exist."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
    if not os.path.isdir(root):
        raise DatasetLayoutError(
            f"DATASET.ROOT (--root) does not exist: {root}. Point it at the folder that holds the "
            f"dataset folders (e.g. DATA/ containing oxford_pets/, imagenet/, ...). "
            f"{how_to_fix(cfg.DATASET.NAME or 'dataset', root)}")
    return root


def require_dir(path: str, dataset_name: str, root: str, hint: str = "") -> str:
    if not os.path.isdir(path):
        raise DatasetLayoutError(f"{dataset_name}: folder not found: {path}. {hint + ' ' if hint else ''}"
                                 f"{how_to_fix(dataset_name, root)}")
    return path


def require_file(path: str, dataset_name: str, root: str, hint: str = "") -> str:
    if not os.path.isfile(path):
        raise DatasetLayoutError(f"{dataset_name}: file not found: {path}. {hint + ' ' if hint else ''}"
                                 f"{how_to_fix(dataset_name, root)}")
    return path


def require_images(records: Sequence[Record], source: str) -> None:
    """Every image of ``records`` must exist; one error names the first missing one and the count.

    Checking everything up front turns a moved folder or a split file made for another layout into
    one readable error instead of a failure on the first file.
    """
    missing = [impath for impath, _, _ in records if not os.path.isfile(impath)]
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} of {len(records)} images listed in {source} are missing; first missing: "
            f"{missing[0]}. The images must sit where that file says (see {DATASETS_DOC}; "
            f"tools/data/check_datasets.py reports what is misplaced).")


def to_datums(records: Iterable[Record]) -> List[Datum]:
    return [Datum(impath=impath, label=label, classname=classname) for impath, label, classname in records]


def build_data(records: Iterable[Record], source: str) -> List[Datum]:
    """Datum objects for ``records`` after checking that every image exists (``require_images``)."""
    records = list(records)
    require_images(records, source)
    return to_datums(records)


def read_lines(path: str) -> List[str]:
    """Stripped, non-blank lines (handles CRLF files; blank lines are skipped, not an error)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def list_files(folder: str) -> List[str]:
    """Sorted non-hidden regular files of ``folder`` (sorted for machine-independent results).

    ``os.scandir`` gets the file type from the directory listing, so ImageNet's 1.28M files are
    not stat'ed one extra time each.
    """
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if not entry.name.startswith(".") and entry.is_file())


def list_class_folders(image_dir: str, ignored: Sequence[str] = ()) -> List[str]:
    """Sorted (case-sensitive, original names) non-hidden sub-folders, minus ``ignored``.

    Stray files are skipped with a note (upstream crashed on them).
    """
    folders = []
    for name in listdir_nohidden(image_dir, sort=True):
        if name in ignored:
            continue
        if os.path.isdir(os.path.join(image_dir, name)):
            folders.append(name)
        else:
            print(f"Note: skipping {os.path.join(image_dir, name)} (a file, not a class folder)")
    return folders


def load_mat_variable(path: str, variable: str):
    """One variable of a MATLAB v5 file (StanfordCars and Flowers annotations)."""
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt/foreign files
        raise DatasetFormatError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    if variable not in content:
        raise DatasetFormatError(f"{path} has no variable {variable!r} (found {sorted(k for k in content if not k.startswith('__'))})")
    return content[variable]


# --------------------------------------------------------------------------------------------------
# Split JSON and few-shot cache files


def relative_path(impath: str, path_prefix: str) -> str:
    head = path_prefix.rstrip(os.sep) + os.sep
    if impath.startswith(head):  # the common case, kept cheap: ImageNet lists have 1.28M items
        return impath[len(head):].replace(os.sep, "/")
    rel = os.path.relpath(impath, path_prefix)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"{impath} is not inside {path_prefix}; split files store paths relative to it")
    return rel.replace(os.sep, "/")


def to_items(data: Sequence[Datum], path_prefix: str) -> List[list]:
    return [[relative_path(item.impath, path_prefix), item.label, item.classname] for item in data]


def parse_items(items, key: str, filepath: str, path_prefix: str) -> List[Record]:
    """Validate the ``[relative path, label, class name]`` items of one list of a split file."""
    if not isinstance(items, list):
        raise DatasetFormatError(f"{filepath}: '{key}' must be a list of [path, label, classname] items, "
                                 f"got {type(items).__name__}. Delete or re-download the file.")
    records = []
    for i, item in enumerate(items):
        ok = isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str) \
            and isinstance(item[2], str) and not isinstance(item[1], bool)
        try:
            label = int(item[1]) if ok else None
        except (TypeError, ValueError):
            label = None
        if label is None or label < 0:
            raise DatasetFormatError(
                f"{filepath}: item {i} of '{key}' is {item!r}; expected [relative_path, label >= 0, "
                f"classname]. Delete or re-download the file.")
        records.append((os.path.join(path_prefix, item[0]), label, item[2]))
    return records


def load_json_lists(filepath: str, keys: Sequence[str]) -> dict:
    """The JSON object in ``filepath``; it must have the given list keys."""
    try:
        with open(filepath, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{filepath} is not valid JSON ({exc}). Delete it (it is re-created "
                                 f"from the raw files) or re-download it; see {DATASETS_DOC}.") from exc
    if not isinstance(obj, dict) or any(key not in obj for key in keys):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DatasetFormatError(f"{filepath} must be a JSON object with the lists {list(keys)}, found "
                                 f"{found}. Delete it or re-download it; see {DATASETS_DOC}.")
    return obj


def write_json_atomic(obj, filepath: str) -> None:
    """Write JSON (upstream formatting) via a temporary file, so readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(filepath))
    mkdir_if_missing(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_split(filepath: str, path_prefix: str) -> Tuple[List[Datum], List[Datum], List[Datum]]:
    """Read ``split_zhou_<Name>.json``: paths are relative to ``path_prefix``; list order is kept."""
    print(f"Reading split from {filepath}")
    obj = load_json_lists(filepath, SPLIT_KEYS)
    records = [parse_items(obj[key], key, filepath, path_prefix) for key in SPLIT_KEYS]
    require_images([record for part in records for record in part], filepath)
    train, val, test = (to_datums(part) for part in records)
    return train, val, test


def save_split(train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], filepath: str,
               path_prefix: str) -> None:
    """Write a split file in the published format (``{"train"|"val"|"test": [[rel, label, name]]}``)."""
    obj = {key: to_items(data, path_prefix) for key, data in zip(SPLIT_KEYS, (train, val, test))}
    write_json_atomic(obj, filepath)
    print(f"Saved split to {filepath}")


def fingerprint(lists: Sequence[Optional[Sequence[Datum]]], path_prefix: str) -> str:
    """SHA-1 of the lists a few-shot subset is drawn from (relative paths, labels, names, order)."""
    digest = hashlib.sha1()
    for data in lists:
        digest.update(b"\x00list")
        for item in data or ():
            digest.update(f"{relative_path(item.impath, path_prefix)}\t{item.label}\t{item.classname}\n"
                          .encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Split creation (only when the split JSON is absent)


def split_counts(n: int, p_trn: float, p_val: float) -> Tuple[int, int, int]:
    """Python's round() is half-to-even, as upstream: 5 -> 2/1/2, 4 -> 2/1/1."""
    n_train = round(n * p_trn)
    n_val = round(n * p_val)
    return n_train, n_val, n - n_train - n_val


def cut_class(items: list, p_trn: float, p_val: float, what: str) -> Tuple[list, list, list]:
    """Shuffle one class in place and cut it into train/val/test (all three must be non-empty)."""
    n_train, n_val, n_test = split_counts(len(items), p_trn, p_val)
    if min(n_train, n_val, n_test) <= 0:
        raise DatasetFormatError(
            f"{what} has {len(items)} images; a {p_trn:.0%}/{p_val:.0%}/{1 - p_trn - p_val:.0%} "
            f"train/val/test split needs at least 4 per class. Add images or use the published split "
            f"file (see {DATASETS_DOC}).")
    random.shuffle(items)
    return items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:]


def group_by_label(data: Sequence[Datum]) -> "OrderedDict[int, List[Datum]]":
    """Items per label; labels in order of first appearance, items in list order."""
    groups: "OrderedDict[int, List[Datum]]" = OrderedDict()
    for item in data:
        groups.setdefault(item.label, []).append(item)
    return groups


def split_trainval(trainval: Sequence[Datum], p_val: float = 0.2) -> Tuple[List[Datum], List[Datum]]:
    """Split a train+val list into train and val, ``round(n * p_val)`` val items per class.

    Classes in order of first appearance; each class's items are shuffled with the stdlib ``random``
    (one shuffle per class, as upstream, so seeded runs reproduce upstream's split).
    """
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    train, val = [], []
    for label, items in group_by_label(trainval).items():
        n_val = round(len(items) * p_val)
        if n_val <= 0:
            raise DatasetFormatError(
                f"class '{items[0].classname}' (label {label}) has {len(items)} train+val items; an "
                f"{1 - p_val:.0%}/{p_val:.0%} split needs at least 3 per class. Add images or use the "
                f"published split file (see {DATASETS_DOC}).")
        items = list(items)
        random.shuffle(items)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def split_class_folders(image_dir: str, p_trn: float = 0.5, p_val: float = 0.2, ignored: Sequence[str] = (),
                        new_cnames: Optional[Mapping[str, str]] = None
                        ) -> Tuple[List[Datum], List[Datum], List[Datum]]:
    """Random per-class train/val/test split of ``image_dir/<class folder>/<image>``.

    Label = position of the folder in the sorted (case-sensitive) list of ORIGINAL folder names,
    after dropping ``ignored``; class name = ``new_cnames.get(folder, folder)``. Each class's files
    are listed sorted (project choice, see the module docstring), shuffled, then cut.
    """
    new_cnames = new_cnames or {}
    folders = list_class_folders(image_dir, ignored)
    if not folders:
        raise DatasetLayoutError(f"no class folders in {image_dir}; expected {image_dir}/<class>/<image>. "
                                 f"See {DATASETS_DOC}.")
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    splits: Tuple[List[Record], List[Record], List[Record]] = ([], [], [])
    for label, folder in enumerate(folders):
        class_dir = os.path.join(image_dir, folder)
        impaths = [os.path.join(class_dir, name) for name in list_files(class_dir)]
        classname = new_cnames.get(folder, folder)
        parts = cut_class(impaths, p_trn, p_val, f"class folder {class_dir}")
        for records, part in zip(splits, parts):
            records.extend((impath, label, classname) for impath in part)
    train, val, test = (to_datums(records) for records in splits)  # listed just now: no extra check
    return train, val, test


# --------------------------------------------------------------------------------------------------
# Few-shot subsets and their cache


def warn_small_classes(data: Sequence[Datum], num_shots: int, what: str) -> None:
    """Warn (no randomness used) when some classes have fewer than ``num_shots`` items."""
    small = [(items[0].classname, len(items)) for items in group_by_label(data).values() if len(items) < num_shots]
    if small:
        shown = ", ".join(f"{name!r} ({n})" for name, n in small[:5]) + (", ..." if len(small) > 5 else "")
        warnings.warn(f"{what}: {len(small)} class(es) have fewer than {num_shots} items and keep all of "
                      f"them: {shown}", UserWarning, stacklevel=3)


def fewshot_cache_path(fewshot_dir: str, num_shots: int, seed: int, ext: str = "json") -> str:
    return os.path.join(fewshot_dir, f"shot_{num_shots}-seed_{seed}.{ext}")


def _load_fewshot_cache(path: str, keys: Sequence[str], path_prefix: str, meta: dict
                        ) -> Optional[Dict[str, List[Datum]]]:
    obj = load_json_lists(path, keys)
    if obj.get("meta") != meta:
        print(f"Few-shot cache {path} was made from other splits or settings; regenerating it")
        return None
    print(f"Loading preprocessed few-shot data from {path}")
    records = {key: parse_items(obj[key], key, path, path_prefix) for key in keys}
    require_images([record for part in records.values() for record in part], path)
    return {key: to_datums(part) for key, part in records.items()}


def fewshot_splits(dataset: DatasetBase, train: List[Datum], val: Optional[List[Datum]], num_shots: int,
                   seed: int, fewshot_dir: str, path_prefix: str
                   ) -> Tuple[List[Datum], Optional[List[Datum]]]:
    """K-shot train (and ``min(K, 4)``-shot val) subsets, cached in ``split_fewshot/``.

    ``val=None`` (ImageNet: its val is the test set) samples and caches train only. Sampling is
    ``dataset.generate_fewshot_dataset`` (stdlib ``random``, train first, then val), so a fresh run
    and a run that loads the cache give identical lists.
    """
    if num_shots < 1:
        return train, val
    keys = ("train",) if val is None else ("train", "val")
    cache = fewshot_cache_path(fewshot_dir, num_shots, seed)
    legacy = fewshot_cache_path(fewshot_dir, num_shots, seed, ext="pkl")
    if os.path.exists(legacy):
        print(f"Note: ignoring {legacy} (pickle caches are never loaded); using {cache}")
    meta = {"num_shots": num_shots, "seed": seed, "source_sha1": fingerprint([train, val], path_prefix)}
    if os.path.isfile(cache):
        loaded = _load_fewshot_cache(cache, keys, path_prefix, meta)
        if loaded is not None:
            return loaded["train"], loaded.get("val")

    warn_small_classes(train, num_shots, "few-shot train")
    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    if val is not None:  # no warning here: a short val list is expected on small datasets
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    print(f"Saving preprocessed few-shot data to {cache}")
    obj = {"train": to_items(train, path_prefix)}
    if val is not None:
        obj["val"] = to_items(val, path_prefix)
    obj["meta"] = meta
    write_json_atomic(obj, cache)
    return train, val


# --------------------------------------------------------------------------------------------------
# Base/new subsampling


def subsample_classes(*data_lists: Sequence[Datum], subsample: str = "all") -> List[List[Datum]]:
    """Keep the base (lower ``ceil(n/2)``) or new (upper) half of the labels and relabel from 0.

    The labels are those present in the FIRST list (train, after few-shot sampling); the same
    selection and relabeling are applied to every list. ``"all"`` returns the lists unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {list(SUBSAMPLE_CHOICES)}, got {subsample!r}")
    if subsample == "all":
        return [list(data) for data in data_lists]
    labels = sorted({item.label for item in data_lists[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    kept = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {old: new for new, old in enumerate(kept)}
    return [[Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
             for item in data if item.label in relabeler] for data in data_lists]


def subsample_setting(cfg) -> str:
    """``DATASET.SUBSAMPLE_CLASSES``; the key is added by train.py, so a bare Dassl cfg means "all"."""
    return cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")


# --------------------------------------------------------------------------------------------------
# Constructor recipes


class CoOpDataset(DatasetFacts, DatasetBase):
    """Constructor recipe of the trainable CoOp benchmarks (CoOp's DATASETS.md layout; see our DATASETS.md).

    Subclasses set the class attributes and implement ``build_splits`` (raw files -> lists):

    * ``dataset_dir``: folder under ``DATASET.ROOT`` (the instance attribute becomes its absolute path);
    * ``image_subdir``: image folder inside it, also the prefix of the paths in split files
      (``""``: the dataset folder itself, as StanfordCars);
    * ``split_filename``: ``split_zhou_<Name>.json``, or ``""`` when the dataset has none
      (FGVCAircraft always reads its official files).

    ``build_splits`` may return ``val=None`` (ImageNet): then only train is made few-shot and
    cached, and val is the (subsampled) test list. The tools' facts: see ``DatasetFacts``.
    """

    dataset_dir = ""
    image_subdir = ""
    split_filename = ""

    def __init__(self, cfg):
        self.locate(dataset_root(cfg))
        mkdir_if_missing(self.split_fewshot_dir)

        train, val, test = self.load_full_splits()
        train, val = fewshot_splits(self, train, val, cfg.DATASET.NUM_SHOTS, int(cfg.SEED),
                                    self.split_fewshot_dir, self.image_dir)
        subsample = subsample_setting(cfg)
        if val is None:
            train, test = subsample_classes(train, test, subsample=subsample)
            val = test
        else:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)

    def locate(self, root: str) -> None:
        """Set the upstream path attributes; the dataset folder must exist (it is never created)."""
        self.root = root
        self.dataset_dir = require_dir(os.path.join(root, type(self).dataset_dir), type(self).__name__, root)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, self.split_filename) if self.split_filename else None
        self.split_fewshot_dir = os.path.join(self.dataset_dir, FEWSHOT_DIRNAME)

    def load_full_splits(self, save: bool = True) -> Tuple[List[Datum], Optional[List[Datum]], List[Datum]]:
        """Read the split JSON if present, else build the lists from the raw files (and save them)."""
        if self.split_path and os.path.isfile(self.split_path):
            return read_split(self.split_path, self.image_dir)
        if self.split_path:
            print(f"No {os.path.basename(self.split_path)} in {self.dataset_dir}: creating the split from "
                  f"the raw files (for paper-comparable numbers use the published file, see {DATASETS_DOC})")
        train, val, test = self.build_splits()
        if self.split_path and save:
            save_split(train, val, test, self.split_path, self.image_dir)
        return train, val, test

    @classmethod
    def dry_run(cls, root: str) -> Dict[str, List[Datum]]:
        """The full splits as a run would see them, without writing anything (tools/data/check_datasets.py).

        Runs the same reading/validation code as the constructor; the global ``random`` state is
        restored afterwards.
        """
        self = cls.__new__(cls)  # a throwaway reader: DatasetBase.__init__ is deliberately not run
        self.locate(root)
        state = random.getstate()
        try:
            train, val, test = self.load_full_splits(save=False)
        finally:
            random.setstate(state)
        return {"train": train, "test": test} if val is None else {"train": train, "val": val, "test": test}

    def build_splits(self) -> Tuple[List[Datum], Optional[List[Datum]], List[Datum]]:
        raise NotImplementedError

    # Helpers for subclasses
    def require_file(self, *parts: str, hint: str = "") -> str:
        return require_file(os.path.join(self.dataset_dir, *parts), type(self).__name__, self.root, hint)

    def require_dir(self, *parts: str, hint: str = "") -> str:
        return require_dir(os.path.join(self.dataset_dir, *parts), type(self).__name__, self.root, hint)


def read_imagenet_classnames(text_file: str) -> "OrderedDict[str, str]":
    """``classnames.txt``: lines ``<wnid> <class name>`` -> ordered wnid -> name (file order kept)."""
    classnames: "OrderedDict[str, str]" = OrderedDict()
    for number, line in enumerate(read_lines(text_file), start=1):
        wnid, _, name = line.partition(" ")
        if not name.strip():
            raise DatasetFormatError(f"{text_file}, line {number}: expected '<wnid> <class name>', got {line!r}")
        classnames[wnid] = " ".join(name.split(" "))
    return classnames


def wnid_folder_records(image_dir: str, classnames: Mapping[str, str], source: str, skip: Sequence[str] = (),
                        files: str = "error") -> List[Record]:
    """Records of ``image_dir/<wnid>/<image>``: label = rank of the wnid among the sorted folders.

    ``files``: what to do with files directly in ``image_dir`` (ImageNet ignores them, the variants'
    upstream loaders crashed on them, we raise a clear error). ``skip``: names never treated as
    classes (``README.txt`` in ImageNet-A/-R).
    """
    entries = [name for name in listdir_nohidden(image_dir, sort=True) if name not in skip]
    stray = [name for name in entries if not os.path.isdir(os.path.join(image_dir, name))]
    if stray and files == "error":
        raise DatasetLayoutError(f"{image_dir} must contain only one folder per wnid, found file(s) "
                                 f"{stray[:3]}; move them out. See {DATASETS_DOC}.")
    folders = [name for name in entries if name not in stray]
    unknown = [wnid for wnid in folders if wnid not in classnames]
    if unknown:
        raise DatasetFormatError(f"{len(unknown)} folder(s) of {image_dir} are not listed in {source}, "
                                 f"first: {unknown[0]!r}. classnames.txt must be the ImageNet class list "
                                 f"(see {DATASETS_DOC}).")
    records: List[Record] = []
    for label, wnid in enumerate(folders):
        class_dir = os.path.join(image_dir, wnid)
        records.extend((os.path.join(class_dir, name), label, classnames[wnid]) for name in list_files(class_dir))
    return records


class ImageNetVariant(DatasetFacts, DatasetBase):
    """Recipe of the test-only ImageNet variants (DATASETS.md): one list used as train_x and test.

    ``NUM_SHOTS`` and ``SUBSAMPLE_CLASSES`` are ignored, nothing is cached and no folder is created.
    Subclasses set ``dataset_dir`` / ``image_subdir`` (+ ``skip_entries``, ``image_dir_hint``); the
    default reader takes ``image_subdir/<wnid>/*`` with labels in sorted-wnid order.

    A class-subset variant (ImageNet-A/-R) also sets ``imagenet_wnids`` and ``imagenet_indices``,
    its classes and their ImageNet-1k indices, and ``release_name``; the default
    ``layout_problems`` then checks the image folders and ``classnames.txt`` against them.
    """

    dataset_dir = ""
    image_subdir = ""
    skip_entries: Tuple[str, ...] = ()  # names in the image folder that are not classes
    image_dir_hint = ""  # added to the error when the image folder is missing

    required_files = ("classnames.txt",)
    missing_file_fixes = MappingProxyType({"classnames.txt": COPY_IMAGENET_CLASSNAMES})
    imagenet_wnids: Tuple[str, ...] = ()
    imagenet_indices: Tuple[int, ...] = ()
    release_name = ""

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        if not cls.imagenet_wnids:
            return []
        return imagenet_subset_problems(dataset_dir, cls.image_subdir, cls.imagenet_wnids, cls.imagenet_indices,
                                        cls.release_name)

    def __init__(self, cfg):
        data = self.load_data(dataset_root(cfg))
        super().__init__(train_x=data, test=data)

    def load_data(self, root: str) -> List[Datum]:
        name = type(self).__name__
        self.root = root
        self.dataset_dir = require_dir(os.path.join(root, type(self).dataset_dir), name, root)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, self.image_subdir), name, root,
                                     self.image_dir_hint)
        text_file = require_file(os.path.join(self.dataset_dir, "classnames.txt"), name, root,
                                 "Copy imagenet/classnames.txt into this folder.")
        classnames = read_imagenet_classnames(text_file)
        return to_datums(self.read_records(classnames, text_file))  # records come from listings

    @classmethod
    def dry_run(cls, root: str) -> Dict[str, List[Datum]]:
        """The evaluation list as a run would see it (tools/data/check_datasets.py); writes nothing."""
        return {"test": cls.__new__(cls).load_data(root)}

    def read_records(self, classnames: "OrderedDict[str, str]", text_file: str) -> List[Record]:
        return wnid_folder_records(self.image_dir, classnames, text_file, skip=self.skip_entries)
