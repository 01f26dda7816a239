"""Oxford Flowers-102: ``oxford_flowers/jpg/image_NNNNN.jpg`` + ``imagelabels.mat`` + ``cat_to_name.json``.

The split is a random 50/20/30 per class (the official ``setid.mat`` is not used); classes are
visited in order of first appearance in ``imagelabels.mat``, images in file-number order.
"""
import json
import os
from collections import OrderedDict

from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import CoOpDataset, DatasetFormatError, cut_class, load_mat_variable, require_images, to_datums


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_filename = "split_zhou_OxfordFlowers.json"

    full_num_classes = 102
    download_ids = {"cat_to_name.json": "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",
                    "split_zhou_OxfordFlowers.json": "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"}
    raw_files = ("imagelabels.mat", "cat_to_name.json")
    sources = ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
               "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat")
    folder_aliases = ("flowers102", "oxford-flowers", "flowers-102", "102flowers")

    def build_splits(self, p_trn: float = 0.5, p_val: float = 0.2):
        label_file = self.require_file("imagelabels.mat")
        names_file = self.require_file("cat_to_name.json", hint="Download it (see the Drive id in DATASETS.md).")
        with open(names_file, encoding="utf-8") as f:
            try:
                cat_to_name = json.load(f)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{names_file} is not valid JSON ({exc})") from exc

        impaths_by_id: "OrderedDict[int, list]" = OrderedDict()
        for i, class_id in enumerate(load_mat_variable(label_file, "labels")[0]):
            impath = os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg")
            impaths_by_id.setdefault(int(class_id), []).append(impath)

        print(f"Splitting data into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
        splits = ([], [], [])
        for class_id, impaths in impaths_by_id.items():
            if str(class_id) not in cat_to_name:
                raise DatasetFormatError(f"{names_file} has no name for class id {class_id} (keys are "
                                         f"1-based ids as strings)")
            classname = cat_to_name[str(class_id)]
            for records, part in zip(splits, cut_class(impaths, p_trn, p_val, f"flower class {class_id}")):
                records.extend((impath, class_id - 1, classname) for impath in part)
        require_images([record for records in splits for record in records], label_file)
        train, val, test = (to_datums(records) for records in splits)
        return train, val, test
