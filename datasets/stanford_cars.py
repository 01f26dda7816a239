"""Stanford Cars: ``stanford_cars/{cars_train,cars_test}/<nnnnn>.jpg`` + the devkit ``.mat`` files.

Split-file paths are relative to the dataset folder itself (``cars_train/00001.jpg``). Class names
move the model year to the front: ``AM General Hummer SUV 2000`` -> ``2000 AM General Hummer SUV``.
"""
import os
from pathlib import Path
from typing import List

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_common import CoOpDataset, DatasetFormatError, build_data, load_mat_variable, split_trainval
from .facts import file_names, subfolder_names

MIRROR_HINT = ("The loader needs the original flat layout (cars_train/00001.jpg ...); mirrors with "
               "nested cars_train/cars_train/ or per-class folders must be rearranged.")


def year_first(name: str) -> str:
    *model, year = name.split(" ")
    return " ".join([year, *model])


@DATASET_REGISTRY.register()
class StanfordCars(CoOpDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_filename = "split_zhou_StanfordCars.json"

    full_num_classes = 196
    download_ids = {"split_zhou_StanfordCars.json": "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"}
    raw_files = ("devkit/cars_train_annos.mat", "devkit/cars_meta.mat", "cars_test_annos_withlabels.mat")
    required_files = ("cars_train/", "cars_test/")
    sources = ("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
               "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
               "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
               "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat")
    folder_aliases = ("stanford-cars", "StanfordCars", "cars")

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        """The layouts of the mirrors: nested or per-class image folders, a nested devkit."""
        problems = []
        for name in ("cars_train", "cars_test"):
            folder = dataset_dir / name
            if not folder.is_dir():
                continue
            inner = folder / name
            if inner.is_dir():
                problems.append(f"{name}/{name}/ is nested (a mirror's layout); fix: move the images up into "
                                f"{name}/ (e.g. mv {inner}/* {folder}/ && rmdir {inner})")
            elif subfolder_names(folder) and not file_names(folder):
                problems.append(f"{name}/ holds per-class folders (a mirror's layout); fix: use the original "
                                f"flat files {name}/00001.jpg ... (see DATASETS.md)")
        if (dataset_dir / "car_devkit" / "devkit").is_dir() and not (dataset_dir / "devkit").is_dir():
            problems.append("devkit is nested in car_devkit/devkit/; fix: move it to stanford_cars/devkit/")
        return problems

    def build_splits(self):
        meta = load_mat_variable(self.require_file("devkit", "cars_meta.mat"), "class_names")[0]
        classnames = [str(entry[0]) for entry in meta]
        trainval = self.read_annotations(self.require_file("devkit", "cars_train_annos.mat"), "cars_train", classnames)
        test = self.read_annotations(self.require_file("cars_test_annos_withlabels.mat"), "cars_test", classnames)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, mat_file: str, image_folder: str, classnames: List[str]) -> List[Datum]:
        image_dir = self.require_dir(image_folder, hint=MIRROR_HINT)
        records = []
        for anno in load_mat_variable(mat_file, "annotations")[0]:
            label = int(anno["class"][0, 0]) - 1
            if not 0 <= label < len(classnames):
                raise DatasetFormatError(f"{mat_file}: class {label + 1} is not in devkit/cars_meta.mat "
                                         f"({len(classnames)} classes)")
            records.append((os.path.join(image_dir, str(anno["fname"][0])), label, year_first(classnames[label])))
        return build_data(records, mat_file)
