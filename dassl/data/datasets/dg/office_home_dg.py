from ..build import DATASET_REGISTRY
from .digits_dg import _TrainValFolderDG


@DATASET_REGISTRY.register()
class OfficeHomeDG(_TrainValFolderDG):
    """Office-Home (Venkateswara et al., CVPR 2017) in its DG split: 65 classes in 4 domains.

    Class names are the lower-cased folder names (``Alarm_Clock`` -> ``alarm_clock``).
    """

    dataset_dir = "office_home_dg"
    domains = ["art", "clipart", "product", "real_world"]
    data_url = "https://drive.google.com/uc?id=1gkbf_KaxoBws-GWT3XIPZ7BnkqbAxIFa"
    archive_name = "office_home_dg.zip"
