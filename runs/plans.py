"""The job plans of the reproduce commands: which method script invocations make a table or figure,
in runnable order, with their dependencies and output folders. ``runs/jobs.py`` schedules them;
the report reads them to find which job writes a folder (it never imports the scheduler).

A *job* is one invocation of a method script (``scripts/<method>/*.sh``) with its arguments and
environment; a job that needs another one's output (an evaluation needs its training run) lists it
as a dependency. Tables: see ``runs/jobs.py``.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from runs.layout import Layout, Run, ablation_layout, nctx_layout
from runs.methods import ABLATION_ROWS, METHODS, NCTX_POINTS, PAPER_METHODS, Method, get_method
from runs.results import B2N_DATASETS, DG_TARGETS, MSDG_DATASETS, MSDG_DOMAINS, XD_TARGETS
from runs.steps import GENERIC_RUNNER, shots_of

REPO = Path(__file__).resolve().parents[1]

# Variables the scripts read (scripts/common.sh); written into Slurm job lists when set.
PASS_THROUGH = ("DATA", "OUTPUT", "SHOTS", "EPOCHS", "BACKBONE", "XD_SOURCE", "EXTRA_OPTS", "TEACHER_BACKBONE",
                "TEACHER_OPTS", "PYTHON", "RERUN_STALE")
FIG3_METHODS = ("slip", "cocoop", "gopro")  # the paper's Figure 3 panels
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)  # CoOp's few-shot protocol
FEWSHOT_METHODS = tuple(key for key, m in METHODS.items() if m.fewshot)
MSDG_METHODS = tuple(key for key in PAPER_METHODS if not METHODS[key].zero_shot)


# --------------------------------------------------------------------------------------------
# Jobs and plans
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One script invocation. ``run`` (or ``product``) tells whether it has already finished."""

    id: str
    script: str                          # relative to the repository, e.g. scripts/gopro/base2new_train.sh
    args: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...] = ()  # job-specific variables (CFG, EPOCHS, METHODS)
    deps: Tuple[str, ...] = ()
    run: Optional[Run] = None
    product: Optional[Path] = None
    also: Tuple[Run, ...] = ()           # other runs the script makes (a sweep trains, then evaluates ``run``)

    @property
    def checkable(self) -> bool:
        return self.run is not None or self.product is not None

    def done(self) -> bool:
        if self.run is not None:
            return self.run.done
        return self.product is not None and self.product.is_file()

    def command(self) -> List[str]:
        return ["bash", self.script, *self.args]

    def shell(self, env: Mapping[str, str]) -> str:
        """A one-line shell command (``env K=V ... bash script args``), for job lists and logs."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in {**env, **dict(self.env)}.items()]
        return " ".join((["env", *assignments] if assignments else []) + [shlex.quote(a) for a in self.command()])


@dataclass
class Plan:
    table: str
    jobs: List[Job] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # why a method or job is left out

    def add(self, job: Job) -> Job:
        self.jobs.append(job)
        return job

    def check(self) -> None:
        """Ids are unique and every dependency comes earlier in the list (so list order is runnable)."""
        seen = set()
        for job in self.jobs:
            if job.id in seen:
                raise ValueError(f"Duplicate job id {job.id!r}")
            missing = [d for d in job.deps if d not in seen]
            if missing:
                raise ValueError(f"Job {job.id!r} depends on {missing}, which are not earlier in the list")
            seen.add(job.id)


@dataclass(frozen=True)
class Selection:
    """What to run and where: the parsed lists plus the output layout and the callers' variables."""

    methods: Tuple[Method, ...]
    datasets: Tuple[str, ...]
    seeds: Tuple[int, ...]
    layout: Layout
    user_env: Mapping[str, str]
    rows: Tuple[str, ...] = tuple(ABLATION_ROWS)
    points: Tuple[str, ...] = NCTX_POINTS
    shots_list: Tuple[int, ...] = FEWSHOT_SHOTS


def script(method: Method, name: str) -> str:
    return f"scripts/{method.key}/{name}.sh"


