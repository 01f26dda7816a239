"""ImageNet-R: ``imagenet-rendition/imagenet-r/<wnid>/*`` (200 classes) + ``classnames.txt``.

Labels are 0..199 in sorted-wnid order of the folders present (not ImageNet-1k indices); the model is
evaluated over these 200 names only. ``README.txt`` in the image folder is skipped.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import ImageNetVariant
from .facts import read_imagenet_subset


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    skip_entries = ("README.txt",)
    image_dir_hint = "Extract imagenet-r.tar inside imagenet-rendition/."

    full_num_classes = 200
    # The classes (imagenet_r_classes.txt) in label order: their ImageNet-1k indices and wnids.
    imagenet_indices, imagenet_wnids = read_imagenet_subset("imagenet_r_classes.txt")
    release_name = "ImageNet-R"
    sources = ("https://github.com/hendrycks/imagenet-r (imagenet-r.tar)",)
    folder_aliases = ("imagenet-r", "imagenet_r", "ImageNet-R")
