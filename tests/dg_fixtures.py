"""Miniature on-disk trees for Dassl's multi-domain datasets (layouts: DATASETS.md).

Each writer builds the layout the loader reads, with tiny real images, under ``root`` and
returns the dataset folder. Only the domains passed are written; class lists default to three
classes so that labels are 0..2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image

PACS_CLASSES = ("dog", "elephant", "giraffe")
PACS_CORRUPT_ENTRY = "sketch/dog/n02103406_4068-1.png"
DOMAINNET_CLASSES = ("aircraft_carrier", "airplane", "alarm_clock")


def write_image(path: Path, size=(12, 8), value: int = 0) -> Path:
    """A small RGB image (width, height) whose colour depends on ``value``; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((37 * value) % 256, (91 * value + 40) % 256, (53 * value + 80) % 256)
    Image.new("RGB", size, colour).save(path)
    return path


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def write_pacs(root: Path, domains: Sequence[str] = ("photo", "sketch"), classes=PACS_CLASSES,
               corrupt_entry: bool = True) -> Path:
    """``pacs/images/<domain>/<class>/{x1,x2}`` (x = first letter; png for sketch, else jpg);
    file 1 goes to ``<domain>_train_kfold.txt``, file 2 to ``<domain>_crossval_kfold.txt``."""
    base = root / "pacs"
    for d_index, domain in enumerate(domains):
        ext = "png" if domain == "sketch" else "jpg"
        for split, number in (("train", 1), ("crossval", 2)):
            lines = []
            for c_index, cls in enumerate(classes):
                rel = f"{domain}/{cls}/{domain[0]}{number}.{ext}"
                write_image(base / "images" / rel, value=10 * d_index + c_index)
                lines.append(f"{rel} {c_index + 1}")
            if corrupt_entry and domain == "sketch" and split == "train":
                lines.append(f"{PACS_CORRUPT_ENTRY} 1")  # listed upstream, file absent: must be skipped
            _write_lines(base / "splits" / f"{domain}_{split}_kfold.txt", lines)
    return base


def write_vlcs(root: Path, domains: Sequence[str] = ("caltech", "sun"), classes=("bird", "car", "chair")) -> Path:
    """``VLCS/<DOMAIN>/{train,crossval,test}/<class>/1.jpg``."""
    base = root / "VLCS"
    for d_index, domain in enumerate(domains):
        for split in ("train", "crossval", "test"):
            for c_index, cls in enumerate(classes):
                write_image(base / domain.upper() / split / cls / "1.jpg", value=d_index + c_index)
    return base


def write_train_val_folders(root: Path, folder: str, domains: Sequence[str], classes: Sequence[str],
                            n_train: int = 2) -> Path:
    """OfficeHomeDG / DigitsDG: ``<folder>/<domain>/train/<class>/1..n_train.jpg`` and
    ``<domain>/val/<class>/<n_train+1>.jpg``."""
    base = root / folder
    for d_index, domain in enumerate(domains):
        for c_index, cls in enumerate(classes):
            for number in range(1, n_train + 1):
                write_image(base / domain / "train" / cls / f"{number}.jpg", value=d_index + c_index + number)
            write_image(base / domain / "val" / cls / f"{n_train + 1}.jpg", value=d_index + c_index)
    return base


def write_office_home_dg(root: Path, domains=("art", "clipart"),
                         classes=("Alarm_Clock", "Backpack", "Batteries")) -> Path:
    return write_train_val_folders(root, "office_home_dg", domains, classes)


def write_digits_dg(root: Path, domains=("mnist", "svhn"), classes=("0", "1", "2")) -> Path:
    return write_train_val_folders(root, "digits_dg", domains, classes)


def write_domainnet(root: Path, domains: Sequence[str] = ("clipart", "real"), classes=DOMAINNET_CLASSES,
                    split_folders: Sequence[str] = ("splits", "splits_mini")) -> Path:
    """``domainnet/<domain>/<class>/<domain>_<c>_00000{1,2}.jpg``; file 1 listed in
    ``<split folder>/<domain>_train.txt``, file 2 in ``<domain>_test.txt`` (0-based labels)."""
    base = root / "domainnet"
    for d_index, domain in enumerate(domains):
        for split, number in (("train", 1), ("test", 2)):
            lines = []
            for c_index, cls in enumerate(classes):
                rel = f"{domain}/{cls}/{domain}_{c_index:03d}_00000{number}.jpg"
                write_image(base / rel, value=10 * d_index + 3 * c_index + number)
                lines.append(f"{rel} {c_index}")
            for split_folder in split_folders:
                _write_lines(base / split_folder / f"{domain}_{split}.txt", lines)
    return base


def dg_cfg(root: Path, name: str, sources: Sequence[str], targets: Sequence[str], size=(16, 16)):
    """Default Dassl config pointed at a fixture tree: tiny input size, no workers, CPU."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.SOURCE_DOMAINS = list(sources)
    cfg.DATASET.TARGET_DOMAINS = list(targets)
    cfg.INPUT.SIZE = tuple(size)
    cfg.INPUT.TRANSFORMS = ["random_flip", "random_translation", "normalize"]
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    return cfg
