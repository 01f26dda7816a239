#!/usr/bin/env python
"""Write miniature benchmark datasets in their REAL on-disk layouts (tests, demo, smoke runs).

    python -m tools.kit.make_fixture_datasets ROOT                  # all 15 datasets under ROOT/
    python -m tools.kit.make_fixture_datasets ROOT oxford_pets eurosat --num-classes 5 --with-split-json

Every tree has the folder names, annotation/split files (incl. MATLAB ``.mat`` files) and file-name
patterns of the real dataset, a few classes and tiny images, so the real loaders and ``train.py``
run on it unchanged. The images are learnable: every class has its own colour pair and stripe or
checker pattern (orientation and frequency), each image adds a random phase shift, brightness
jitter and pixel noise. In the ImageNet family the look is keyed by wnid, so a class looks the same
in ImageNet and in ImageNet-A/-R/-Sketch/-V2 (domain-generalisation evaluation makes sense).

What the per-class counts mean (``train_per_class`` / ``test_per_class``):

* trainval datasets (OxfordPets, StanfordCars, SUN397, UCF101): items per class in the train+val
  list (the loader keeps 80% for train, 20% for val) / in the test list;
* class-folder datasets (Caltech101, Food101, DTD, EuroSAT, OxfordFlowers): the folder holds
  ``train + test`` images per class and the loader splits them 50/20/30;
* ImageNet: images per class in ``images/train`` / ``images/val`` (the test set);
* FGVCAircraft: lines per class in images_variant_train / images_variant_val and _test;
* ImageNet variants (test only): ``test_per_class`` images per class.

Defaults: 3 classes, e.g. OxfordPets
trainval 5 + test 1 per class. Only the raw files are written by default (the loaders then create
``split_zhou_*.json`` themselves); ``with_split_json=True`` also writes the split JSON, with a
deterministic (unshuffled) split, as the published files would be found on disk.
"""
from __future__ import annotations

import argparse
import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from datasets.facts import benchmark_class


# --------------------------------------------------------------------------------------------------
# Learnable tiny images


