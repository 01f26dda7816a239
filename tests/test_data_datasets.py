"""Datum, DatasetBase (few-shot sampling, grouping, domain checks, download) and the built-in
multi-domain datasets on miniature trees."""

from __future__ import annotations

import copy
import os
import pickle
import random
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from dassl.data.datasets.base_dataset import DomainConfigError, MissingImageError

from dg_fixtures import (
    PACS_CLASSES,
    dg_cfg,
    write_digits_dg,
    write_domainnet,
    write_image,
    write_office_home_dg,
    write_pacs,
    write_vlcs,
)


@pytest.fixture
def image_file(tmp_path) -> str:
    return str(write_image(tmp_path / "img.jpg"))


def make_items(tmp_path, labels, domain=0):
    """One real file per item; class name ``c<label>``."""
    items = []
    for i, label in enumerate(labels):
        path = write_image(tmp_path / f"d{domain}" / f"{i}.png", value=i)
        items.append(Datum(impath=str(path), label=label, domain=domain, classname=f"c{label}"))
    return items


# --- Datum ------------------------------------------------------------------------------------

def test_datum_properties_are_read_only(image_file):
    item = Datum(impath=image_file, label=3, domain=1, classname="dog")
    assert (item.impath, item.label, item.domain, item.classname) == (image_file, 3, 1, "dog")
    with pytest.raises(AttributeError):
        item.label = 4


def test_datum_requires_an_existing_file(tmp_path):
    missing = str(tmp_path / "nope.jpg")
    with pytest.warns(UserWarning, match="nope.jpg"), pytest.raises(MissingImageError) as info:
        Datum(impath=missing)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, FileNotFoundError)
    assert missing in str(info.value)
    with pytest.raises(AssertionError, match="must be a str"):
        Datum(impath=Path(missing))
    with pytest.warns(UserWarning), pytest.raises(AssertionError):
        Datum(impath=str(tmp_path))  # a folder is not a file


def test_datum_pickle_layout_is_upstream_compatible(tmp_path, image_file):
    item = Datum(impath=image_file, label=2, domain=1, classname="cat")
    assert vars(item) == {"_impath": image_file, "_label": 2, "_domain": 1, "_classname": "cat"}
    blob = pickle.dumps([item], protocol=pickle.HIGHEST_PROTOCOL)
    assert b"dassl.data.datasets.base_dataset" in blob and b"Datum" in blob
    os.remove(image_file)  # restoring a cached list must not re-run the file check
    (restored,) = copy.deepcopy([item])  # the same __reduce_ex__ state as the blob, without unpickling
    assert (restored.impath, restored.label, restored.domain, restored.classname) == (image_file, 2, 1, "cat")


# --- DatasetBase ----------------------------------------------------------------------------------

def test_dataset_base_class_bookkeeping(tmp_path):
    train = make_items(tmp_path, [2, 0, 2, 5])
    dataset = DatasetBase(train_x=train, test=train)
    assert dataset.num_classes == 6  # max label + 1, not the count of distinct labels
    assert dataset.lab2cname == {2: "c2", 0: "c0", 5: "c5"}
    assert dataset.classnames == ["c0", "c2", "c5"]
    assert dataset.train_x is train and dataset.test is train
    assert dataset.train_u is None and dataset.val is None


@pytest.mark.parametrize("train_x", [None, []])
def test_dataset_base_rejects_empty_train_x(train_x):
    class Tiny(DatasetBase):
        pass

    with pytest.raises(ValueError, match="Tiny: the train_x split is empty"):
        Tiny(train_x=train_x)


def test_split_by_label_and_domain_keep_first_appearance_order(tmp_path):
    items = make_items(tmp_path, [3, 1, 3, 0, 1])
    items[1]._domain = 4  # only for the grouping test
    dataset = DatasetBase(train_x=items)
    by_label = dataset.split_dataset_by_label(items)
    assert list(by_label) == [3, 1, 0]
    assert by_label[3] == [items[0], items[2]] and by_label[1] == [items[1], items[4]]
    by_domain = dataset.split_dataset_by_domain(items)
    assert list(by_domain) == [0, 4] and by_domain[4] == [items[1]]


def reference_fewshot(sources, num_shots, repeat=False):
    """dassl-api.md 5.4 restated as plainly as possible."""
    outputs = []
    for source in sources:
        groups = defaultdict(list)
        for item in source:
            groups[item.label].append(item)
        picked = []
        for label in groups:
            items = groups[label]
            if len(items) >= num_shots:
                picked += random.sample(items, num_shots)
            elif repeat:
                picked += random.choices(items, k=num_shots)
            else:
                picked += items
        outputs.append(picked)
    return outputs[0] if len(outputs) == 1 else outputs


