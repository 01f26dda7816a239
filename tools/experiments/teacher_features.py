"""Export a finished teacher run for distillation (PromptKD): the text features of ALL classes of
its dataset, its image-tower prompts, its backbone and the digest of its run.json, into
``<RUN>/teacher_features.pt`` (``trainers/promptkd.py``, ``TeacherRecord``).

    python -m tools.experiments.teacher_features RUN [--load-epoch N|last] [--if-outdated]

The teacher is rebuilt from the run's own ``config.yaml`` with ``DATASET.SUBSAMPLE_CLASSES all``
(a base-to-new teacher was trained on the base classes; the student needs every class), and its
checkpoint of the last epoch (or ``--load-epoch N``) is loaded. Any trainer whose class prompts do
not depend on the image works as a teacher (``model.text_features()``: PromptSRC, IVLP, CoOp ...);
its ``image_encoder.*`` prompts, where it has them, prompt the teacher's image tower.
``--if-outdated`` exports only when the file is missing or was exported from another run (digest).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

from tools.experiments import train_cli  # first: it quiets pkg_resources
from tools.experiments.run_identity import CONFIG_FILE, read_identity


def teacher_config(run: Path):
    """The run's config, for all classes of its dataset."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    train_cli.extend_cfg(cfg, train_cli.import_plugins())
    train_cli.merge_file(cfg, str(run / CONFIG_FILE), "teacher run config")
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.freeze()
    return cfg


def prompt_shape(node, tokens: str, depth: str) -> list:
    """[tokens, depth] of one tower's prompts from the teacher's config node ([0, 0]: none)."""
    return [int(node.get(tokens, 0)), int(node.get(depth, 0))]


def export(run: Union[str, Path], load_epoch: Union[int, str] = train_cli.LAST_EPOCH) -> Path:
    """Write ``<run>/teacher_features.pt``; returns its path."""
    import torch

    from dassl.engine import build_trainer
    from trainers.promptkd import IMAGE_PROMPTS, TEACHER_FILE, TeacherRecord

    run = Path(run)
    identity = read_identity(run)
    if identity is None or not (run / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run} is not a run folder of train.py (no run.json and config.yaml): give the "
                                f"output folder of the teacher's training run.")
    cfg = teacher_config(run)
    epoch = train_cli.resolve_load_epoch(load_epoch, str(run))
    trainer = build_trainer(cfg)
    if not hasattr(trainer.model, "text_features"):
        raise ValueError(f"Trainer {cfg.TRAINER.NAME} has image-conditioned class prompts (no text_features()): a "
                         f"teacher needs one set of class features (PromptSRC, IVLP, CoOp ...).")
    trainer.load_model(str(run), epoch=epoch)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        text_features = trainer.model.text_features().float().cpu()
    node = cfg.TRAINER.get(getattr(trainer, "CFG_NODE", ""), {})
    record = TeacherRecord(
        text_features=text_features, classnames=list(trainer.dm.dataset.classnames),
        image_prompts={k: v.detach().float().cpu() for k, v in trainer.model.learnable.state_dict().items()
                       if k.startswith(IMAGE_PROMPTS)},
        prompt_shapes={"vision": prompt_shape(node, "N_CTX_VISION", "PROMPT_DEPTH_VISION"),
                       "text": prompt_shape(node, "N_CTX_TEXT", "PROMPT_DEPTH_TEXT")},
        backbone=cfg.MODEL.BACKBONE.NAME, backbone_path=os.path.abspath(cfg.MODEL.BACKBONE.PATH) if
        cfg.MODEL.BACKBONE.PATH else "", run=str(run.resolve()), digest=identity["digest"], epoch=int(epoch))
    path = run / TEACHER_FILE
    partial = path.with_suffix(".partial")
    record.save(str(partial))
    partial.replace(path)  # a reader never sees half a file
    print(f"Teacher features of {len(record.classnames)} classes ({record.backbone}, epoch {epoch}) -> {path}")
    return path


def is_current(run: Union[str, Path]) -> bool:
    """Whether ``<run>/teacher_features.pt`` was exported from the run the folder holds now."""
    from trainers.promptkd import TEACHER_FILE, TeacherRecord

    path, identity = Path(run) / TEACHER_FILE, read_identity(Path(run))
    return path.is_file() and identity is not None and TeacherRecord.load(str(path)).digest == identity["digest"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run", help="the teacher's training run folder")
    parser.add_argument("--load-epoch", type=train_cli.epoch_argument, default=train_cli.LAST_EPOCH, metavar="N|last")
    parser.add_argument("--if-outdated", action="store_true", help="skip a run whose export is current")
    args = parser.parse_args(argv)
    if args.if_outdated and is_current(args.run):
        print(f"Teacher features of {args.run} are current (skip)")
        return 0
    try:
        export(args.run, args.load_epoch)
    except (FileNotFoundError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
