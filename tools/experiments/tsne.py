#!/usr/bin/env python
"""Figure 3: t-SNE of the visual embeddings of the base-class test images, one panel per method.

    python -m tools.experiments.tsne --output-root output --root DATA --dataset eurosat --seed 1 \
        --methods slip cocoop gopro --out output/figures/tsne_eurosat_seed1.png

Each method's trainer is built exactly as ``train.py`` builds it (same parser, same config merge,
``DATASET.SUBSAMPLE_CLASSES base``), its base-to-new checkpoint of that seed is loaded from the
output tree (``runs/layout.py``; zero-shot CLIP has none), and the base-class test images
are embedded with ``model.visual_embedding(x)``, the image side of the logits (the
``image_features`` of the model's output record, without the text pass; GOPro: normalize(P_v(f_v(x)));
CoOp: the frozen normalize(f_v(x))), or normalize(f_v(x)) for trainers without one. ``--run LABEL=TRAINER:CONFIG:DIR``
adds any other checkpoint. t-SNE (the paper's Figure 3; its settings are unknown): scikit-learn,
2-D, perplexity min(30, (n − 1) / 3), PCA init, ``random_state`` = the seed. Points are coloured by class.
The 2-D points are saved beside the PNG (``.npz``) to re-plot without recomputing.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from runs.layout import Layout
from runs.methods import get_method
from runs.records import last_epoch
from runs.steps import Caller

REPO = Path(__file__).resolve().parents[2]

PERPLEXITY = 30


@dataclass(frozen=True)
class Panel:
    """One method to embed: a trainer, its config and the checkpoint folder (None: no training)."""

    label: str
    trainer: str
    config: Path
    model_dir: Optional[Path]


# --------------------------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------------------------
def method_panel(layout: Layout, name: str, dataset: str, seed: int) -> Panel:
    """A registry method's base-to-new checkpoint of ``seed`` (the folder ``base2new_train.sh`` fills)."""
    method = get_method(name)
    cfg = method.cfg("b2n", dataset)
    # Zero-shot CLIP reads CoOp's config (its registry entry's config_folder).
    model_dir = None if method.zero_shot else layout.b2n_dir("train_base", dataset, method.folder, cfg, seed)
    return Panel(method.label, method.trainer, method.config_path(cfg), model_dir)


def custom_panel(spec: str) -> Panel:
    """``LABEL=TRAINER:CONFIG:MODEL_DIR`` (CONFIG: a YAML path or a name under configs/trainers/TRAINER/)."""
    try:
        label, rest = spec.split("=", 1)
        trainer, config, model_dir = rest.split(":", 2)
    except ValueError:
        raise SystemExit(f"Bad --run {spec!r}: use LABEL=TRAINER:CONFIG:MODEL_DIR, e.g. "
                         "GOPro=GOPro:vit_b16:output/base2new/train_base/eurosat/shots_16/GOPro/vit_b16/seed1")
    config_path = Path(config) if config.endswith(".yaml") else REPO / "configs" / "trainers" / trainer / f"{config}.yaml"
    return Panel(label, trainer, config_path, Path(model_dir) if model_dir else None)


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------
def build_trainer(panel: Panel, args, work_dir: Path):
    """The trainer train.py would build for this run, with the checkpoint of the last epoch loaded."""
    from runs import cli
    from dassl.engine import build_trainer as dassl_build_trainer
    from dassl.utils import set_random_seed

    dataset_config = REPO / "configs" / "datasets" / f"{args.dataset}.yaml"
    for path, what in ((panel.config, "method config"), (dataset_config, "dataset config")):
        if not path.is_file():
            raise SystemExit(f"{what} {path} does not exist (see configs/).")
    argv = ["--root", str(args.root), "--seed", str(args.seed), "--trainer", panel.trainer,
            "--output-dir", str(work_dir), "--dataset-config-file", str(dataset_config),
            "--config-file", str(panel.config), *(["--backbone", args.backbone] if args.backbone else []),
            "DATASET.NUM_SHOTS", str(args.shots), "DATASET.SUBSAMPLE_CLASSES", "base", *args.opts]
    cfg = cli.setup_cfg(cli.build_parser().parse_args(argv))
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    trainer = dassl_build_trainer(cfg)
    if panel.model_dir is not None:
        if not panel.model_dir.is_dir():
            raise SystemExit(f"No checkpoint folder {panel.model_dir} for {panel.label}: train it first "
                             f"(scripts/reproduce/fig3.sh, or the method's base2new_train.sh {args.dataset} {args.seed}).")
        trainer.load_model(str(panel.model_dir), epoch=args.epoch or last_epoch(str(panel.model_dir)))
    return trainer


def embed_images(trainer, images):
    """The method's visual embedding [B, E]: ``model.visual_embedding`` (= ``model(images).image_features``)
    or normalized frozen CLIP."""
    import torch.nn.functional as F

    model = getattr(trainer, "model", None)
    if model is not None and hasattr(model, "visual_embedding"):
        return model.visual_embedding(images)
    return F.normalize(trainer.backbone.encode_image(images).features, dim=-1)


