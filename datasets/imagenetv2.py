"""ImageNetV2 (matched frequency): ``imagenetv2/imagenetv2-matched-frequency-format-val/{0..999}/*``.

Folder ``k`` holds class ``k`` of ImageNet-1k; its name is line ``k`` of ``classnames.txt`` (a copy of
imagenet/classnames.txt, which must be in the standard sorted-wnid order).
"""
import os
from typing import List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import DatasetFormatError, ImageNetVariant, Record, list_files, require_dir

NUM_CLASSES = 1000


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    image_dir_hint = "Extract imagenetv2-matched-frequency.tar.gz inside imagenetv2/."

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