def test_fewshot_matches_reference_and_is_deterministic(tmp_path, capsys):
    train = make_items(tmp_path / "t", [0, 1, 2, 0, 1, 0, 2, 2, 0, 1, 1, 3])
    val = make_items(tmp_path / "v", [1, 0, 1, 0, 0, 2])
    dataset = DatasetBase(train_x=train)

    random.seed(11)
    got_train = dataset.generate_fewshot_dataset(train, num_shots=3)
    got_val = dataset.generate_fewshot_dataset(val, num_shots=min(3, 4))
    random.seed(11)
    assert got_train == reference_fewshot([train], 3)
    assert got_val == reference_fewshot([val], 3)
    assert "Creating a 3-shot dataset" in capsys.readouterr().out

    labels = [item.label for item in got_train]
    assert labels == [0] * 3 + [1] * 3 + [2] * 3 + [3]  # first-appearance label order, class 3 kept whole

    random.seed(11)
    assert dataset.generate_fewshot_dataset(train, num_shots=3) == got_train


def test_fewshot_multiple_sources_and_repeat(tmp_path):
    a = make_items(tmp_path / "a", [0, 0, 1])
    b = make_items(tmp_path / "b", [1, 1, 1, 0])
    dataset = DatasetBase(train_x=a)
    random.seed(4)
    got = dataset.generate_fewshot_dataset(a, b, num_shots=2, repeat=True)
    random.seed(4)
    assert got == reference_fewshot([a, b], 2, repeat=True)
    assert isinstance(got, list) and len(got) == 2 and len(got[0]) == 4 and len(got[1]) == 4


def test_fewshot_disabled_returns_input_untouched(tmp_path, capsys):
    a = make_items(tmp_path / "a", [0, 1])
    b = make_items(tmp_path / "b", [0])
    dataset = DatasetBase(train_x=a)
    state = random.getstate()
    assert dataset.generate_fewshot_dataset(a, num_shots=-1) is a
    assert dataset.generate_fewshot_dataset(a, b, num_shots=0) == (a, b)
    assert random.getstate() == state and capsys.readouterr().out == ""


def test_check_input_domains():
    class TwoDomains(DatasetBase):
        domains = ["x", "y"]

    dataset = TwoDomains.__new__(TwoDomains)
    dataset.check_input_domains(["x"], ["y"])
    with pytest.raises(ValueError, match=r"must belong to \['x', 'y'\], but got \[z\]"):
        dataset.check_input_domains(["x"], ["z"])
    with pytest.raises(AssertionError, match="SOURCE_DOMAINS is empty"):
        dataset.check_input_domains([], ["y"])
    with pytest.raises(DomainConfigError, match="TARGET_DOMAINS is empty"):
        dataset.check_input_domains(["x"], ())


def test_download_data_extracts_zip(tmp_path, monkeypatch, capsys):
    import gdown

    def fake_download(url, dst, quiet=False):
        with zipfile.ZipFile(dst, "w") as archive:
            archive.writestr("pacs/readme.txt", "hi")

    monkeypatch.setattr(gdown, "download", fake_download)
    DatasetBase.__new__(DatasetBase).download_data("http://x", str(tmp_path / "sub" / "pacs.zip"))
    assert (tmp_path / "sub" / "pacs" / "readme.txt").read_text() == "hi"
    assert f"File extracted to {tmp_path / 'sub'}" in capsys.readouterr().out
    with pytest.raises(NotImplementedError):
        DatasetBase.__new__(DatasetBase).download_data("http://x", str(tmp_path / "a.zip"), from_gdrive=False)


@pytest.mark.parametrize("name,folder", [("PACS", "pacs"), ("VLCS", "VLCS"), ("OfficeHomeDG", "office_home_dg"),
                                         ("DigitsDG", "digits_dg")])
def test_missing_dg_folder_offline_gives_instructions(tmp_path, monkeypatch, name, folder):
    import gdown

    def offline(url, dst, quiet=False):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", offline)
    cfg = dg_cfg(tmp_path, name, ["x"], ["y"])
    with pytest.raises(FileNotFoundError) as info:
        build_dataset(cfg)
    message = str(info.value)
    assert str(tmp_path / folder) in message and "DATASETS.md" in message and "ConnectionError" in message


