"""UCF101 mid-frames: ``ucf101/UCF-101-midframes/<Renamed_Action>/v_<Action>_gNN_cNN.jpg``.

Split creation reads ``ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt``. The CamelCase action
is split into words joined by ``_`` (``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``); that is both the class
name and the image folder.
"""
import os
import re
from typing import Dict, List

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_common import CoOpDataset, DatasetFormatError, build_data, read_lines, split_trainval

CAMEL_WORD = re.compile(r"[A-Z][^A-Z]*")


def renamed_action(action: str) -> str:
    return "_".join(CAMEL_WORD.findall(action))


@DATASET_REGISTRY.register()
class UCF101(CoOpDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_filename = "split_zhou_UCF101.json"

    full_num_classes = 101
    download_ids = {"UCF-101-midframes.zip": "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
                    "split_zhou_UCF101.json": "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"}
    raw_files = ("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt",
                 "ucfTrainTestlist/testlist01.txt")
    sources = ("UCF-101-midframes.zip from CoOp's Google Drive (tools/data/download_splits.py --create)",
               "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip "
               "(ucfTrainTestlist/, only to create the split yourself)")
    folder_aliases = ("UCF101", "ucf-101")

    def build_splits(self):
        class_file = self.require_file("ucfTrainTestlist", "classInd.txt")
        cname2lab = {}
        for number, line in enumerate(read_lines(class_file), start=1):
            fields = line.split(" ")
            if len(fields) != 2 or not fields[0].isdigit():
                raise DatasetFormatError(f"{class_file}, line {number}: expected '<id> <ActionName>', got {line!r}")
            cname2lab[fields[1]] = int(fields[0]) - 1
        trainval = self.read_list("trainlist01.txt", cname2lab)
        test = self.read_list("testlist01.txt", cname2lab)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, filename: str, cname2lab: Dict[str, int]) -> List[Datum]:
        path = self.require_file("ucfTrainTestlist", filename)
        records = []
        for number, line in enumerate(read_lines(path), start=1):
            action, _, video = line.split(" ")[0].partition("/")
            if action not in cname2lab or not video:
                raise DatasetFormatError(f"{path}, line {number}: expected '<ActionName>/<video>.avi' with an "
                                         f"action from classInd.txt, got {line!r}")
            renamed = renamed_action(action)
            image = os.path.splitext(video)[0] + ".jpg"
            records.append((os.path.join(self.image_dir, renamed, image), cname2lab[action], renamed))
        return build_data(records, path)
