"""ImageNet-A: ``imagenet-adversarial/imagenet-a/<wnid>/*`` (200 classes) + ``classnames.txt``.

Labels are 0..199 in sorted-wnid order of the folders present (not ImageNet-1k indices); the model is
evaluated over these 200 names only. ``README.txt`` in the image folder is skipped.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import ImageNetVariant
from .facts import read_imagenet_subset


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    skip_entries = ("README.txt",)
    image_dir_hint = "Extract imagenet-a.tar inside imagenet-adversarial/."

    full_num_classes = 200
    # The classes (imagenet_a_classes.txt) in label order: their ImageNet-1k indices and wnids.
    imagenet_indices, imagenet_wnids = read_imagenet_subset("imagenet_a_classes.txt")
    release_name = "ImageNet-A"
    sources = ("https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",)
    folder_aliases = ("imagenet-a", "imagenet_a", "ImageNet-A")
