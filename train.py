#!/usr/bin/env python
"""Train or evaluate a CLIP prompt learner (the CoOp / MaPLe / GOPro command line).

    python train.py --root DATA --seed 1 --trainer GOPro \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/GOPro/vit_b16.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

The arguments and the config they build (merge order, plugin discovery, ``--load-epoch last``)
live in ``runs/cli.py``; this file runs them: output folder, log, seed, run
record, then training or evaluation. Under ``torchrun`` the process group is set up from the
environment (see README, "Multi-GPU").
"""
from __future__ import annotations

import os
import sys
import time
from typing import List, Optional

from runs.cli import build_parser, setup_cfg  # (first: it quiets pkg_resources)

import torch  # noqa: E402

from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import collect_env_info, set_random_seed, setup_logger  # noqa: E402
from dassl.utils.torchtools import remove_temp_files  # noqa: E402
from runs import identity as run_identity  # noqa: E402  (what a run records: config.yaml, run.json)
from runs.records import resolve_load_epoch  # noqa: E402


def prepare_output_dir(path: str) -> Optional[str]:
    """Create OUTPUT_DIR and check that a file can be written there, so that an unusable folder
    fails at once with the fix instead of as a raw OSError in the logger or at the first
    checkpoint (which would cost a training epoch). Then lock it for this run: a second run on
    the same folder stops here, naming the holder (dassl/utils/output_lock.py). Returns the
    warning to log when the lock of a killed run was taken over."""
    import tempfile

    from dassl.utils.output_lock import lock_output_dir

    if path.endswith((".txt", ".log")):  # upstream quirk: such an OUTPUT_DIR names the log file itself
        path = os.path.dirname(path) or "."
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OSError(
            f"Cannot write to the output directory {path!r} ({type(exc).__name__}: {exc.strerror or exc}). "
            "Pass a writable --output-dir (is a file in the way, or the disk full or read-only?)."
        ) from exc
    return lock_output_dir(path)


def rotate_previous_log(output_dir: str) -> None:
    """Keep ``log.txt`` for the newest run: an earlier log (e.g. of an interrupted run that is now
    resumed) moves to ``log.txt-<its time>``. Upstream keeps the oldest in log.txt instead, so
    parsers that read log.txt would never see a resumed run's result."""
    from dassl.utils.distributed import is_main_process

    path = os.path.join(output_dir, "log.txt")
    if os.path.isfile(path) and is_main_process():
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(os.path.getmtime(path)))
        target = f"{path}-{stamp}"
        while os.path.exists(target):
            target += "-1"
        os.replace(path, target)


def remove_leftover_temp_files(output_dir: str) -> None:
    """Temp files that a run killed while writing its run.json / config.yaml left in the run folder
    (the trainer cleans its model sub-folders itself); safe, since this process holds the folder."""
    for path in remove_temp_files(str(run_identity.output_folder(output_dir))):
        print(f"Removed {path} (left by a run killed while writing)")


def set_aside_failed_log(output_dir: str) -> None:
    """Rename the log of a run that failed before it started to ``log.txt-failed-<time>``: kept for
    reading, but no longer the folder's ``log.txt`` (which the run-identity check reads)."""
    path = os.path.join(output_dir, "log.txt")
    if not os.path.isfile(path):
        return
    target = f"{path}-failed-{time.strftime('%Y-%m-%d-%H-%M-%S')}"
    os.replace(path, target)
    logger = sys.stdout
    if getattr(getattr(logger, "file", None), "name", None) == path:  # dassl's Logger: keep teeing, under the new name
        logger.file.close()
        logger.file = open(target, "a")


def check_registered(name: str, registry, key: str) -> None:
    from dassl.utils import check_availability

    try:
        check_availability(name, registry.registered_names())
    except ValueError as exc:
        raise ValueError(f"Unknown {key}: {exc}") from exc


