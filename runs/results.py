"""What run logs say (shared by parse_test_res, report, jobs, tsne and the demo): ``read_metric``
finds the ``* accuracy: X%`` line that belongs to the final result (after ``Finish training`` in a
training log, after ``=> result`` in a test log); the statistics over seeds; the datasets of each
protocol. Where the logs are: ``runs/layout.py``; which methods: ``methods.py``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

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
# Datasets of each protocol (the paper's Tables 1 and 2), by config name (configs/datasets/<name>.yaml)
# --------------------------------------------------------------------------------------------
B2N_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_TARGETS = B2N_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
# Multi-source domain generalisation, leave one domain out: each dataset's domains, as its Dassl class
# lists them (dassl/data/datasets/dg/); configs/datasets/dg/<dataset>_<domain>.yaml holds each split.
MSDG_DOMAINS = {
    "pacs": ("art_painting", "cartoon", "photo", "sketch"),
    "vlcs": ("caltech", "labelme", "pascal", "sun"),
    "office_home_dg": ("art", "clipart", "product", "real_world"),
    "domainnet": ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"),
}
MSDG_DATASETS = tuple(MSDG_DOMAINS)
