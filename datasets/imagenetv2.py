"""ImageNetV2 (matched frequency): ``imagenetv2/imagenetv2-matched-frequency-format-val/{0..999}/*``.

Folder ``k`` holds class ``k`` of ImageNet-1k; its name is line ``k`` of ``classnames.txt`` (a copy of
imagenet/classnames.txt, which must be in the standard sorted-wnid order).
"""
import os
from pathlib import Path
from typing import List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import DatasetFormatError, ImageNetVariant, Record, list_files, require_dir
from .facts import COPY_IMAGENET_CLASSNAMES, classnames_wnids

NUM_CLASSES = 1000


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    image_dir_hint = "Extract imagenetv2-matched-frequency.tar.gz inside imagenetv2/."

    full_num_classes = NUM_CLASSES
    sources = ("https://github.com/modestyachts/ImageNetV2",
               "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz")
    folder_aliases = ("ImageNetV2", "imagenet-v2", "imagenetv2-matched-frequency-format-val")

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        """Folder k is read as line k of classnames.txt: that needs all 1000 lines in standard order."""
        text_file = dataset_dir / "classnames.txt"
        if not text_file.is_file():
            return []  # reported as a missing required file
        problems = []
        wnids = classnames_wnids(text_file)
        if len(wnids) < NUM_CLASSES:
            problems.append(f"classnames.txt has {len(wnids)} lines, ImageNetV2 needs all {NUM_CLASSES}; fix: "
                            f"{COPY_IMAGENET_CLASSNAMES}")
        elif wnids != sorted(wnids):
            problems.append(f"classnames.txt is not in the standard sorted-wnid order; fix: {COPY_IMAGENET_CLASSNAMES}")
        image_dir = dataset_dir / cls.image_subdir
        if image_dir.is_dir():
            missing = [str(label) for label in range(NUM_CLASSES) if not (image_dir / str(label)).is_dir()]
            if missing:
                problems.append(f"{len(missing)} of the folders 0..{NUM_CLASSES - 1} are missing in "
                                f"{image_dir.name}/ (first: {missing[0]}); fix: re-extract the matched-frequency "
                                f"archive")
        return problems

    def read_records(self, classnames, text_file) -> List[Record]:
        names = list(classnames.values())
        if len(names) < NUM_CLASSES:
            raise DatasetFormatError(f"{text_file} lists {len(names)} classes; ImageNetV2 needs the full "
                                     f"{NUM_CLASSES}-line ImageNet class list (copy imagenet/classnames.txt)")
        records: List[Record] = []
        for label in range(NUM_CLASSES):
            class_dir = require_dir(os.path.join(self.image_dir, str(label)), "ImageNetV2", self.root,
                                    f"ImageNetV2 needs the folders 0..{NUM_CLASSES - 1}.")
            records.extend((os.path.join(class_dir, name), label, names[label]) for name in list_files(class_dir))
        return records
