"""What the dataset tools know about each benchmark, declared on the loader classes themselves.

The loaders need only ``dataset_dir``, ``image_subdir`` and ``split_filename``. The tools around
them (``tools/data/check_datasets.py``, ``tools/data/download_splits.py``, ``tools/kit/make_fixture_datasets.py``)
need a few more facts: how many classes the full dataset has, where its files come from, which
files it reads, and the download mistakes it is prone to. ``DatasetFacts`` names those facts once;
``CoOpDataset`` and ``ImageNetVariant`` inherit it and every benchmark class sets what applies to it.

This module imports neither the engine nor torch, so a tool can list the benchmarks cheaply; the
classes themselves are loaded with ``benchmark_class``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import MappingProxyType
from typing import List, Mapping, Sequence, Tuple

# The CoOp benchmarks in the order of the papers' tables. Each name is both the module
# (``datasets/<name>.py``) and the config (``configs/datasets/<name>.yaml``) of the benchmark.
COOP_BENCHMARKS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
    "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r",
)

# In ``raw_files``: one folder per class in the image folder (rather than a file to look for).
CLASS_FOLDERS = "<class folders>"

# How to provide a missing ``classnames.txt`` in an ImageNet variant's folder.
COPY_IMAGENET_CLASSNAMES = "copy imagenet/classnames.txt into it (the 1000-line ImageNet class list, see DATASETS.md)"


class DatasetFacts:
    """Class attributes describing a benchmark for the tools; the loaders do not read them.

    Paths are relative to the dataset folder (``DATA/<dataset_dir>/``); a trailing ``/`` marks a folder.

    * ``full_num_classes``: classes in the complete dataset (a fixture may hold fewer). Not
      ``num_classes``: that is the loaded instance's count, derived from its train list.
    * ``download_ids``: file -> Google Drive id of the copy the CoOp authors publish (split file,
      class-name files, UCF101 mid-frames); ``https://drive.google.com/uc?id=<id>``.
    * ``raw_files``: what the split is created from when the split file is absent (read on every
      run when the dataset has no split file); ``CLASS_FOLDERS`` for one folder per class.
    * ``required_files``: files and folders read on every run.
    * ``missing_file_fixes``: required file -> how to provide it, where a download id does not say it.
    * ``sources``: where the images come from; the first is named when the dataset folder is missing.
    * ``folder_aliases``: names the dataset folder often ends up with instead of ``dataset_dir``.
    * ``layout_problems(dataset_dir)``: the dataset's usual download mistakes found in its folder,
      each with its fix; a class overrides it with the probes for its own mistakes.
    """

    full_num_classes: int = 0
    download_ids: Mapping[str, str] = MappingProxyType({})
    raw_files: Tuple[str, ...] = ()
    required_files: Tuple[str, ...] = ()
    missing_file_fixes: Mapping[str, str] = MappingProxyType({})
    sources: Tuple[str, ...] = ()
    folder_aliases: Tuple[str, ...] = ()

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        """Known layout mistakes under ``dataset_dir``, one sentence with its fix each (none by default)."""
        return []


def benchmark_class(name: str) -> type:
    """The registered loader class defined in ``datasets/<name>.py`` (imports it and the engine)."""
    from dassl.data.datasets import DATASET_REGISTRY

    module = importlib.import_module(f"{__package__}.{name}")
    defined_here = [DATASET_REGISTRY.get(registered) for registered in DATASET_REGISTRY.registered_names()
                    if DATASET_REGISTRY.get(registered).__module__ == module.__name__]
    if len(defined_here) != 1:
        raise LookupError(f"{module.__name__} must register exactly one dataset class, found {len(defined_here)}")
    return defined_here[0]


def read_imagenet_subset(filename: str) -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
    """ImageNet-1k indices and wnids of a class subset, from ``datasets/<filename>``.

    The file has one ``<index> <wnid>`` line per class, in label order; ``#`` lines are comments.
    The tables are data files (as timm's ``data/_info/``) so that the modules stay readable code.
    """
    lines = (Path(__file__).parent / filename).read_text(encoding="utf-8").splitlines()
    rows = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    return tuple(int(index) for index, _ in rows), tuple(wnid for _, wnid in rows)


# --------------------------------------------------------------------------------------------------
# Helpers for the probes in ``layout_problems``


def subfolder_names(folder: Path) -> List[str]:
    """Sorted names of the non-hidden folders in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def file_names(folder: Path) -> List[str]:
    """Sorted names of the non-hidden files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def classnames_wnids(text_file: Path) -> List[str]:
    """The wnids of a ``classnames.txt`` (``<wnid> <class name>`` lines), in file order."""
    lines = text_file.read_text(encoding="utf-8").splitlines()
    return [line.split(" ", 1)[0] for line in lines if line.strip()]


def imagenet_subset_problems(dataset_dir: Path, image_subdir: str, wnids: Sequence[str], indices: Sequence[int],
                             release: str) -> List[str]:
    """ImageNet-A/-R: the class folders must be the release's, and the class list the standard one.

    ``wnids[k]`` sits at line ``indices[k]`` of the standard 1000-line ImageNet list; a list in
    another order would give the classes wrong names (a partial list is allowed, as by the loader).
    """
    problems = []
    image_dir = dataset_dir / image_subdir
    if not image_dir.is_dir():
        return problems
    foreign = sorted(set(subfolder_names(image_dir)) - set(wnids))
    if foreign:
        problems.append(f"{len(foreign)} folder(s) in {image_subdir}/ are not {release} classes (first: "
                        f"{foreign[0]}); fix: use the {release} archive (see DATASETS.md)")
    text_file = dataset_dir / "classnames.txt"
    order = classnames_wnids(text_file) if text_file.is_file() else []
    if len(order) >= 1000:
        misplaced = [wnid for wnid, index in zip(wnids, indices) if index >= len(order) or order[index] != wnid]
        if misplaced:
            problems.append(f"classnames.txt is not the standard ImageNet list ({misplaced[0]} is not at its "
                            f"ImageNet-1k index); fix: {COPY_IMAGENET_CLASSNAMES}")
    return problems
