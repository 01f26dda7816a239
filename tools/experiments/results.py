"""Where runs live and what their logs say (shared by parse_test_res, report, jobs, tsne and the demo).

Three things, each defined once:

* **reading a log**: ``read_metric`` finds the ``* accuracy: X%`` line that belongs to the final
  result (after ``Finish training`` in a training log, after ``=> result`` in a test log);
* **the method registry** (``METHODS``): for every row of the paper's tables (``PAPER_METHODS``) and
  every modern baseline (``MODERN_BASELINES``), its script folder under ``scripts/``, its
  registered trainer and its config names per protocol;
* **the output layout** (``Layout``): the path of every run's ``log.txt`` under an output root, as
  written by ``scripts/common.sh`` and ``scripts/zsclip/zeroshot.sh``. Keep the two in step: the
  tests run the scripts and check that their logs land where ``Layout`` looks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

# --------------------------------------------------------------------------------------------
# Reading logs
# --------------------------------------------------------------------------------------------
TRAIN_END_SIGNALS = ("Finish training", "Finished training")  # CoOp copy / MaPLe copy (pre-0.6.1 Dassl)
TEST_END_SIGNAL = "=> result"
END_SIGNALS = TRAIN_END_SIGNALS + (TEST_END_SIGNAL,)
_METRIC = r"\* {keyword}: ([\.\deE+-]+)%"


def read_metric(log_path: Union[str, Path], keyword: str = "accuracy",
                end_signal: Union[str, Sequence[str], None] = None) -> Optional[float]:
    """The last ``* {keyword}: X%`` at or after the end signal of a log (None if absent).

    ``end_signal`` is one line or several accepted lines (the first one found in the log starts the
    search); None accepts any of CoOp's ``Finish training``, MaPLe's ``Finished training`` and a
    test log's ``=> result``. A line matches a signal only when its stripped text equals it.
    """
    path = Path(log_path)
    if not path.is_file():
        return None
    pattern = re.compile(_METRIC.format(keyword=re.escape(keyword)))
    if end_signal is None:
        signals = END_SIGNALS
    elif isinstance(end_signal, str):
        signals = (end_signal,)
    else:
        signals = tuple(end_signal)
    value, started = None, False
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        started = started or line in signals
        match = pattern.search(line) if started else None
        if match:
            value = float(match.group(1))
    return value


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def harmonic_mean(base: Optional[float], new: Optional[float]) -> Optional[float]:
    if base is None or new is None or base + new == 0:
        return None
    return 2 * base * new / (base + new)


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> Optional[float]:
    """Population standard deviation (ddof 0), as ``np.std`` in upstream ``parse_test_res.py``."""
    if not values:
        return None
    centre = sum(values) / len(values)
    return math.sqrt(sum((v - centre) ** 2 for v in values) / len(values))


def ci95(values: Sequence[float]) -> Optional[float]:
    """Half-width of the 95% confidence interval as upstream computes it: 1.96 · std / sqrt(n)."""
    spread = std(values)
    return None if spread is None else 1.96 * spread / math.sqrt(len(values))


@dataclass(frozen=True)
class SeedStats:
    """The results of one cell over seeds: the values found and how many were expected."""

    values: Tuple[float, ...]
    expected: int

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return mean(self.values)

    @property
    def std(self) -> Optional[float]:
        return std(self.values)

    @property
    def complete(self) -> bool:
        return self.n >= self.expected


# --------------------------------------------------------------------------------------------
# Datasets of each protocol (methods spec 1.4), by config name (configs/datasets/<name>.yaml)
# --------------------------------------------------------------------------------------------
B2N_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_TARGETS = B2N_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")


# --------------------------------------------------------------------------------------------
# Method registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One row of the paper's tables and how our scripts run it.

    ``key`` is the folder ``scripts/<key>/``; ``label`` is the paper's row name (the key of the
    paper JSON). ``b2n_dataset_cfg`` maps a dataset to ``(config, epochs)`` where base-to-new uses
    another config than ``b2n_cfg`` (CoOp trains ImageNet for 50 epochs, not 200: methods spec 9).
    """

    key: str
    label: str
    trainer: str
    b2n_cfg: str
    xd_cfg: str
    b2n_dataset_cfg: Mapping[str, Tuple[str, int]] = field(default_factory=dict, hash=False)
    paper_row: bool = True  # a row of the GOPro paper's tables (False: a modern baseline, MODERN_BASELINES)

    @property
    def zero_shot(self) -> bool:
        """Zero-shot CLIP has no training and no seed: one run per dataset and label subset."""
        return self.key == "zsclip"

    def cfg(self, protocol: str, dataset: str = "") -> str:
        if protocol == "b2n":
            return self.b2n_dataset_cfg.get(dataset, (self.b2n_cfg, 0))[0]
        if protocol == "xd":
            return self.xd_cfg
        raise ValueError(f"Unknown protocol {protocol!r}: use 'b2n' or 'xd'.")

    def epochs(self, protocol: str, dataset: str = "") -> Optional[int]:
        """An epoch count the runs of this dataset need on top of the config (None: the config's)."""
        if protocol == "b2n" and dataset in self.b2n_dataset_cfg:
            return self.b2n_dataset_cfg[dataset][1]
        return None


