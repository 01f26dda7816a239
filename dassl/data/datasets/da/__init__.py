from .domainnet import DomainNet
from .mini_domainnet import miniDomainNet

__all__ = ["DomainNet", "miniDomainNet"]
