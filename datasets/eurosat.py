"""EuroSAT (RGB): ``eurosat/2750/<ClassFolder>/<ClassFolder>_<n>.jpg``; 10 classes, renamed to the
descriptive names CLIP prompts use. Labels follow the sorted CamelCase folder names."""
from pathlib import Path
from typing import List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import CoOpDataset, split_class_folders
from .facts import CLASS_FOLDERS

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(CoOpDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_filename = "split_zhou_EuroSAT.json"

    full_num_classes = 10
    download_ids = {"split_zhou_EuroSAT.json": "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"}
    raw_files = (CLASS_FOLDERS,)
    sources = ("http://madm.dfki.de/files/sentinel/EuroSAT.zip (RGB version, extracts to 2750/)",)
    folder_aliases = ("EuroSAT", "EuroSAT_RGB", "euro_sat")

    @classmethod
    def layout_problems(cls, dataset_dir: Path) -> List[str]:
        """The class folders under another name than 2750/ (up to two levels down)."""
        if (dataset_dir / cls.image_subdir).is_dir():
            return []
        for candidate in sorted(dataset_dir.glob("*")) + sorted(dataset_dir.glob("*/*")):
            if candidate.is_dir() and (candidate / "AnnualCrop").is_dir():
                return [f"the EuroSAT class folders are in {candidate.relative_to(dataset_dir)}/; fix: rename "
                        f"(move) that folder to eurosat/2750/"]
        return []

    def build_splits(self):
        image_dir = self.require_dir(
            self.image_subdir, hint="The RGB release extracts to 2750/; rename the folder that holds "
                                    "AnnualCrop/, Forest/, ... to 2750.")
        return split_class_folders(image_dir, new_cnames=NEW_CNAMES)