def step(method: Method, name: str, *args: str) -> Tuple[str, Tuple[str, ...]]:
    """The script and arguments that run step ``name`` of a method: its own ``scripts/<key>/<name>.sh``
    where it has one (the habitual entry point), else the generic runner (``scripts/run.sh KEY STEP``),
    so that a method with only its registry entry runs too."""
    own = script(method, name)
    if (REPO / own).is_file() or not (REPO / GENERIC_RUNNER).is_file():
        return own, args
    return GENERIC_RUNNER, (method.key, name, *args)


def missing_scripts(method: Method, names: Sequence[str]) -> List[str]:
    return [script(method, n) for n in names if not (REPO / script(method, n)).is_file()]


def usable(plan: Plan, method: Method, names: Sequence[str], generic: bool = True) -> bool:
    """False (and a note in the plan) when neither the method's scripts nor (for protocol steps,
    ``generic``) the generic runner are in this checkout."""
    missing = missing_scripts(method, names)
    runnable = not missing or (generic and (REPO / GENERIC_RUNNER).is_file())
    if not runnable:
        plan.skipped.append(f"{method.key}: skipped, {', '.join(missing)} not found (method not in this checkout)")
    return runnable


PROTOCOL_NAMES = {"b2n": ("base-to-new", "b2n_cfg"), "xd": ("cross-dataset", "xd_cfg")}


def defines(plan: Plan, method: Method, protocol: str) -> bool:
    """False (and a note in the plan) for a method whose upstream does not define ``protocol`` (the
    frozen-feature methods but GDA run the few-shot protocol only) or whose cross-dataset runs the
    scripts do not have (a distilled student, runs/steps.py), so that asking a table for every
    method schedules what each one has instead of stopping."""
    name, key = PROTOCOL_NAMES[protocol]
    if protocol == "xd" and method.teacher is not None:
        plan.skipped.append(f"{method.key}: skipped, no cross-dataset runs here (its student would need a "
                            "teacher exported for each target)")
        return False
    if getattr(method, key):
        return True
    plan.skipped.append(f"{method.key}: skipped, it does not define the {name} protocol (no {key})")
    return False


def cfg_env(method: Method, protocol: str, dataset: str = "") -> Tuple[Tuple[str, str], ...]:
    """The job's CFG: the registry's config for this protocol and dataset."""
    return (("CFG", method.cfg(protocol, dataset)),)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def zero_shot_job(plan: Plan, method: Method, dataset: str, subsample: str, run: Run) -> Job:
    return plan.add(Job(f"zsclip/{subsample}/{dataset}", *step(method, "zeroshot", dataset, subsample),
                        env=(("CFG", method.b2n_cfg),), run=run))


def b2n_train_job(plan: Plan, sel: Selection, method: Method, dataset: str, seed: int) -> Job:
    return plan.add(Job(f"{method.key}/b2n_train/{dataset}/seed{seed}",
                        *step(method, "base2new_train", dataset, str(seed)), cfg_env(method, "b2n", dataset),
                        run=sel.layout.b2n_run(method, "base", dataset, seed)))


def table1(sel: Selection) -> Plan:
    plan = Plan("table1")
    for method in sel.methods:
        if method.zero_shot:
            if usable(plan, method, ["zeroshot"]):
                for dataset in sel.datasets:
                    for sub in ("base", "new"):
                        zero_shot_job(plan, method, dataset, sub, sel.layout.b2n_run(method, sub, dataset, 0))
            continue
        if not defines(plan, method, "b2n") or not usable(plan, method, ["base2new_train", "base2new_test"]):
            continue
        for dataset in sel.datasets:
            for seed in sel.seeds:
                train = b2n_train_job(plan, sel, method, dataset, seed)
                plan.add(Job(f"{method.key}/b2n_test/{dataset}/seed{seed}",
                             *step(method, "base2new_test", dataset, str(seed)), cfg_env(method, "b2n", dataset), deps=(train.id,),
                             run=sel.layout.b2n_run(method, "new", dataset, seed)))
    return plan


