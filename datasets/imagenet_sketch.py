"""ImageNet-Sketch: ``imagenet-sketch/images/<wnid>/*`` + ``classnames.txt`` (1000 classes).

The release's top folder is often ``sketch/``; the loader expects ``images/``. Labels are the sorted
positions of the wnid folders; a stray file in ``images/`` is an error.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    image_dir_hint = "The release's top folder is often 'sketch/': rename it to 'images/'."
