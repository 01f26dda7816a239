#!/usr/bin/env python
"""Check benchmark dataset folders before a long run: what is missing or misplaced, and the fix.

    python -m tools.data.check_datasets DATA                      # all 15 benchmarks
    python -m tools.data.check_datasets DATA oxford_pets imagenet # some (config name, registry name or folder)

One line per dataset (``OK`` or ``PROBLEM``), then indented details. Exit status 1 when any problem
is found. Nothing is written: the check runs the loaders' own reading code (``dry_run``) without
saving split files, plus layout probes for the usual download mistakes (flat ImageNet val, nested
Stanford Cars mirrors, EuroSAT not in ``2750/``, ImageNet-Sketch in ``sketch/``, missing
``classnames.txt`` in the ImageNet variants, ...). Then every image a run would read is decoded
the way the data loader reads it (a truncated download otherwise stops a run at its final test,
after all the training), with a progress bar and ``--workers`` threads; ``--fast`` skips this.

``LAYOUTS`` is the one table of per-dataset knowledge outside the loaders: DATASETS.md, the fixture
writer (``tools/kit/make_fixture_datasets.py``) and ``tools/data/download_splits.py`` read it. Folder names
come from the dataset classes themselves (``dataset_dir``, ``image_subdir``, ``split_filename``).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple


# ImageNet-A / ImageNet-R classes (datasets spec, Appendix A): ImageNet-1k indices and wnids.
IMAGENET_A_INDICES = tuple(int(i) for i in """
    6 11 13 15 17 22 23 27 30 37 39 42 47 50 57 70 71 76 79 89
    90 94 96 97 99 105 107 108 110 113 124 125 130 132 143 144 150 151 207 234
    235 254 277 283 287 291 295 298 301 306 307 308 309 310 311 313 314 315 317 319
    323 324 326 327 330 334 335 336 347 361 363 372 378 386 397 400 401 402 404 407
    411 416 417 420 425 428 430 437 438 445 456 457 461 462 470 472 483 486 488 492
    496 514 516 528 530 539 542 543 549 552 557 561 562 569 572 573 575 579 589 606
    607 609 614 626 627 640 641 642 643 658 668 677 682 684 687 701 704 719 736 746
    749 752 758 763 765 768 773 774 776 779 780 786 792 797 802 803 804 813 815 820
    823 831 833 835 839 845 847 850 859 862 870 879 880 888 890 897 900 907 913 924
    932 933 934 937 943 945 947 951 954 956 957 959 971 972 980 981 984 986 987 988
""".split())

IMAGENET_A_WNIDS = tuple("""
    n01498041 n01531178 n01534433 n01558993 n01580077 n01614925 n01616318 n01631663 n01641577 n01669191
    n01677366 n01687978 n01694178 n01698640 n01735189 n01770081 n01770393 n01774750 n01784675 n01819313
    n01820546 n01833805 n01843383 n01847000 n01855672 n01882714 n01910747 n01914609 n01924916 n01944390
    n01985128 n01986214 n02007558 n02009912 n02037110 n02051845 n02077923 n02085620 n02099601 n02106550
    n02106662 n02110958 n02119022 n02123394 n02127052 n02129165 n02133161 n02137549 n02165456 n02174001
    n02177972 n02190166 n02206856 n02219486 n02226429 n02231487 n02233338 n02236044 n02259212 n02268443
    n02279972 n02280649 n02281787 n02317335 n02325366 n02346627 n02356798 n02361337 n02410509 n02445715
    n02454379 n02486410 n02492035 n02504458 n02655020 n02669723 n02672831 n02676566 n02690373 n02701002
    n02730930 n02777292 n02782093 n02787622 n02793495 n02797295 n02802426 n02814860 n02815834 n02837789
    n02879718 n02883205 n02895154 n02906734 n02948072 n02951358 n02980441 n02992211 n02999410 n03014705
    n03026506 n03124043 n03125729 n03187595 n03196217 n03223299 n03250847 n03255030 n03291819 n03325584
    n03355925 n03384352 n03388043 n03417042 n03443371 n03444034 n03445924 n03452741 n03483316 n03584829
    n03590841 n03594945 n03617480 n03666591 n03670208 n03717622 n03720891 n03721384 n03724870 n03775071
    n03788195 n03804744 n03837869 n03840681 n03854065 n03888257 n03891332 n03935335 n03982430 n04019541
    n04033901 n04039381 n04067472 n04086273 n04099969 n04118538 n04131690 n04133789 n04141076 n04146614
    n04147183 n04179913 n04208210 n04235860 n04252077 n04252225 n04254120 n04270147 n04275548 n04310018
    n04317175 n04344873 n04347754 n04355338 n04366367 n04376876 n04389033 n04399382 n04442312 n04456115
    n04482393 n04507155 n04509417 n04532670 n04540053 n04554684 n04562935 n04591713 n04606251 n07583066
    n07695742 n07697313 n07697537 n07714990 n07718472 n07720875 n07734744 n07749582 n07753592 n07760859
    n07768694 n07831146 n09229709 n09246464 n09472597 n09835506 n11879895 n12057211 n12144580 n12267677
