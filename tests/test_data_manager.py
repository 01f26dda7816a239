"""DataManager, DatasetWrapper and build_data_loader on real image trees."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from torchvision import transforms as T

import dassl.data.data_manager as data_manager
from dassl.data import DataManager, DatasetWrapper
from dassl.data.data_manager import UnreadableImageError, build_data_loader, seed_worker
from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.dg import PACS
from dassl.data.samplers import ShardedSequentialSampler

from dg_fixtures import dg_cfg, write_image, write_pacs


@pytest.fixture
def pacs_cfg(tmp_path):
    write_pacs(tmp_path)
    return dg_cfg(tmp_path, "PACS", ["photo"], ["sketch"])


def make_source(tmp_path, n, size=(12, 8)):
    return [Datum(impath=str(write_image(tmp_path / "imgs" / f"{i}.jpg", size=size, value=i)), label=i % 3,
                  domain=i % 2, classname=f"c{i % 3}") for i in range(n)]


def plain_cfg(tmp_path, **dataloader):
    cfg = dg_cfg(tmp_path, "PACS", ["photo"], ["sketch"])
    cfg.DATALOADER.update(dataloader)
    return cfg


# --- DataManager ------------------------------------------------------------------------------

def test_data_manager_on_pacs(pacs_cfg, capsys):
    pacs_cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 2
    pacs_cfg.DATALOADER.TEST.BATCH_SIZE = 4
    dm = DataManager(pacs_cfg)
    assert dm.num_classes == 3 and dm.num_source_domains == 1
    assert dm.lab2cname == {0: "dog", 1: "elephant", 2: "giraffe"}
    assert dm.train_loader_u is None
    assert len(dm.train_loader_x) == 1 and len(dm.val_loader) == 1 and len(dm.test_loader) == 2

    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (2, 3, 16, 16) and batch["img"].dtype == torch.float32
    for key in ("label", "domain", "index"):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (2,)
    assert isinstance(batch["impath"], list) and all(isinstance(p, str) for p in batch["impath"])

    test_batches = list(dm.test_loader)
    assert [len(b["index"]) for b in test_batches] == [4, 2]
    assert torch.cat([b["index"] for b in test_batches]).tolist() == list(range(6))

    out = capsys.readouterr().out
    summary = out[out.index("-------"):].splitlines()
    assert summary[1:-1] == [
        "Dataset    PACS",
        "Source     ['photo']",
        "Target     ['sketch']",
        "# classes  3",
        "# train_x  3",
        "# val      3",
        "# test     6",
    ]


@DATASET_REGISTRY.register(force=True)
class PACSWithUnlabeled(PACS):
    """PACS whose target images double as unlabeled training data (as a DA dataset's would)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self._train_u = self.test


@DATASET_REGISTRY.register(force=True)
class PACSWithUnlabeledNoVal(PACSWithUnlabeled):
    def __init__(self, cfg):
        super().__init__(cfg)
        self._val = None


def test_data_manager_unlabeled_loader(tmp_path):
    write_pacs(tmp_path)
    cfg = dg_cfg(tmp_path, "PACSWithUnlabeled", ["photo"], ["sketch"])
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 2
    cfg.DATALOADER.TRAIN_U.BATCH_SIZE = 3  # ignored: SAME_AS_X
    dm = DataManager(cfg)
    assert dm.train_loader_u.batch_size == 2 and dm.train_loader_u.drop_last
    cfg.DATALOADER.TRAIN_U.SAME_AS_X = False
    assert DataManager(cfg).train_loader_u.batch_size == 3

    cfg.DATASET.NAME = "PACSWithUnlabeledNoVal"
    dm = DataManager(cfg)
    assert dm.val_loader is None and dm.train_loader_u is not None


def test_custom_transforms_and_quiet_mode(pacs_cfg, capsys):
    pacs_cfg.VERBOSE = False
    custom = T.Compose([T.Resize((10, 6)), T.ToTensor()])
    dm = DataManager(pacs_cfg, custom_tfm_train=custom, custom_tfm_test=custom)
    out = capsys.readouterr().out
    assert "* Using custom transform for training" in out and "* Using custom transform for testing" in out
    assert "# train_x" not in out and "Loading dataset" not in out
    assert next(iter(dm.test_loader))["img"].shape[-2:] == (10, 6)


def test_custom_dataset_wrapper_is_used(pacs_cfg):
    class Tagged(DatasetWrapper):
        def __getitem__(self, idx):
            return {**super().__getitem__(idx), "tag": 7}

    dm = DataManager(pacs_cfg, dataset_wrapper=Tagged)
    assert next(iter(dm.test_loader))["tag"].tolist() == [7] * 6


def test_empty_test_split_is_reported(tmp_path):
    write_pacs(tmp_path)
    (tmp_path / "pacs" / "splits" / "sketch_train_kfold.txt").write_text("")
    (tmp_path / "pacs" / "splits" / "sketch_crossval_kfold.txt").write_text("")
    with pytest.raises(ValueError, match="PACS: the test split is empty"):
        DataManager(dg_cfg(tmp_path, "PACS", ["photo"], ["sketch"]))


# --- DatasetWrapper -----------------------------------------------------------------------------

def test_list_of_transforms_gives_numbered_views(tmp_path):
    cfg = plain_cfg(tmp_path)
    views = [T.Compose([T.Resize((4, 4)), T.ToTensor()]), T.Compose([T.Resize((6, 6)), T.ToTensor()]),
             T.Compose([T.Resize((8, 8)), T.ToTensor()])]
    sample = DatasetWrapper(cfg, make_source(tmp_path, 2), transform=views, is_train=True)[1]
    assert set(sample) == {"img", "img2", "img3", "label", "domain", "impath", "index"}
    assert [sample[k].shape[-1] for k in ("img", "img2", "img3")] == [4, 6, 8]
    assert sample["index"] == 1 and sample["label"] == 1 and sample["domain"] == 1


def test_k_transforms_only_in_training(tmp_path):
    cfg = plain_cfg(tmp_path, K_TRANSFORMS=3)
    tfm = T.Compose([T.Resize((4, 4)), T.ToTensor()])
    source = make_source(tmp_path, 2)
    sample = DatasetWrapper(cfg, source, transform=[tfm, tfm], is_train=True)[0]
    assert isinstance(sample["img"], list) and len(sample["img"]) == 3 and len(sample["img2"]) == 3
    assert torch.is_tensor(DatasetWrapper(cfg, source, transform=tfm, is_train=False)[0]["img"])
    with pytest.raises(ValueError, match="3 times because transform is None"):
        DatasetWrapper(cfg, source, transform=None, is_train=True)


def test_return_img0_and_raw_pil(tmp_path):
    cfg = plain_cfg(tmp_path, RETURN_IMG0=True)
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = [0.0] * 3, [2.0] * 3
    sample = DatasetWrapper(cfg, make_source(tmp_path, 1, size=(30, 20)))[0]
    assert isinstance(sample["img"], Image.Image) and sample["img"].size == (30, 20)
    assert sample["img0"].shape == (3, 16, 16)  # exact INPUT.SIZE resize
    assert sample["img0"].max() <= 0.5  # normalised because "normalize" is in INPUT.TRANSFORMS


def corrupt_source(tmp_path, n=4, bad=(1,)):
    source = make_source(tmp_path, n)
    for i in bad:
        with open(source[i].impath, "wb") as f:
            f.write(b"not a jpeg at all")
    return source


def test_corrupt_image_error_names_the_file(tmp_path):
    source = corrupt_source(tmp_path)
    wrapper = DatasetWrapper(plain_cfg(tmp_path), source, transform=T.ToTensor())
    assert wrapper[0]["index"] == 0
    with pytest.raises(UnreadableImageError) as info:
        wrapper[1]
    assert source[1].impath in str(info.value) and "DATALOADER.SKIP_CORRUPT" in str(info.value)
    assert "from the dataset. Fix or delete the file" in str(info.value) and ".." not in str(info.value)


def test_skip_corrupt_substitutes_and_counts(tmp_path):
    cfg = plain_cfg(tmp_path, SKIP_CORRUPT=True)
    source = corrupt_source(tmp_path, n=4, bad=(1, 3))
    wrapper = DatasetWrapper(cfg, source, transform=T.ToTensor())
    with pytest.warns(UserWarning, match="Skipping unreadable image") as record:
        got = [wrapper[i]["index"] for i in range(4)]
    assert got == [0, 2, 2, 0]  # bad items replaced by the next readable one (wrapping around)
    assert len(record) == 2
    assert wrapper.num_skipped == 2 and wrapper.skipped_impaths == [source[1].impath, source[3].impath]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # second epoch: no new warning for known-bad files
        assert [wrapper[i]["index"] for i in range(4)] == [0, 2, 2, 0]


def test_skip_corrupt_count_is_shared_with_workers(tmp_path):
    cfg = plain_cfg(tmp_path, SKIP_CORRUPT=True)
    source = corrupt_source(tmp_path, n=6, bad=(2, 5))
    wrapper = DatasetWrapper(cfg, source, transform=T.Compose([T.Resize((4, 4)), T.ToTensor()]))
    loader = DataLoader(wrapper, batch_size=2, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        indices = torch.cat([b["index"] for b in loader]).tolist()
    assert indices == [0, 1, 3, 3, 4, 0]
    assert wrapper.num_skipped == 2


def test_all_images_unreadable(tmp_path):
    cfg = plain_cfg(tmp_path, SKIP_CORRUPT=True)
    wrapper = DatasetWrapper(cfg, corrupt_source(tmp_path, n=2, bad=(0, 1)), transform=T.ToTensor())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnreadableImageError, match="None of the 2 images"):
            wrapper[0]


# --- build_data_loader ----------------------------------------------------------------------------

def loader_for(cfg, source, batch_size, is_train, sampler="RandomSampler"):
    return build_data_loader(cfg, sampler_type=sampler, data_source=source, batch_size=batch_size,
                             tfm=T.Compose([T.Resize((4, 4)), T.ToTensor()]), is_train=is_train)


@pytest.mark.parametrize("n,batch,is_train,drop,n_batches", [
    (5, 2, True, True, 2),    # training with a full batch available: drop the remainder
    (5, 5, True, True, 1),
    (3, 4, True, False, 1),   # split smaller than one batch: keep it
    (5, 2, False, False, 3),  # evaluation never drops
])
def test_drop_last_rule(tmp_path, n, batch, is_train, drop, n_batches):
    loader = loader_for(plain_cfg(tmp_path), make_source(tmp_path, n), batch, is_train)
    assert loader.drop_last is drop and len(loader) == n_batches
    assert loader.pin_memory is False and loader.worker_init_fn is None


def test_loader_without_batches_is_an_assertion(tmp_path):
    with pytest.raises(AssertionError, match="no batches.*0 items"):
        loader_for(plain_cfg(tmp_path), [], 2, False, sampler="SequentialSampler")


def test_single_process_shuffle_matches_upstream_global_rng(tmp_path):
    cfg = plain_cfg(tmp_path)
    source = make_source(tmp_path, 7)
    torch.manual_seed(3)
    ours = [b["index"].tolist() for _ in range(2) for b in loader_for(cfg, source, 2, True)]
    torch.manual_seed(3)
    upstream = DataLoader(list(range(7)), batch_size=2, sampler=RandomSampler(list(range(7))), drop_last=True)
    reference = [b.tolist() for _ in range(2) for b in upstream]
    assert ours == reference


class RandomTag:
    """A transform whose output exposes the worker's Python / NumPy / torch random streams."""

    def __call__(self, img):
        return torch.tensor([random.random(), float(np.random.rand()), torch.rand(1).item()])


def tagged_epoch(cfg, source, sampler="SequentialSampler", is_train=False, batch_size=1):
    loader = build_data_loader(cfg, sampler, source, batch_size=batch_size, tfm=RandomTag(), is_train=is_train)
    return loader, torch.cat([b["img"] for b in loader])


def test_single_process_workers_are_distinct_and_reproducible(tmp_path):
    """Upstream: no worker_init_fn; torch seeds random/NumPy/torch per worker from the global RNG."""
    cfg = plain_cfg(tmp_path, NUM_WORKERS=2)
    source = make_source(tmp_path, 4)
    torch.manual_seed(0)
    (loader, first), (_, second) = tagged_epoch(cfg, source), tagged_epoch(cfg, source)
    assert loader.worker_init_fn is None
    torch.manual_seed(0)
    assert torch.equal(tagged_epoch(cfg, source)[1], first)  # same seed -> same augmentation randomness
    assert not torch.equal(first, second)  # a new epoch draws new worker seeds
    # Items 0 and 1 are loaded by workers 0 and 1: their streams differ in all three libraries.
    assert (first[0] != first[1]).all()


def test_seed_worker_depends_on_torch_seed_and_rank():
    def draws(torch_seed, rank):
        torch.manual_seed(torch_seed)
        seed_worker(0, rank=rank)
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    assert draws(5, 0) == draws(5, 0)
    assert len({draws(5, 0), draws(6, 0), draws(5, 1)}) == 3


# --- distributed (simulated rank/world size) --------------------------------------------------------

@pytest.fixture
def fake_world(monkeypatch):
    def set_world(rank, world_size):
        monkeypatch.setattr(data_manager, "is_distributed", lambda: True)
        monkeypatch.setattr(data_manager, "get_rank", lambda: rank)
        monkeypatch.setattr(data_manager, "get_world_size", lambda: world_size)

    return set_world


def test_distributed_training_loader(tmp_path, fake_world):
    cfg = plain_cfg(tmp_path)
    cfg.SEED = 4
    source = make_source(tmp_path, 10)
    seen = []
    for rank in range(2):
        fake_world(rank, 2)
        loader = loader_for(cfg, source, 4, True)
        assert isinstance(loader.sampler, DistributedSampler)
        assert loader.batch_size == 2 and loader.drop_last and loader.sampler.seed == 4
        assert loader.sampler.shuffle and loader.sampler.drop_last
        seen += torch.cat([b["index"] for b in loader]).tolist()
    assert len(seen) == len(set(seen)) == 8  # 5 per rank, 2 full batches each, no overlap


def test_distributed_training_errors(tmp_path, fake_world):
    fake_world(0, 3)
    cfg = plain_cfg(tmp_path)
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        loader_for(cfg, make_source(tmp_path, 9), 4, True)
    with pytest.raises(NotImplementedError, match="RandomDomainSampler"):
        loader_for(cfg, make_source(tmp_path, 9), 6, True, sampler="RandomDomainSampler")


def test_distributed_eval_loaders_cover_each_item_once(tmp_path, fake_world):
    cfg = plain_cfg(tmp_path)
    source = make_source(tmp_path, 7)
    seen = []
    for rank in range(3):
        fake_world(rank, 3)
        loader = loader_for(cfg, source, 2, False, sampler="SequentialSampler")
        assert isinstance(loader.sampler, ShardedSequentialSampler) and loader.batch_size == 2
        seen += torch.cat([b["index"] for b in loader]).tolist()
    assert sorted(seen) == list(range(7))

    fake_world(7, 8)  # more ranks than items: an empty shard is allowed for evaluation
    assert len(loader_for(cfg, source, 2, False, sampler="SequentialSampler")) == 0


def test_distributed_workers_differ_between_ranks(tmp_path, fake_world):
    cfg = plain_cfg(tmp_path, NUM_WORKERS=2)
    source = make_source(tmp_path, 4)
    per_rank = []
    for rank in range(2):
        fake_world(rank, 2)
        torch.manual_seed(0)  # every rank is seeded identically under torchrun
        loader, tags = tagged_epoch(cfg, source, "RandomSampler", is_train=True, batch_size=2)
        assert loader.worker_init_fn.keywords == {"rank": rank}
        torch.manual_seed(0)
        assert torch.equal(tagged_epoch(cfg, source, "RandomSampler", is_train=True, batch_size=2)[1], tags)
        per_rank.append(tags)
    assert (per_rank[0] != per_rank[1]).all()
