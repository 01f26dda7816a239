#!/usr/bin/env python
"""Every table of the paper from an output root, with the paper's numbers beside ours.

    python -m tools.experiments.report output/ --markdown report.md --csv report_csv/

Walks the tree written by ``scripts/`` (layout: ``runs/layout.py``) and prints, in the paper's
layout:

* Table 1, base-to-new: base / new / HM per dataset and the average over the 11 datasets;
* Table 2, cross-dataset (ImageNet source + 10 targets + the average of the 10) and domain
  generalisation (ImageNet + V2 / Sketch / A / R);
* Table 3, the loss ablation of GOPro (``scripts/gopro/ablation.sh``);
* Figure 2's numbers (base / new / HM against N_CTX, ``scripts/gopro/nctx.sh``), and the plot;
* beyond the paper, "modern baselines" (KgCoOp, ProGrad, PromptSRC, and GOPro): base-to-new per
  dataset and average beside each method's reported numbers (``paper/modern_baselines_reported.json``).
  Table 1 keeps the paper's rows; the cross-dataset and DG tables list the modern baselines too,
  without paper numbers.

Conventions:

* the runs of each backbone (``BACKBONE``; ``layout.py``) get their own set of tables, labelled with
  the backbone when there is more than the configs' own;
* every number of ours is the mean over seeds (± population std, as ``parse_test_res.py``);
  zero-shot CLIP has no seed;
* an HM is the HM of the two means; an average over datasets takes the mean of the per-dataset
  means of base and of new, and its HM is the HM of those two means (as CoCoOp's and the GOPro paper's averages);
* Δ = ours − paper; an average is compared with the paper only when it covers the paper's datasets;
* a missing cell reads ``n/a (0/3 seeds)``; a cell from fewer seeds than asked says so
  (``(2/3 seeds)``), and an average lacking a dataset reads ``n/a (10/11 datasets)``;
* every run's recorded settings (``run.json``, see ``runs/identity.py``) are compared with the
  paper's, i.e. what the scripts run without ``EPOCHS`` / ``EXTRA_OPTS`` (and, for the tables of
  another backbone, with that ``BACKBONE``): a cell from
  other settings gets a footnote mark ``[n]`` listing them (``OPTIM.MAX_EPOCH=2``), an average the
  marks of all its parts; seeds made with different settings are not averaged
  (``n/a (seeds differ: OPTIM.MAX_EPOCH)``; the run a seed builds on, PromptKD's teacher of that seed,
  rightly differs by seed and is checked against the asked one only); runs that record no settings
  are counted in the header.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from tabulate import tabulate

from runs.layout import (DEFAULT_BACKBONE, Layout, Run, ablation_layout, backbone_folder, nctx_layout,
                         seed_stats)
from runs.methods import (ABLATION_ROWS, METHODS, MODERN, NCTX_DEFAULT_POINT, NCTX_LENGTHS,
                         REPORTED_METHODS, Method, get_method)
from runs.results import (B2N_DATASETS, DG_TARGETS, MSDG_DATASETS, MSDG_DOMAINS, XD_TARGETS, SeedStats,
                          harmonic_mean, mean)
from runs.identity import MODEL_DIGEST, asked_settings, differences, is_reference_digest, stored_settings
from runs.plans import FEWSHOT_SHOTS, PASS_THROUGH, TABLES as PLANS, build_selection
from runs.steps import TrainRun, command_runs

REPO = Path(__file__).resolve().parents[2]

PAPER_JSON = REPO / "paper" / "gopro_bmvc2023_results.json"
REPORTED_JSON = REPO / "paper" / "modern_baselines_reported.json"
FEWSHOT_REPORTED_JSON = REPO / "paper" / "fewshot_reported.json"
TABLES = ("table1", "xd", "dg", "table3", "fig2", "modern", "fewshot", "msdg")
OWN_PROTOCOLS = ("fewshot", "msdg")  # not the GOPro paper's: reported when asked (--tables)
PRETTY = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "-V2", "imagenet_sketch": "-Sketch", "imagenet_a": "-A",
    "imagenet_r": "-R", "average": "Average", "pacs": "PACS", "vlcs": "VLCS", "office_home_dg": "OfficeHome",
    "domainnet": "DomainNet",
}
METRICS = ("base", "new", "hm")
NO_VALUE = "–"


# --------------------------------------------------------------------------------------------
# The paper's numbers
# --------------------------------------------------------------------------------------------
class Paper:
    """Lookups into ``paper/gopro_bmvc2023_results.json``; None where the paper has no number."""

    def __init__(self, data: dict):
        self.data = data

    @classmethod
    def load(cls, path: Path = PAPER_JSON) -> "Paper":
        try:
            return cls(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise SystemExit(f"Paper numbers not found at {path}: pass --paper FILE (the repo has paper/*.json).")

    def b2n(self, label: str, dataset: str) -> Tuple[Optional[float], ...]:
        values = self.data["base2new"].get(dataset, {}).get(label)
        return tuple(values) if values else (None, None, None)

    def b2n_source(self, label: str, dataset: str) -> str:
        """Where the base-to-new number beside ours comes from ("–": none)."""
        return "GOPro paper" if any(v is not None for v in self.b2n(label, dataset)) else NO_VALUE

    def _columns(self, table: str, label: str, dataset: str) -> Optional[float]:
        section = self.data[table]
        values = section.get(label)
        if not values or dataset not in section["columns"]:
            return None
        return values[section["columns"].index(dataset)]

    def xd(self, label: str, dataset: str) -> Optional[float]:
        return self._columns("cross_dataset", label, dataset)

    def dg(self, label: str, dataset: str) -> Optional[float]:
        return self._columns("domain_generalization", label, dataset)

    def ablation(self, paper_label: str, reading: str) -> Tuple[Optional[float], ...]:
        rows = self.data["loss_ablation_base2new_average"].get(f"reading_{reading}", [])
        for row in rows:
            if row["losses"] == paper_label and row["values"]:
                return tuple(row["values"])
        return (None, None, None)

    def ablation_labels(self) -> List[str]:
        return [row["losses"] for row in self.data["loss_ablation_base2new_average"]["reading_A"]]


# --------------------------------------------------------------------------------------------
# Which settings our numbers come from
# --------------------------------------------------------------------------------------------
FOOTNOTE = re.compile(r"⟦(.+?)⟧")  # one setting of a cell until to_markdown numbers it
SEED_KEYS = ("SEED", MODEL_DIGEST)  # what rightly differs between the seeds of one cell (and is_reference_digest)


@dataclass(frozen=True)
class Provenance:
    """The settings behind a number: where they are not the paper's, and where its seeds disagree."""

    deviations: FrozenSet[str] = frozenset()  # "OPTIM.MAX_EPOCH=2"
    mixed: FrozenSet[str] = frozenset()       # keys whose values differ between the seeds

    def __or__(self, other: "Provenance") -> "Provenance":
        return Provenance(self.deviations | other.deviations, self.mixed | other.mixed)

    @classmethod
    def union(cls, parts: Iterable["Provenance"]) -> "Provenance":
        merged = cls()
        for part in parts:
            merged |= part
        return merged

    def mark(self) -> str:
        """One ``⟦setting⟧`` per deviation: numbered one by one, so that a setting has the same
        footnote number in every row (an average's mark is the union of its datasets' marks)."""
        return " " + "".join(f"⟦{d}⟧" for d in sorted(self.deviations)) if self.deviations else ""

    def describe(self) -> str:
        """The CSV ``settings`` column."""
        text = "; ".join(sorted(self.deviations))
        return text + (f"; seeds differ: {', '.join(sorted(self.mixed))}" if self.mixed else "")