""".split())

IMAGENET_R_INDICES = tuple(int(i) for i in """
    1 2 4 6 8 9 11 13 22 23 26 29 31 39 47 63 71 76 79 84
    90 94 96 97 99 100 105 107 113 122 125 130 132 144 145 147 148 150 151 155
    160 161 162 163 171 172 178 187 195 199 203 207 208 219 231 232 234 235 242 245
    247 250 251 254 259 260 263 265 267 269 276 277 281 288 289 291 292 293 296 299
    301 308 309 310 311 314 315 319 323 327 330 334 335 337 338 340 341 344 347 353
    355 361 362 365 366 367 368 372 388 390 393 397 401 407 413 414 425 428 430 435
    437 441 447 448 457 462 463 469 470 471 472 476 483 487 515 546 555 558 570 579
    583 587 593 594 596 609 613 617 621 629 637 657 658 701 717 724 763 768 774 776
    779 780 787 805 812 815 820 824 833 847 852 866 875 883 889 895 907 928 931 932
    933 934 936 937 943 945 947 948 949 951 953 954 957 963 965 967 980 981 983 988
""".split())

IMAGENET_R_WNIDS = tuple("""
    n01443537 n01484850 n01494475 n01498041 n01514859 n01518878 n01531178 n01534433 n01614925 n01616318
    n01630670 n01632777 n01644373 n01677366 n01694178 n01748264 n01770393 n01774750 n01784675 n01806143
    n01820546 n01833805 n01843383 n01847000 n01855672 n01860187 n01882714 n01910747 n01944390 n01983481
    n01986214 n02007558 n02009912 n02051845 n02056570 n02066245 n02071294 n02077923 n02085620 n02086240
    n02088094 n02088238 n02088364 n02088466 n02091032 n02091134 n02092339 n02094433 n02096585 n02097298
    n02098286 n02099601 n02099712 n02102318 n02106030 n02106166 n02106550 n02106662 n02108089 n02108915
    n02109525 n02110185 n02110341 n02110958 n02112018 n02112137 n02113023 n02113624 n02113799 n02114367
    n02117135 n02119022 n02123045 n02128385 n02128757 n02129165 n02129604 n02130308 n02134084 n02138441
    n02165456 n02190166 n02206856 n02219486 n02226429 n02233338 n02236044 n02268443 n02279972 n02317335
    n02325366 n02346627 n02356798 n02363005 n02364673 n02391049 n02395406 n02398521 n02410509 n02423022
    n02437616 n02445715 n02447366 n02480495 n02480855 n02481823 n02483362 n02486410 n02510455 n02526121
    n02607072 n02655020 n02672831 n02701002 n02749479 n02769748 n02793495 n02797295 n02802426 n02808440
    n02814860 n02823750 n02841315 n02843684 n02883205 n02906734 n02909870 n02939185 n02948072 n02950826
    n02951358 n02966193 n02980441 n02992529 n03124170 n03272010 n03345487 n03372029 n03424325 n03452741
    n03467068 n03481172 n03494278 n03495258 n03498962 n03594945 n03602883 n03630383 n03649909 n03676483
    n03710193 n03773504 n03775071 n03888257 n03930630 n03947888 n04086273 n04118538 n04133789 n04141076
    n04146614 n04147183 n04192698 n04254680 n04266014 n04275548 n04310018 n04325704 n04347754 n04389033
    n04409515 n04465501 n04487394 n04522168 n04536866 n04552348 n04591713 n07614500 n07693725 n07695742
    n07697313 n07697537 n07714571 n07714990 n07718472 n07720875 n07734744 n07742313 n07745940 n07749582
    n07753275 n07753592 n07768694 n07873807 n07880968 n07920052 n09472597 n09835506 n10565667 n12267677
