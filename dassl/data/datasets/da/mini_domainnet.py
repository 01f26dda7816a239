from ..build import DATASET_REGISTRY
from .domainnet import _DomainNetSplits


@DATASET_REGISTRY.register()
class miniDomainNet(_DomainNetSplits):
    """miniDomainNet (Zhou et al., DAEL): 4 DomainNet domains with the ``splits_mini/`` lists.

    train_x = sources' train, train_u = targets' train, test = targets' test; no val split.
    """

    domains = ["clipart", "painting", "real", "sketch"]
    split_folder = "splits_mini"

    def build_splits(self, sources, targets):
        return dict(
            train_x=self._read_data(sources, "train"),
            train_u=self._read_data(targets, "train"),
            test=self._read_data(targets, "test"),
        )
