from .build import DATASET_REGISTRY, build_dataset  # isort:skip
from .base_dataset import Datum, DatasetBase  # isort:skip

from .dg import *  # noqa: F401,F403  (registers PACS, VLCS, OfficeHomeDG, DigitsDG, DomainNet, miniDomainNet)