class Provenances:
    """Settings of the runs under an output root, against the paper's: what the scripts run there
    with the caller's overrides (``EPOCHS``, ``EXTRA_OPTS``, ``BACKBONE``) unset, listed by the
    scripts' steps through the job plans of ``runs/plans.py``."""

    TABLES = ("table1", "xd", "table2", "table3", "fig2", "fewshot", "msdg")

    def __init__(self, layout: Layout, methods: Sequence[Method], datasets: Sequence[str], seeds: Sequence[int]):
        self.layout, self.methods, self.datasets, self.seeds = layout, methods, datasets, seeds
        self.unknown: Set[Path] = set()  # folders with a result that record no settings
        self._jobs: Optional[dict] = None
        self._reference: Dict[Path, Optional[TrainRun]] = {}

    def paper_environment(self) -> Dict[str, str]:
        kept = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH and k not in (
            "CFG", "METHODS", "DATASETS", "SEEDS", "ROWS", "NCTX", "SHOTS_LIST", "RERUN_STALE")}
        backbone = {} if self.layout.own_backbone else {"BACKBONE": self.layout.backbone}
        return {**kept, "OUTPUT": str(self.layout.root), "SHOTS": str(self.layout.shots),
                "XD_SOURCE": self.layout.xd_source, "DATA": str(REPO / "DATA"), "PYTHON": sys.executable, **backbone}

    def job_of(self, folder: Path):
        """The job (of any table) that writes ``folder`` under the paper's settings, or None."""
        if self._jobs is None:
            env = self.paper_environment()
            flags = SimpleNamespace(methods=[m.key for m in self.methods], datasets=list(self.datasets),
                                    seeds=[str(s) for s in self.seeds])
            self._jobs = {}
            for table in self.TABLES:
                plan = PLANS[table].build(build_selection(table, flags, env))
                self._jobs.update({job.run.log.parent: job for job in plan.jobs if job.run is not None})
        return self._jobs.get(folder)

    def reference(self, folder: Path) -> Optional[TrainRun]:
        """The train.py run the paper's settings make in ``folder`` (None: no script writes there)."""
        if folder not in self._reference:
            job = self.job_of(folder)
            runs = command_runs(job.command(), {**self.paper_environment(), **dict(job.env)}) if job else []
            self._reference.update({run.folder: run for run in runs})
            self._reference.setdefault(folder, None)
        return self._reference[folder]

    def of_runs(self, runs: Sequence[Run]) -> Provenance:
        """Provenance of the finished runs among ``runs`` (the seeds of one cell)."""
        found = []
        for run in runs:
            if run.result() is None:
                continue
            folder = run.log.parent
            stored = stored_settings(folder)
            if stored is None:
                self.unknown.add(folder)
                continue
            reference = self.reference(folder)
            asked = asked_settings(reference.argv) if reference else stored.settings
            found.append((stored.settings, differences(stored.settings, asked, ignore=(MODEL_DIGEST,))))
        # A run built on another (PromptKD's teacher) builds on that seed's run: its digest differs
        # between seeds as the model folder's does; each seed's is still checked against the asked one.
        mixed = {d.key for a, _ in found for b, _ in found for d in differences(a, b, ignore=SEED_KEYS)
                 if not is_reference_digest(d.key)}
        deviations = {f"{d.key}={json.dumps(d.stored)}" for _, diffs in found for d in diffs}
        return Provenance(frozenset(deviations), frozenset(mixed))


