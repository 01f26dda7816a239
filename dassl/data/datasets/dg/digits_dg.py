import glob
import os.path as osp
from typing import Callable, List, Sequence

from dassl.utils import listdir_nohidden

from ..base_dataset import DatasetBase, Datum
from ..build import DATASET_REGISTRY


def read_class_folders(
    split_dir: str,
    domain: int,
    classname_of: Callable[[int, str], str],
    pattern: str = "*.jpg",
) -> List[Datum]:
    """Images matching ``pattern`` in every class folder of ``split_dir`` (also read by VLCS).

    Labels are positions in the case-sensitive sorted list of class folders; class names come
    from ``classname_of(label, folder name)``. Images within a folder are sorted (upstream keeps glob's
    filesystem order, which is not reproducible across machines). An empty class folder is an
    error: it would leave a label without images and desynchronise labels and class names.
    """
    if not osp.isdir(split_dir):
        raise FileNotFoundError(
            f'Folder "{split_dir}" does not exist; check DATASET.ROOT and the domain names '
            "(see DATASETS.md for the expected layout)"
        )
    items: List[Datum] = []
    for label, folder in enumerate(listdir_nohidden(split_dir, sort=True)):
        class_dir = osp.join(split_dir, folder)
        impaths = sorted(glob.glob(osp.join(class_dir, pattern)))
        if not impaths:
            raise ValueError(
                f'Class folder "{class_dir}" has no images matching "{pattern}"; add its images or remove the folder'
            )
        classname = classname_of(label, folder)
        items.extend(Datum(impath=p, label=label, domain=domain, classname=classname) for p in impaths)
    return items


def _lowercase_folder(label: int, folder: str) -> str:
    return folder.lower()


class _TrainValFolderDG(DatasetBase):
    """Shared by DigitsDG and OfficeHomeDG: ``<folder>/<domain>/{train,val}/<class>/*.jpg``.

    train = sources' train, val = sources' val, test = targets' train + val; labels follow the
    sorted class folders, class names are the lower-cased folder names.
    """

    data_url = ""
    archive_name = ""

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        if not osp.exists(self.dataset_dir):
            self.download_or_explain(self.data_url, osp.join(root, self.archive_name), self.dataset_dir)

        self.check_input_domains(cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS)
        train = self.read_data(self.dataset_dir, cfg.DATASET.SOURCE_DOMAINS, "train")
        val = self.read_data(self.dataset_dir, cfg.DATASET.SOURCE_DOMAINS, "val")
        test = self.read_data(self.dataset_dir, cfg.DATASET.TARGET_DOMAINS, "all")
        super().__init__(train_x=train, val=val, test=test)

    @staticmethod
    def read_data(dataset_dir: str, input_domains: Sequence[str], split: str) -> List[Datum]:
        """``split`` is ``train``, ``val`` or ``all`` (= train then val of each domain)."""
        splits = ["train", "val"] if split == "all" else [split]
        items = []
        for domain, dname in enumerate(input_domains):
            for split_name in splits:
                split_dir = osp.join(dataset_dir, dname, split_name)
                items.extend(read_class_folders(split_dir, domain, _lowercase_folder))
        return items


@DATASET_REGISTRY.register()
class DigitsDG(_TrainValFolderDG):
    """Digits-DG (Zhou et al., AAAI 2020): MNIST, MNIST-M, SVHN, SYN; classes ``0`` .. ``9``."""

    dataset_dir = "digits_dg"
    domains = ["mnist", "mnist_m", "svhn", "syn"]
    data_url = "https://drive.google.com/uc?id=15V7EsHfCcfbKgsDmzQKj_DfXt_XYp_P7"
    archive_name = "digits_dg.zip"
