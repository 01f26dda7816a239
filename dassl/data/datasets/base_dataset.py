"""``Datum`` (one labelled image) and ``DatasetBase`` (the four splits of a dataset).

Pickle compatibility: client datasets cache lists of ``Datum`` and those caches reference the
class as ``dassl.data.datasets.base_dataset.Datum`` with the instance attributes ``_impath``,
``_label``, ``_domain`` and ``_classname``. Keep the module path and attribute names as they are.
"""

from __future__ import annotations

import os.path as osp
import random
import tarfile
import zipfile
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from dassl.utils import check_isfile, mkdir_if_missing

__all__ = ["Datum", "DatasetBase", "MissingImageError", "DomainConfigError"]


class MissingImageError(FileNotFoundError, AssertionError):
    """A ``Datum`` was requested for a path that is not an existing file.

    Also an ``AssertionError``, which is what upstream raises here.
    """


class DomainConfigError(ValueError, AssertionError):
    """``DATASET.SOURCE_DOMAINS`` / ``TARGET_DOMAINS`` is empty or names an unknown domain.

    Also an ``AssertionError``: upstream asserts non-empty lists.
    """


class Datum:
    """One sample: image path, class label, domain index and class name.

    The image file must exist when the Datum is built (instances restored from a cache skip the
    check, which is what makes cached lists cheap to load).
    """

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = ""):
        if not isinstance(impath, str):
            raise AssertionError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        if not check_isfile(impath):
            raise MissingImageError(
                f'Image file not found: "{impath}". Check DATASET.ROOT and that the split/annotation '
                "files match the images on disk."
            )
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return (f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
                f"classname={self._classname!r})")


class DatasetBase:
    """Holds ``train_x`` (labelled train), ``train_u`` (unlabelled train), ``val`` and ``test``.

    ``num_classes``, ``lab2cname`` and ``classnames`` are computed once, from ``train_x`` only.
    Subclasses set ``dataset_dir`` (a folder name under ``DATASET.ROOT``) and, for multi-domain
    datasets, ``domains``.
    """

    dataset_dir = ""
    domains: List[str] = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        if not train_x:
            raise ValueError(
                f"{type(self).__name__}: the train_x split is empty; check the dataset folder under "
                "DATASET.ROOT (and the split files / domain names) - a dataset needs at least one "
                "labelled training image"
            )
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """``max(label) + 1`` (not the number of distinct labels)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> Tuple[Dict[int, str], List[str]]:
        """``({label: classname}, [classname for each label present, ascending])``."""
        mapping = {item.label: item.classname for item in data_source}
        return mapping, [mapping[label] for label in sorted(mapping)]

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        if not source_domains:
            raise DomainConfigError(
                f"{type(self).__name__}: DATASET.SOURCE_DOMAINS is empty; choose from {self.domains}"
            )
        if not target_domains:
            raise DomainConfigError(
                f"{type(self).__name__}: DATASET.TARGET_DOMAINS is empty; choose from {self.domains}"
            )
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise DomainConfigError(
                    f"Input domain must belong to {self.domains}, but got [{domain}] "
                    f"({type(self).__name__}; check DATASET.SOURCE_DOMAINS / TARGET_DOMAINS)"
                )

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Download ``url`` to ``dst`` (Google Drive via gdown) and extract it next to ``dst``."""
        extract_dir = osp.dirname(dst)
        mkdir_if_missing(extract_dir)
        if not from_gdrive:
            raise NotImplementedError("download_data only supports Google Drive links (from_gdrive=True)")
        import gdown  # imported lazily: only needed when a dataset is actually downloaded

        gdown.download(url, dst, quiet=False)
        if not osp.isfile(dst):
            raise FileNotFoundError(f'Download of "{url}" did not produce "{dst}"')
        print("Extracting file ...")
        _extract_archive(dst, extract_dir)
        print(f"File extracted to {extract_dir}")

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False):
        """Keep ``num_shots`` random items per class of every source.

        Per source, labels are visited in order of first appearance; a class with at least
        ``num_shots`` items gets ``random.sample(items, num_shots)``, a smaller one keeps all its
        items (or ``random.choices(items, k=num_shots)`` when ``repeat``). Only Python's
        ``random`` is used, in exactly this order, so seeded runs reproduce upstream subsets.
        Returns the list for one source, else a list of lists (unchanged input if
        ``num_shots < 1``: the single list, or the tuple of sources).
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = [self._sample_shots(source, num_shots, repeat) for source in data_sources]
        return output[0] if len(output) == 1 else output

    def _sample_shots(self, data_source: Sequence[Datum], num_shots: int, repeat: bool) -> List[Datum]:
        dataset: List[Datum] = []
        for items in self.split_dataset_by_label(data_source).values():
            if len(items) >= num_shots:
                dataset.extend(random.sample(items, num_shots))
            elif repeat:
                dataset.extend(random.choices(items, k=num_shots))
            else:
                dataset.extend(items)
        return dataset

    def split_dataset_by_label(self, data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        """``{label: [items]}``: labels in first-appearance order, items in list order."""
        return _group_by(data_source, "label")

    def split_dataset_by_domain(self, data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        """``{domain: [items]}``: domains in first-appearance order, items in list order."""
        return _group_by(data_source, "domain")

    def download_or_explain(self, url: str, dst: str, expected_dir: str) -> None:
        """Auto-download for a missing ``expected_dir``; offline, fail with instructions instead of
        a network traceback (project addition, used by the DG datasets)."""
        try:
            self.download_data(url, dst, from_gdrive=True)
        except Exception as err:  # noqa: BLE001 - any download/extract failure gets the same advice
            raise FileNotFoundError(
                f'{type(self).__name__}: dataset folder "{expected_dir}" does not exist and the automatic '
                f"download from {url} failed ({type(err).__name__}: {err}). Download and extract the archive "
                f'manually so that "{expected_dir}" exists (see DATASETS.md), or fix DATASET.ROOT.'
            ) from err
        if not osp.isdir(expected_dir):
            raise FileNotFoundError(
                f'{type(self).__name__}: the downloaded archive "{dst}" did not contain "{expected_dir}"; '
                "extract it manually (see DATASETS.md)"
            )


def _group_by(data_source: Sequence[Datum], attribute: str) -> Dict[int, List[Datum]]:
    groups: Dict[int, List[Datum]] = defaultdict(list)
    for item in data_source:
        groups[getattr(item, attribute)].append(item)
    return groups


def _extract_archive(path: str, extract_dir: str) -> None:
    """Extract ``.zip``, ``.tar`` or ``.tar.gz`` into ``extract_dir`` (no path escapes)."""
    if path.endswith(".zip"):
        with zipfile.ZipFile(path, "r") as archive:
            archive.extractall(extract_dir)  # zipfile strips absolute paths and ".." components
    elif path.endswith(".tar.gz") or path.endswith(".tar"):
        mode = "r:gz" if path.endswith(".tar.gz") else "r:"
        with tarfile.open(path, mode) as archive:
            archive.extractall(extract_dir, filter="data")
    else:
        raise NotImplementedError(f'Cannot extract "{path}": only .zip, .tar and .tar.gz are supported')