def embed_test_set(trainer, max_images: int = 0):
    """Embeddings and labels of the trainer's test split (base classes here), in loader order."""
    import torch

    trainer.set_model_mode("eval")
    features, labels = [], []
    with torch.no_grad():
        for batch in trainer.test_loader:
            images, label = trainer.parse_batch_test(batch)
            features.append(embed_images(trainer, images).float().cpu())
            labels.append(label.cpu())
            if max_images and sum(len(x) for x in labels) >= max_images:
                break
    features, labels = torch.cat(features).numpy(), torch.cat(labels).numpy()
    if max_images:
        features, labels = features[:max_images], labels[:max_images]
    return features, labels


# --------------------------------------------------------------------------------------------
# t-SNE and the plot (no engine needed: tested on their own)
# --------------------------------------------------------------------------------------------
def tsne_2d(features: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE: perplexity min(30, (n − 1) / 3), PCA init, random_state = seed.

    30 is the usual value for the thousands of test images of a real dataset. On small sets the
    perplexity must stay well below n: near n − 1 every point has all others as neighbours, and
    two nearly equal feature sets can come out as clean clusters or as structureless noise.
    """
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 images, got {n}: check the dataset's test split.")
    tsne = TSNE(n_components=2, perplexity=min(PERPLEXITY, max(1.0, (n - 1) / 3)), init="pca", learning_rate="auto",
                random_state=seed)
    return tsne.fit_transform(np.asarray(features, dtype=np.float32))


def plot_panels(panels: Sequence[tuple], classnames: Sequence[str], path: Path, title: str = "") -> Path:
    """One scatter per (label, points [n, 2], labels [n]) panel, coloured by class, shared legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(classnames) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), squeeze=False)
    for ax, (label, points, labels) in zip(axes[0], panels):
        for k, name in enumerate(classnames):
            mask = labels == k
            ax.scatter(points[mask, 0], points[mask, 1], s=6, color=cmap(k % cmap.N), label=name)
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), fontsize=8, markerscale=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-root", type=Path, default=REPO / "output", help="OUTPUT of the training runs")
    parser.add_argument("--root", type=Path, help="dataset root (DATA; required unless --scripts-environment)")
    parser.add_argument("--dataset", default="eurosat", help="dataset config name (default: eurosat)")
    parser.add_argument("--seed", type=int, default=1, help="run seed, and t-SNE random_state")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--methods", nargs="*", default=[], help="registry methods (e.g. slip cocoop gopro zsclip)")
    parser.add_argument("--run", action="append", default=[], help="extra panel LABEL=TRAINER:CONFIG:MODEL_DIR")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: the last epoch of each training run, as --load-epoch last)")
    parser.add_argument("--backbone", default="", help="MODEL.BACKBONE.NAME override")
    parser.add_argument("--max-images", type=int, default=0, help="embed at most this many images (0: all)")
    parser.add_argument("--out", type=Path, help="PNG path (default: OUTPUT/figures/tsne_<dataset>_seed<seed>.png)")
    parser.add_argument("--scripts-environment", action="store_true",
                        help="take OUTPUT, DATA, SHOTS, BACKBONE, EPOCHS and EXTRA_OPTS from the environment, as the "
                             "method scripts do (scripts/common.sh); they replace --output-root, --root, --shots and "
                             "--backbone and come after the trailing options")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="train.py KEY VALUE options (after --)")
    return parser


def take_scripts_environment(args, environ) -> None:
    """The method scripts' options (runs.steps.Caller) in place of the command line's."""
    try:
        caller = Caller.from_environ(environ)
    except ValueError as exc:
        raise SystemExit(exc.args[0])
    args.output_root, args.root, args.shots, args.backbone = caller.output, Path(caller.data), caller.shots, caller.backbone
    epochs = ["OPTIM.MAX_EPOCH", caller.epochs] if caller.epochs else []
    args.opts = [*args.opts, *epochs, *caller.extra_opts]


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    if args.scripts_environment:
        take_scripts_environment(args, os.environ)
    if args.root is None:
        raise SystemExit("Pass --root DATA (the dataset root), or --scripts-environment with DATA set.")
    layout = Layout(args.output_root.resolve(), args.shots)
    try:
        panels = [method_panel(layout, m, args.dataset, args.seed) for m in args.methods]
    except KeyError as exc:
        raise SystemExit(exc.args[0])
    panels += [custom_panel(spec) for spec in args.run]
    if not panels:
        raise SystemExit("Nothing to plot: pass --methods (e.g. slip cocoop gopro) and/or --run.")
    out = args.out or layout.root / "figures" / f"tsne_{args.dataset}_seed{args.seed}.png"

    results, classnames = [], None
    with tempfile.TemporaryDirectory(prefix="tsne_") as work:
        for i, panel in enumerate(panels):
            print(f"Embedding {args.dataset} base-class test images with {panel.label} ({panel.model_dir or 'no checkpoint'})")
            trainer = build_trainer(panel, args, Path(work) / str(i))
            features, labels = embed_test_set(trainer, args.max_images)
            classnames = classnames or [trainer.lab2cname[k] for k in sorted(trainer.lab2cname)]
            results.append((panel.label, tsne_2d(features, args.seed), labels))
    plot_panels(results, classnames, out, title=f"{args.dataset}, base classes, seed {args.seed}")
    np.savez(out.with_suffix(".npz"), classnames=np.array(classnames),
             **{f"{label}_points": p for label, p, _ in results}, **{f"{label}_labels": y for label, _, y in results})
    print(f"t-SNE written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
