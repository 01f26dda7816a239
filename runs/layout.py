"""Where runs live: the folder of every run the method scripts make under an output root (``OUTPUT``),
defined once. ``steps`` writes there, the job engine, the report and t-SNE read there.

    <OUTPUT>/base2new/{train_base,test_new}/<DATASET>/shots_<SHOTS>/<TRAINER>/<CFG>/seed<SEED>/
    <OUTPUT>/<XD_SOURCE>/<TRAINER>/<CFG>_<SHOTS>shots/seed<SEED>/              (cross-dataset training)
    <OUTPUT>/evaluation/<TRAINER>/<CFG>_<SHOTS>shots/<DATASET>/seed<SEED>/    (its evaluations)
    <OUTPUT>/zsclip/{all,base,new}/<DATASET>/                                 (zero-shot CLIP)
    <OUTPUT>/<SWEEP>/<SETTING FOLDER>/...                                     (a sweep setting: the same tree)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

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


@dataclass(frozen=True)
class Layout:
    """Paths under an output root: where every run of the scripts goes (``steps``) and
    where the report, the job engine and t-SNE look."""

    root: Path
    shots: int = 16
    xd_source: str = "imagenet"

    def sub(self, *parts: str) -> "Layout":
        """The same layout under ``root/<parts>`` (the settings of a sweep live there)."""
        return Layout(self.root.joinpath(*parts), self.shots, self.xd_source)

    # Run folders -----------------------------------------------------------------------------
    def b2n_dir(self, split: str, dataset: str, trainer: str, cfg: str, seed: int) -> Path:
        return self.root / "base2new" / split / dataset / f"shots_{self.shots}" / trainer / cfg / f"seed{seed}"

    def xd_source_dir(self, trainer: str, cfg: str, seed: int) -> Path:
        return self.root / self.xd_source / trainer / f"{cfg}_{self.shots}shots" / f"seed{seed}"

    def xd_target_dir(self, trainer: str, cfg: str, dataset: str, seed: int) -> Path:
        return self.root / "evaluation" / trainer / f"{cfg}_{self.shots}shots" / dataset / f"seed{seed}"

    def zeroshot_dir(self, subsample: str, dataset: str) -> Path:
        return self.root / "zsclip" / subsample / dataset

    # Runs of a method ------------------------------------------------------------------------
    def b2n_run(self, method: Method, phase: str, dataset: str, seed: int) -> Run:
        """``phase`` "base": the training run (base accuracy); "new": the new-class evaluation."""
        if phase not in ("base", "new"):
            raise ValueError(f"Unknown base-to-new phase {phase!r}: use 'base' or 'new'.")
        if method.zero_shot:
            return Run(self.zeroshot_dir(phase, dataset) / "log.txt", (TEST_END_SIGNAL,))
        split, signals = ("train_base", TRAIN_END_SIGNALS) if phase == "base" else ("test_new", (TEST_END_SIGNAL,))
        cfg = method.cfg("b2n", dataset)
        return Run(self.b2n_dir(split, dataset, method.trainer, cfg, seed) / "log.txt", signals)

    def xd_run(self, method: Method, dataset: str, seed: int) -> Run:
        """The source run (``dataset`` = the XD source: its training log) or a target evaluation."""
        if method.zero_shot:
            return Run(self.zeroshot_dir("all", dataset) / "log.txt", (TEST_END_SIGNAL,))
        cfg = method.cfg("xd")
        if dataset == self.xd_source:
            return Run(self.xd_source_dir(method.trainer, cfg, seed) / "log.txt", TRAIN_END_SIGNALS)
        return Run(self.xd_target_dir(method.trainer, cfg, dataset, seed) / "log.txt", (TEST_END_SIGNAL,))


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
