import os.path as osp
from typing import List, Sequence

from ..base_dataset import DatasetBase, Datum
from ..build import DATASET_REGISTRY
from .digits_dg import read_class_folders

# Project decision: upstream sets no class names for VLCS (its archive uses numbered class
# folders), but CLIP prompts need words. A numbered folder is named by its label (its position
# among the sorted class folders, so 0- and 1-based numbering both work) from the classes listed
# in Dassl's VLCS docstring, in alphabetical order; a folder named by a word keeps its name.
VLCS_CLASSNAMES = ["bird", "car", "chair", "dog", "person"]


def vlcs_classname(label: int, folder: str) -> str:
    if not folder.isdigit():
        return folder.lower()
    if label >= len(VLCS_CLASSNAMES):
        raise ValueError(
            f"VLCS has {len(VLCS_CLASSNAMES)} classes ({', '.join(VLCS_CLASSNAMES)}) but class folder "
            f"{folder!r} is number {label + 1} in sorted order; remove the extra class folders"
        )
    return VLCS_CLASSNAMES[label]


@DATASET_REGISTRY.register()
class VLCS(DatasetBase):
    """VLCS (Fang et al., ICCV 2013): 5 classes in 4 domains.

    Layout: ``VLCS/<DOMAIN>/{train,crossval,test}/<class folder>/*.jpg`` (domain folders are
    upper-case). train = sources' train, val = sources' crossval, test = targets' test.
    """

    dataset_dir = "VLCS"
    domains = ["caltech", "labelme", "pascal", "sun"]
    data_url = "https://drive.google.com/uc?id=1r0WL5DDqKfSPp9E3tRENwHaXNs1olLZd"

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        if not osp.exists(self.dataset_dir):
            self.download_or_explain(self.data_url, osp.join(root, "vlcs.zip"), self.dataset_dir)

        self.check_input_domains(cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS)
        train = self._read_data(cfg.DATASET.SOURCE_DOMAINS, "train")
        val = self._read_data(cfg.DATASET.SOURCE_DOMAINS, "crossval")
        test = self._read_data(cfg.DATASET.TARGET_DOMAINS, "test")
        super().__init__(train_x=train, val=val, test=test)

    def _read_data(self, input_domains: Sequence[str], split: str) -> List[Datum]:
        items = []
        for domain, dname in enumerate(input_domains):
            split_dir = osp.join(self.dataset_dir, dname.upper(), split)
            items.extend(read_class_folders(split_dir, domain, vlcs_classname))
        return items
