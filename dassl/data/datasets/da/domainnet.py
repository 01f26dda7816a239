import os.path as osp
from typing import Dict, List, Sequence

from ..base_dataset import DatasetBase, Datum
from ..build import DATASET_REGISTRY
from ..readers import read_path_label_lines, require_dir


class _DomainNetSplits(DatasetBase):
    """Shared by DomainNet and miniDomainNet: images under ``domainnet/<domain>/<class>/`` listed in
    ``<split folder>/<domain>_{train,test}.txt`` with lines ``<domain>/<class>/<file> <label>``
    (0-based labels used as is; class name = the class folder)."""

    dataset_dir = "domainnet"
    split_folder = "splits"

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        self.split_dir = osp.join(self.dataset_dir, self.split_folder)
        # Never downloaded automatically (upstream does not either).
        require_dir(self.dataset_dir, type(self).__name__)
        sources, targets = cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS
        self.check_input_domains(sources, targets)
        super().__init__(**self.build_splits(sources, targets))

    def build_splits(self, sources: Sequence[str], targets: Sequence[str]) -> Dict[str, List[Datum]]:
        """``DatasetBase`` keyword arguments (train_x, train_u, val, test) for these domains."""
        raise NotImplementedError

    def _read_data(self, input_domains: Sequence[str], split: str) -> List[Datum]:
        items = []
        for domain, dname in enumerate(input_domains):
            split_file = osp.join(self.split_dir, f"{dname}_{split}.txt")
            for relpath, label in read_path_label_lines(split_file):
                items.append(Datum(
                    impath=osp.join(self.dataset_dir, relpath),
                    label=label,
                    domain=domain,
                    classname=relpath.split("/")[1],
                ))
        return items


@DATASET_REGISTRY.register()
class DomainNet(_DomainNetSplits):
    """DomainNet (Peng et al., ICCV 2019): 345 classes in 6 domains.

    train_x = sources' train, train_u = targets' train, val = sources' test, test = targets' test.
    """

    domains = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]

    def build_splits(self, sources, targets):
        return dict(
            train_x=self._read_data(sources, "train"),
            train_u=self._read_data(targets, "train"),
            val=self._read_data(sources, "test"),
            test=self._read_data(targets, "test"),
        )
