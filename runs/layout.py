"""Where runs live: the folder of every run the method scripts make under an output root (``OUTPUT``),
defined once. ``steps`` writes there, the job engine, the report and t-SNE read there.

    <OUTPUT>/base2new/{train_base,test_new}/<DATASET>/shots_<SHOTS>/<TRAINER>/<CFG>/seed<SEED>/
    <OUTPUT>/<XD_SOURCE>/<TRAINER>/<CFG>_<SHOTS>shots/seed<SEED>/              (cross-dataset training)
    <OUTPUT>/evaluation/<TRAINER>/<CFG>_<SHOTS>shots/<DATASET>/seed<SEED>/    (its evaluations)
    <OUTPUT>/zsclip/{all,base,new}/<DATASET>/                                 (zero-shot CLIP)
    <OUTPUT>/fewshot/<DATASET>/shots_<N>/<TRAINER>/<CFG>/seed<SEED>/          (few-shot, all classes)
    <OUTPUT>/msdg/<DATASET>/<TARGET DOMAIN>/<TRAINER>/<CFG>/seed<SEED>/       (multi-source DG)
    <OUTPUT>/<SWEEP>/<SETTING FOLDER>/...                                     (a sweep setting: the same tree)
    .../backbone/<BACKBONE FOLDER>/...                   (runs on another backbone than the configs': the same tree)

Runs on two backbones never share a folder: with ``BACKBONE`` set to anything but the paper
configs' ViT-B/16, every tree above moves under ``backbone/<folder>/`` (``backbone_folder``: e.g.
``open_clip_vit_b_16_laion2b_s34b_b88k``), which records the exact name in ``backbone.txt`` so
the report can label its rows.

A few-shot run trains on N images per class of every class and tests on all classes of the test
split at the end of the same run, as CoOp's ``scripts/coop/main.sh`` does (its log's final
accuracy is the result). The folder is CoOp's ``<dataset>/<TRAINER>/<cfg>_<N>shots/`` with the
shot count one level up, so that the shot counts of a dataset sit side by side like base-to-new's
``shots_<N>``. Zero-shot CLIP's few-shot entry is its ``zsclip/all/<DATASET>`` run (shots do not
matter).

A multi-source domain generalisation run (leave one domain out) trains on every other domain of a
multi-domain dataset (PACS, VLCS, OfficeHome, DomainNet) and tests on the held-out one in the same
run, so it too has one folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from runs.methods import ABLATION_ROWS, METHODS, NCTX_POINTS, Method, Sweep
from runs.results import TEST_END_SIGNAL, TRAIN_END_SIGNALS, SeedStats, read_metric


@dataclass(frozen=True)
class Run:
    """One run's ``log.txt`` and the lines after which its final result is printed."""

    log: Path
    end_signals: Tuple[str, ...]

    def result(self, keyword: str = "accuracy") -> Optional[float]:
        return read_metric(self.log, keyword, self.end_signals)

    @property
    def done(self) -> bool:
        """The log holds the final result, whatever the settings: whether they are the ones asked
        is ``run_identity.folder_state``'s question (the job engine and the report ask it)."""
        return self.result() is not None


DEFAULT_BACKBONE = "ViT-B/16"  # the paper configs' MODEL.BACKBONE.NAME: its runs stay at the top of the tree
BACKBONE_NAME_FILE = "backbone.txt"


def backbone_folder(name: str) -> str:
    """The folder of a backbone's runs: its name in lower case, runs of other characters as ``_``
    (``ViT-L/14@336px`` -> ``vit_l_14_336px``, ``open_clip:ViT-B-16:laion2b_s34b_b88k`` ->
    ``open_clip_vit_b_16_laion2b_s34b_b88k``)."""
    folder = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not folder:
        raise ValueError(f"BACKBONE {name!r} names no backbone (e.g. ViT-B/32 or open_clip:ViT-B-16:laion2b_s34b_b88k)")
    return folder