# --------------------------------------------------------------------------------------------
# Cells: one number of ours, beside the paper's
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    ours: Optional[float]
    paper: Optional[float] = None
    std: Optional[float] = None
    n: int = 0
    expected: int = 0          # seeds asked for; 0 for derived numbers (HM, averages)
    note: str = ""             # why a derived number is missing or partial
    comparable: bool = True    # False: ours covers other datasets than the paper's number
    source: Provenance = Provenance()

    @classmethod
    def of(cls, stats: SeedStats, paper: Optional[float] = None, source: Provenance = Provenance()) -> "Cell":
        if source.mixed:  # never average seeds made with different settings
            differing = ", ".join(sorted(source.mixed))
            return cls(None, paper, None, stats.n, stats.expected, note=f"seeds differ: {differing}", source=source)
        return cls(stats.mean, paper, stats.std, stats.n, stats.expected, source=source)

    @property
    def delta(self) -> Optional[float]:
        if self.ours is None or self.paper is None or not self.comparable:
            return None
        return self.ours - self.paper

    def format_ours(self) -> str:
        if self.ours is None:
            if self.note:
                return f"n/a ({self.note})"
            if self.expected == 0:
                return "n/a"
            return "n/a (not run)" if self.expected == 1 else f"n/a (0/{self.expected} seeds)"
        text = f"{self.ours:.2f}"
        if self.expected > 1 and self.std is not None:
            text += f" ± {self.std:.2f}"
        if 0 < self.n < self.expected:
            text += f" ({self.n}/{self.expected} seeds)"
        if self.note:
            text += f" ({self.note})"
        return text + self.source.mark()

    def format_paper(self) -> str:
        return NO_VALUE if self.paper is None else f"{self.paper:.2f}"

    def format_delta(self) -> str:
        return NO_VALUE if self.delta is None else f"{self.delta:+.2f}"

    def record(self, **keys) -> dict:
        """One CSV row (long format)."""
        return dict(keys, ours=_num(self.ours), std=_num(self.std), seeds=self.n, expected_seeds=self.expected,
                    paper=_num(self.paper), delta=_num(self.delta), note=self.note, settings=self.source.describe())


