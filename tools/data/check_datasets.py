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

Everything it knows about a dataset comes from the dataset class itself: the folder names the
loader uses (``dataset_dir``, ``image_subdir``, ``split_filename``) and the facts the tools share
(``DatasetFacts`` in ``datasets/facts.py``: class count, download ids, required files, layout
probes, ...).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


from datasets.facts import CLASS_FOLDERS, COOP_BENCHMARKS, benchmark_class


# --------------------------------------------------------------------------------------------------
# Findings


@dataclass
class Report:
    """The outcome for one dataset: problems fail the check (one per thing wrong, so the count in
    the status line is the number of things to fix), fixes say what to do about several problems
    at once, notes are informational."""

    name: str
    path: Path
    problems: List[str] = field(default_factory=list)
    fixes: List[str] = field(default_factory=list)
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
        out += [f"         fix: {fix}" for fix in self.fixes]
        out += [f"         note: {note}" for note in self.notes]
        return out


# --------------------------------------------------------------------------------------------------
# The benchmarks


@functools.lru_cache(maxsize=None)
def benchmarks() -> Dict[str, type]:
    """Config name -> loader class of every CoOp benchmark, in table order (imports the engine once)."""
    return {name: benchmark_class(name) for name in COOP_BENCHMARKS}


def resolve(name: str) -> str:
    """The config name of a benchmark named by config name, registry name or folder name (any case)."""
    wanted = name.strip().lower().removesuffix(".yaml")
    for key, cls in benchmarks().items():
        if wanted in (key.lower(), cls.__name__.lower(), cls.dataset_dir.lower()):
            return key
    raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(COOP_BENCHMARKS)}")


# --------------------------------------------------------------------------------------------------
# Generic checks


