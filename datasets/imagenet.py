"""ImageNet (ILSVRC-2012): ``imagenet/images/{train,val}/<wnid>/*`` + ``classnames.txt``.

The ILSVRC val images are the test set (there is no separate validation set: val = test).
Project choice: no ``preprocessed.pkl`` cache. Both splits are rescanned on every run (sorted
listings, so the result is machine-independent); building the Datum list stats every file either
way, so a cache would save little. A ``preprocessed.pkl`` left by upstream code is never read.
"""
import os
from collections import OrderedDict
from pathlib import Path
from typing import List, Tuple

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import listdir_nohidden

from .coop_common import (CoOpDataset, DatasetLayoutError, DATASETS_DOC, read_imagenet_classnames, to_datums,
                          wnid_folder_records)
from .facts import file_names, subfolder_names

FLAT_VAL_HELP = (
    "ImageNet's val images must be in one folder per class, images/val/<wnid>/*.JPEG, with the same "
    "wnid folders as images/train/. The ILSVRC-2012 archive ships them flat: move each image into the "
    "folder of its wnid (from the official val ground truth) before training.")


@DATASET_REGISTRY.register()
class ImageNet(CoOpDataset):
    dataset_dir = "imagenet"
    image_subdir = "images"

    full_num_classes = 1000
    download_ids = {"classnames.txt": "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"}
    required_files = ("classnames.txt",)
    sources = ("https://image-net.org/index.php (ILSVRC-2012 train + val)",)
    folder_aliases = ("ImageNet", "ILSVRC2012", "imagenet-1k")

    @staticmethod
    def read_classnames(text_file: str) -> "OrderedDict[str, str]":
        """Upstream-compatible alias (used by ImageNet-variant loaders written for CoOp)."""
        return read_imagenet_classnames(text_file)

    def build_splits(self) -> Tuple[List[Datum], None, List[Datum]]:
        legacy = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.exists(legacy):
            print(f"Note: ignoring {legacy} (pickle caches are never loaded); scanning the image folders")
        text_file = self.require_file("classnames.txt", hint="Download it (see the Drive id in DATASETS.md).")
        classnames = read_imagenet_classnames(text_file)
        train_dir = self.require_dir("images", "train")
        val_dir = self.require_dir("images", "val", hint=FLAT_VAL_HELP)
        self.check_val_layout(train_dir, val_dir)
        train = to_datums(wnid_folder_records(train_dir, classnames, text_file, files="ignore"))
        test = to_datums(wnid_folder_records(val_dir, classnames, text_file, files="ignore"))
        return train, None, test

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        """The flat ILSVRC val folder, and a train or val folder that is not there at all."""
        problems = []
        val = dataset_dir / "images" / "val"
        if val.is_dir() and not subfolder_names(val) and file_names(val):
            problems.append(f"images/val/ holds {len(file_names(val))} files directly (the flat ILSVRC layout); "
                            f"fix: move each val image into images/val/<wnid>/ (one folder per class, the same "
                            f"wnids as images/train/)")
        for name in ("train", "val"):
            if not (dataset_dir / "images" / name).is_dir():
                problems.append(f"missing images/{name}/; fix: extract ILSVRC-2012 {name} into "
                                f"images/{name}/<wnid>/*.JPEG")
        return problems

    @staticmethod
    def check_val_layout(train_dir: str, val_dir: str) -> None:
        """Flat val images, or train/val wnid sets that differ, would silently mislabel the test set."""
        def subfolders(folder):
            return [n for n in listdir_nohidden(folder, sort=True) if os.path.isdir(os.path.join(folder, n))]

        val_wnids = subfolders(val_dir)
        if not val_wnids:
            n_files = len(listdir_nohidden(val_dir))
            raise DatasetLayoutError(f"{val_dir} holds {n_files} files and no wnid folders. {FLAT_VAL_HELP} "
                                     f"See {DATASETS_DOC} (section 'ImageNet').")
        train_wnids = subfolders(train_dir)
        if train_wnids != val_wnids:
            only_train = sorted(set(train_wnids) - set(val_wnids))
            only_val = sorted(set(val_wnids) - set(train_wnids))
            raise DatasetLayoutError(
                f"images/train and images/val must have the same wnid folders (labels are their sorted "
                f"positions); only in train: {only_train[:3]} ({len(only_train)}), only in val: "
                f"{only_val[:3]} ({len(only_val)}). {FLAT_VAL_HELP}")