def check_inputs(cfg) -> None:
    """Raise the errors the config alone reveals before the ~280 lines of config and environment
    dump, where they would scroll out of sight: the trainer and dataset names, and a dataset root
    that must exist (every dataset that cannot download itself, i.e. all but Dassl's DG sets)."""
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import TRAINER_REGISTRY
    from datasets.coop_common import dataset_root

    check_registered(cfg.TRAINER.NAME, TRAINER_REGISTRY, "trainer (--trainer / TRAINER.NAME)")
    check_registered(cfg.DATASET.NAME, DATASET_REGISTRY, "dataset (DATASET.NAME in --dataset-config-file)")
    if not getattr(DATASET_REGISTRY.get(cfg.DATASET.NAME), "data_url", ""):
        dataset_root(cfg)


def print_banner(title: str) -> None:
    line = "*" * (len(title) + 6)
    print(f"{line}\n** {title} **\n{line}")


def main(args) -> None:
    from dassl.utils.distributed import init_distributed_from_env, shutdown_distributed

    if args.check_finished:
        sys.exit(run_identity.check_folder(setup_cfg(args), args))
    init_distributed_from_env()
    run(args)
    shutdown_distributed()


def run(args) -> None:
    cfg = setup_cfg(args)
    check_inputs(cfg)
    if args.eval_only:
        args.load_epoch = resolve_load_epoch(args.load_epoch, args.model_dir)  # "last": the epoch number
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    run_identity.check_record(cfg, args)  # a folder with another run's settings stops here, before any write
    takeover = prepare_output_dir(cfg.OUTPUT_DIR)
    from dassl.utils.distributed import is_main_process
    from dassl.utils.tools import log_warning

    if is_main_process():
        remove_leftover_temp_files(cfg.OUTPUT_DIR)
    rotate_previous_log(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR)
    if takeover:
        log_warning(takeover)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_banner("Arguments")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print_banner("Config")
    print(cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    # The run's record (config.yaml, run.json) is written once the run really starts: a run that
    # fails while its trainer, data or checkpoint is set up leaves no record, and its log is set
    # aside, so that its folder does not look like a run (to the scripts, the jobs, the report).
    try:
        trainer = build_trainer(cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
    except BaseException:
        if is_main_process():
            set_aside_failed_log(cfg.OUTPUT_DIR)
        raise
    run_identity.record(cfg, args, main_process=is_main_process())
    if args.eval_only:
        trainer.test()
        return
    if not args.no_train:
        from tools.memory import warn_if_memory_short

        warn_if_memory_short(cfg, trainer)  # CUDA only
        trainer.train()


DEBUG_ENV = "GOPRO_DEBUG"
# What bad input raises, with a message that explains it; any other type (KeyError, TypeError, ...)
# is most likely a bug, and its name belongs in the line.
EXPLAINED_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError)


def report_fatal(exc: BaseException) -> None:
    """A fatal error ends the console output with one line, ``Error: <message>``, on stderr. The
    traceback goes to log.txt when the run got that far, and to the console only with
    ``GOPRO_DEBUG=1``: the messages say what is wrong and how to fix it, a traceback buries them."""
    import traceback

    trace = "".join(traceback.format_exception(exc))
    log = getattr(sys.stdout, "file", None)  # dassl's Logger tees stdout into OUTPUT_DIR/log.txt
    if log is not None and not log.closed:
        log.write(trace)
        log.flush()
    sys.stdout.flush()
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        sys.stderr.write(trace)
    else:
        where = f"in {log.name}, or " if log is not None else ""
        sys.stderr.write(f"(traceback: {where}rerun with {DEBUG_ENV}=1)\n")
    message = " ".join(line.strip() for line in str(exc).splitlines())
    if not message or not isinstance(exc, EXPLAINED_ERRORS):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    sys.stderr.write(f"Error: {message}\n")


def cli(argv: List[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        main(args)
    except Exception as exc:  # noqa: BLE001 - every failure gets the same one-line ending
        report_fatal(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(cli(sys.argv[1:]))
