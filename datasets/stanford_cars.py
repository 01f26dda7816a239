"""Stanford Cars: ``stanford_cars/{cars_train,cars_test}/<nnnnn>.jpg`` + the devkit ``.mat`` files.

Split-file paths are relative to the dataset folder itself (``cars_train/00001.jpg``). Class names
move the model year to the front: ``AM General Hummer SUV 2000`` -> ``2000 AM General Hummer SUV``.
"""
import os
from typing import List

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_common import CoOpDataset, DatasetFormatError, build_data, load_mat_variable, split_trainval

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