""".split())


# --------------------------------------------------------------------------------------------------
# Findings


@dataclass
class Report:
    """The outcome for one dataset: problems fail the check, notes are informational."""

    name: str
    path: Path
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> List[str]:
        status = "OK" if self.ok else "PROBLEM"
        detail = self.summary if self.ok else f"{len(self.problems)} problem(s)"
        out = [f"{status:<8} {self.name:<16} {self.path}: {detail}"]
        out += [f"         - {problem}" for problem in self.problems]
        out += [f"         note: {note}" for note in self.notes]
        return out


Probe = Callable[[Path, Report], None]


# --------------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Layout:
    """What a benchmark needs under ``DATA/`` beyond what its loader class already states.

    ``key`` is the config stem (``configs/datasets/<key>.yaml``) and the module name
    (``datasets/<key>.py``). ``raw`` lists the files read to create the split when the split JSON is
    absent (for datasets without a split JSON: read on every run); ``"<class folders>"`` means one
    folder per class in the image folder. ``always`` lists files read on every run. ``drive`` maps
    files (relative to the dataset folder) to their Google Drive ids.
    """

    key: str
    registry: str
    num_classes: int
    raw: Tuple[str, ...] = ()
    always: Tuple[str, ...] = ()
    drive: Dict[str, str] = field(default_factory=dict)
    sources: Tuple[str, ...] = ()
    aliases: Tuple[str, ...] = ()  # folder names people end up with instead of the expected one
    probes: Tuple[Probe, ...] = ()

    def dataset_class(self):
        """The registered loader class (imports ``datasets/<key>.py`` and the engine)."""
        module = importlib.import_module(f"datasets.{self.key}")
        return getattr(module, self.registry)

    @property
    def folder(self) -> str:
        return self.dataset_class().dataset_dir

    @property
    def image_subdir(self) -> str:
        return self.dataset_class().image_subdir

    @property
    def split_filename(self) -> str:
        return getattr(self.dataset_class(), "split_filename", "")


CLASS_FOLDERS = "<class folders>"
CLASSNAMES_FIX = "copy imagenet/classnames.txt into it (the 1000-line ImageNet class list, see DATASETS.md)"


def _subdirs(path: Path) -> List[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(path: Path) -> List[str]:
    return sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def probe_imagenet(dataset_dir: Path, report: Report) -> None:
    val = dataset_dir / "images" / "val"
    if val.is_dir() and not _subdirs(val) and _files(val):
        report.problems.append(
            f"images/val/ holds {len(_files(val))} files directly (the flat ILSVRC layout); fix: move each "
            f"val image into images/val/<wnid>/ (one folder per class, the same wnids as images/train/)")
    for name in ("train", "val"):
        if not (dataset_dir / "images" / name).is_dir():
            report.problems.append(f"missing images/{name}/; fix: extract ILSVRC-2012 {name} into "
                                   f"images/{name}/<wnid>/*.JPEG")


def _nested_same_name(folder: Path) -> Optional[Path]:
    inner = folder / folder.name
    return inner if inner.is_dir() else None


def probe_stanford_cars(dataset_dir: Path, report: Report) -> None:
    for name in ("cars_train", "cars_test"):
        folder = dataset_dir / name
        if not folder.is_dir():
            continue
        inner = _nested_same_name(folder)
        if inner is not None:
            report.problems.append(f"{name}/{name}/ is nested (a mirror's layout); fix: move the images "
                                   f"up into {name}/ (e.g. mv {inner}/* {folder}/ && rmdir {inner})")
        elif _subdirs(folder) and not _files(folder):
            report.problems.append(f"{name}/ holds per-class folders (a mirror's layout); fix: use the "
                                   f"original flat files {name}/00001.jpg ... (see DATASETS.md)")
    devkit = dataset_dir / "car_devkit" / "devkit"
    if devkit.is_dir() and not (dataset_dir / "devkit").is_dir():
        report.problems.append("devkit is nested in car_devkit/devkit/; fix: move it to stanford_cars/devkit/")


def probe_eurosat(dataset_dir: Path, report: Report) -> None:
    if (dataset_dir / "2750").is_dir():
        return
    for candidate in sorted(dataset_dir.glob("*")) + sorted(dataset_dir.glob("*/*")):
        if candidate.is_dir() and (candidate / "AnnualCrop").is_dir():
            report.problems.append(f"the EuroSAT class folders are in {candidate.relative_to(dataset_dir)}/; "
                                   f"fix: rename (move) that folder to eurosat/2750/")
            return


def probe_imagenet_sketch(dataset_dir: Path, report: Report) -> None:
    if not (dataset_dir / "images").is_dir() and (dataset_dir / "sketch").is_dir():
        report.problems.append("the images are in sketch/ (the release's folder name); fix: rename "
                               "imagenet-sketch/sketch/ to imagenet-sketch/images/")


def _wnid_set_probe(expected: Sequence[str], indices: Sequence[int], subdir: str, label: str) -> Probe:
    def probe(dataset_dir: Path, report: Report) -> None:
        image_dir = dataset_dir / subdir
        if not image_dir.is_dir():
            return
        present = set(_subdirs(image_dir))
        extra = sorted(present - set(expected))
        if extra:
            report.problems.append(f"{len(extra)} folder(s) in {subdir}/ are not {label} classes (first: "
                                   f"{extra[0]}); fix: use the {label} archive (see DATASETS.md)")
        _check_standard_classnames(dataset_dir / "classnames.txt", expected, indices, report)
    return probe


def _check_standard_classnames(text_file: Path, wnids: Sequence[str], indices: Sequence[int],
                               report: Report) -> None:
    """In the standard 1000-line list, each variant class sits at its ImageNet-1k index."""
    if not text_file.is_file():
        return
    order = [line.split(" ", 1)[0] for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(order) < 1000:
        return  # a partial list is allowed by the loader; only the full list can be checked
    misplaced = [w for w, i in zip(wnids, indices) if i >= len(order) or order[i] != w]
    if misplaced:
        report.problems.append(f"classnames.txt is not the standard ImageNet list ({misplaced[0]} is not "
                               f"at its ImageNet-1k index); fix: {CLASSNAMES_FIX}")


def probe_sorted_classnames(dataset_dir: Path, report: Report) -> None:
    """ImageNetV2 maps folder k to line k, which needs the standard (sorted-wnid) order and 1000 lines."""
    text_file = dataset_dir / "classnames.txt"
    if not text_file.is_file():
        return
    wnids = [line.split(" ", 1)[0] for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(wnids) < 1000:
        report.problems.append(f"classnames.txt has {len(wnids)} lines, ImageNetV2 needs all 1000; fix: {CLASSNAMES_FIX}")
    elif wnids != sorted(wnids):
        report.problems.append(f"classnames.txt is not in the standard sorted-wnid order; fix: {CLASSNAMES_FIX}")
    image_dir = dataset_dir / "imagenetv2-matched-frequency-format-val"
    if image_dir.is_dir():
        missing = [str(k) for k in range(1000) if not (image_dir / str(k)).is_dir()]
        if missing:
            report.problems.append(f"{len(missing)} of the folders 0..999 are missing in {image_dir.name}/ "
                                   f"(first: {missing[0]}); fix: re-extract the matched-frequency archive")


LAYOUTS: Dict[str, Layout] = {layout.key: layout for layout in (
    Layout("imagenet", "ImageNet", 1000, always=("classnames.txt",),
           drive={"classnames.txt": "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"},
           sources=("https://image-net.org/index.php (ILSVRC-2012 train + val)",),
           aliases=("ImageNet", "ILSVRC2012", "imagenet-1k"), probes=(probe_imagenet,)),
    Layout("caltech101", "Caltech101", 100, raw=(CLASS_FOLDERS,),
           drive={"split_zhou_Caltech101.json": "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"},
           sources=("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                    "https://data.caltech.edu/records/mzrjq-6wc02 (an archive containing 101_ObjectCategories.tar.gz)"),
           aliases=("caltech101", "Caltech101", "caltech_101")),
    Layout("oxford_pets", "OxfordPets", 37, raw=("annotations/trainval.txt", "annotations/test.txt"),
           drive={"split_zhou_OxfordPets.json": "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"},
           sources=("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                    "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz"),
           aliases=("oxford-pets", "oxford-iiit-pet", "pets")),
    Layout("stanford_cars", "StanfordCars", 196,
           raw=("devkit/cars_train_annos.mat", "devkit/cars_meta.mat", "cars_test_annos_withlabels.mat"),
           always=("cars_train/", "cars_test/"),
           drive={"split_zhou_StanfordCars.json": "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"},
           sources=("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
                    "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
                    "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                    "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat"),
           aliases=("stanford-cars", "StanfordCars", "cars"), probes=(probe_stanford_cars,)),
    Layout("oxford_flowers", "OxfordFlowers", 102, raw=("imagelabels.mat", "cat_to_name.json"),
           drive={"cat_to_name.json": "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",
                  "split_zhou_OxfordFlowers.json": "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"},
           sources=("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                    "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat"),
           aliases=("flowers102", "oxford-flowers", "flowers-102", "102flowers")),
    Layout("food101", "Food101", 101, raw=(CLASS_FOLDERS,),
           drive={"split_zhou_Food101.json": "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"},
           sources=("https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",),
           aliases=("food101", "Food-101", "food_101")),
    Layout("fgvc_aircraft", "FGVCAircraft", 100,
           raw=("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"),
           sources=("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
                    "(keep only fgvc-aircraft-2013b/data/, renamed to fgvc_aircraft/)",),
           aliases=("fgvc-aircraft-2013b", "fgvc-aircraft", "aircraft")),
    Layout("sun397", "SUN397", 397, raw=("ClassName.txt", "Training_01.txt", "Testing_01.txt"),
           drive={"split_zhou_SUN397.json": "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"},
           sources=("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                    "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip "
                    "(the .txt files go directly into sun397/)"),
           aliases=("SUN397", "sun-397")),
    Layout("dtd", "DescribableTextures", 47, raw=(CLASS_FOLDERS,),
           drive={"split_zhou_DescribableTextures.json": "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"},
           sources=("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
           aliases=("DTD", "dtd-r1.0.1")),
    Layout("eurosat", "EuroSAT", 10, raw=(CLASS_FOLDERS,),
           drive={"split_zhou_EuroSAT.json": "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"},
           sources=("http://madm.dfki.de/files/sentinel/EuroSAT.zip (RGB version, extracts to 2750/)",),
           aliases=("EuroSAT", "EuroSAT_RGB", "euro_sat"), probes=(probe_eurosat,)),
    Layout("ucf101", "UCF101", 101,
           raw=("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt", "ucfTrainTestlist/testlist01.txt"),
           drive={"UCF-101-midframes.zip": "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
                  "split_zhou_UCF101.json": "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"},
           sources=("UCF-101-midframes.zip from CoOp's Google Drive (tools/data/download_splits.py --create)",
                    "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip "
                    "(ucfTrainTestlist/, only to create the split yourself)"),
           aliases=("UCF101", "ucf-101")),
    Layout("imagenetv2", "ImageNetV2", 1000, always=("classnames.txt",),
           sources=("https://github.com/modestyachts/ImageNetV2",
                    "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz"),
           aliases=("ImageNetV2", "imagenet-v2", "imagenetv2-matched-frequency-format-val"),
           probes=(probe_sorted_classnames,)),
    Layout("imagenet_sketch", "ImageNetSketch", 1000, always=("classnames.txt",),
           sources=("https://github.com/HaohanWang/ImageNet-Sketch",),
           aliases=("imagenet_sketch", "ImageNet-Sketch", "sketch"), probes=(probe_imagenet_sketch,)),
    Layout("imagenet_a", "ImageNetA", 200, always=("classnames.txt",),
           sources=("https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",),
           aliases=("imagenet-a", "imagenet_a", "ImageNet-A"),
           probes=(_wnid_set_probe(IMAGENET_A_WNIDS, IMAGENET_A_INDICES, "imagenet-a", "ImageNet-A"),)),
    Layout("imagenet_r", "ImageNetR", 200, always=("classnames.txt",),
           sources=("https://github.com/hendrycks/imagenet-r (imagenet-r.tar)",),
           aliases=("imagenet-r", "imagenet_r", "ImageNet-R"),
           probes=(_wnid_set_probe(IMAGENET_R_WNIDS, IMAGENET_R_INDICES, "imagenet-r", "ImageNet-R"),)),
)}


def resolve(name: str) -> Layout:
    """A layout by config name, registry name or dataset folder name (case-insensitive)."""
    wanted = name.strip().lower().removesuffix(".yaml")
    for layout in LAYOUTS.values():
        if wanted in (layout.key.lower(), layout.registry.lower(), layout.folder.lower()):
            return layout
    raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(LAYOUTS)}")


# --------------------------------------------------------------------------------------------------
# Generic checks


def _normalized(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def find_misplaced_folder(data_root: Path, layout: Layout) -> Optional[str]:
    """A folder in DATA/ that is probably the dataset under another name, with the fix."""
    if not data_root.is_dir():
        return None
    wanted = {_normalized(layout.folder)} | {_normalized(alias) for alias in layout.aliases}
    for entry in sorted(data_root.iterdir()):
        if entry.is_dir() and entry.name != layout.folder and _normalized(entry.name) in wanted:
            return f"found {entry.name}/ instead; fix: rename it to {layout.folder}/ (mv {entry} {data_root / layout.folder})"
    if layout.image_subdir and (data_root / layout.image_subdir).is_dir():
        return (f"found {layout.image_subdir}/ directly in {data_root}; fix: move it into "
                f"{layout.folder}/ ({layout.folder}/{layout.image_subdir}/)")
    return None


def find_nested(base: Path, relative: str, max_depth: int = 2) -> Optional[Path]:
    """``relative`` found one or two folder levels too deep under ``base`` (a common extraction slip)."""
    frontier = [base]
    for _ in range(max_depth):
        frontier = [child for folder in frontier for child in sorted(folder.iterdir())
                    if child.is_dir() and not child.name.startswith(".")]
        for folder in frontier:
            if (folder / relative).exists():
                return folder / relative
    return None


def _require(dataset_dir: Path, relative: str, report: Report, fix: str) -> bool:
    path = dataset_dir / relative
    if path.exists():
        return True
    nested = find_nested(dataset_dir, relative.rstrip("/"))
    archive = next((dataset_dir / (relative.rstrip("/") + ext) for ext in (".tar.gz", ".tgz", ".tar", ".zip")
                    if (dataset_dir / (relative.rstrip("/") + ext)).is_file()), None)
    if nested is not None:
        report.problems.append(f"missing {relative}: found it at {nested.relative_to(dataset_dir)}; fix: "
                               f"move it to {dataset_dir.name}/{relative}")
    elif archive is not None:
        report.problems.append(f"missing {relative}: {archive.name} is not extracted; fix: extract it in {dataset_dir}")
    else:
        report.problems.append(f"missing {relative}; fix: {fix}")
    return False


def _drive_fix(layout: Layout, filename: str, dataset_dir: Path) -> str:
    drive_id = layout.drive.get(filename)
    if drive_id:
        return f"gdown {drive_id} -O {dataset_dir / filename}"
    return "see DATASETS.md"


def _short(exc: BaseException) -> str:
    """A loader error without its generic 'See DATASETS.md ... check_datasets' tail."""
    return str(exc).split(" See DATASETS.md (section")[0]


def _dry_run(layout: Layout, data_root: Path, report: Report) -> Optional[Dict[str, list]]:
    """Run the loader's reading code (no writes), summarise what a run would get, return the lists."""
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            lists = layout.dataset_class().dry_run(str(data_root))
    except Exception as exc:  # any loader failure is a finding, reported in the loader's words
        report.problems.append(f"{type(exc).__name__}: {_short(exc)}")
        return None
    finally:
        report.notes += [line.removeprefix("Note: ") for line in stdout.getvalue().splitlines()
                         if line.startswith("Note: ")]
    labels = {item.label for item in next(iter(lists.values()))}
    sizes = " / ".join(f"{key} {len(items):,}" for key, items in lists.items())
    report.summary = f"{len(labels)} classes, {sizes}"
    if len(labels) != layout.num_classes:
        report.notes.append(f"{len(labels)} classes found, the full dataset has {layout.num_classes} "
                            f"(incomplete download or a fixture?)")
    return lists