def class_look(index: int) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """Colour A, colour B, pattern kind (0-3) and frequency of class ``index`` (all deterministic).

    The two hues follow two different low-discrepancy sequences (golden ratio, sqrt 2), so nearby
    classes differ in colour and no two classes share a colour pair; pattern kind and frequency
    vary with the index as well, so classes also differ in texture.
    """
    hue_a = (index * 0.618033988749895) % 1.0
    hue_b = (0.5 + index * 0.414213562373095) % 1.0
    colour_a = np.array(_hsv_to_rgb(hue_a, 0.85, 0.95))
    colour_b = np.array(_hsv_to_rgb(hue_b, 0.7, 0.3 + 0.25 * ((index // 3) % 2)))
    return colour_a, colour_b, index % 4, 1 + (index // 4) % 3


def _hsv_to_rgb(h: float, s: float, v: float) -> Tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def render_image(look_index: int, rng: np.random.Generator, size: int) -> Image.Image:
    colour_a, colour_b, kind, freq = class_look(look_index)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 1)
    wave = {0: x, 1: y, 2: (x + y) / 2}.get(kind)
    if wave is not None:
        mask = (np.floor((wave + phase) * freq * 2) % 2).astype(float)
    else:  # checkerboard
        mask = ((np.floor((x + phase) * freq * 2) + np.floor((y + phase) * freq * 2)) % 2).astype(float)
    pixels = colour_a * mask[..., None] + colour_b * (1 - mask[..., None])
    pixels = pixels * rng.uniform(0.92, 1.08) + rng.normal(0, 0.04, size=pixels.shape)
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB")


@dataclass
class Params:
    num_classes: int
    train_per_class: int
    test_per_class: int
    image_size: int
    seed: int
    key: str  # dataset key, mixed into the per-image noise


def write_image(path: Path, look_index: int, number: int, params: Params) -> None:
    """One image, deterministic in (seed, dataset, class look, image number); JPEG or PNG by suffix."""
    rng = np.random.default_rng([params.seed, zlib.crc32(params.key.encode()), look_index, number])
    image = render_image(look_index, rng, params.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=95)


# --------------------------------------------------------------------------------------------------
# Class-name tables (the real names the spec lists, extended with made-up ones in the same style)


def take(known: Sequence, n: int, make: Callable[[int], object], what: str, limit: Optional[int] = None) -> list:
    """``n`` class names: the ``known`` ones first, then ``make(i)``; at most ``limit`` (the real count)."""
    if limit is not None and n > limit:
        raise ValueError(f"{what} has {limit} classes; cannot make a fixture with {n}")
    if n < 1:
        raise ValueError(f"num_classes must be >= 1, got {n}")
    return list(known[:n]) + [make(i) for i in range(len(known), n)]


def take_real(known: Sequence, p: Params, make: Callable[[int], object]) -> list:
    """``take`` for the fixture of ``p.key``: no more classes than the real dataset has (its loader says)."""
    loader = benchmark_class(p.key)
    return take(known, p.num_classes, make, loader.__name__, loader.full_num_classes)


# OxfordPets breeds in class-id order with the real file-name casing (cats are capitalised).
PET_BREEDS = (
    "Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman Bombay boxer "
    "British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel english_setter german_shorthaired "
    "great_pyrenees havanese japanese_chin keeshond leonberger Maine_Coon miniature_pinscher newfoundland "
    "Persian pomeranian pug Ragdoll Russian_Blue saint_bernard samoyed scottish_terrier shiba_inu Siamese "
    "Sphynx staffordshire_bull_terrier wheaten_terrier yorkshire_terrier").split()

DTD_CLASSES = (
    "banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted fibrous "
    "flecked freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined marbled matted "
    "meshed paisley perforated pitted pleated polka-dotted porous potholed scaly smeared spiralled sprinkled "
    "stained stratified striped studded swirly veined waffled woven wrinkled zigzagged").split()
# Spec fixture order: the three folders of section 8.9 first.
DTD_FIXTURE_ORDER = ["banded", "blotchy", "polka-dotted"] + [c for c in DTD_CLASSES if c not in ("banded", "blotchy", "polka-dotted")]

EUROSAT_CLASSES = (  # (folder, class name)
    ("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"), ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
    ("Highway", "Highway or Road"), ("Industrial", "Industrial Buildings"), ("Pasture", "Pasture Land"),
    ("PermanentCrop", "Permanent Crop Land"), ("Residential", "Residential Buildings"), ("River", "River"),
    ("SeaLake", "Sea or Lake"))

CALTECH_CLASSES = (("Faces", "face"), ("accordion", "accordion"), ("airplanes", "airplane"),
                   ("Leopards", "leopard"), ("Motorbikes", "motorbike"), ("anchor", "anchor"))
CALTECH_IGNORED = {"BACKGROUND_Google": 1, "Faces_easy": 5}  # folder -> number of images

FOOD_CLASSES = ("apple_pie", "baby_back_ribs", "baklava", "chicken_curry")
FLOWER_NAMES = ("pink primrose", "hard-leaved pocket orchid", "canterbury bells")
CAR_NAMES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012")
AIRCRAFT_VARIANTS = ("707-320", "Cessna 172", "F/A-18")
SUN_CATEGORIES = ("a/abbey", "a/airplane_cabin", "a/apartment_building/outdoor")
UCF_ACTIONS = ("ApplyEyeMakeup", "ApplyLipstick", "YoYo")

IMAGENET_NAMES = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark",
                  "n01494475": "hammerhead shark", "n01498041": "stingray", "n01531178": "goldfinch",
                  "n01534433": "junco"}


def imagenet_class_list() -> List[Tuple[str, str]]:
    """A 1000-line stand-in for imagenet/classnames.txt, in standard (sorted-wnid) order.

    Every wnid the spec places (tench at 0, the ImageNet-A/-R classes at their ImageNet-1k
    indices) is at its real index; the other lines are placeholders that keep the list sorted
    (``<previous wnid>_<k>``). Names are real where the spec gives them, else ``class <index>``.
    """
    placed = {0: "n01440764"}
    for subset in (benchmark_class("imagenet_a"), benchmark_class("imagenet_r")):
        placed.update(zip(subset.imagenet_indices, subset.imagenet_wnids))
    wnids: List[str] = []
    for index in range(1000):
        if index in placed:
            wnids.append(placed[index])
        else:
            anchor = next(placed[i] for i in range(index, -1, -1) if i in placed)
            wnids.append(f"{anchor}_{index:03d}")
    return [(wnid, IMAGENET_NAMES.get(wnid, f"class {index}")) for index, wnid in enumerate(wnids)]


IMAGENET_CLASSES = imagenet_class_list()
IMAGENET_INDEX = {wnid: index for index, (wnid, _) in enumerate(IMAGENET_CLASSES)}
REAL_IMAGENET_WNIDS = [wnid for wnid, _ in IMAGENET_CLASSES if "_" not in wnid]


# --------------------------------------------------------------------------------------------------
# Split JSON for the "with split" variant

Item = Tuple[str, int, str]  # (path relative to the split prefix, label, class name)


def split_counts(n: int, p_trn: float, p_val: float) -> Tuple[int, int]:
    n_train, n_val = round(n * p_trn), round(n * p_val)
    return n_train, n_val


def cut_items(per_class: Iterable[List[Item]], p_trn: float, p_val: float) -> Dict[str, List[Item]]:
    """Unshuffled per-class cut, so a split read from the JSON differs from a freshly created one."""
    out: Dict[str, List[Item]] = {"train": [], "val": [], "test": []}
    for items in per_class:
        n_train, n_val = split_counts(len(items), p_trn, p_val)
        out["train"] += items[:n_train]
        out["val"] += items[n_train:n_train + n_val]
        out["test"] += items[n_train + n_val:]
    return out


def trainval_split(trainval: Iterable[List[Item]], test: Iterable[List[Item]]) -> Dict[str, List[Item]]:
    out = cut_items(trainval, 0.8, 0.2)
    out["test"] = [item for items in test for item in items]
    return out


def write_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, separators=(",", ": ")), encoding="utf-8")


def write_lines(path: Path, lines: Iterable[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(line + newline for line in lines)


# --------------------------------------------------------------------------------------------------
# Writers: one per dataset, each returns the split JSON content (or None when it has none)

Splits = Optional[Dict[str, List[Item]]]


def write_class_folders(image_dir: Path, folders: Sequence[Tuple[str, str]], params: Params,
                        file_name: Callable[[str, int], str], look_offset: int = 0) -> Dict[str, List[Item]]:
    """``image_dir/<folder>/<file>`` with train+test images per class; labels = sorted folder order."""
    per_class = params.train_per_class + params.test_per_class
    label_of = {folder: label for label, folder in enumerate(sorted(folder for folder, _ in folders))}
    items: Dict[int, List[Item]] = {}
    for look, (folder, classname) in enumerate(folders, start=look_offset):
        names = [file_name(folder, n) for n in range(1, per_class + 1)]
        for n, name in enumerate(names, start=1):
            write_image(image_dir / folder / name, look, n, params)
        items[label_of[folder]] = [(f"{folder}/{name}", label_of[folder], classname) for name in names]
    return cut_items((items[label] for label in sorted(items)), 0.5, 0.2)


def write_imagenet(d: Path, p: Params) -> Splits:
    wnids = take(REAL_IMAGENET_WNIDS, p.num_classes, None, "the ImageNet fixture", len(REAL_IMAGENET_WNIDS))
    write_imagenet_classnames(d)
    write_imagenet_images(d, ((wnid, IMAGENET_INDEX[wnid]) for wnid in wnids), p)
    return None


def write_imagenet_images(d: Path, classes: Iterable[Tuple[str, int]], p: Params) -> None:
    """``images/train/<wnid>/t<n>.JPEG`` and ``images/val/<wnid>/v<n>.JPEG`` for each (wnid, look)."""
    for wnid, look in classes:
        for n in range(1, p.train_per_class + 1):
            write_image(d / "images" / "train" / wnid / f"t{n}.JPEG", look, n, p)
        for n in range(1, p.test_per_class + 1):
            write_image(d / "images" / "val" / wnid / f"v{n}.JPEG", look, 1000 + n, p)


def write_imagenet_classnames(d: Path) -> None:
    write_lines(d / "classnames.txt", (f"{wnid} {name}" for wnid, name in IMAGENET_CLASSES))


def write_caltech101(d: Path, p: Params) -> Splits:
    folders = take_real(CALTECH_CLASSES, p, lambda i: (f"category_{i:03d}",) * 2)
    image_dir = d / "101_ObjectCategories"
    for look, (folder, count) in enumerate(CALTECH_IGNORED.items(), start=len(folders)):
        for n in range(1, count + 1):
            write_image(image_dir / folder / f"image_{n:04d}.jpg", look, n, p)
    return write_class_folders(image_dir, folders, p, lambda folder, n: f"image_{n:04d}.jpg")


def write_oxford_pets(d: Path, p: Params) -> Splits:
    breeds = take(PET_BREEDS, p.num_classes, None, "OxfordPets", len(PET_BREEDS))
    trainval_lines, test_lines, trainval, test = [], [], [], []
    per_species = {1: 0, 2: 0}
    for label, breed in enumerate(breeds):
        species = 1 if breed[0].isupper() else 2  # cat breeds are the capitalised ones
        per_species[species] += 1
        classname = breed.lower()
        names = [f"{breed}_{n}" for n in range(1, p.train_per_class + p.test_per_class + 1)]
        for n, name in enumerate(names, start=1):
            write_image(d / "images" / f"{name}.jpg", label, n, p)
        lines = [f"{name} {label + 1} {species} {per_species[species]}" for name in names]
        trainval_lines += lines[:p.train_per_class]
        test_lines += lines[p.train_per_class:]
        trainval.append([(f"{name}.jpg", label, classname) for name in names[:p.train_per_class]])
        test.append([(f"{name}.jpg", label, classname) for name in names[p.train_per_class:]])
    write_lines(d / "annotations" / "trainval.txt", trainval_lines)
    write_lines(d / "annotations" / "test.txt", test_lines)
    return trainval_split(trainval, test)


def write_stanford_cars(d: Path, p: Params) -> Splits:
    from scipy.io import savemat

    names = take_real(CAR_NAMES, p, lambda i: f"Fixture Model{i} Sedan {2000 + i % 13}")
    meta = np.empty((1, len(names)), dtype=object)
    meta[0, :] = names
    (d / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(d / "devkit" / "cars_meta.mat", {"class_names": meta})

    def write_split(folder: str, mat_path: Path, per_class: int) -> List[List[Item]]:
        fnames, classes, items = [], [], []
        for label, name in enumerate(names):
            class_items = []
            for n in range(per_class):
                fname = f"{len(fnames) + 1:05d}.jpg"
                write_image(d / folder / fname, label, len(fnames) + 1 + (0 if folder == "cars_train" else 10**6), p)
                fnames.append(fname)
                classes.append(label + 1)
                class_items.append((f"{folder}/{fname}", label, year_first(name)))
            items.append(class_items)
        records = np.zeros((1, len(fnames)), dtype=[("fname", "O"), ("class", "O")])
        for i, (fname, cls) in enumerate(zip(fnames, classes)):
            records[0, i]["fname"] = fname
            records[0, i]["class"] = np.array([[cls]], dtype=np.uint8 if cls < 256 else np.uint16)
        savemat(mat_path, {"annotations": records})
        return items

    trainval = write_split("cars_train", d / "devkit" / "cars_train_annos.mat", p.train_per_class)
    test = write_split("cars_test", d / "cars_test_annos_withlabels.mat", p.test_per_class)
    return trainval_split(trainval, test)


def year_first(name: str) -> str:
    *model, year = name.split(" ")
    return " ".join([year, *model])


def write_oxford_flowers(d: Path, p: Params) -> Splits:
    """Images interleave the classes, last class first (like the real, unsorted imagelabels.mat)."""
    from scipy.io import savemat

    names = take_real(FLOWER_NAMES, p, lambda i: f"flower {i + 1}")
    per_class = p.train_per_class + p.test_per_class
    labels, items = [], {class_id: [] for class_id in range(1, len(names) + 1)}
    for n in range(per_class):
        for class_id in range(len(names), 0, -1):
            labels.append(class_id)
            fname = f"image_{len(labels):05d}.jpg"
            write_image(d / "jpg" / fname, class_id - 1, len(labels), p)
            items[class_id].append((fname, class_id - 1, names[class_id - 1]))
    savemat(d / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8 if len(names) < 256 else np.uint16)})
    write_json({str(i + 1): name for i, name in enumerate(names)}, d / "cat_to_name.json")
    return cut_items((items[class_id] for class_id in sorted(items)), 0.5, 0.2)


def write_food101(d: Path, p: Params) -> Splits:
    folders = [(c, c) for c in take_real(FOOD_CLASSES, p, lambda i: f"dish_{i:03d}")]
    return write_class_folders(d / "images", folders, p, lambda folder, n: f"{n}.jpg")


def write_fgvc_aircraft(d: Path, p: Params) -> Splits:
    variants = take_real(AIRCRAFT_VARIANTS, p, lambda i: f"Variant-{i}")
    write_lines(d / "variants.txt", variants)
    next_id = 1
    for split, per_class in (("train", p.train_per_class), ("val", p.test_per_class), ("test", p.test_per_class)):
        lines = []
        for n in range(per_class):
            for label, variant in enumerate(variants):
                image_id = f"{next_id:07d}"
                write_image(d / "images" / f"{image_id}.jpg", label, next_id, p)
                lines.append(f"{image_id} {variant}")
                next_id += 1
        write_lines(d / f"images_variant_{split}.txt", lines)
    return None


def write_sun397(d: Path, p: Params) -> Splits:
    categories = take_real(SUN_CATEGORIES, p, lambda i: f"s/scene_{i:03d}")
    write_lines(d / "ClassName.txt", (f"/{category}" for category in categories))
    train_lines, test_lines, trainval, test = [], [], [], []
    for label, category in enumerate(categories):
        classname = " ".join(reversed(category.split("/")[1:]))
        rels = [f"{category}/sun_c{label}i{n}.jpg" for n in range(1, p.train_per_class + p.test_per_class + 1)]
        for n, rel in enumerate(rels, start=1):
            write_image(d / "SUN397" / rel, label, n, p)
        train_lines += [f"/{rel}" for rel in rels[:p.train_per_class]]
        test_lines += [f"/{rel}" for rel in rels[p.train_per_class:]]
        trainval.append([(rel, label, classname) for rel in rels[:p.train_per_class]])
        test.append([(rel, label, classname) for rel in rels[p.train_per_class:]])
    write_lines(d / "Training_01.txt", train_lines)
    write_lines(d / "Testing_01.txt", test_lines)
    return trainval_split(trainval, test)


def write_dtd(d: Path, p: Params) -> Splits:
    folders = [(c, c) for c in take(DTD_FIXTURE_ORDER, p.num_classes, lambda i: f"texture_{i:03d}", "DTD")]
    return write_class_folders(d / "images", folders, p, lambda folder, n: f"{folder}_{n:04d}.jpg")


def write_eurosat(d: Path, p: Params) -> Splits:
    folders = take(EUROSAT_CLASSES, p.num_classes, lambda i: (f"LandCover{i}",) * 2, "EuroSAT")
    return write_class_folders(d / "2750", folders, p, lambda folder, n: f"{folder}_{n}.jpg")


def write_ucf101(d: Path, p: Params) -> Splits:
    """Official list files use CRLF line endings; so do these."""
    actions = take_real(UCF_ACTIONS, p, lambda i: f"DoTask{i:02d}")
    lists = d / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", (f"{i + 1} {a}" for i, a in enumerate(actions)), newline="\r\n")
    train_lines, test_lines, trainval, test = [], [], [], []
    for label, action in enumerate(actions):
        renamed = "_".join(_camel_words(action))
        videos = [f"v_{action}_g{n:02d}_c01" for n in range(1, p.train_per_class + p.test_per_class + 1)]
        for n, video in enumerate(videos, start=1):
            write_image(d / "UCF-101-midframes" / renamed / f"{video}.jpg", label, n, p)
        train_lines += [f"{action}/{video}.avi {label + 1}" for video in videos[:p.train_per_class]]
        test_lines += [f"{action}/{video}.avi" for video in videos[p.train_per_class:]]
        trainval.append([(f"{renamed}/{v}.jpg", label, renamed) for v in videos[:p.train_per_class]])
        test.append([(f"{renamed}/{v}.jpg", label, renamed) for v in videos[p.train_per_class:]])
    write_lines(lists / "trainlist01.txt", train_lines, newline="\r\n")
    write_lines(lists / "testlist01.txt", test_lines, newline="\r\n")
    return trainval_split(trainval, test)


def _camel_words(action: str) -> List[str]:
    words: List[str] = []
    for ch in action:
        if ch.isupper() or not words:
            words.append(ch)
        else:
            words[-1] += ch
    return words


def write_imagenetv2(d: Path, p: Params) -> Splits:
    if p.num_classes > 1000:
        raise ValueError("ImageNetV2 has 1000 classes")
    write_imagenet_classnames(d)
    image_dir = d / "imagenetv2-matched-frequency-format-val"
    for label in range(1000):  # the loader needs every numbered folder; only 0..N-1 hold images
        (image_dir / str(label)).mkdir(parents=True, exist_ok=True)
        if label < p.num_classes:
            for n in range(1, p.test_per_class + 1):
                write_image(image_dir / str(label) / f"{n}.jpeg", label, n, p)
    return None


def _write_wnid_variant(d: Path, p: Params, subdir: str, wnids: Sequence[str], file_name: Callable[[int], str],
                        readme: bool) -> Splits:
    chosen = take(wnids, p.num_classes, None, subdir, len(wnids))
    write_imagenet_classnames(d)
    if readme:
        write_lines(d / subdir / "README.txt", [f"{subdir}: fixture copy of the dataset's README"])
    for wnid in chosen:
        for n in range(1, p.test_per_class + 1):
            write_image(d / subdir / wnid / file_name(n), IMAGENET_INDEX[wnid], 2000 + n, p)
    return None


def write_imagenet_sketch(d: Path, p: Params) -> Splits:
    return _write_wnid_variant(d, p, "images", REAL_IMAGENET_WNIDS, lambda n: f"sketch_{n}.JPEG", readme=False)


def write_imagenet_a(d: Path, p: Params) -> Splits:
    wnids = benchmark_class("imagenet_a").imagenet_wnids
    return _write_wnid_variant(d, p, "imagenet-a", wnids, lambda n: f"{n}.jpg", readme=True)


def write_imagenet_r(d: Path, p: Params) -> Splits:
    wnids = benchmark_class("imagenet_r").imagenet_wnids
    return _write_wnid_variant(d, p, "imagenet-r", wnids, lambda n: f"art_{n}.jpg", readme=True)


@dataclass(frozen=True)
class Fixture:
    registry: str
    folder: str
    split_file: str  # "" = the dataset has no split JSON
    writer: Callable[[Path, Params], Splits]
    train_per_class: int
    test_per_class: int


# Keyed by config name (configs/datasets/<key>.yaml); folder names are written out here on purpose,
# independently of the loaders, so the tests compare two sources.
FIXTURES: Dict[str, Fixture] = {
    "imagenet": Fixture("ImageNet", "imagenet", "", write_imagenet, 3, 2),
    "caltech101": Fixture("Caltech101", "caltech-101", "split_zhou_Caltech101.json", write_caltech101, 3, 2),
    "oxford_pets": Fixture("OxfordPets", "oxford_pets", "split_zhou_OxfordPets.json", write_oxford_pets, 5, 1),
    "stanford_cars": Fixture("StanfordCars", "stanford_cars", "split_zhou_StanfordCars.json", write_stanford_cars, 5, 1),
    "oxford_flowers": Fixture("OxfordFlowers", "oxford_flowers", "split_zhou_OxfordFlowers.json", write_oxford_flowers, 3, 2),
    "food101": Fixture("Food101", "food-101", "split_zhou_Food101.json", write_food101, 3, 2),
    "fgvc_aircraft": Fixture("FGVCAircraft", "fgvc_aircraft", "", write_fgvc_aircraft, 2, 1),
    "sun397": Fixture("SUN397", "sun397", "split_zhou_SUN397.json", write_sun397, 5, 1),
    "dtd": Fixture("DescribableTextures", "dtd", "split_zhou_DescribableTextures.json", write_dtd, 3, 2),
    "eurosat": Fixture("EuroSAT", "eurosat", "split_zhou_EuroSAT.json", write_eurosat, 3, 2),
    "ucf101": Fixture("UCF101", "ucf101", "split_zhou_UCF101.json", write_ucf101, 5, 1),
    "imagenetv2": Fixture("ImageNetV2", "imagenetv2", "", write_imagenetv2, 0, 2),
    "imagenet_sketch": Fixture("ImageNetSketch", "imagenet-sketch", "", write_imagenet_sketch, 0, 2),
    "imagenet_a": Fixture("ImageNetA", "imagenet-adversarial", "", write_imagenet_a, 0, 2),
    "imagenet_r": Fixture("ImageNetR", "imagenet-rendition", "", write_imagenet_r, 0, 2),
}


def fixture_key(name: str) -> str:
    """Config name, registry name or folder name (case-insensitive) -> config name."""
    wanted = name.strip().lower()
    for key, fixture in FIXTURES.items():
        if wanted in (key, fixture.registry.lower(), fixture.folder.lower()):
            return key
    raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(FIXTURES)}")


def write_fixture(name: str, root: str | Path, num_classes: int | None = None, train_per_class: int | None = None,
                  test_per_class: int | None = None, image_size: int = 32, seed: int = 0,
                  with_split_json: bool = False, overwrite: bool = False) -> Path:
    """Write the miniature of dataset ``name`` under ``root`` and return its dataset folder.

    ``name``: config name (``oxford_pets``), registry name (``OxfordPets``) or folder name.
    ``None`` counts take the spec-fixture defaults (3 classes; see the module docstring for what
    the per-class counts mean per dataset). An existing non-empty dataset folder is an error unless
    ``overwrite=True`` (then it is replaced), so a real dataset is never touched by accident.
    """
    key = fixture_key(name)
    fixture = FIXTURES[key]
    dataset_dir = Path(root) / fixture.folder
    if dataset_dir.exists() and any(dataset_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{dataset_dir} exists and is not empty; pass overwrite=True (--overwrite) "
                                  f"to replace it with a fixture")
        shutil.rmtree(dataset_dir)
    params = Params(num_classes=3 if num_classes is None else num_classes,
                    train_per_class=fixture.train_per_class if train_per_class is None else train_per_class,
                    test_per_class=fixture.test_per_class if test_per_class is None else test_per_class,
                    image_size=image_size, seed=seed, key=key)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    splits = fixture.writer(dataset_dir, params)
    if with_split_json and fixture.split_file and splits is not None:
        write_json({k: [list(item) for item in splits[k]] for k in ("train", "val", "test")},
                   dataset_dir / fixture.split_file)
    return dataset_dir


def write_all(root: str | Path, names: Sequence[str] = (), **kwargs) -> Dict[str, Path]:
    """Write several fixtures (default: all 15); returns config name -> dataset folder."""
    return {fixture_key(name): write_fixture(name, root, **kwargs) for name in (names or list(FIXTURES))}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write the dataset folders into (use it as --root / DATASET.ROOT)")
    parser.add_argument("names", nargs="*", help=f"datasets (default: all): {', '.join(FIXTURES)}")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--test-per-class", type=int)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-split-json", action="store_true", help="also write split_zhou_<Name>.json")
    parser.add_argument("--overwrite", action="store_true", help="replace existing dataset folders")
    args = parser.parse_args(argv)
    try:
        written = write_all(args.root, args.names, num_classes=args.num_classes,
                            train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                            image_size=args.image_size, seed=args.seed, with_split_json=args.with_split_json,
                            overwrite=args.overwrite)
    except (KeyError, ValueError, FileExistsError) as exc:
        parser.error(str(exc.args[0]) if exc.args else str(exc))
    for key, path in written.items():
        print(f"{key:<16} {path}")


if __name__ == "__main__":
    main()
