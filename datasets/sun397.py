"""SUN397: ``sun397/SUN397/<letter>/<category>[/<sub>]/sun_*.jpg`` + partition 01 text files.

Class names reverse the path components after the letter: ``a/apartment_building/outdoor`` ->
``outdoor apartment_building``. Training_01 gives train/val (80/20 per class), Testing_01 the test set.
"""
import os
from typing import Dict, List

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_common import CoOpDataset, DatasetFormatError, build_data, read_lines, split_trainval


def sun_classname(category: str) -> str:
    return " ".join(reversed(category.split("/")[1:]))


@DATASET_REGISTRY.register()
class SUN397(CoOpDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_filename = "split_zhou_SUN397.json"

    full_num_classes = 397
    download_ids = {"split_zhou_SUN397.json": "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"}
    raw_files = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")
    sources = ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
               "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip "
               "(the .txt files go directly into sun397/)")
    folder_aliases = ("SUN397", "sun-397")

    def build_splits(self):
        categories = [line[1:] for line in read_lines(self.require_file("ClassName.txt"))]
        cname2lab = {category: label for label, category in enumerate(categories)}
        trainval = self.read_partition("Training_01.txt", cname2lab)
        test = self.read_partition("Testing_01.txt", cname2lab)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_partition(self, filename: str, cname2lab: Dict[str, int]) -> List[Datum]:
        path = self.require_file(filename, hint="The partition .txt files go directly into sun397/.")
        records = []
        for number, line in enumerate(read_lines(path), start=1):
            relpath = line[1:]
            category = os.path.dirname(relpath)
            if category not in cname2lab:
                raise DatasetFormatError(f"{path}, line {number}: category {category!r} is not in ClassName.txt")
            records.append((os.path.join(self.image_dir, relpath), cname2lab[category], sun_classname(category)))
        return build_data(records, path)