def _decode_error(path: str) -> Optional[str]:
    """Why the data loader could not read the image at ``path`` (None when it can)."""
    from dassl.utils import read_image

    try:
        read_image(path)
    except OSError as exc:
        cause = exc.__cause__ or exc
        return f"{type(cause).__name__}: {cause}"
    return None


def unreadable_images(paths: Sequence[str], label: str, workers: int = 1) -> List[Tuple[str, str]]:
    """``(path, why)`` of every image that does not decode, read exactly as a run reads it."""
    from PIL import ImageFile
    from tqdm import tqdm

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a run fails on a truncated file: so must the check
    with ThreadPoolExecutor(max(workers, 1)) as pool:  # Pillow decodes without holding the GIL
        errors = list(tqdm(pool.map(_decode_error, paths), total=len(paths), desc=f"decoding {label}",
                           unit="img", file=sys.stderr))
    return [(path, error) for path, error in zip(paths, errors) if error is not None]


def _decode_all(lists: Dict[str, list], report: Report, workers: int) -> None:
    paths = sorted({item.impath for items in lists.values() for item in items})
    bad = unreadable_images(paths, report.name, workers)
    if bad:
        report.problems.append(f"{len(bad)} of {len(paths):,} images cannot be decoded; fix: download or extract "
                               f"them again (DATALOADER.SKIP_CORRUPT True would skip them at run time):")
        report.problems += [f"unreadable: {path} ({error})" for path, error in bad]