# Paper row order (Tables 1 and 2).
METHODS: Dict[str, Method] = {m.key: m for m in (
    Method("zsclip", "CLIP", "ZeroshotCLIP", "vit_b16", "vit_b16"),
    Method("slip", "SLIP", "SLIP", "vit_b16", "vit_b16_xd"),
    Method("coop", "CoOp", "CoOp", "vit_b16_ctxv1", "vit_b16_ep50_ctxv1",
           b2n_dataset_cfg={"imagenet": ("vit_b16_ep50_ctxv1", 50)}),
    Method("cocoop", "CoCoOp", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "vit_b16_c4_ep10_batch1_ctxv1"),
    Method("maple", "MaPLe", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"),
    Method("stylip", "StyLIP", "StyLIP", "vit_b16", "vit_b16_xd"),
    Method("gopro", "GOPro", "GOPro", "vit_b16", "vit_b16_xd"),
)}

# Modern baselines (not in the GOPro paper; modern-baselines spec): run with the same scripts,
# data, seeds and protocol, reported in their own table beside their authors' numbers
# (tools/experiments/report.py, paper/modern_baselines_reported.json). The reproduce commands run them when
# METHODS names them; their defaults stay the paper's rows (PAPER_METHODS).
METHODS.update({m.key: m for m in (
    Method("kgcoop", "KgCoOp", "KgCoOp", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", paper_row=False),
    Method("prograd", "ProGrad", "ProGrad", "vit_b16", "vit_b16_ep50",
           b2n_dataset_cfg={"imagenet": ("vit_b16_ep50", 50)}, paper_row=False),
    Method("promptsrc", "PromptSRC", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
           "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", paper_row=False),
)})
PAPER_METHODS = tuple(key for key, m in METHODS.items() if m.paper_row)
MODERN_BASELINES = tuple(key for key, m in METHODS.items() if not m.paper_row)


def get_method(name: str) -> Method:
    """A method by script folder (``gopro``) or paper label (``GOPro``), case-insensitive."""
    wanted = name.strip().lower()
    for method in METHODS.values():
        if wanted in (method.key, method.label.lower(), method.trainer.lower()):
            return method
    raise KeyError(f"Unknown method {name!r}: choose from {' '.join(METHODS)}.")


# --------------------------------------------------------------------------------------------
# Output layout
# --------------------------------------------------------------------------------------------
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
        is ``run_identity.folder_state``'s question (tools/experiments/jobs.py and tools/experiments/report.py ask it)."""
        return self.result() is not None


@dataclass(frozen=True)
class Layout:
    """Paths under an output root, exactly as ``scripts/common.sh`` writes them."""

    root: Path
    shots: int = 16
    xd_source: str = "imagenet"

    def sub(self, *parts: str) -> "Layout":
        """The same layout under ``root/<parts>`` (ablation rows and N_CTX points live there)."""
        return Layout(self.root.joinpath(*parts), self.shots, self.xd_source)

    # Raw paths (mirrors of b2n_dir / xd_dir / xd_test in scripts/common.sh) -------------------
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
# GOPro sweeps (scripts/gopro/ablation.sh and nctx.sh write here)
# --------------------------------------------------------------------------------------------
# Table 3 rows (methods spec 8.7) and the paper's label of each.
ABLATION_ROWS: Dict[str, str] = {
    "ce": "L_ce",
    "ce_con": "L_ce + L_Con",
    "ce_sem_x1": "L_ce + L_Sem(x1)",
    "ce_sem_x2": "L_ce + L_Sem(x2)",
    "ce_sem_x1x2": "L_ce + L_Sem(x1 + x2)",
    "all": "L_ce + L_Sem + L_Con",
}
# Figure 2: prompt lengths M with a random context, and the default M = 4 "a photo of a" point.
NCTX_LENGTHS = (1, 2, 4, 8, 16)
NCTX_DEFAULT_POINT = "init"
NCTX_POINTS = tuple(str(m) for m in NCTX_LENGTHS) + (NCTX_DEFAULT_POINT,)


def ablation_layout(layout: Layout, row: str) -> Layout:
    """Each Table 3 row has its own tree; the full-loss row *is* GOPro's Table 1 run (same config)."""
    if row not in ABLATION_ROWS:
        raise KeyError(f"Unknown ablation row {row!r}: choose from {' '.join(ABLATION_ROWS)}.")
    return layout if row == "all" else layout.sub("ablation", row)


def nctx_layout(layout: Layout, point: str) -> Layout:
    """Each Figure 2 length has its own tree; the default point *is* GOPro's Table 1 run."""
    point = str(point)
    if point not in NCTX_POINTS:
        raise KeyError(f"Unknown N_CTX point {point!r}: choose from {' '.join(NCTX_POINTS)}.")
    return layout if point == NCTX_DEFAULT_POINT else layout.sub("nctx", f"m{point}")
