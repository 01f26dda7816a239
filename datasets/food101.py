"""Food-101: ``food-101/images/<class>/<id>.jpg``; a random 50/20/30 split per class (not the
official 750/250 one). Class names are the folder names verbatim (``apple_pie``)."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import CoOpDataset, split_class_folders
from .facts import CLASS_FOLDERS


@DATASET_REGISTRY.register()
class Food101(CoOpDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_filename = "split_zhou_Food101.json"

    full_num_classes = 101
    download_ids = {"split_zhou_Food101.json": "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"}
    raw_files = (CLASS_FOLDERS,)
    sources = ("https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",)
    folder_aliases = ("food101", "Food-101", "food_101")

    def build_splits(self):
        return split_class_folders(self.require_dir(self.image_subdir))
