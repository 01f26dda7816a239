"""EuroSAT (RGB): ``eurosat/2750/<ClassFolder>/<ClassFolder>_<n>.jpg``; 10 classes, renamed to the
descriptive names CLIP prompts use. Labels follow the sorted CamelCase folder names."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_common import CoOpDataset, split_class_folders

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

    def build_splits(self):
        image_dir = self.require_dir(
            self.image_subdir, hint="The RGB release extracts to 2750/; rename the folder that holds "
                                    "AnnualCrop/, Forest/, ... to 2750.")
        return split_class_folders(image_dir, new_cnames=NEW_CNAMES)