# --- built-in datasets on fixtures ----------------------------------------------------------------

def test_registry_holds_the_builtin_names():
    for name in ["PACS", "VLCS", "OfficeHomeDG", "DigitsDG", "DomainNet", "miniDomainNet"]:
        assert name in DATASET_REGISTRY.registered_names()


def test_build_dataset_validates_name_and_prints(tmp_path, capsys):
    write_pacs(tmp_path)
    build_dataset(dg_cfg(tmp_path, "PACS", ["photo"], ["sketch"]))
    assert "Loading dataset: PACS" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"do you mean \[PACS\]"):
        build_dataset(dg_cfg(tmp_path, "PACZ", ["photo"], ["sketch"]))


def test_pacs(tmp_path):
    write_pacs(tmp_path)
    dataset = build_dataset(dg_cfg(tmp_path, "PACS", ["photo"], ["sketch"]))
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (3, 3, 6)
    assert dataset.train_u is None
    assert dataset.classnames == list(PACS_CLASSES) and dataset.num_classes == 3
    assert [d.label for d in dataset.train_x] == [0, 1, 2]
    assert {d.domain for d in dataset.train_x + dataset.val + dataset.test} == {0}
    assert dataset.train_x[0].impath == str(tmp_path / "pacs" / "images" / "photo" / "dog" / "p1.jpg")
    assert not any("n02103406_4068-1" in d.impath for d in dataset.test)  # known-corrupt entry skipped
    assert [Path(d.impath).name for d in dataset.test] == ["s1.png"] * 3 + ["s2.png"] * 3


def test_domain_indices_are_positions_within_each_list(tmp_path):
    write_pacs(tmp_path, domains=("art_painting", "cartoon", "photo", "sketch"))
    dataset = build_dataset(dg_cfg(tmp_path, "PACS", ["photo", "art_painting", "sketch"], ["cartoon"]))
    domains_by_folder = {Path(d.impath).parts[-3]: d.domain for d in dataset.train_x + dataset.val}
    assert domains_by_folder == {"photo": 0, "art_painting": 1, "sketch": 2}
    assert {d.domain for d in dataset.test} == {0}


def test_unknown_domain_names_the_valid_ones(tmp_path):
    write_pacs(tmp_path)
    with pytest.raises(ValueError, match="art_painting.*but got \\[photos\\]"):
        build_dataset(dg_cfg(tmp_path, "PACS", ["photos"], ["sketch"]))


def test_malformed_split_line_names_file_and_line(tmp_path):
    base = write_pacs(tmp_path)
    with open(base / "splits" / "photo_train_kfold.txt", "a") as f:
        f.write("\nphoto/dog/p1.jpg one\n")
    with pytest.raises(ValueError, match=r"photo_train_kfold.txt:5: expected"):
        build_dataset(dg_cfg(tmp_path, "PACS", ["photo"], ["sketch"]))


def test_vlcs_with_word_and_numbered_class_folders(tmp_path):
    write_vlcs(tmp_path)
    dataset = build_dataset(dg_cfg(tmp_path, "VLCS", ["caltech"], ["sun"]))
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (3, 3, 3)
    assert dataset.classnames == ["bird", "car", "chair"]
    assert all("/SUN/test/" in d.impath for d in dataset.test)


@pytest.mark.parametrize("folders", [("0", "1", "2", "3", "4"), ("1", "2", "3", "4", "5")])
def test_vlcs_numbered_class_folders_get_words(tmp_path, folders):
    write_vlcs(tmp_path, domains=("labelme", "pascal"), classes=folders)
    dataset = build_dataset(dg_cfg(tmp_path, "VLCS", ["labelme"], ["pascal"]))
    assert dataset.classnames == ["bird", "car", "chair", "dog", "person"]
    assert [d.label for d in dataset.test] == [0, 1, 2, 3, 4]


def test_vlcs_rejects_a_sixth_numbered_class(tmp_path):
    write_vlcs(tmp_path, classes=("0", "1", "2", "3", "4", "5"))
    with pytest.raises(ValueError, match="VLCS has 5 classes"):
        build_dataset(dg_cfg(tmp_path, "VLCS", ["caltech"], ["sun"]))


