#!/usr/bin/env python
"""Train or evaluate a CLIP prompt learner (the CoOp / MaPLe / GOPro command line).

    python train.py --root DATA --seed 1 --trainer GOPro \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/GOPro/vit_b16.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Config merge order: defaults (+ every trainer's keys) → dataset file → method file → flags →
trailing ``KEY VALUE`` pairs. Every module in ``datasets/`` and ``trainers/`` is imported, so a
new dataset or trainer file registers itself without editing this script. Under ``torchrun`` the
process group is set up from the environment (see README, "Multi-GPU").
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
import warnings
from types import ModuleType
from typing import List

# The CLIP package imports pkg_resources, which warns on every start (setuptools < 81 is pinned).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import torch  # noqa: E402

from dassl.config import check_keys, get_cfg_default, leaf_keys  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import collect_env_info, set_random_seed, setup_logger  # noqa: E402
from tools.experiments import run_identity  # noqa: E402  (what a run records: config.yaml, run.json)

PLUGIN_PACKAGES = ("datasets", "trainers")

# The trainer nodes the upstream clients' train.py define (CoOp/CoCoOp, MaPLe/IVLP/VPT, GOPro, PromptSRC), with
# their defaults, so that their trainer files run here unchanged. Our trainer modules replace these
# nodes with supersets (their ``extend_cfg``).
UPSTREAM_TRAINER_NODES = {
    "COOP": dict(N_CTX=16, CSC=False, CTX_INIT="", PREC="fp16", CLASS_TOKEN_POSITION="end"),
    "COCOOP": dict(N_CTX=16, CTX_INIT="", PREC="fp16"),
    "MAPLE": dict(N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9),
    "IVLP": dict(N_CTX_VISION=2, N_CTX_TEXT=2, CTX_INIT="a photo of a", PREC="fp16",
                 PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9),
    "VPT": dict(N_CTX_VISION=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=1),
    "GOPRO": dict(N_CTX=4, CTX_INIT="a photo of a", PREC="fp16"),
    "PROMPTSRC": dict(N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=9,
                      PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25, IMAGE_LOSS_WEIGHT=10, GPA_MEAN=15, GPA_STD=1),
}


def import_plugins() -> List[ModuleType]:
    """Import every module of ``datasets/`` and ``trainers/`` (they register themselves)."""
    modules = []
    for package_name in PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            modules.append(importlib.import_module(f"{package_name}.{info.name}"))
    return modules


def extend_cfg(cfg, modules: List[ModuleType]) -> None:
    """Keys the CLIP clients add to Dassl's tree, then each plugin module's own ``extend_cfg``."""
    from yacs.config import CfgNode as CN

    for node, keys in UPSTREAM_TRAINER_NODES.items():
        cfg.TRAINER[node] = CN(keys)
    if "PATH" not in cfg.MODEL.BACKBONE:
        cfg.MODEL.BACKBONE.PATH = ""  # a local CLIP checkpoint file (trainers/clip_backbone.py)
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    if "SKIP_CORRUPT" not in cfg.DATALOADER:
        cfg.DATALOADER.SKIP_CORRUPT = False  # skip (and count) unreadable images instead of failing
    # GOPro's train.py defines these; only LOSS.NAME was ever read. Kept for CLI compatibility.
    cfg.LOSS = CN()
    cfg.LOSS.GM = False
    cfg.LOSS.NAME = ""
    cfg.LOSS.ALPHA = 0.0
    cfg.LOSS.T = 1.0
    cfg.LOSS.LAMBDA = 1.0
    for module in modules:
        hook = getattr(module, "extend_cfg", None)
        if callable(hook):
            hook(cfg)


def reset_cfg(cfg, args) -> None:
    """Copy the command-line flags onto the config, each only when given (upstream semantics)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:  # upstream quirk kept: --seed 0 means "unseeded"
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def merge_file(cfg, path: str, what: str) -> None:
    """Merge a YAML file into ``cfg``; unknown keys are named with the closest valid ones first."""
    import yaml

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist (see configs/ for the shipped files).")
    try:
        with open(path) as f:
            loaded = cfg.load_cfg(f)
    except yaml.YAMLError as exc:
        raise ValueError(f"Bad {what} {path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    check_keys(cfg, leaf_keys(loaded), f"in {what} {path}")
    try:
        cfg.merge_from_other_cfg(loaded)
    except (KeyError, ValueError, AssertionError) as exc:
        raise ValueError(f"Bad {what} {path}: {exc}") from exc


def merge_options(cfg, opts: List[str]) -> None:
    """Merge the trailing ``KEY VALUE`` pairs of the command line (yacs' ``merge_from_list``)."""
    if len(opts) % 2:
        raise ValueError(f"The trailing options must be KEY VALUE pairs; {opts[-1]!r} has no value.")
    check_keys(cfg, opts[0::2], "from the command line")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as exc:
        raise ValueError(f"Bad command-line option (trailing KEY VALUE pairs): {exc}") from exc


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg, import_plugins())
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file, "dataset config file")
    if args.config_file:
        merge_file(cfg, args.config_file, "method config file")
    reset_cfg(cfg, args)
    merge_options(cfg, args.opts or [])
    cfg.freeze()
    return cfg


def prepare_output_dir(path: str) -> None:
    """Create OUTPUT_DIR and check that a file can be written there, so that an unusable folder
    fails at once with the fix instead of as a raw OSError in the logger or at the first
    checkpoint (which would cost a training epoch). Then lock it for this run: a second run on
    the same folder stops here, naming the holder (dassl/utils/output_lock.py)."""
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
    lock_output_dir(path)


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
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    prepare_output_dir(cfg.OUTPUT_DIR)
    from dassl.utils.distributed import is_main_process

    run_identity.record(cfg, args, main_process=is_main_process())
    rotate_previous_log(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_banner("Arguments")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print_banner("Config")
    print(cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--check-finished", action="store_true",
                        help="run nothing: say whether --output-dir holds this run, finished with these settings "
                             "(exit 0), still to run (1) or made with other settings (3); see tools/experiments/run_identity.py")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return parser


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
