"""The dataset facts live on the loader classes (datasets/facts.py), and the tools read them there."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from test_datasets_common import dataset_class, fixture

from tools.data import check_datasets
from tools.data import download_splits
from tools.kit import make_fixture_datasets as mfd
from datasets.coop_common import CoOpDataset, ImageNetVariant
from datasets.facts import CLASS_FOLDERS, COOP_BENCHMARKS, DatasetFacts, benchmark_class

# What the checker reads from every benchmark class, each declared by the class itself.
DECLARED = ("full_num_classes", "sources", "folder_aliases")


def registered_benchmark_classes() -> dict:
    """Registry name -> class, for every dataset class registered by a module of datasets/."""
    import datasets
    from dassl.data.datasets import DATASET_REGISTRY

    for info in pkgutil.iter_modules(datasets.__path__):
        importlib.import_module(f"datasets.{info.name}")
    classes = {name: DATASET_REGISTRY.get(name) for name in DATASET_REGISTRY.registered_names()}
    return {name: cls for name, cls in classes.items() if cls.__module__.startswith("datasets.")}


def test_every_registered_benchmark_is_listed_and_carries_facts():
    registered = registered_benchmark_classes()
    assert sorted(registered) == sorted(benchmark_class(key).__name__ for key in COOP_BENCHMARKS)
    for cls in registered.values():
        assert issubclass(cls, DatasetFacts) and issubclass(cls, (CoOpDataset, ImageNetVariant))


@pytest.mark.parametrize("key", COOP_BENCHMARKS)
def test_each_benchmark_declares_what_the_checker_needs(key):
    cls = benchmark_class(key)
    assert cls is check_datasets.benchmarks()[key] and cls.__module__ == f"datasets.{key}"
    for name in DECLARED:
        assert name in vars(cls), f"{cls.__name__} does not declare {name}"
    assert cls.full_num_classes > 0 and cls.sources and cls.dataset_dir
    assert all(isinstance(drive_id, str) and len(drive_id) == 33 for drive_id in cls.download_ids.values())
    split = getattr(cls, "split_filename", "")
    if split:  # the published split can be fetched, or created from the raw files
        assert split in cls.download_ids and cls.raw_files
    if issubclass(cls, ImageNetVariant):
        assert cls.required_files == ("classnames.txt",) and not split
    if CLASS_FOLDERS in cls.raw_files:
        assert cls.image_subdir


@pytest.mark.parametrize("key", ["imagenet_a", "imagenet_r"])
def test_imagenet_subsets_declare_their_classes(key):
    cls = benchmark_class(key)
    wnids, indices = cls.imagenet_wnids, cls.imagenet_indices
    assert len(wnids) == len(set(wnids)) == len(indices) == cls.full_num_classes == 200
    assert list(wnids) == sorted(wnids) and list(indices) == sorted(set(indices)) and indices[-1] < 1000
    assert cls.release_name in cls.folder_aliases


# --------------------------------------------------------------------------------------------------
# The tools follow the classes: change a fact, the finding changes


def test_checker_takes_the_class_count_from_the_class(tmp_path, monkeypatch):
    fixture(tmp_path, "oxford_pets")
    full = "3 classes found, the full dataset has 37"
    assert any(full in note for note in check_datasets.check_dataset(tmp_path, "oxford_pets", decode=False).notes)
    monkeypatch.setattr(dataset_class("oxford_pets"), "full_num_classes", 3)
    report = check_datasets.check_dataset(tmp_path, "oxford_pets", decode=False)
    assert report.ok and not any("the full dataset has" in note for note in report.notes)


def test_checker_runs_the_probes_and_reads_the_ids_of_the_class(tmp_path, monkeypatch):
    pets = dataset_class("oxford_pets")

    class MisplacedPets(pets):
        download_ids = {pets.split_filename: "1" * 33}

        @classmethod
        def layout_problems(cls, dataset_dir: Path):
            return [f"a probe of {cls.__name__} looked at {dataset_dir.name}/"]

    monkeypatch.setitem(check_datasets.benchmarks(), "oxford_pets", MisplacedPets)
    fixture(tmp_path, "oxford_pets")
    report = check_datasets.check_dataset(tmp_path, "oxford_pets", decode=False)
    assert report.problems == ["a probe of MisplacedPets looked at oxford_pets/"]
    assert any(f"gdown {'1' * 33}" in note for note in report.notes)  # no split file yet: the published one
    plan = download_splits.planned_downloads(tmp_path, ["oxford_pets"])
    assert [download.drive_id for download in plan] == ["1" * 33]


def test_checker_reads_required_files_and_their_fixes_from_the_class(tmp_path, monkeypatch):
    dtd = dataset_class("dtd")
    fixture(tmp_path, "dtd")
    monkeypatch.setattr(dtd, "required_files", ("labels.csv",))
    monkeypatch.setattr(dtd, "missing_file_fixes", {"labels.csv": "write one"})
    assert check_datasets.check_dataset(tmp_path, "dtd").problems == ["missing labels.csv; fix: write one"]


def test_fixture_writer_takes_the_class_limit_from_the_class(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_class("food101"), "full_num_classes", 2)
    with pytest.raises(ValueError, match="Food101 has 2 classes"):
        mfd.write_fixture("food101", tmp_path, num_classes=3)
