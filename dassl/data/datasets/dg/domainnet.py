"""DomainNet and miniDomainNet, upstream Dassl's datasets of the same names and layout.

Upstream keeps them with the domain-adaptation datasets (``dassl/data/datasets/da/``); here they sit
beside the other multi-domain datasets, since this project uses them for multi-source domain
generalisation (leave-one-domain-out: ``configs/datasets/dg/``). Splits as upstream, ``train_u``
included (a DG run never reads it). Departures: a missing folder or split file is an error naming
the path and DATASETS.md instead of a bare ``open()`` failure, and a malformed split line names
its file and line.
"""
import os.path as osp
from typing import List, Sequence

from ..base_dataset import DatasetBase, Datum
from ..build import DATASET_REGISTRY
from .pacs import read_path_label_lines


class _DomainNetLists(DatasetBase):
    """Images under ``domainnet/<domain>/<class>/<file>``, listed per domain and split in
    ``domainnet/<split_folder>/<domain>_{train,test}.txt`` as ``<domain>/<class>/<file> <label>``
    (0-based labels, used as they are; the class name is the class folder)."""

    dataset_dir = "domainnet"
    split_folder = "splits"
    download_page = "http://ai.bu.edu/M3SDA/"

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        self.split_dir = osp.join(self.dataset_dir, self.split_folder)
        if not osp.isdir(self.dataset_dir):  # never downloaded automatically (upstream neither)
            raise FileNotFoundError(
                f'{type(self).__name__}: dataset folder "{self.dataset_dir}" does not exist. Download the '
                f"domains and split lists from {self.download_page} (see DATASETS.md), or fix DATASET.ROOT."
            )
        self.check_input_domains(cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS)
        super().__init__(**self.splits(cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS))

    def splits(self, sources: Sequence[str], targets: Sequence[str]) -> dict:
        raise NotImplementedError

    def read_lists(self, input_domains: Sequence[str], split: str) -> List[Datum]:
        items = []
        for domain, dname in enumerate(input_domains):
            for relpath, label in read_path_label_lines(osp.join(self.split_dir, f"{dname}_{split}.txt")):
                items.append(Datum(impath=osp.join(self.dataset_dir, relpath), label=label, domain=domain,
                                   classname=relpath.split("/")[1]))
        return items


@DATASET_REGISTRY.register()
class DomainNet(_DomainNetLists):
    """DomainNet (Peng et al., ICCV 2019): 345 classes in 6 domains, ``splits/``.

    train_x = sources' train, train_u = targets' train, val = sources' test, test = targets' test.
    The painting domain's train list has no t-shirt image (upstream's note).
    """

    domains = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]

    def splits(self, sources, targets):
        return dict(train_x=self.read_lists(sources, "train"), train_u=self.read_lists(targets, "train"),
                    val=self.read_lists(sources, "test"), test=self.read_lists(targets, "test"))


@DATASET_REGISTRY.register()
class miniDomainNet(_DomainNetLists):
    """miniDomainNet (Zhou et al., "Domain Adaptive Ensemble Learning"): 126 classes of 4 DomainNet
    domains, listed in ``splits_mini/``; the images are DomainNet's own.

    train_x = sources' train, train_u = targets' train, test = targets' test; no val split.
    """

    domains = ["clipart", "painting", "real", "sketch"]
    split_folder = "splits_mini"

    def splits(self, sources, targets):
        return dict(train_x=self.read_lists(sources, "train"), train_u=self.read_lists(targets, "train"),
                    test=self.read_lists(targets, "test"))
