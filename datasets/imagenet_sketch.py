"""ImageNet-Sketch: ``imagenet-sketch/images/<wnid>/*`` + ``classnames.txt`` (1000 classes).

The release's top folder is often ``sketch/``; the loader expects ``images/``. Labels are the sorted
positions of the wnid folders; a stray file in ``images/`` is an error.
"""
from pathlib import Path
from typing import List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    image_dir_hint = "The release's top folder is often 'sketch/': rename it to 'images/'."

    full_num_classes = 1000
    sources = ("https://github.com/HaohanWang/ImageNet-Sketch",)
    folder_aliases = ("imagenet_sketch", "ImageNet-Sketch", "sketch")

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        if not (dataset_dir / "images").is_dir() and (dataset_dir / "sketch").is_dir():
            return ["the images are in sketch/ (the release's folder name); fix: rename imagenet-sketch/sketch/ "
                    "to imagenet-sketch/images/"]
        return []
