"""AutoAugment policies (Cubuk et al., 2019) for the ``imagenet_policy``, ``cifar10_policy`` and
``svhn_policy`` transform names.

Each policy is a fixed list of 25 two-operation sub-policies; per image one sub-policy is chosen
uniformly and each of its operations fires with its own probability. torchvision ships exactly
these three policy tables, so the classes below only pin the policy and Dassl's grey fill colour
(128, 128, 128) for pixels uncovered by geometric operations. Randomness comes from torch's RNG.
"""

from __future__ import annotations

from typing import Sequence

from torchvision import transforms as T

__all__ = ["ImageNetPolicy", "CIFAR10Policy", "SVHNPolicy"]

GREY_FILL = (128, 128, 128)


class _FixedPolicy(T.AutoAugment):
    policy_name: T.AutoAugmentPolicy

    def __init__(self, fillcolor: Sequence[int] = GREY_FILL):
        super().__init__(policy=self.policy_name, fill=list(fillcolor))


class ImageNetPolicy(_FixedPolicy):
    policy_name = T.AutoAugmentPolicy.IMAGENET


class CIFAR10Policy(_FixedPolicy):
    policy_name = T.AutoAugmentPolicy.CIFAR10


class SVHNPolicy(_FixedPolicy):
    policy_name = T.AutoAugmentPolicy.SVHN
