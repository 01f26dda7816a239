"""Describable Textures (DTD): ``dtd/images/<category>/<category>_NNNN.jpg``; 47 classes, a random
50/20/30 split per class. Registry name ``DescribableTextures`` (not ``DTD``)."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import CoOpDataset, split_class_folders
from .facts import CLASS_FOLDERS


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_filename = "split_zhou_DescribableTextures.json"

    full_num_classes = 47
    download_ids = {"split_zhou_DescribableTextures.json": "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"}
    raw_files = (CLASS_FOLDERS,)
    sources = ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",)
    folder_aliases = ("DTD", "dtd-r1.0.1")

    # Upstream-compatible entry point (other CoOp-style loaders call it on this class).
    read_and_split_data = staticmethod(split_class_folders)

    def build_splits(self):
        return split_class_folders(self.require_dir(self.image_subdir))