@dataclass(frozen=True)
class Layout:
    """Paths under an output root: where every run of the scripts goes (``steps``) and
    where the report, the job engine and t-SNE look. ``backbone``: the scripts' ``BACKBONE``
    ("" = the configs' own)."""

    root: Path
    shots: int = 16
    xd_source: str = "imagenet"
    backbone: str = ""

    def sub(self, *parts: str) -> "Layout":
        """The same layout under ``root/<parts>`` (the settings of a sweep live there)."""
        return Layout(self.root.joinpath(*parts), self.shots, self.xd_source, self.backbone)

    def on_backbone(self, backbone: str) -> "Layout":
        return Layout(self.root, self.shots, self.xd_source, backbone)

    @property
    def own_backbone(self) -> bool:
        return self.backbone in ("", DEFAULT_BACKBONE)

    @property
    def tree(self) -> Path:
        """Where this backbone's runs are: the root, or ``root/backbone/<folder>``."""
        return self.root if self.own_backbone else self.root / "backbone" / backbone_folder(self.backbone)

    def record_backbone(self) -> None:
        """Write the backbone's exact name into its tree (the folder name is not reversible)."""
        if not self.own_backbone:
            self.tree.mkdir(parents=True, exist_ok=True)
            (self.tree / BACKBONE_NAME_FILE).write_text(self.backbone + "\n")

    def backbones(self) -> List[str]:
        """The backbones with runs under this root: "" (the configs' own) and each recorded one."""
        recorded = sorted((self.root / "backbone").glob(f"*/{BACKBONE_NAME_FILE}"))
        return ["", *(path.read_text().strip() for path in recorded)]

    # Run folders -----------------------------------------------------------------------------
    def b2n_dir(self, split: str, dataset: str, trainer: str, cfg: str, seed: int) -> Path:
        return self.tree / "base2new" / split / dataset / f"shots_{self.shots}" / trainer / cfg / f"seed{seed}"

    def xd_source_dir(self, trainer: str, cfg: str, seed: int) -> Path:
        return self.tree / self.xd_source / trainer / f"{cfg}_{self.shots}shots" / f"seed{seed}"

    def xd_target_dir(self, trainer: str, cfg: str, dataset: str, seed: int) -> Path:
        return self.tree / "evaluation" / trainer / f"{cfg}_{self.shots}shots" / dataset / f"seed{seed}"

    def zeroshot_dir(self, subsample: str, dataset: str) -> Path:
        return self.tree / "zsclip" / subsample / dataset

    def msdg_dir(self, dataset: str, target: str, trainer: str, cfg: str, seed: int) -> Path:
        return self.tree / "msdg" / dataset / target / trainer / cfg / f"seed{seed}"

    def fewshot_dir(self, dataset: str, shots: int, trainer: str, cfg: str, seed: int) -> Path:
        return self.tree / "fewshot" / dataset / f"shots_{shots}" / trainer / cfg / f"seed{seed}"

    # Runs of a method ------------------------------------------------------------------------
    def b2n_run(self, method: Method, phase: str, dataset: str, seed: int) -> Run:
        """``phase`` "base": the training run (base accuracy); "new": the new-class evaluation."""
        if phase not in ("base", "new"):
            raise ValueError(f"Unknown base-to-new phase {phase!r}: use 'base' or 'new'.")
        if method.zero_shot:
            return Run(self.zeroshot_dir(phase, dataset) / "log.txt", (TEST_END_SIGNAL,))
        split, signals = ("train_base", TRAIN_END_SIGNALS) if phase == "base" else ("test_new", (TEST_END_SIGNAL,))
        cfg = method.cfg("b2n", dataset)
        return Run(self.b2n_dir(split, dataset, method.folder, cfg, seed) / "log.txt", signals)

    def xd_run(self, method: Method, dataset: str, seed: int) -> Run:
        """The source run (``dataset`` = the XD source: its training log) or a target evaluation."""
        if method.zero_shot:
            return Run(self.zeroshot_dir("all", dataset) / "log.txt", (TEST_END_SIGNAL,))
        cfg = method.cfg("xd")
        if dataset == self.xd_source:
            return Run(self.xd_source_dir(method.folder, cfg, seed) / "log.txt", TRAIN_END_SIGNALS)
        return Run(self.xd_target_dir(method.folder, cfg, dataset, seed) / "log.txt", (TEST_END_SIGNAL,))

    def msdg_run(self, method: Method, dataset: str, target: str, seed: int) -> Run:
        """A leave-one-domain-out run, whose final test on the target domain is its result."""
        cfg = method.cfg("xd")
        return Run(self.msdg_dir(dataset, target, method.folder, cfg, seed) / "log.txt", TRAIN_END_SIGNALS)

    def fewshot_run(self, method: Method, dataset: str, shots: int, seed: int) -> Run:
        """A few-shot training run, whose final test on all classes is its result."""
        if method.zero_shot:
            return Run(self.zeroshot_dir("all", dataset) / "log.txt", (TEST_END_SIGNAL,))
        cfg = method.fewshot_config(dataset, shots)
        return Run(self.fewshot_dir(dataset, shots, method.folder, cfg, seed) / "log.txt", TRAIN_END_SIGNALS)


def seed_stats(runs: Sequence[Run], keyword: str = "accuracy") -> SeedStats:
    """Results of the given runs (one per seed); missing or unfinished runs are left out."""
    values = tuple(v for v in (run.result(keyword) for run in runs) if v is not None)
    return SeedStats(values, expected=len(runs))


# --------------------------------------------------------------------------------------------
# Sweeps (scripts/gopro/ablation.sh and nctx.sh write here)
# --------------------------------------------------------------------------------------------
def sweep_layout(layout: Layout, sweep: Sweep, setting: str) -> Layout:
    """A sweep setting's own tree; the default setting *is* the method's base-to-new run (same config)."""
    return layout if setting == sweep.default else layout.sub(sweep.name, sweep.folder(setting))


def ablation_layout(layout: Layout, row: str) -> Layout:
    """Table 3: each row's tree (row ``all`` is GOPro's Table 1 run)."""
    if row not in ABLATION_ROWS:
        raise KeyError(f"Unknown ablation row {row!r}: choose from {' '.join(ABLATION_ROWS)}.")
    return sweep_layout(layout, METHODS["gopro"].sweep("ablation"), row)


def nctx_layout(layout: Layout, point: str) -> Layout:
    """Figure 2: each prompt length's tree (point ``init`` is GOPro's Table 1 run)."""
    point = str(point)
    if point not in NCTX_POINTS:
        raise KeyError(f"Unknown N_CTX point {point!r}: choose from {' '.join(NCTX_POINTS)}.")
    return sweep_layout(layout, METHODS["gopro"].sweep("nctx"), point)
