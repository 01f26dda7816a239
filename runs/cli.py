"""train.py's command line, importable: the argument parser, the config it builds, and the epoch an
evaluation loads. ``train.py`` runs it; tools, tests and benchmarks build the same config without
running anything (``setup_cfg(build_parser().parse_args(argv))``).

Config merge order: defaults (+ every trainer's keys) → dataset file → method file → flags →
trailing ``KEY VALUE`` pairs. Every module in ``datasets/`` and ``trainers/`` is imported, so a
new dataset or trainer file registers itself without editing anything here.

``--load-epoch last`` is the final epoch of the training run in ``--model-dir`` (``runs.records.last_epoch``),
so that no script repeats a config's ``OPTIM.MAX_EPOCH``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import warnings
from types import ModuleType
from typing import List

# The CLIP package imports pkg_resources, which warns on every start (setuptools < 81 is pinned).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

from dassl.config import check_keys, get_cfg_default, leaf_keys  # noqa: E402

from runs.records import epoch_argument  # noqa: E402

DESCRIPTION = "Train or evaluate a CLIP prompt learner (the CoOp / MaPLe / GOPro command line)."
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
    if "OPEN_CLIP_CONFIG" not in cfg.MODEL.BACKBONE:
        cfg.MODEL.BACKBONE.OPEN_CLIP_CONFIG = ""  # a local open_clip model config JSON (trainers/open_clip_backbone.py)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
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
    parser.add_argument("--load-epoch", type=epoch_argument, metavar="N|last",
                        help="load model weights at this epoch for evaluation ('last': the final epoch of the "
                             "training run in --model-dir)")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--check-finished", action="store_true",
                        help="run nothing: say whether --output-dir holds this run, finished with these settings "
                             "(exit 0), still to run (1) or made with other settings (3); see runs/identity.py")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return parser




# --------------------------------------------------------------------------------------------
# --load-epoch last
