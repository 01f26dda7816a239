"""Readers shared by the built-in multi-domain datasets (project module; not in upstream Dassl).

Two on-disk conventions cover PACS, VLCS, OfficeHomeDG, DigitsDG, DomainNet and miniDomainNet:

* split files: one ``<relative image path> <integer label>`` per line;
* class folders: ``<split_dir>/<class folder>/<image>``, label = position of the folder in the
  sorted list of non-hidden sub-folders.
"""

from __future__ import annotations

import glob
import os.path as osp
from typing import Callable, List, Tuple

from dassl.utils import listdir_nohidden

from .base_dataset import Datum

__all__ = ["read_path_label_lines", "read_class_folders", "require_dir"]


def require_dir(path: str, what: str) -> None:
    """Fail with a message naming the expected folder (instead of a bare listdir traceback)."""
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'{what}: folder "{path}" does not exist; check DATASET.ROOT and the domain names '
            "(see DATASETS.md for the expected layout)"
        )


def read_path_label_lines(split_file: str) -> List[Tuple[str, int]]:
    """``(relative path, label)`` for every non-blank line of ``split_file``."""
    if not osp.isfile(split_file):
        raise FileNotFoundError(f'Split file not found: "{split_file}" (see DATASETS.md for the expected layout)')
    entries: List[Tuple[str, int]] = []
    with open(split_file, "r") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                path, label = fields
                entries.append((path, int(label)))
            except ValueError:
                raise ValueError(
                    f'{split_file}:{line_no}: expected "<relative image path> <integer label>", got {line.strip()!r}'
                ) from None
    return entries


def read_class_folders(
    split_dir: str,
    domain: int,
    classname_of: Callable[[int, str], str],
    pattern: str = "*.jpg",
) -> List[Datum]:
    """Images matching ``pattern`` in every class folder of ``split_dir``.

    Labels are positions in the case-sensitive sorted list of class folders; class names come
    from ``classname_of(label, folder name)``. Images within a folder are sorted (upstream keeps glob's
    filesystem order, which is not reproducible across machines). An empty class folder is an
    error: it would leave a label without images and desynchronise labels and class names.
    """
    require_dir(split_dir, "class-folder reader")
    items: List[Datum] = []
    for label, folder in enumerate(listdir_nohidden(split_dir, sort=True)):
        class_dir = osp.join(split_dir, folder)
        impaths = sorted(glob.glob(osp.join(class_dir, pattern)))
        if not impaths:
            raise ValueError(
                f'Class folder "{class_dir}" has no images matching "{pattern}"; add its images or remove the folder'
            )
        classname = classname_of(label, folder)
        items.extend(Datum(impath=p, label=label, domain=domain, classname=classname) for p in impaths)
    return items