def _normalized(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def find_misplaced_folder(data_root: Path, cls: type) -> Optional[str]:
    """A folder in DATA/ that is probably the dataset of ``cls`` under another name, with the fix."""
    if not data_root.is_dir():
        return None
    folder, image_subdir = cls.dataset_dir, cls.image_subdir
    wanted = {_normalized(folder)} | {_normalized(alias) for alias in cls.folder_aliases}
    for entry in sorted(data_root.iterdir()):
        if entry.is_dir() and entry.name != folder and _normalized(entry.name) in wanted:
            return f"found {entry.name}/ instead; fix: rename it to {folder}/ (mv {entry} {data_root / folder})"
    if image_subdir and (data_root / image_subdir).is_dir():
        return f"found {image_subdir}/ directly in {data_root}; fix: move it into {folder}/ ({folder}/{image_subdir}/)"
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


def _drive_fix(cls: type, filename: str, dataset_dir: Path) -> str:
    drive_id = cls.download_ids.get(filename)
    if drive_id:
        return f"gdown {drive_id} -O {dataset_dir / filename}"
    return "see DATASETS.md"


def _short(exc: BaseException) -> str:
    """A loader error without its generic 'See DATASETS.md ... check_datasets' tail."""
    return str(exc).split(" See DATASETS.md (section")[0]


def _dry_run(cls: type, data_root: Path, report: Report) -> Optional[Dict[str, list]]:
    """Run the loader's reading code (no writes), summarise what a run would get, return the lists."""
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            lists = cls.dry_run(str(data_root))
    except Exception as exc:  # any loader failure is a finding, reported in the loader's words
        report.problems.append(f"{type(exc).__name__}: {_short(exc)}")
        return None
    finally:
        report.notes += [line.removeprefix("Note: ") for line in stdout.getvalue().splitlines()
                         if line.startswith("Note: ")]
    labels = {item.label for item in next(iter(lists.values()))}
    sizes = " / ".join(f"{key} {len(items):,}" for key, items in lists.items())
    report.summary = f"{len(labels)} classes, {sizes}"
    if len(labels) != cls.full_num_classes:
        report.notes.append(f"{len(labels)} classes found, the full dataset has {cls.full_num_classes} "
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
        report.problems += [f"unreadable: {path} ({error})" for path, error in bad]
        report.fixes.append(f"{len(bad)} of {len(paths):,} images cannot be decoded: download or extract them "
                            "again (DATALOADER.SKIP_CORRUPT True would skip them at run time)")


def _check_files(cls: type, dataset_dir: Path, report: Report) -> None:
    """The dataset's own layout probes, then its image folder and the files every run reads."""
    report.problems += cls.layout_problems(dataset_dir)
    if cls.image_subdir and not report.problems:  # a probe that fired already explains the image folder
        _require(dataset_dir, cls.image_subdir + "/", report, "see DATASETS.md for the expected tree")
    for relative in cls.required_files:
        fix = cls.missing_file_fixes.get(relative) or _drive_fix(cls, relative, dataset_dir)
        _require(dataset_dir, relative, report, fix)


def _check_split_sources(cls: type, dataset_dir: Path, report: Report) -> None:
    """The split file, or the raw files a run creates it from (read on every run when there is none)."""
    split = getattr(cls, "split_filename", "")  # the ImageNet variants have no split file
    if not split:
        for relative in cls.raw_files:
            _require(dataset_dir, relative, report, "see DATASETS.md")
    elif not (dataset_dir / split).is_file():
        missing = [r for r in cls.raw_files if r != CLASS_FOLDERS and not (dataset_dir / r).exists()]
        if not missing:
            report.notes.append(f"no {split}: the first run creates a random split from the raw files; the "
                                f"published one: {_drive_fix(cls, split, dataset_dir)}")
        else:
            report.problems.append(f"missing {split}; fix: {_drive_fix(cls, split, dataset_dir)} (or provide "
                                   f"the raw files it is created from:)")
            for relative in missing:
                _require(dataset_dir, relative, report, "see DATASETS.md")


def check_dataset(data_root: str | Path, name: str, decode: bool = True, workers: int = 1) -> Report:
    """Check one dataset folder; ``decode`` also decodes every image (``workers`` threads)."""
    key = resolve(name)
    cls = benchmarks()[key]
    data_root = Path(data_root).expanduser().resolve()
    dataset_dir = data_root / cls.dataset_dir
    report = Report(key, dataset_dir)
    if not data_root.is_dir():
        report.problems.append(f"DATA folder {data_root} does not exist; fix: pass the folder that holds "
                               f"the dataset folders (DATASET.ROOT / --root)")
        return report
    if not dataset_dir.is_dir():
        hint = find_misplaced_folder(data_root, cls)
        report.problems.append(f"missing {cls.dataset_dir}/; " + (hint or f"fix: download it ({cls.sources[0]}; "
                                                                           f"DATASETS.md, section '{cls.__name__}')"))
        return report

    _check_files(cls, dataset_dir, report)
    _check_split_sources(cls, dataset_dir, report)
    for pickle_file in sorted(dataset_dir.glob("split_fewshot/*.pkl")) + sorted(dataset_dir.glob("preprocessed.pkl")):
        report.notes.append(f"{pickle_file.relative_to(dataset_dir)} is ignored (pickle caches are never loaded)")
    lists = _dry_run(cls, data_root, report) if not report.problems else None
    if lists and decode:
        _decode_all(lists, report, workers)
    return report


def check_all(data_root: str | Path, names: Sequence[str] = (), decode: bool = True, workers: int = 1) -> List[Report]:
    return [check_dataset(data_root, name, decode, workers) for name in (names or COOP_BENCHMARKS)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the folder holding the dataset folders (DATASET.ROOT)")
    parser.add_argument("names", nargs="*", help=f"datasets to check (default: all): {', '.join(COOP_BENCHMARKS)}")
    parser.add_argument("--fast", action="store_true", help="check the layout and splits only, do not decode images")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8),
                        help="threads decoding images (default: the CPU count, at most 8)")
    args = parser.parse_args(argv)
    try:
        keys = [resolve(name) for name in args.names]
    except KeyError as exc:
        parser.error(exc.args[0])
    reports = check_all(args.data, keys, decode=not args.fast, workers=args.workers)
    for report in reports:
        print("\n".join(report.lines()))
    failed = [r.name for r in reports if not r.ok]
    if failed:
        print(f"\n{len(failed)} of {len(reports)} dataset(s) need fixing: {', '.join(failed)} (see DATASETS.md)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
