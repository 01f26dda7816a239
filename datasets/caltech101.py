"""Caltech101: ``caltech-101/101_ObjectCategories/<category>/image_NNNN.jpg``.

Two folders are not classes (``BACKGROUND_Google``, ``Faces_easy``), four are renamed. Labels follow
the case-sensitive sort of the ORIGINAL folder names: 0 Faces/face, 1 Leopards/leopard, ...
"""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import CoOpDataset, split_class_folders
from .facts import CLASS_FOLDERS

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(CoOpDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_filename = "split_zhou_Caltech101.json"

    full_num_classes = 100
    download_ids = {"split_zhou_Caltech101.json": "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"}
    raw_files = (CLASS_FOLDERS,)
    sources = ("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
               "https://data.caltech.edu/records/mzrjq-6wc02 (an archive containing 101_ObjectCategories.tar.gz)")
    folder_aliases = ("caltech101", "Caltech101", "caltech_101")

    def build_splits(self):
        return split_class_folders(self.require_dir(self.image_subdir), ignored=IGNORED, new_cnames=NEW_CNAMES)
