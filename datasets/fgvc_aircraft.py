"""FGVC-Aircraft (the ``data/`` folder of fgvc-aircraft-2013b, renamed ``fgvc_aircraft``).

No split JSON: the official ``images_variant_{train,val,test}.txt`` are always read. Labels are the
line positions in ``variants.txt``; names are the variant strings verbatim (``F/A-18``, ``Cessna 172``).
"""
import os
from typing import Dict, List

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_common import CoOpDataset, DatasetFormatError, build_data, read_lines


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    split_filename = ""

    full_num_classes = 100
    raw_files = ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")
    sources = ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
               "(keep only fgvc-aircraft-2013b/data/, renamed to fgvc_aircraft/)",)
    folder_aliases = ("fgvc-aircraft-2013b", "fgvc-aircraft", "aircraft")

    def build_splits(self):
        variants = read_lines(self.require_file("variants.txt"))
        cname2lab = {name: label for label, name in enumerate(variants)}
        train, val, test = (self.read_list(f"images_variant_{split}.txt", cname2lab)
                            for split in ("train", "val", "test"))
        return train, val, test

    def read_list(self, filename: str, cname2lab: Dict[str, int]) -> List[Datum]:
        path = self.require_file(filename)
        records = []
        for number, line in enumerate(read_lines(path), start=1):
            image_id, _, variant = line.partition(" ")
            if variant not in cname2lab:
                raise DatasetFormatError(f"{path}, line {number}: variant {variant!r} is not in variants.txt")
            records.append((os.path.join(self.image_dir, image_id + ".jpg"), cname2lab[variant], variant))
        return build_data(records, path)
