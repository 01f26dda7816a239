from .pacs import PACS
from .vlcs import VLCS
from .digits_dg import DigitsDG
from .office_home_dg import OfficeHomeDG
from .domainnet import DomainNet, miniDomainNet

__all__ = ["PACS", "VLCS", "DigitsDG", "OfficeHomeDG", "DomainNet", "miniDomainNet"]