def check_dataset(data_root: str | Path, name: str, decode: bool = True, workers: int = 1) -> Report:
    """Check one dataset folder; ``decode`` also decodes every image (``workers`` threads)."""
    layout = resolve(name)
    data_root = Path(data_root).expanduser().resolve()
    dataset_dir = data_root / layout.folder
    report = Report(layout.key, dataset_dir)
    if not data_root.is_dir():
        report.problems.append(f"DATA folder {data_root} does not exist; fix: pass the folder that holds "
                               f"the dataset folders (DATASET.ROOT / --root)")
        return report
    if not dataset_dir.is_dir():
        hint = find_misplaced_folder(data_root, layout)
        report.problems.append(f"missing {layout.folder}/; " + (hint or f"fix: download it ({layout.sources[0]}; "
                                                                         f"DATASETS.md, section '{layout.registry}')"))
        return report

    for probe in layout.probes:
        probe(dataset_dir, report)
    if layout.image_subdir and not report.problems:  # a probe that fired already explains the image folder
        _require(dataset_dir, layout.image_subdir + "/", report, "see DATASETS.md for the expected tree")
    for relative in layout.always:
        fix = CLASSNAMES_FIX if relative == "classnames.txt" and layout.key != "imagenet" else \
            _drive_fix(layout, relative, dataset_dir)
        _require(dataset_dir, relative, report, fix)

    split = layout.split_filename
    if split and not (dataset_dir / split).is_file():
        missing = [r for r in layout.raw if r != CLASS_FOLDERS and not (dataset_dir / r).exists()]
        if not missing:
            report.notes.append(f"no {split}: the first run creates a random split from the raw files; the "
                                f"published one: {_drive_fix(layout, split, dataset_dir)}")
        else:
            report.problems.append(f"missing {split}; fix: {_drive_fix(layout, split, dataset_dir)} (or provide "
                                   f"the raw files it is created from:)")
            for relative in missing:
                _require(dataset_dir, relative, report, "see DATASETS.md")
    elif not split:
        for relative in layout.raw:
            _require(dataset_dir, relative, report, "see DATASETS.md")

    for pickle_file in sorted(dataset_dir.glob("split_fewshot/*.pkl")) + sorted(dataset_dir.glob("preprocessed.pkl")):
        report.notes.append(f"{pickle_file.relative_to(dataset_dir)} is ignored (pickle caches are never loaded)")
    lists = _dry_run(layout, data_root, report) if not report.problems else None
    if lists and decode:
        _decode_all(lists, report, workers)
    return report


def check_all(data_root: str | Path, names: Sequence[str] = (), decode: bool = True, workers: int = 1) -> List[Report]:
    return [check_dataset(data_root, name, decode, workers) for name in (names or list(LAYOUTS))]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the folder holding the dataset folders (DATASET.ROOT)")
    parser.add_argument("names", nargs="*", help=f"datasets to check (default: all): {', '.join(LAYOUTS)}")
    parser.add_argument("--fast", action="store_true", help="check the layout and splits only, do not decode images")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8),
                        help="threads decoding images (default: the CPU count, at most 8)")
    args = parser.parse_args(argv)
    try:
        layouts = [resolve(name) for name in args.names]
    except KeyError as exc:
        parser.error(exc.args[0])
    reports = check_all(args.data, [layout.key for layout in layouts], decode=not args.fast, workers=args.workers)
    for report in reports:
        print("\n".join(report.lines()))
    failed = [r.name for r in reports if not r.ok]
    if failed:
        print(f"\n{len(failed)} of {len(reports)} dataset(s) need fixing: {', '.join(failed)} (see DATASETS.md)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
