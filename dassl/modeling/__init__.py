"""Model registries used by ``SimpleNet`` (a tiny CNN and an MLP head are the only built-ins)."""

from .backbone import BACKBONE_REGISTRY, Backbone, build_backbone
from .head import HEAD_REGISTRY, build_head
from .network import NETWORK_REGISTRY, build_network