def _num(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


def triple(cells: Sequence[Cell], part: str) -> str:
    """``a / b / c`` of three cells' ours, paper or delta (Table 3 layout); one text if none has a value."""
    texts = [getattr(c, f"format_{part}")() for c in cells]
    values = [c.ours if part == "ours" else getattr(c, part) for c in cells]
    return texts[0] if all(v is None for v in values) and len(set(texts)) == 1 else " / ".join(texts)


# --------------------------------------------------------------------------------------------
# Computations
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class B2NResult:
    """Base and new of one method on one dataset, over seeds."""

    base: SeedStats
    new: SeedStats
    base_source: Provenance = Provenance()
    new_source: Provenance = Provenance()

    @property
    def source(self) -> Provenance:
        return self.base_source | self.new_source

    @property
    def available(self) -> bool:
        return self.base.n > 0 and self.new.n > 0 and not self.source.mixed

    @property
    def complete(self) -> bool:
        return self.base.complete and self.new.complete


def run_seeds(method: Method, seeds: Sequence[int]) -> Sequence[int]:
    return (0,) if method.zero_shot else tuple(seeds)


def seed_cell_inputs(runs: Sequence[Run], provenances: Optional[Provenances]) -> Tuple[SeedStats, Provenance]:
    """The results of one cell's seeds and the settings they come from (none known without ``provenances``)."""
    return seed_stats(runs), provenances.of_runs(runs) if provenances else Provenance()


def seed_cell(runs: Sequence[Run], paper: Optional[float], provenances: Optional[Provenances]) -> Cell:
    """One number over seeds (the transfer tables), marked with its settings."""
    stats, source = seed_cell_inputs(runs, provenances)
    return Cell.of(stats, paper, source)


def b2n_result(layout: Layout, method: Method, dataset: str, seeds: Sequence[int],
               provenances: Optional[Provenances] = None) -> B2NResult:
    seeds = run_seeds(method, seeds)
    (base, base_source), (new, new_source) = (
        seed_cell_inputs([layout.b2n_run(method, phase, dataset, s) for s in seeds], provenances)
        for phase in ("base", "new"))
    return B2NResult(base, new, base_source, new_source)


def b2n_cells(result: B2NResult, paper: Tuple[Optional[float], ...]) -> List[Cell]:
    base, new = Cell.of(result.base, paper[0], result.base_source), Cell.of(result.new, paper[1], result.new_source)
    if result.source.mixed:
        note = "seeds differ"
    elif not result.available:
        note = "needs base and new"
    else:
        note = "" if result.complete else "from incomplete seeds"
    return [base, new, Cell(harmonic_mean(base.ours, new.ours), paper[2], note=note, source=result.source)]


def b2n_average(results: Sequence[B2NResult], paper: Tuple[Optional[float], ...], comparable: bool) -> List[Cell]:
    """Mean of the per-dataset base means, of the new means, and the HM of the two (see the module docstring)."""
    found = [r for r in results if r.available]
    source = Provenance.union(r.source for r in results)
    if len(found) < len(results) or not results:
        note = f"{len(found)}/{len(results)} datasets"
        return [Cell(None, p, note=note, source=source) for p in paper]
    note = "" if all(r.complete for r in results) else "from incomplete seeds"
    base, new = mean([r.base.mean for r in results]), mean([r.new.mean for r in results])
    return [Cell(v, p, note=note, comparable=comparable, source=source)
            for v, p in zip((base, new, harmonic_mean(base, new)), paper)]


def column_average(cells: Sequence[Cell], paper: Optional[float], comparable: bool, what: str) -> Cell:
    """Mean of the per-dataset means (the XD "Avg" column), only when every dataset has one."""
    found = [c.ours for c in cells if c.ours is not None]
    source = Provenance.union(c.source for c in cells)
    if len(found) < len(cells) or not cells:
        return Cell(None, paper, note=f"{len(found)}/{len(cells)} {what}", source=source)
    note = "" if all(c.n >= c.expected for c in cells) else "from incomplete seeds"
    return Cell(mean(found), paper, note=note, comparable=comparable, source=source)


# --------------------------------------------------------------------------------------------
# Sections (one per table; rendered as Markdown and written as CSV)
# --------------------------------------------------------------------------------------------
@dataclass
class Block:
    title: str
    headers: List[str]
    rows: List[List[str]]


@dataclass
class Section:
    key: str                   # CSV file stem
    title: str
    blocks: List[Block] = field(default_factory=list)
    records: List[dict] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    layout: Layout
    paper: Paper
    methods: Tuple[Method, ...]
    seeds: Tuple[int, ...]
    datasets: Tuple[str, ...]   # restricts every table's datasets (default: all)
    provenances: Optional[Provenances] = None  # set in __post_init__: the settings of every run read

    def __post_init__(self):
        if self.provenances is None:
            object.__setattr__(self, "provenances", Provenances(self.layout, self.methods, self.datasets, self.seeds))

    def pick(self, candidates: Iterable[str]) -> List[str]:
        return [d for d in candidates if d in self.datasets]


B2N_HEADERS = ["Method", "Base", "Base (paper)", "Δ", "New", "New (paper)", "Δ", "HM", "HM (paper)", "Δ",
               "Regime", "Paper number from"]


def regime(method: Method) -> str:
    """What a row's method uses beyond the base classes' labelled shots (registry ``tags``: transductive,
    teacher, LLM text, plug-in, ...), so that rows of different regimes are not compared unawares."""
    return ", ".join(method.tags) or ("training-free" if method.zero_shot else "inductive")


def b2n_row(method: Method, cells: Sequence[Cell], source: str) -> List[str]:
    """Ours (mean ± std over seeds, footnoted with its settings where they are not the paper's), the
    paper's number and Δ per metric; the method's regime; where the paper's number comes from."""
    row = [method.label]
    for cell in cells:
        row += [cell.format_ours(), cell.format_paper(), cell.format_delta()]
    return row + [regime(method), source]


def table1(req: Request) -> Section:
    section = Section("table1_base2new", "Table 1: base-to-new generalisation (train on base classes, test on new)")
    datasets = req.pick(B2N_DATASETS)
    comparable = tuple(datasets) == B2N_DATASETS
    results = {m.key: {d: b2n_result(req.layout, m, d, req.seeds, req.provenances) for d in datasets}
               for m in req.methods}

    average_rows = []
    for m in req.methods:
        cells = b2n_average(list(results[m.key].values()), req.paper.b2n(m.label, "average"), comparable)
        average_rows.append(b2n_row(m, cells, req.paper.b2n_source(m.label, "average")))
        section.records += [c.record(row=m.label, column="average", metric=k) for k, c in zip(METRICS, cells)]
    title = "Average over 11 datasets" if comparable else f"Average over the {len(datasets)} listed datasets"
    section.blocks.append(Block(title, B2N_HEADERS, average_rows))
    if not comparable:
        section.notes.append("The paper averages 11 datasets: no Δ on the average row.")

    for d in datasets:
        rows = []
        for m in req.methods:
            cells = b2n_cells(results[m.key][d], req.paper.b2n(m.label, d))
            rows.append(b2n_row(m, cells, req.paper.b2n_source(m.label, d)))
            section.records += [c.record(row=m.label, column=d, metric=k) for k, c in zip(METRICS, cells)]
        section.blocks.append(Block(PRETTY[d], B2N_HEADERS, rows))
    return section


def transfer_rows(label: str, cells: Sequence[Cell]) -> List[List[str]]:
    """Methods as rows, datasets as columns: ours, the paper's, and Δ on three rows."""
    return [[f"{label}", *(c.format_ours() for c in cells)],
            [f"{label} (paper)", *(c.format_paper() for c in cells)],
            [f"{label} Δ", *(c.format_delta() for c in cells)]]


def transfer_section(req: Request, key: str, title: str, targets: Sequence[str], paper_lookup,
                     with_average: bool) -> Section:
    section = Section(key, title)
    source = req.layout.xd_source
    targets = req.pick(targets)
    columns = [source, *targets]
    rows = []
    for m in req.methods:
        seeds = run_seeds(m, req.seeds)
        cells = [seed_cell([req.layout.xd_run(m, d, s) for s in seeds], paper_lookup(m.label, d), req.provenances)
                 for d in columns]
        if with_average:
            comparable = tuple(targets) == XD_TARGETS
            cells.append(column_average(cells[1:], paper_lookup(m.label, "average"), comparable, "targets"))
        rows += transfer_rows(m.label, cells)
        names = columns + (["average"] if with_average else [])
        section.records += [c.record(row=m.label, column=d, metric="accuracy") for d, c in zip(names, cells)]
    headers = ["Method", *(PRETTY.get(d, d) for d in columns)] + (["Avg (targets)"] if with_average else [])
    section.blocks.append(Block(f"Source: {PRETTY.get(source, source)}", headers, rows))
    return section


def cross_dataset(req: Request) -> Section:
    return transfer_section(req, "table2_cross_dataset", "Table 2a: cross-dataset transfer (source ImageNet)",
                            XD_TARGETS, req.paper.xd, with_average=True)


def domain_generalization(req: Request) -> Section:
    return transfer_section(req, "table2_domain_generalization", "Table 2b: domain generalisation (source ImageNet)",
                            DG_TARGETS, req.paper.dg, with_average=False)


def ablation(req: Request) -> Section:
    section = Section("table3_ablation", "Table 3: GOPro loss ablation (base-to-new average)")
    gopro = METHODS["gopro"]
    datasets = req.pick(B2N_DATASETS)
    comparable = tuple(datasets) == B2N_DATASETS
    headers = ["Losses", "Row", "Base / New / HM", "Paper, reading A", "Δ (A)", "Paper, reading B", "Δ (B)"]
    rows = []
    ours_by_label = {label: row for row, label in ABLATION_ROWS.items()}
    for label in req.paper.ablation_labels():
        row = ours_by_label.get(label)
        readings = {r: req.paper.ablation(label, r) for r in ("A", "B")}
        if row is None:  # the paper's unlabelled first row: no run of ours matches it
            rows.append([label, NO_VALUE, NO_VALUE, triple([Cell(None, p) for p in readings["A"]], "paper"),
                         NO_VALUE, triple([Cell(None, p) for p in readings["B"]], "paper"), NO_VALUE])
            continue
        layout = ablation_layout(req.layout, row)
        results = [b2n_result(layout, gopro, d, req.seeds, req.provenances) for d in datasets]
        by_reading = {r: b2n_average(results, readings[r], comparable) for r in ("A", "B")}
        cells = by_reading["A"]
        rows.append([label, row, triple(cells, "ours"), triple(cells, "paper"), triple(cells, "delta"),
                     triple(by_reading["B"], "paper"), triple(by_reading["B"], "delta")])
        section.records += [c.record(row=row, column="average", metric=k) for k, c in zip(METRICS, cells)]
    section.blocks.append(Block("", headers, rows))
    section.notes.append("The paper's Table 3 layout is uncertain: reading A puts each triple "
                         "after its label, reading B one label earlier. Row 'all' is GOPro's Table 1 run.")
    if not comparable:
        section.notes.append(f"Averages over the {len(datasets)} listed datasets: no Δ against the paper's 11.")
    return section


def nctx_points(req: Request) -> List[Tuple[str, List[Cell]]]:
    """Figure 2's points: (label, [base, new, HM] averages) for each M and the default point."""
    gopro = METHODS["gopro"]
    datasets = req.pick(B2N_DATASETS)
    points = [(str(m), f"M={m}, random init") for m in NCTX_LENGTHS] + [(NCTX_DEFAULT_POINT, 'M=4, "a photo of a"')]
    out = []
    for point, label in points:
        layout = nctx_layout(req.layout, point)
        results = [b2n_result(layout, gopro, d, req.seeds, req.provenances) for d in datasets]
        out.append((label, b2n_average(results, (None, None, None), comparable=False)))
    return out


def figure2(req: Request, points: List[Tuple[str, List[Cell]]]) -> Section:
    section = Section("fig2_nctx", "Figure 2: accuracy against the number of context tokens M (GOPro)")
    rows = [[label, *(c.format_ours() for c in cells)] for label, cells in points]
    section.blocks.append(Block("", ["Prompt", "Base", "New", "HM"], rows))
    section.records = [c.record(row=label, column="average", metric=k)
                       for label, cells in points for k, c in zip(METRICS, cells)]
    section.notes.append("The paper shows this as a plot without numbers.")
    return section


def plot_figure2(points: List[Tuple[str, List[Cell]]], path: Path) -> bool:
    """Base / new / HM averages against M; the "a photo of a" point as separate markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [(m, cells) for m, (_, cells) in zip(NCTX_LENGTHS, points) if cells[0].ours is not None]
    default = points[-1][1]
    if not swept and default[0].ours is None:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (metric, colour) in enumerate(zip(("Base", "New", "HM"), ("tab:blue", "tab:orange", "tab:green"))):
        if swept:
            ax.plot([m for m, _ in swept], [c[i].ours for _, c in swept], "o-", color=colour, label=metric)
        if default[i].ours is not None:
            ax.plot([4], [default[i].ours], "*", color=colour, markersize=13, markeredgecolor="black",
                    label=f'{metric}, M=4 "a photo of a"')
    ax.set_xscale("log", base=2)
    ax.set_xticks(NCTX_LENGTHS, [str(m) for m in NCTX_LENGTHS])
    ax.set_xlabel("number of context tokens M")
    ax.set_ylabel("accuracy (%), base-to-new average")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Modern baselines (not in the paper): ours beside each method's reported numbers
# --------------------------------------------------------------------------------------------
class Reported:
    """Base-to-new numbers the modern baselines' authors report (``paper/modern_baselines_reported.json``:
    the 11-dataset averages, and each dataset where a repository prints it), falling back to the GOPro
    paper (GOPro's own row, per dataset)."""

    def __init__(self, data: dict, paper: Paper):
        self.rows = data["base2new_average"]["rows"]
        self.per_dataset = data.get("base2new_per_dataset", {}).get("rows", {})
        self.sources = data.get("sources", {})
        self.paper = paper

    @classmethod
    def load(cls, paper: Paper, path: Path = REPORTED_JSON) -> "Reported":
        return cls(json.loads(Path(path).read_text()), paper)

    def _row(self, label: str, dataset: str) -> Optional[Tuple[Tuple[float, ...], str]]:
        """(base, new, hm) and the source key of a reported number; None where none is recorded."""
        if dataset == "average":
            row = self.rows.get(label)
            return (tuple(row["values"]), row["source"]) if row else None
        row = self.per_dataset.get(label)
        if row and dataset in row["values"]:
            return tuple(row["values"][dataset]), row["source"]
        return None

    def b2n(self, label: str, dataset: str) -> Tuple[Optional[float], ...]:
        found = self._row(label, dataset)
        return found[0] if found else self.paper.b2n(label, dataset)

    def b2n_source(self, label: str, dataset: str) -> str:
        found = self._row(label, dataset)
        if not found:
            return self.paper.b2n_source(label, dataset)
        return re.sub(r" at [0-9a-f]{7,40}$", "", self.sources.get(found[1], found[1]))  # without the commit


def paper_rows(req: Request) -> Request:
    """The request restricted to the paper's rows (Table 1 stays as published)."""
    return replace(req, methods=tuple(m for m in req.methods if m.paper_row))


def modern_baselines(req: Request) -> Optional[Section]:
    """Table 1's layout for the modern baselines and GOPro, "(reported)" beside ours; None when no
    modern baseline is asked for."""
    methods = tuple(m for m in req.methods if m.group == MODERN)
    if not methods:
        return None
    methods += tuple(m for m in req.methods if m.key == "gopro")
    section = table1(replace(req, methods=methods, paper=Reported.load(req.paper)))
    section.key = "modern_baselines_base2new"
    section.title = "Modern baselines: base-to-new, ours beside each method's reported numbers"
    for block in section.blocks:
        block.headers = [h.replace("(paper)", "(reported)") for h in block.headers]
    section.notes = [n.replace("The paper averages", "The reported numbers average") for n in section.notes]
    section.notes.append("Reported: the methods' own numbers (paper/modern_baselines_reported.json: the 11-dataset "
                         "averages, and each dataset where the method's repository prints it; \"–\" where nothing is "
                         "recorded) and the GOPro paper for GOPro. Same data, seeds, backbone and protocol for every row of ours.")
    return section


# --------------------------------------------------------------------------------------------
# Few-shot (CoOp's protocol): datasets x shots per method, the average beside the published ones
# --------------------------------------------------------------------------------------------
FewshotCells = Dict[str, Dict[str, List[Cell]]]  # method label -> dataset (and "average") -> one cell per shot count


def fewshot_cells(req: Request, shots_list: Sequence[int]) -> FewshotCells:
    """Each method's cells over seeds, per dataset and shot count, and their average over the datasets."""
    datasets = req.pick(B2N_DATASETS)
    cells: FewshotCells = {}
    for method in (m for m in req.methods if m.fewshot):
        rows = {d: [seed_cell([req.layout.fewshot_run(method, d, shots, s) for s in run_seeds(method, req.seeds)],
                              None, req.provenances) for shots in shots_list] for d in datasets}
        rows["average"] = [column_average([rows[d][i] for d in datasets], None, True, "datasets")
                           for i in range(len(shots_list))]
        cells[method.label] = rows
    return cells


@dataclass(frozen=True)
class PublishedFewshot:
    """One method's published few-shot numbers (``paper/fewshot_reported.json``): shots -> accuracy
    per dataset and on average, the backbone they were measured on and where they are printed."""

    label: str
    backbone: str
    source: str
    average: Dict[int, float]                 # the published 11-dataset average, else the mean of per_dataset
    average_derived: bool                     # True: the mean of the published per-dataset numbers
    per_dataset: Dict[str, Dict[int, float]]

    @property
    def origin(self) -> str:
        """The "Numbers from" column: the source, and how its average was obtained."""
        how = "; average = mean of its 11 per-dataset numbers" if self.average_derived and self.average else ""
        return self.source + how


def reported_average(per_dataset: Dict[str, Dict[int, float]], columns: Sequence[int]) -> Dict[int, float]:
    """The mean over the 11 datasets, per shot count, only where every one of them is published."""
    if set(per_dataset) != set(B2N_DATASETS):
        return {}
    return {n: mean([per_dataset[d][n] for d in B2N_DATASETS]) for n in columns}


def fewshot_reported(path: Path = FEWSHOT_REPORTED_JSON) -> Dict[str, PublishedFewshot]:
    """The published numbers, by method label (a row holds ``values``, a published average over the
    datasets, and/or ``per_dataset``, dataset -> one number per column)."""
    data = json.loads(Path(path).read_text())
    columns = data["columns"]
    reported = {}
    for label, row in data["rows"].items():
        per_dataset = {d: dict(zip(columns, values)) for d, values in row.get("per_dataset", {}).items()}
        published = dict(zip(columns, row["values"])) if "values" in row else {}
        reported[label] = PublishedFewshot(label, row["backbone"], row["source"],
                                           published or reported_average(per_dataset, columns), not published,
                                           per_dataset)
    return reported


def method_regime(label: str) -> str:
    """The regime of a row by its label ("" for a method the registry does not hold)."""
    try:
        return regime(get_method(label))
    except KeyError:
        return ""


def fewshot_section(cells: FewshotCells, shots_list: Sequence[int], reported: Dict[str, PublishedFewshot],
                    backbone: str = DEFAULT_BACKBONE) -> Section:
    """The average over the datasets (ours, then the published rows, each with its regime, backbone and
    source), then one block per method of ours: datasets x shots, with the published numbers of that
    method under each dataset where there are some."""
    section = Section("fewshot", "Few-shot classification (CoOp's protocol): all classes, accuracy (%) against shots per class")
    shot_headers = [f"{n} shot{'s' if n > 1 else ''}" for n in shots_list]
    average_rows = [[label, *(c.format_ours() for c in rows["average"]), method_regime(label), backbone, "ours"]
                    for label, rows in cells.items()]
    average_rows += [[f"{label} (reported)", *(_num2(r.average.get(n)) for n in shots_list), method_regime(label),
                      r.backbone, r.origin] for label, r in reported.items()]
    section.blocks.append(Block("Average over the datasets", ["Method", *shot_headers, "Regime", "Backbone",
                                                              "Numbers from"], average_rows))
    for label, rows in cells.items():
        published = reported[label].per_dataset if label in reported else {}
        block_rows = []
        for d, row in rows.items():
            block_rows.append([PRETTY.get(d, d), *(c.format_ours() for c in row)])
            if d in published:
                block_rows.append([f"{PRETTY.get(d, d)} (reported, {reported[label].backbone})",
                                   *(_num2(published[d].get(n)) for n in shots_list)])
        section.blocks.append(Block(label, ["Dataset", *shot_headers], block_rows))
        section.records += [c.record(row=label, column=f"{d}/{n}shots", metric="accuracy")
                            for d, row in rows.items() for n, c in zip(shots_list, row)]
    section.notes.append("Each run trains on N images of every class and tests on all classes of the test split "
                         "(scripts/reproduce/fewshot.sh); zero-shot CLIP is one run per dataset, the same at every N. "
                         "Reported: paper/fewshot_reported.json, each row on the backbone it names (compare rows of "
                         "one backbone); its not_found list says which published numbers are missing and why.")
    return section


def _num2(value: Optional[float]) -> str:
    return NO_VALUE if value is None else f"{value:.2f}"


def plot_fewshot(cells: FewshotCells, shots_list: Sequence[int], reported: Dict[str, PublishedFewshot], path: Path) -> bool:
    """One panel per dataset and one for the average: accuracy against shots (log scale), a line per
    method, the published numbers dashed (CoOp's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(next(iter(cells.values()), {}))
    panels = ["average", *[p for p in panels if p != "average"]]
    if not any(c.ours is not None for rows in cells.values() for row in rows.values() for c in row):
        return False
    columns = 4
    fig, axes = plt.subplots((len(panels) + columns - 1) // columns, columns, figsize=(13, 3 * ((len(panels) + 3) // 4)),
                             squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, rows in cells.items():
            points = [(n, c.ours) for n, c in zip(shots_list, rows[panel]) if c.ours is not None]
            if points:
                ax.plot(*zip(*points), "o-", label=label)
        for label, r in reported.items():
            values = r.average if panel == "average" else r.per_dataset.get(panel, {})
            shown = [n for n in shots_list if n in values]
            if shown:
                ax.plot(shown, [values[n] for n in shown], "--", label=f"{label} (reported, {r.backbone})")
        ax.set_title("Average over datasets" if panel == "average" else PRETTY.get(panel, panel), fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(shots_list), [str(n) for n in shots_list])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("accuracy (%)")
    axes.flat[0].set_xlabel("shots per class")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Multi-source domain generalisation (leave one domain out): targets x methods per dataset
# --------------------------------------------------------------------------------------------
def msdg_section(req: Request) -> Section:
    section = Section("msdg", "Multi-source domain generalisation: train on the other domains, test on the target")
    methods = [m for m in req.methods if m.xd_cfg and not m.zero_shot]
    for dataset in req.pick(MSDG_DATASETS):
        targets = MSDG_DOMAINS[dataset]
        rows = []
        for method in methods:
            cells = [seed_cell([req.layout.msdg_run(method, dataset, t, s) for s in req.seeds], None, req.provenances)
                     for t in targets]
            cells.append(column_average(cells, None, True, "targets"))
            rows.append([method.label, *(c.format_ours() for c in cells)])
            section.records += [c.record(row=method.label, column=f"{dataset}/{t}", metric="accuracy")
                                for t, c in zip((*targets, "average"), cells)]
        section.blocks.append(Block(PRETTY.get(dataset, dataset), ["Method", *targets, "Avg"], rows))
    section.notes.append("Ours: mean ± std over seeds of the target domain's accuracy; Avg: mean over the targets "
                         "(scripts/reproduce/msdg.sh).")
    return section


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def to_markdown(sections: Sequence[Section], header: str) -> str:
    parts = [header]
    footnotes: Dict[str, int] = {}  # setting → footnote number, in order of appearance

    def number(match: re.Match) -> str:
        return f"[{footnotes.setdefault(match.group(1), len(footnotes) + 1)}]"

    for section in sections:
        parts.append(f"## {section.title}")
        for block in section.blocks:
            if block.title:
                parts.append(f"### {block.title}")
            rows = [[FOOTNOTE.sub(number, cell) for cell in row] for row in block.rows]
            parts.append(tabulate(rows, block.headers, tablefmt="github", disable_numparse=True))
        parts += [f"_{note}_" for note in section.notes]
    if footnotes:
        parts.append("## Settings that are not the paper's\n\nMarked numbers come from runs whose recorded "
                     "settings (run.json) differ from what the scripts run by default:\n\n" +
                     "\n".join(f"* [{n}] {text}" for text, n in footnotes.items()))
    return "\n\n".join(parts) + "\n"


CSV_FIELDS = ["row", "column", "metric", "ours", "std", "seeds", "expected_seeds", "paper", "delta", "note",
              "settings"]


def write_csv(sections: Sequence[Section], folder: Path) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for section in sections:
        path = folder / f"{section.key}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(section.records)
        paths.append(path)
    return paths


def build_sections(req: Request, tables: Sequence[str]) -> Tuple[List[Section], Optional[list]]:
    builders = {"table1": lambda r: table1(paper_rows(r)), "xd": cross_dataset, "dg": domain_generalization,
                "table3": ablation, "modern": modern_baselines, "msdg": msdg_section}
    sections, points = [], None
    for name in tables:
        if name == "fewshot":
            continue  # its own section and plot (main): it needs the shot counts
        if name == "fig2":
            points = nctx_points(req)
            sections.append(figure2(req, points))
        else:
            sections.append(builders[name](req))
    return [s for s in sections if s is not None], points


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_root", type=Path, help="the OUTPUT folder the scripts wrote (e.g. output/)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--csv", type=Path, help="also write one CSV per table into this folder")
    parser.add_argument("--figures", type=Path, help="folder for fig2_nctx.png (default: OUTPUT_ROOT/figures)")
    parser.add_argument("--methods", nargs="+", default=list(REPORTED_METHODS),
                        help=f"rows to show, by script folder or paper name (default: {' '.join(REPORTED_METHODS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--datasets", nargs="+", help="only these datasets (config names; default: all)")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=[t for t in TABLES if t not in OWN_PROTOCOLS],
                        help=f"default: all but {' and '.join(OWN_PROTOCOLS)} (ask for them by name)")
    parser.add_argument("--shots", type=int, default=16, help="SHOTS the runs used (default: 16)")
    parser.add_argument("--xd-source", default="imagenet", help="XD_SOURCE the runs used (default: imagenet)")
    parser.add_argument("--paper", type=Path, default=PAPER_JSON, help="the paper's numbers (JSON)")
    parser.add_argument("--backbones", nargs="+", metavar="NAME",
                        help="backbones whose runs to report, one set of tables each, as BACKBONE names them "
                             "('' = the configs' own; default: every backbone with runs under OUTPUT_ROOT)")
    parser.add_argument("--shots-list", nargs="+", type=int, default=list(FEWSHOT_SHOTS),
                        help="shot counts of the few-shot table (default: 1 2 4 8 16)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.output_root.is_dir():
        print(f"{args.output_root} is not a folder: pass the OUTPUT root the scripts wrote.", file=sys.stderr)
        return 2
    try:
        methods = tuple(dict.fromkeys(get_method(name) for name in args.methods))
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    known = B2N_DATASETS + DG_TARGETS + MSDG_DATASETS
    unknown = [d for d in args.datasets or () if d not in known]
    if unknown:
        print(f"Unknown dataset(s) {unknown}: choose from {' '.join(known)}.", file=sys.stderr)
        return 2
    root = Layout(args.output_root.resolve(), args.shots, args.xd_source)
    backbones = args.backbones or root.backbones()
    for backbone in backbones:
        req = Request(root.on_backbone(backbone), Paper.load(args.paper), methods, tuple(args.seeds),
                      tuple(args.datasets or known))
        report_backbone(req, args, labelled=backbones != [""])
    return 0


def report_backbone(req: Request, args, labelled: bool) -> None:
    """Print (and write) every table of the runs on one backbone; ``labelled``: say which."""
    sections, points = build_sections(req, args.tables)
    fewshot = fewshot_cells(req, args.shots_list) if "fewshot" in args.tables else None
    if fewshot is not None:
        sections.append(fewshot_section(fewshot, args.shots_list, fewshot_reported(),
                                        req.layout.backbone or DEFAULT_BACKBONE))
    header = (f"# Results in {req.layout.tree}\n\nSeeds {' '.join(map(str, req.seeds))}, {req.layout.shots} shots. "
              "Ours: mean ± std over seeds; paper: GOPro (BMVC 2023); Δ = ours − paper.")
    if labelled:
        backbone = req.layout.backbone or f"{DEFAULT_BACKBONE} (the configs' own)"
        header += f" Backbone: {backbone}."
    if req.layout.shots != 16:
        header += " The paper uses 16 shots."
    if req.provenances.unknown:
        header += (f"\n\n{len(req.provenances.unknown)} run(s) record no settings (no run.json, no config in their "
                   "log), so they cannot be checked against the paper's settings.")
    text = to_markdown(sections, header)
    print(text)
    subfolder = "" if req.layout.own_backbone else backbone_folder(req.layout.backbone)
    if args.markdown:
        markdown = args.markdown.with_name(f"{args.markdown.stem}_{subfolder}{args.markdown.suffix}") if subfolder \
            else args.markdown
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)
        print(f"Markdown written to {markdown}")
    if args.csv:
        print(f"CSV written to {', '.join(str(p) for p in write_csv(sections, args.csv / subfolder))}")
    if points is not None:
        figure = (args.figures or args.output_root / "figures") / subfolder / "fig2_nctx.png"
        if plot_figure2(points, figure):
            print(f"Figure 2 written to {figure}")
        else:
            print("Figure 2: no N_CTX run has results yet (scripts/reproduce/fig2.sh), no plot written.")
    if fewshot is not None:
        figure = (args.figures or args.output_root / "figures") / subfolder / "fewshot.png"
        if plot_fewshot(fewshot, args.shots_list, fewshot_reported(), figure):
            print(f"Few-shot figure written to {figure}")
        else:
            print("Few-shot: no run has results yet (scripts/reproduce/fewshot.sh), no plot written.")


if __name__ == "__main__":
    sys.exit(main())
