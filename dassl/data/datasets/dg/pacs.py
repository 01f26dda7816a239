import os.path as osp
from typing import List, Sequence, Tuple

from ..base_dataset import DatasetBase, Datum
from ..build import DATASET_REGISTRY


def read_path_label_lines(split_file: str) -> List[Tuple[str, int]]:
    """``(relative path, label)`` for every non-blank line of ``split_file``."""
    if not osp.isfile(split_file):
        raise FileNotFoundError(f'Split file not found: "{split_file}" (see DATASETS.md for the expected layout)')
    entries: List[Tuple[str, int]] = []
    with open(split_file, "r") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                path, label = fields
                entries.append((path, int(label)))
            except ValueError:
                raise ValueError(
                    f'{split_file}:{line_no}: expected "<relative image path> <integer label>", got {line.strip()!r}'
                ) from None
    return entries


@DATASET_REGISTRY.register()
class PACS(DatasetBase):
    """PACS (Li et al., ICCV 2017): 7 classes in 4 domains.

    Layout: ``pacs/images/<domain>/<class>/<file>`` and ``pacs/splits/<domain>_{train,crossval}_kfold.txt``
    with lines ``<path under images/> <class id 1..7>``. train = sources' train files, val =
    sources' crossval files, test = all images (train + crossval) of the target domains.
    """

    dataset_dir = "pacs"
    domains = ["art_painting", "cartoon", "photo", "sketch"]
    data_url = "https://drive.google.com/uc?id=1m4X4fROCCXMO0lRLrr6Zz9Vb3974NWhE"
    # A known-corrupt image listed in the official split files.
    _error_paths = ["sketch/dog/n02103406_4068-1.png"]

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        self.image_dir = osp.join(self.dataset_dir, "images")
        self.split_dir = osp.join(self.dataset_dir, "splits")
        if not osp.exists(self.dataset_dir):
            self.download_or_explain(self.data_url, osp.join(root, "pacs.zip"), self.dataset_dir)

        self.check_input_domains(cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS)
        train = self._read_data(cfg.DATASET.SOURCE_DOMAINS, ["train"])
        val = self._read_data(cfg.DATASET.SOURCE_DOMAINS, ["crossval"])
        test = self._read_data(cfg.DATASET.TARGET_DOMAINS, ["train", "crossval"])
        super().__init__(train_x=train, val=val, test=test)

    def _read_data(self, input_domains: Sequence[str], splits: Sequence[str]) -> List[Datum]:
        items = []
        for domain, dname in enumerate(input_domains):
            for split in splits:
                split_file = osp.join(self.split_dir, f"{dname}_{split}_kfold.txt")
                for relpath, class_id in read_path_label_lines(split_file):
                    if relpath in self._error_paths:
                        continue
                    items.append(Datum(
                        impath=osp.join(self.image_dir, relpath),
                        label=class_id - 1,
                        domain=domain,
                        classname=relpath.split("/")[-2],
                    ))
        return items