def transfer(sel: Selection, table: str) -> Plan:
    """Train once on the source dataset per method and seed, then evaluate on every target."""
    plan = Plan(table)
    source = sel.layout.xd_source
    targets = [d for d in sel.datasets if d != source]
    for method in sel.methods:
        if method.zero_shot:
            if usable(plan, method, ["zeroshot"]):
                for dataset in [source, *targets]:
                    zero_shot_job(plan, method, dataset, "all", sel.layout.xd_run(method, dataset, 0))
            continue
        if not defines(plan, method, "xd") or not usable(plan, method, ["xd_train", "xd_test"]):
            continue
        env = cfg_env(method, "xd")
        for seed in sel.seeds:
            train = plan.add(Job(f"{method.key}/xd_train/seed{seed}", *step(method, "xd_train", str(seed)), env,
                                 run=sel.layout.xd_run(method, source, seed)))
            for dataset in targets:
                plan.add(Job(f"{method.key}/xd_test/{dataset}/seed{seed}",
                             *step(method, "xd_test", dataset, str(seed)), env, deps=(train.id,), run=sel.layout.xd_run(method, dataset, seed)))
    return plan


def gopro_sweep(name: str, script_name: str, settings: Sequence[str], layout_of, sel: Selection) -> Plan:
    """Base-to-new GOPro runs of ``scripts/gopro/<script_name>.sh SETTING DATASET SEED`` for every setting
    (Table 3's loss rows, Figure 2's prompt lengths), each in the output tree ``layout_of(layout, setting)``."""
    plan = Plan(name)
    gopro = METHODS["gopro"]
    if not usable(plan, gopro, [script_name]):
        return plan
    for setting in settings:
        layout = layout_of(sel.layout, setting)
        for dataset in sel.datasets:
            for seed in sel.seeds:
                plan.add(Job(f"gopro/{script_name}/{setting}/{dataset}/seed{seed}",
                             *step(gopro, script_name, setting, dataset, str(seed)), cfg_env(gopro, "b2n", dataset),
                             run=layout.b2n_run(gopro, "new", dataset, seed),
                             also=(layout.b2n_run(gopro, "base", dataset, seed),)))
    return plan


def table3(sel: Selection) -> Plan:
    return gopro_sweep("table3", "ablation", sel.rows, ablation_layout, sel)


def fig2(sel: Selection) -> Plan:
    return gopro_sweep("fig2", "nctx", sel.points, nctx_layout, sel)


def fig3(sel: Selection) -> Plan:
    """Base-to-new training of each method, then one t-SNE plot per dataset and seed that needs them all."""
    plan = Plan("fig3")
    if not usable(plan, METHODS["gopro"], ["tsne"], generic=False):
        return plan
    for dataset in sel.datasets:
        for seed in sel.seeds:
            shown, trains = [], []
            for method in sel.methods:
                if method.zero_shot:  # no checkpoint to train
                    shown.append(method.key)
                elif defines(plan, method, "b2n") and usable(plan, method, ["base2new_train"]):
                    shown.append(method.key)
                    trains.append(b2n_train_job(plan, sel, method, dataset, seed).id)
            if not shown:
                continue
            product = sel.layout.root / "figures" / f"tsne_{dataset}_seed{seed}.png"
            plan.add(Job(f"tsne/{dataset}/seed{seed}", "scripts/gopro/tsne.sh", (str(seed), dataset),
                         env=(("METHODS", " ".join(shown)),), deps=tuple(trains), product=product))
    plan.skipped = list(dict.fromkeys(plan.skipped))
    return plan


def fewshot(sel: Selection) -> Plan:
    """CoOp's protocol: one training run per method, dataset, shot count and seed, whose final test on
    all classes is the result; zero-shot CLIP once per dataset. Methods without it are noted and left out."""
    plan = Plan("fewshot")
    for method in sel.methods:
        if not method.fewshot:
            plan.skipped.append(f"{method.key}: skipped, it does not define the few-shot protocol (no fewshot_cfg)")
            continue
        if method.zero_shot:
            if usable(plan, method, ["zeroshot"]):
                for dataset in sel.datasets:
                    zero_shot_job(plan, method, dataset, "all", sel.layout.fewshot_run(method, dataset, 0, 0))
            continue
        if not usable(plan, method, ["fewshot"]):
            continue
        for dataset in sel.datasets:
            for shots in sel.shots_list:
                for seed in sel.seeds:
                    plan.add(Job(f"{method.key}/fewshot/{dataset}/shots{shots}/seed{seed}",
                                 *step(method, "fewshot", dataset, str(shots), str(seed)),
                                 env=(("CFG", method.fewshot_config(dataset, shots)),),
                                 run=sel.layout.fewshot_run(method, dataset, shots, seed)))
    return plan


