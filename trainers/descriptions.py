"""LLM-written class descriptions (CoPrompt's ``gpt_file``): where they live, reading and checking them.

Format (upstream's): one JSON file per dataset, ``<name>_prompt.json``, an object mapping each class
name, underscores written as spaces, to a list of descriptions (sentences CLIP's tokenizer reads):

    {"abyssinian": ["A photo of a pet abyssinian. it has a lean body ...", ...], ...}

Every class of the dataset needs the same number of descriptions (the method draws one index for
all classes at a step). The default file is ``<DATASET.ROOT>/gpt_file/<name>_prompt.json`` with
upstream's file names below.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Dict, List, Mapping, Sequence

from .prompts import clean_classname

FOLDER = "gpt_file"
# Dataset registry name → upstream's file stem (gpt_file/<stem>_prompt.json).
FILE_STEMS = {
    "Caltech101": "caltech",
    "DescribableTextures": "dtd",
    "EuroSAT": "eurosat",
    "FGVCAircraft": "fgvc",
    "Food101": "food101",
    "ImageNet": "imagenet",
    "ImageNetA": "imagenet_a",
    "ImageNetR": "imagenet_r",
    "ImageNetSketch": "imagenet_sketch",
    "ImageNetV2": "imagenetv2",
    "OxfordFlowers": "oxford_flowers",
    "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars",
    "SUN397": "sun397",
    "UCF101": "ucf101",
}


def default_path(root: str, dataset_name: str) -> str:
    """``<root>/gpt_file/<stem>_prompt.json``; datasets upstream has no file for use their lower-case name."""
    stem = FILE_STEMS.get(dataset_name, dataset_name.lower())
    return osp.join(root, FOLDER, f"{stem}_prompt.json")


def read_descriptions(path: str, classnames: Sequence[str], key: str) -> List[List[str]]:
    """The descriptions of each class, in ``classnames`` order: [C][N] strings.

    ``key`` names the config key that sets ``path``, for the error messages."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"No class descriptions at {path}. CoPrompt reads LLM-written descriptions of every class: put "
            f"the dataset's file there (upstream's gpt_file/{osp.basename(path)} from ShuvenduRoy/CoPrompt, "
            f"a JSON object: class name -> list of sentences), or set {key} to the file's path.")
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"Class descriptions {path} are not readable JSON ({exc}); fix the file or set {key}.") from exc
    return check_descriptions(table, classnames, path)


def check_descriptions(table, classnames: Sequence[str], path: str) -> List[List[str]]:
    """Each class's list from ``table``, checked: present, non-empty strings, equal counts."""
    if not isinstance(table, Mapping):
        raise ValueError(f"Class descriptions {path} must be a JSON object (class name -> list of sentences).")
    names = [clean_classname(c) for c in classnames]
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"Class descriptions {path} have no entry for {len(missing)} classes, e.g. "
                         f"{missing[:5]} (keys are class names with spaces for underscores).")
    rows = [table[n] for n in names]
    bad = [n for n, row in zip(names, rows) if not (isinstance(row, list) and row and all(isinstance(t, str) and t for t in row))]
    if bad:
        raise ValueError(f"Class descriptions {path}: {bad[:5]} must map to a non-empty list of sentences.")
    counts = {len(row) for row in rows}
    if len(counts) > 1:
        raise ValueError(f"Class descriptions {path} give {sorted(counts)} descriptions per class: every class "
                         f"needs the same number (one index is drawn for all classes at a step).")
    return rows


def write_descriptions(path: str, descriptions: Dict[str, List[str]]) -> None:
    """Write a descriptions file in upstream's format (keys: class names with spaces)."""
    import os

    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({clean_classname(k): v for k, v in descriptions.items()}, f, indent=4)
