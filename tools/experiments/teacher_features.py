"""Export a finished teacher run for distillation (PromptKD): the text features of ALL classes of
its dataset, its image-tower prompts, its backbone and the digest of its run.json, into
``<RUN>/teacher_features.pt`` (``trainers/promptkd.py``: ``export_teacher``, ``TeacherRecord``).

    python -m tools.experiments.teacher_features RUN [--load-epoch N] [--if-outdated]
    python -m tools.experiments.teacher_features --of METHOD DATASET SEED [--if-outdated]

``--of``: the teacher run of METHOD's base-to-new run on DATASET / SEED, where the scripts put it
(their environment: OUTPUT, SHOTS ...); what ``scripts/promptkd/teacher_export.sh`` runs. The
teacher is rebuilt from the run's own config.yaml for all classes (a base-to-new teacher was
trained on the base classes; the student needs every class) with its last checkpoint (or
``--load-epoch N``). ``--if-outdated`` skips a run whose export is current. A student exports its
teacher itself where this was not done, so this command is needed only to export ahead.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from runs import cli  # first: it quiets pkg_resources


def template_config():
    """A config with every key our train.py defines (the teacher's config.yaml is merged into it)."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cli.extend_cfg(cfg, cli.import_plugins())
    return cfg


def teacher_folder_of(method_key: str, dataset: str, seed: str) -> str:
    """The teacher run of a distilled method's base-to-new run, where the scripts put it (their
    environment: OUTPUT, SHOTS ...)."""
    from runs.methods import get_method
    from runs.steps import Caller, dataset_config, seed_of, teacher_folder

    method = get_method(method_key)
    if method.teacher is None:
        raise ValueError(f"{method.key} has no teacher (registry entry without 'teacher').")
    dataset_config(dataset)
    return str(teacher_folder(method, Caller.from_environ(os.environ), dataset, seed_of(seed)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from trainers.promptkd import export_teacher, is_current

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run", nargs="?", help="the teacher's training run folder")
    parser.add_argument("--of", nargs=3, metavar=("METHOD", "DATASET", "SEED"),
                        help="the teacher of METHOD's base-to-new run (the scripts' layout)")
    parser.add_argument("--load-epoch", type=int, metavar="N", help="checkpoint epoch (default: the last)")
    parser.add_argument("--if-outdated", action="store_true", help="skip a run whose export is current")
    args = parser.parse_args(argv)
    if bool(args.run) == bool(args.of):
        parser.error("give a RUN folder or --of METHOD DATASET SEED")
    try:
        run = args.run or teacher_folder_of(*args.of)
        if args.if_outdated and is_current(run):
            print(f"Teacher features of {run} are current (skip)")
            return 0
        export_teacher(template_config(), run, args.load_epoch)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"Error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
