"""Oxford-IIIT Pets: ``oxford_pets/images/<Breed>_<n>.jpg`` + ``annotations/{trainval,test}.txt``.

Annotation lines: ``<image name> <class id 1..37> <species> <breed id>``. Class name = the image name
without its last ``_`` token, lower-cased (``Abyssinian_100`` -> ``abyssinian``). The split file is
made from trainval.txt (80/20 train/val per class) and test.txt.

The static methods are the upstream-compatible entry points that other CoOp-style loaders call on
this class (``OxfordPets.read_split`` etc.); they delegate to ``coop_common``.
"""
import os
from typing import List

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_common import (CoOpDataset, DatasetFormatError, build_data, read_lines, read_split, save_split,
                          split_trainval, subsample_classes)


def pet_classname(image_name: str) -> str:
    return "_".join(image_name.split("_")[:-1]).lower()


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_filename = "split_zhou_OxfordPets.json"

    full_num_classes = 37
    download_ids = {"split_zhou_OxfordPets.json": "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"}
    raw_files = ("annotations/trainval.txt", "annotations/test.txt")
    sources = ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
               "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz")
    folder_aliases = ("oxford-pets", "oxford-iiit-pet", "pets")

    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    split_trainval = staticmethod(split_trainval)
    subsample_classes = staticmethod(subsample_classes)

    def build_splits(self):
        trainval = self.read_annotations("trainval.txt")
        test = self.read_annotations("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, filename: str) -> List[Datum]:
        path = self.require_file("annotations", filename)
        records = []
        for number, line in enumerate(read_lines(path), start=1):
            fields = line.split(" ")
            if len(fields) != 4 or not fields[1].isdigit() or int(fields[1]) < 1:
                raise DatasetFormatError(f"{path}, line {number}: expected '<image name> <class id 1..37> "
                                         f"<species> <breed id>', got {line!r}")
            image_name, class_id = fields[0], int(fields[1])
            records.append((os.path.join(self.image_dir, image_name + ".jpg"), class_id - 1,
                            pet_classname(image_name)))
        return build_data(records, path)
