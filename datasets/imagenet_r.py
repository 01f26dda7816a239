"""ImageNet-R: ``imagenet-rendition/imagenet-r/<wnid>/*`` (200 classes) + ``classnames.txt``.

Labels are 0..199 in sorted-wnid order of the folders present (not ImageNet-1k indices); the model is
evaluated over these 200 names only. ``README.txt`` in the image folder is skipped.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    skip_entries = ("README.txt",)
    image_dir_hint = "Extract imagenet-r.tar inside imagenet-rendition/."
