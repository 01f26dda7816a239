#!/usr/bin/env python
"""Download the files the CoOp authors publish on Google Drive (split files, class-name files,
UCF101 mid-frames) into the expected places under DATA/. Needs internet and ``gdown``.

    python -m tools.data.download_splits DATA                 # everything, for the datasets present
    python -m tools.data.download_splits DATA oxford_pets ucf101 --dry-run

Only the dataset folders that already exist are served (the images come from the original
sources, see DATASETS.md), unless ``--create`` is given. Existing files are kept unless
``--force``. ``imagenet/classnames.txt`` is also copied into the ImageNet variants' folders that
lack one, and ``UCF-101-midframes.zip`` is extracted in ``ucf101/``. The Drive ids are the dataset
classes' ``download_ids`` (``datasets/facts.py``), next to the rest of the per-dataset knowledge.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from tools.data.check_datasets import COOP_BENCHMARKS, benchmarks, resolve


@dataclass(frozen=True)
class Download:
    dataset: str  # config name
    drive_id: str
    target: Path  # absolute file path

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?id={self.drive_id}"

    @property
    def present(self) -> bool:
        """The file is there (for a .zip: or the folder it extracts to)."""
        return self.target.exists() or (self.target.suffix == ".zip" and self.target.with_suffix("").is_dir())


def planned_downloads(data_root: str | Path, names: Sequence[str] = ()) -> List[Download]:
    """Every (Drive id -> target file) pair for the chosen datasets, in table order."""
    root = Path(data_root).expanduser().resolve()
    keys = [resolve(name) for name in names] or COOP_BENCHMARKS
    return [Download(key, drive_id, root / benchmarks()[key].dataset_dir / relative)
            for key in keys for relative, drive_id in benchmarks()[key].download_ids.items()]


def fetch(download: Download) -> None:
    import gdown

    download.target.parent.mkdir(parents=True, exist_ok=True)
    if gdown.download(id=download.drive_id, output=str(download.target), quiet=False) is None:
        raise RuntimeError(f"download of {download.url} to {download.target} failed")
    if download.target.suffix == ".zip":
        with zipfile.ZipFile(download.target) as archive:
            archive.extractall(download.target.parent)


def copy_imagenet_classnames(root: Path, log: Callable[[str], None] = print) -> List[Path]:
    """Copy ``imagenet/classnames.txt`` into each existing ImageNet-variant folder that lacks one."""
    from datasets.coop_common import ImageNetVariant

    source = root / benchmarks()["imagenet"].dataset_dir / "classnames.txt"
    copied = []
    if not source.is_file():
        return copied
    for cls in (cls for cls in benchmarks().values() if issubclass(cls, ImageNetVariant)):
        target = root / cls.dataset_dir / "classnames.txt"
        if target.parent.is_dir() and not target.exists():
            shutil.copyfile(source, target)
            log(f"copied {source} -> {target}")
            copied.append(target)
    return copied


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the folder holding the dataset folders (DATASET.ROOT)")
    parser.add_argument("names", nargs="*", help=f"datasets (default: all): {', '.join(COOP_BENCHMARKS)}")
    parser.add_argument("--dry-run", action="store_true", help="only print what would be downloaded")
    parser.add_argument("--create", action="store_true", help="also create missing dataset folders")
    parser.add_argument("--force", action="store_true", help="download even if the file exists")
    args = parser.parse_args(argv)
    try:
        downloads = planned_downloads(args.data, args.names)
    except KeyError as exc:
        parser.error(exc.args[0])
    failures = 0
    for download in downloads:
        if not download.target.parent.is_dir() and not args.create:
            print(f"skip  {download.target} ({download.target.parent} does not exist; --create to make it)")
        elif download.present and not args.force:
            print(f"keep  {download.target} (exists)")
        elif args.dry_run:
            print(f"would download {download.url} -> {download.target}")
        else:
            try:
                fetch(download)
            except Exception as exc:  # report and go on with the other files
                print(f"FAILED {download.url} -> {download.target}: {exc}")
                failures += 1
    if not args.dry_run:
        copy_imagenet_classnames(Path(args.data).expanduser().resolve())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