def test_office_home_dg(tmp_path):
    write_office_home_dg(tmp_path)
    dataset = build_dataset(dg_cfg(tmp_path, "OfficeHomeDG", ["art"], ["clipart"]))
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (6, 3, 9)
    assert dataset.classnames == ["alarm_clock", "backpack", "batteries"]
    # test = each target domain's train images, then its val images
    assert [Path(d.impath).parts[-3] for d in dataset.test] == ["train"] * 6 + ["val"] * 3


def test_office_home_labels_follow_case_sensitive_folder_order(tmp_path):
    write_office_home_dg(tmp_path, classes=("Table", "TV", "Bike"))
    dataset = build_dataset(dg_cfg(tmp_path, "OfficeHomeDG", ["art"], ["clipart"]))
    assert dataset.classnames == ["bike", "tv", "table"]


def test_digits_dg_and_its_shared_reader(tmp_path):
    base = write_digits_dg(tmp_path)
    dataset = build_dataset(dg_cfg(tmp_path, "DigitsDG", ["mnist"], ["svhn"]))
    assert dataset.classnames == ["0", "1", "2"] and len(dataset.test) == 9
    from dassl.data.datasets import DigitsDG

    items = DigitsDG.read_data(str(base), ["svhn", "mnist"], "val")
    assert [d.domain for d in items] == [0, 0, 0, 1, 1, 1]


def test_empty_class_folder_is_an_error(tmp_path):
    write_digits_dg(tmp_path)
    (tmp_path / "digits_dg" / "mnist" / "train" / "3").mkdir()
    with pytest.raises(ValueError, match=r"mnist/train/3\" has no images"):
        build_dataset(dg_cfg(tmp_path, "DigitsDG", ["mnist"], ["svhn"]))


def test_missing_domain_folder_is_an_error(tmp_path):
    write_digits_dg(tmp_path)
    with pytest.raises(FileNotFoundError, match="digits_dg/syn/train.*DATASETS.md"):
        build_dataset(dg_cfg(tmp_path, "DigitsDG", ["syn"], ["svhn"]))


def test_domainnet_reads_upstreams_lists(tmp_path):
    write_domainnet(tmp_path, domains=("clipart", "painting", "real"))
    dataset = build_dataset(dg_cfg(tmp_path, "DomainNet", ["clipart", "painting"], ["real"]))
    assert [len(s) for s in (dataset.train_x, dataset.train_u, dataset.val, dataset.test)] == [6, 3, 6, 3]
    assert dataset.classnames == ["aircraft_carrier", "airplane", "alarm_clock"] and dataset.num_classes == 3
    root = tmp_path / "domainnet"
    assert [(d.impath, d.label, d.domain) for d in dataset.train_x[2:4]] == [
        (str(root / "clipart/alarm_clock/clipart_002_000001.jpg"), 2, 0),
        (str(root / "painting/aircraft_carrier/painting_000_000001.jpg"), 0, 1)]
    assert {Path(d.impath).parts[-3] for d in dataset.val} == {"clipart", "painting"}
    assert all(d.impath.endswith("000002.jpg") for d in dataset.val + dataset.test)  # the test lists
    assert all("/real/" in d.impath and d.impath.endswith("000001.jpg") for d in dataset.train_u)
    assert all("/real/" in d.impath for d in dataset.test)
    with pytest.raises(ValueError, match=r"Input domain must belong to .*quickdraw.*but got \[drawing\]"):
        build_dataset(dg_cfg(tmp_path, "DomainNet", ["clipart"], ["drawing"]))


def test_mini_domainnet_reads_splits_mini_and_has_no_val(tmp_path):
    write_domainnet(tmp_path, split_folders=("splits_mini",))
    dataset = build_dataset(dg_cfg(tmp_path, "miniDomainNet", ["clipart"], ["real"]))
    assert dataset.val is None and [len(dataset.train_x), len(dataset.train_u), len(dataset.test)] == [3, 3, 3]
    with pytest.raises(FileNotFoundError, match=r"domainnet/splits/clipart_train\.txt.*DATASETS\.md"):
        build_dataset(dg_cfg(tmp_path, "DomainNet", ["clipart"], ["real"]))
    with pytest.raises(ValueError, match=r"but got \[infograph\] \(miniDomainNet"):
        build_dataset(dg_cfg(tmp_path, "miniDomainNet", ["infograph"], ["real"]))  # not a miniDomainNet domain


def test_missing_domainnet_folder_names_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"domainnet\" does not exist.*M3SDA.*DATASETS\.md"):
        build_dataset(dg_cfg(tmp_path, "DomainNet", ["clipart"], ["real"]))
