"""Small, dependency-free helpers used across the package and by client datasets/scripts."""

from __future__ import annotations

import difflib
import errno
import json
import os
import os.path as osp
import random
import sys
import time
import urllib.request
import warnings
from typing import Any, List, Sequence

import numpy as np
import PIL
import torch
from PIL import Image

__all__ = [
    "mkdir_if_missing",
    "check_isfile",
    "log_warning",
    "read_json",
    "write_json",
    "set_random_seed",
    "download_url",
    "read_image",
    "collect_env_info",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents) unless it exists; another process creating it first is fine."""
    if not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def check_isfile(fpath: str) -> bool:
    """``os.path.isfile`` that also warns (naming the path) when the answer is no."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def log_warning(message: str) -> None:
    """A warning that belongs to the run's record (why a run resumed from an older checkpoint or
    restarted): printed like the run's other messages, so dassl's logger writes it to the console
    and ``log.txt``; ``warnings.warn`` would drop it from the log and vanish under
    ``PYTHONWARNINGS=ignore``."""
    print(f"Warning: {message}")


def read_json(fpath: str) -> Any:
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as indented JSON, creating the parent directory first."""
    mkdir_if_missing(osp.dirname(fpath) or ".")
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def set_random_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all CUDA devices). cuDNN flags are left untouched."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def download_url(url: str, dst: str) -> None:
    """Download ``url`` to ``dst`` with a one-line textual progress indicator."""
    print(f'* url="{url}"')
    print(f'* destination="{dst}"')
    start = time.time()

    def _report(count: int, block_size: int, total_size: int) -> None:
        if count == 0:
            return
        duration = max(time.time() - start, 1e-6)
        done = count * block_size
        speed = int(done / (1024 * duration))
        percent = min(int(done * 100 / total_size), 100) if total_size > 0 else 0
        sys.stdout.write(f"\r...{percent}%, {done // (1024 * 1024)} MB, {speed} KB/s, {int(duration)} seconds passed")
        sys.stdout.flush()

    mkdir_if_missing(osp.dirname(dst) or ".")
    urllib.request.urlretrieve(url, dst, _report)
    sys.stdout.write("\n")


def read_image(path: str) -> Image.Image:
    """Read an image file as an RGB ``PIL.Image``.

    Raises ``FileNotFoundError`` for a missing file and ``OSError`` naming the file when it
    exists but cannot be decoded (truncated download, not an image, ...).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Image file not found: "{path}". Check DATASET.ROOT and the split files.')
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise OSError(
            f'Cannot read image "{path}" ({type(e).__name__}: {e}). The file is corrupt or not an '
            "image; re-download or remove it from the dataset."
        ) from e


def collect_env_info() -> str:
    """torch's environment report plus the Pillow version."""
    from torch.utils.collect_env import get_pretty_env_info

    env_str = get_pretty_env_info()
    env_str += f"\n        Pillow ({PIL.__version__})"
    return env_str


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """``os.listdir`` without dot-files; filesystem order unless ``sort``."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: Sequence[str]) -> str:
    """Candidate of ``b`` with the highest difflib ratio to ``a`` (ties go to the later one)."""
    best_name, best_ratio = b[0] if b else "", -1.0
    for name in b:
        ratio = difflib.SequenceMatcher(None, a, name).ratio()
        if ratio >= best_ratio:
            best_name, best_ratio = name, ratio
    return best_name


def check_availability(requested: str, available: Sequence[str]) -> None:
    """Raise ``ValueError`` (listing the choices and the closest one) if ``requested`` is unknown."""
    if requested not in available:
        closest = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            f"The requested one is expected to belong to {list(available)}, but got [{requested}] "
            f"(do you mean [{closest}]?)"
        )


def tolist_if_not(x: Any) -> list:
    """Wrap anything that is not a ``list`` (tuples included) into a one-element list."""
    if not isinstance(x, list):
        x = [x]
    return x