def msdg(sel: Selection) -> Plan:
    """Leave one domain out: per method, multi-domain dataset, held-out domain and seed, one run that
    trains on the other domains and tests on the held-out one."""
    plan = Plan("msdg")
    for method in sel.methods:
        if method.zero_shot or not method.xd_cfg:
            plan.skipped.append(f"{method.key}: skipped, no domain generalisation runs (zero-shot, or no xd_cfg)")
            continue
        if not usable(plan, method, ["msdg"]):
            continue
        for dataset in sel.datasets:
            for target in MSDG_DOMAINS.get(dataset, ()):
                for seed in sel.seeds:
                    plan.add(Job(f"{method.key}/msdg/{dataset}/{target}/seed{seed}",
                                 *step(method, "msdg", dataset, target, str(seed)), cfg_env(method, "xd"),
                                 run=sel.layout.msdg_run(method, dataset, target, seed)))
    return plan


@dataclass(frozen=True)
class TableSpec:
    build: Callable[[Selection], Plan]
    methods: Tuple[str, ...]
    datasets: Tuple[str, ...]
    seeds: Tuple[int, ...] = (1, 2, 3)


TABLES: Dict[str, TableSpec] = {
    "table1": TableSpec(table1, PAPER_METHODS, B2N_DATASETS),
    "xd": TableSpec(lambda sel: transfer(sel, "xd"), PAPER_METHODS, XD_TARGETS),
    "table2": TableSpec(lambda sel: transfer(sel, "table2"), PAPER_METHODS, DG_TARGETS),
    "table3": TableSpec(table3, ("gopro",), B2N_DATASETS),
    "fig2": TableSpec(fig2, ("gopro",), B2N_DATASETS),
    "fig3": TableSpec(fig3, FIG3_METHODS, ("eurosat",), seeds=(1,)),
    "fewshot": TableSpec(fewshot, FEWSHOT_METHODS, B2N_DATASETS),
    "msdg": TableSpec(msdg, MSDG_METHODS, MSDG_DATASETS),
}



def split_list(text: Optional[str]) -> List[str]:
    return [t for t in re.split(r"[\s,]+", text or "") if t]


def pick(flag: Optional[List[str]], env_value: Optional[str], default: Sequence) -> List[str]:
    """Flag, else environment variable, else the table's default."""
    if flag:
        return [t for item in flag for t in split_list(item)]
    return split_list(env_value) or [str(d) for d in default]


def build_selection(table: str, args, environ: Mapping[str, str]) -> Selection:
    spec = TABLES[table]
    methods = tuple(dict.fromkeys(get_method(m) for m in pick(args.methods, environ.get("METHODS"), spec.methods)))
    datasets = tuple(pick(args.datasets, environ.get("DATASETS"), spec.datasets))
    known = set(B2N_DATASETS + DG_TARGETS + MSDG_DATASETS)
    unknown = [d for d in datasets if d not in known and not (REPO / "configs" / "datasets" / f"{d}.yaml").is_file()]
    if unknown:
        raise ValueError(f"Unknown dataset(s) {unknown}: use config names such as {' '.join(B2N_DATASETS)}")
    try:
        seeds = tuple(int(s) for s in pick(args.seeds, environ.get("SEEDS"), spec.seeds))
    except ValueError:
        raise ValueError(f"SEEDS must be integers, got {args.seeds or environ.get('SEEDS')!r}")
    rows = tuple(pick(None, environ.get("ROWS"), ABLATION_ROWS))
    points = tuple(pick(None, environ.get("NCTX"), NCTX_POINTS))
    for row in rows:
        ablation_layout(Layout(Path(".")), row)  # raises with the valid names
    for point in points:
        nctx_layout(Layout(Path(".")), point)
    shots_list = tuple(shots_of(s) for s in pick(None, environ.get("SHOTS_LIST"), FEWSHOT_SHOTS))
    layout = Layout(Path(environ["OUTPUT"]), int(environ.get("SHOTS") or 16), environ.get("XD_SOURCE") or "imagenet",
                    environ.get("BACKBONE") or "")
    return Selection(methods, datasets, seeds, layout, environ, rows, points, shots_list)
