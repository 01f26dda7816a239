"""The train.py runs of one protocol step, with the caller's options, and running them: what every
method script does (``scripts/<method>/*.sh`` and ``scripts/run.sh`` are one-line calls of this).

    python -m runs.steps [--script NAME] METHOD STEP ARGS...

Steps (the runs come from the method registry, ``runs/methods.py``, and the output layout,
``runs/layout.py``):

    base2new_train DATASET SEED    training on the base classes
    base2new_test DATASET SEED     the new classes, with the last epoch of that training
    xd_train SEED                  all classes of the cross-dataset source (ImageNet)
    xd_test DATASET SEED           a cross-dataset / domain-generalisation target, the last epoch
    fewshot DATASET SHOTS SEED     CoOp's few-shot protocol: training on SHOTS images of every class,
                                   then, in the same run, the test on all classes of the test split
    msdg DATASET TARGET SEED       multi-source domain generalisation: training on every domain of a
                                   multi-domain dataset but TARGET (all classes, all images), then, in
                                   the same run, the test on TARGET; the method's cross-dataset config
    zeroshot DATASET [SUBSET]      zero-shot CLIP on all, base or new classes (no seed, no training)
    SWEEP SETTING DATASET SEED     a setting of one of the method's sweeps (GOPro: ablation ROW,
                                   nctx M): base-to-new training, then its test

A distilled method (a registry ``teacher``: PromptKD) also has ``teacher_train DATASET SEED`` (the
teacher method's base-to-new training with the teacher's config, same dataset and seed); its
``base2new_train`` runs it first (skipped when done), and its runs receive the teacher's folder (the
student exports the teacher's features there where they are missing). It has no cross-dataset
steps yet (the teacher's features cover its own dataset). BACKBONE is the student's: the teacher
runs on its config's backbone (PromptKD: ViT-L/14, upstream's fixed teacher), or on TEACHER_BACKBONE
(an OpenAI CLIP name; open_clip teachers are refused), in that backbone's tree of the layout; its runs get EXTRA_OPTS then TEACHER_OPTS (``Caller.teacher``),
and the student's runs get the teacher's backbone name (``Teacher.backbone_option``).

The caller's options come from the environment (``Caller.from_environ``; see scripts/common.sh):
DATA, OUTPUT, SHOTS, XD_SOURCE, CFG, EPOCHS (``OPTIM.MAX_EPOCH``), BACKBONE (``--backbone``),
EXTRA_OPTS (``KEY VALUE`` pairs split like a shell command line), TEACHER_BACKBONE, TEACHER_OPTS
and RERUN_STALE. Each run is
skipped when its folder holds its final result made with these settings, resumes when unfinished,
and, when the folder holds a run with other settings (stale), stops the step with exit status 3
unless RERUN_STALE moves the folder aside to ``<folder>.stale-<time>``. Wrong arguments (their
number, an unknown dataset, a step the method does not have, a bad setting, bad EXTRA_OPTS) exit
with status 2 and the reason on stderr, before anything runs; ``--script`` names the script in the
usage line.

Other modules ask for runs in-process: ``runs_of(method, step, args, caller)`` and
``command_runs(command, environ)`` (the runs of a script command line such as
``bash scripts/gopro/ablation.sh ce dtd 1``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

from runs.children import die_with_parent
from runs.identity import FolderState, asked_settings, end_signals, folder_state
from runs.layout import Layout, sweep_layout
from runs.methods import REPO, Method, get_method
from runs.records import IDENTITY_FILE, LOG_FILE
from runs.results import MSDG_DOMAINS

LOAD_LAST = ("--load-epoch", "last")  # evaluations load the final epoch of their training run
STEP_USAGE = {"base2new_train": "DATASET SEED", "base2new_test": "DATASET SEED", "xd_train": "SEED",
              "xd_test": "DATASET SEED", "fewshot": "DATASET SHOTS SEED",
              "msdg": "DATASET TARGET SEED", "zeroshot": "DATASET [all|base|new]"}
STEPS = tuple(STEP_USAGE)
EXIT_USAGE, EXIT_STALE = 2, 3
FEATURE_CACHE_KEY, FEATURE_CACHE_FOLDER = "TRAINER.FEATURE_CACHE_DIR", "feature_cache"  # <OUTPUT>/feature_cache
GENERIC_RUNNER = "scripts/run.sh"  # any protocol step of any method: run.sh METHOD STEP ARGS...

StepRun = Tuple[Path, Tuple[str, ...]]  # a run's folder and its train.py arguments before the caller's options


class UsageError(ValueError):
    """Arguments that do not fit a step; the message is the step's usage."""


@dataclass(frozen=True)
class Context:
    """Where a step's runs go: DATA, OUTPUT (as a layout, with SHOTS and XD_SOURCE), CFG."""

    data: str
    layout: Layout
    cfg: str = ""  # the scripts' CFG: a config name that replaces the method's default

    @property
    def shots(self) -> str:
        return str(self.layout.shots)


def split_extra_opts(text: str, variable: str = "EXTRA_OPTS") -> Tuple[str, ...]:
    """``variable`` (EXTRA_OPTS, TEACHER_OPTS) as train.py's KEY VALUE words, split like a shell
    would (quotes keep spaces; nothing is run or expanded, so values such as (32,32) stay as they are)."""
    if not text:
        return ()
    try:
        words = shlex.split(text)
    except ValueError:
        raise ValueError(f"{variable} has an unmatched quote: {text}") from None
    if len(words) % 2:
        raise ValueError(f"{variable} must be KEY VALUE pairs, got {len(words)} words: {text} "
                         "(quote a value with spaces: KEY 'a b')")
    return tuple(words)


@dataclass(frozen=True)
class Caller:
    """The caller's options, as the scripts' environment gives them (the module docstring)."""

    data: str
    output: Path
    shots: int = 16
    xd_source: str = "imagenet"
    cfg: str = ""
    epochs: str = ""
    backbone: str = ""
    extra_opts: Tuple[str, ...] = ()
    teacher_backbone: str = ""           # a distillation teacher's backbone ("" = its config's)
    teacher_opts: Tuple[str, ...] = ()   # options of the teacher's runs only, after extra_opts
    rerun_stale: bool = False
    python: str = field(default=sys.executable, compare=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Caller":
        """ValueError, saying which variable is wrong, for an unusable SHOTS or EXTRA_OPTS."""
        shots = environ.get("SHOTS") or "16"
        if not shots.isdigit():
            raise ValueError(f"SHOTS must be a number of images per class, got {shots!r}")
        return cls(data=environ.get("DATA") or str(REPO / "DATA"), output=Path(environ.get("OUTPUT") or REPO / "output"),
                   shots=int(shots), xd_source=environ.get("XD_SOURCE") or "imagenet", cfg=environ.get("CFG", ""),
                   epochs=environ.get("EPOCHS", ""), backbone=environ.get("BACKBONE", ""),
                   extra_opts=split_extra_opts(environ.get("EXTRA_OPTS", "")),
                   teacher_backbone=environ.get("TEACHER_BACKBONE", ""),
                   teacher_opts=split_extra_opts(environ.get("TEACHER_OPTS", ""), "TEACHER_OPTS"),
                   rerun_stale=bool(environ.get("RERUN_STALE")), python=environ.get("PYTHON") or "python")

    def teacher(self) -> "Caller":
        """The options of a distillation teacher's runs: BACKBONE names the student's backbone, so
        the teacher keeps its config's (or TEACHER_BACKBONE), and its runs live in that backbone's
        tree; TEACHER_OPTS follow EXTRA_OPTS, so they win (e.g. the teacher's MODEL.BACKBONE.PATH
        where EXTRA_OPTS gives the student's weights file)."""
        return dataclasses.replace(self, backbone=self.teacher_backbone,
                                   extra_opts=(*self.extra_opts, *self.teacher_opts))

    @property
    def context(self) -> Context:
        return Context(self.data, Layout(self.output, self.shots, self.xd_source, self.backbone), self.cfg)

    def argv(self, folder: Path, args: Sequence[str]) -> Tuple[str, ...]:
        """train.py's arguments for a run: the backbone, the folder, the step's arguments, then the
        epoch override and the extras (last, so that they win over the step's own options)."""
        backbone = ("--backbone", self.backbone) if self.backbone else ()
        epochs = ("OPTIM.MAX_EPOCH", self.epochs) if self.epochs else ()
        return (*backbone, "--output-dir", str(folder), *args, *epochs, *self.extra_opts)


@dataclass(frozen=True)
class TrainRun:
    """One ``train.py`` invocation: its arguments (which name its output folder)."""

    argv: Tuple[str, ...]

    @property
    def folder(self) -> Path:
        return Path(self.argv[self.argv.index("--output-dir") + 1])

    @property
    def eval_only(self) -> bool:
        return "--eval-only" in self.argv

    def state(self) -> FolderState:
        return folder_state(self.folder, end_signals(self.eval_only), lambda: asked_settings(self.argv))


def dataset_config(dataset: str) -> str:
    """configs/datasets/<dataset>.yaml; ValueError naming the known datasets when there is none."""
    path = REPO / "configs" / "datasets" / f"{dataset}.yaml"
    if not path.is_file():
        known = " ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ValueError(f"Unknown dataset '{dataset}' (no configs/datasets/{dataset}.yaml). Known: {known}")
    return str(path)


def run_args(method: Method, ctx: Context, cfg: str, dataset: str, seed: Optional[int]) -> List[str]:
    """The arguments every run of ``method`` starts with (zero-shot CLIP has no seed)."""
    seeded = ["--seed", str(seed)] if seed is not None else []
    return ["--root", ctx.data, *seeded, "--trainer", method.trainer, "--dataset-config-file", dataset_config(dataset),
            "--config-file", str(method.config_path(cfg))]


def base2new(method: Method, ctx: Context, dataset: str, seed: int, phases: Sequence[str],
             options: Sequence[str] = ()) -> List[StepRun]:
    """Training on the base classes (phase "train") and/or the new-class test of its last epoch ("test")."""
    cfg = method.cfg("b2n", dataset, ctx.cfg)
    trained = ctx.layout.b2n_dir("train_base", dataset, method.folder, cfg, seed)
    shots = ("DATASET.NUM_SHOTS", ctx.shots)
    runs = []
    if "train" in phases:
        runs.append((trained, (*run_args(method, ctx, cfg, dataset, seed), *shots,
                                       "DATASET.SUBSAMPLE_CLASSES", "base", *options)))
    if "test" in phases:
        tested = ctx.layout.b2n_dir("test_new", dataset, method.folder, cfg, seed)
        runs.append((tested, (*run_args(method, ctx, cfg, dataset, seed), "--model-dir", str(trained),
                                      *LOAD_LAST, "--eval-only", *shots, "DATASET.SUBSAMPLE_CLASSES", "new", *options)))
    return runs


TEACHER_STEP = "teacher_train"
DISTILLED_STEPS = ("base2new_train", "base2new_test", TEACHER_STEP)
# open_clip names (trainers/clip_backbone.py OPEN_CLIP_PREFIX, not imported: it would import torch
# into every script call): a teacher there is not supported yet (trainers/promptkd.py's teacher_backbone)
OPEN_CLIP_TEACHER = "open_clip:"


def teacher_of(method: Method) -> Method:
    return get_method(method.teacher.method)


def teacher_runs(method: Method, caller: Caller, dataset: str, seed: int) -> List[TrainRun]:
    """A distilled method's teacher training run for ``dataset`` / ``seed``, with the teacher's
    options (``Caller.teacher``): its folder is in the tree of the teacher's backbone."""
    teacher, options = teacher_of(method), caller.teacher()
    ctx = dataclasses.replace(options.context, cfg=method.teacher.cfg)
    return caller_runs(teacher, options, base2new(teacher, ctx, dataset, seed, ("train",)))


def teacher_folder(method: Method, caller: Caller, dataset: str, seed: int) -> Path:
    """Where a distilled method's teacher run for ``dataset`` / ``seed`` lives."""
    return teacher_runs(method, caller, dataset, seed)[0].folder


def distilled_runs(method: Method, step: str, args: Sequence[str], caller: Caller) -> List[TrainRun]:
    """A distilled method's base-to-new steps: its teacher's training, then its own runs, which get
    the teacher's folder (``method.teacher.option``) and, when it is not the teacher config's own,
    the teacher's backbone (``method.teacher.backbone_option``)."""
    if step not in DISTILLED_STEPS:
        raise ValueError(f"{method.key} has no step {step!r}: use one of {' '.join(DISTILLED_STEPS)} "
                         "(cross-dataset runs need a teacher exported for each target)")
    dataset, seed = expect(args, "DATASET SEED")
    dataset_config(dataset)
    if caller.teacher_backbone.startswith(OPEN_CLIP_TEACHER):
        raise ValueError(f"TEACHER_BACKBONE={caller.teacher_backbone}: {method.key}'s student loads its teacher "
                         "through OpenAI's clip package only; name an OpenAI CLIP (ViT-L/14, ViT-L/14@336px, "
                         "ViT-B/16 ...) or leave TEACHER_BACKBONE unset (the teacher config's ViT-L/14).")
    teacher = teacher_runs(method, caller, dataset, seed_of(seed))
    if step == TEACHER_STEP:
        return teacher
    backbone = (method.teacher.backbone_option, caller.teacher_backbone) if caller.teacher_backbone else ()
    own = caller_runs(method, caller, base2new(method, caller.context, dataset, seed_of(seed),
                                               ("train",) if step == "base2new_train" else ("test",),
                                               (method.teacher.option, str(teacher[0].folder), *backbone)))
    return [*teacher, *own] if step == "base2new_train" else own


def xd_train(method: Method, ctx: Context, seed: int) -> List[StepRun]:
    cfg, source = method.cfg("xd", asked=ctx.cfg), ctx.layout.xd_source
    return [(ctx.layout.xd_source_dir(method.folder, cfg, seed),
                     (*run_args(method, ctx, cfg, source, seed), "DATASET.NUM_SHOTS", ctx.shots,
                      "DATASET.SUBSAMPLE_CLASSES", "all"))]


def xd_test(method: Method, ctx: Context, dataset: str, seed: int) -> List[StepRun]:
    cfg = method.cfg("xd", asked=ctx.cfg)
    trained = ctx.layout.xd_source_dir(method.folder, cfg, seed)
    return [(ctx.layout.xd_target_dir(method.folder, cfg, dataset, seed),
                     (*run_args(method, ctx, cfg, dataset, seed), "--model-dir", str(trained), *LOAD_LAST,
                      "--eval-only", "DATASET.SUBSAMPLE_CLASSES", "all"))]


def fewshot(method: Method, ctx: Context, dataset: str, shots: int, seed: int) -> List[StepRun]:
    """One run: training on ``shots`` images of every class; Dassl tests the last epoch on all
    classes when training ends (CoOp's main.sh), so no evaluation run follows."""
    if not method.fewshot:
        raise ValueError(f"{method.key} does not define the few-shot protocol: give it a fewshot_cfg in runs/methods.py")
    cfg = method.fewshot_config(dataset, shots, ctx.cfg)
    return [(ctx.layout.fewshot_dir(dataset, shots, method.folder, cfg, seed),
             (*run_args(method, ctx, cfg, dataset, seed), "DATASET.NUM_SHOTS", str(shots),
              "DATASET.SUBSAMPLE_CLASSES", "all"))]


def msdg(method: Method, ctx: Context, dataset: str, target: str, seed: int) -> List[StepRun]:
    """One run on ``configs/datasets/dg/<dataset>_<target>.yaml`` (the sources: every other domain);
    Dassl tests the target domain when training ends."""
    domains = MSDG_DOMAINS.get(dataset)
    if domains is None:
        raise ValueError(f"{dataset} is not a multi-domain dataset: use one of {' '.join(MSDG_DOMAINS)}")
    if target not in domains:
        raise ValueError(f"{dataset} has no domain {target!r}: use one of {' '.join(domains)}")
    if not method.xd_cfg:
        raise ValueError(f"{method.key} has no cross-dataset config (xd_cfg), which its domain generalisation runs use")
    cfg = method.cfg("xd", asked=ctx.cfg)
    held_out = f"dg/{dataset}_{target}"  # configs/datasets/dg/: the sources and the target of one split
    return [(ctx.layout.msdg_dir(dataset, target, method.folder, cfg, seed), tuple(run_args(method, ctx, cfg, held_out, seed)))]


def zeroshot(method: Method, ctx: Context, dataset: str, subset: str = "all") -> List[StepRun]:
    cfg = method.cfg("b2n", dataset, ctx.cfg)
    return [(ctx.layout.zeroshot_dir(subset, dataset),
                     (*run_args(method, ctx, cfg, dataset, None), "--eval-only", "DATASET.SUBSAMPLE_CLASSES", subset))]


def step_runs(method: Method, step: str, args: Sequence[str], ctx: Context) -> List[StepRun]:
    """The runs of ``STEP ARGS`` (module docstring); ValueError for a step or argument that does not fit."""
    sweep = method.sweep(step)
    if sweep is not None:
        setting, dataset, seed = expect(args, sweep.usage)
        dataset_config(dataset)
        layout = sweep_layout(ctx.layout, sweep, setting)
        options = sweep.options(setting)  # validates the setting
        return base2new(method, Context(ctx.data, layout, ctx.cfg), dataset, seed_of(seed), ("train", "test"), options)
    if (step == "zeroshot") != method.zero_shot or step not in STEPS:
        steps = ["zeroshot"] if method.zero_shot else [*STEPS[:-1], *(s.name for s in method.sweeps)]
        raise ValueError(f"{method.key} has no step {step!r}: use one of {' '.join(steps)}")
    args = expect(args, STEP_USAGE[step])
    if step == "xd_train":
        dataset_config(ctx.layout.xd_source)
        return xd_train(method, ctx, seed_of(*args))
    if step == "msdg":  # its dataset configs are one per held-out domain (msdg checks them)
        dataset, target, seed = args
        return msdg(method, ctx, dataset, target, seed_of(seed))
    dataset_config(args[0])
    if step == "zeroshot":
        return zeroshot(method, ctx, *args)
    if step == "fewshot":
        dataset, shots, seed = args
        return fewshot(method, ctx, dataset, shots_of(shots), seed_of(seed))
    dataset, seed = args
    if step == "xd_test":
        return xd_test(method, ctx, dataset, seed_of(seed))
    return base2new(method, ctx, dataset, seed_of(seed), ("train",) if step == "base2new_train" else ("test",))


def expect(args: Sequence[str], usage: str) -> Sequence[str]:
    """``args`` if their number fits ``usage`` ("DATASET [all|base|new]": 1 or 2), else UsageError."""
    words = usage.split("   ")[0].split()
    required = [w for w in words if not w.startswith("[")]
    if not len(required) <= len(args) <= len(words):
        raise UsageError(usage)
    return args


def seed_of(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"SEED must be an integer, got {text!r}") from None


def shots_of(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"SHOTS must be a positive number of images per class, got {text!r}")
    return int(text)


def shared_options(method: Method, caller: Caller) -> Tuple[str, ...]:
    """Options every run of the method gets: the feature cache shared by all steps under OUTPUT, so
    that a second method (or protocol) on the same images reads the features the first encoded."""
    if not method.feature_cache:
        return ()
    return (FEATURE_CACHE_KEY, str(caller.output / FEATURE_CACHE_FOLDER))


def caller_runs(method: Method, caller: Caller, runs: Sequence[StepRun]) -> List[TrainRun]:
    """The train.py runs of a method's step runs with the caller's options."""
    shared = shared_options(method, caller)
    return [TrainRun(caller.argv(folder, (*step_args, *shared))) for folder, step_args in runs]


def runs_of(method: Method, step: str, args: Sequence[str], caller: Caller) -> List[TrainRun]:
    """The train.py runs of ``METHOD STEP ARGS`` with the caller's options (ValueError / UsageError: bad arguments)."""
    if method.teacher is not None:
        return distilled_runs(method, step, args, caller)
    return caller_runs(method, caller, step_runs(method, step, args, caller.context))


def script_step(script: str, args: Sequence[str]) -> Tuple[str, str, Tuple[str, ...]]:
    """METHOD, STEP and ARGS of a method script invocation: ``scripts/<method>/<step>.sh ARGS`` or
    ``scripts/run.sh METHOD STEP ARGS``."""
    path = Path(script)
    if path.as_posix().endswith(GENERIC_RUNNER):
        if len(args) < 2:
            raise UsageError("METHOD STEP ARGS...   (see the header of scripts/run.sh)")
        return args[0], args[1], tuple(args[2:])
    return path.parent.name, path.stem, tuple(args)


def command_runs(command: Sequence[str], environ: Mapping[str, str]) -> List[TrainRun]:
    """The train.py runs of a script command line (``bash SCRIPT ARGS...``) under ``environ``;
    RuntimeError naming the command when its arguments or environment do not fit."""
    _, script, *args = command
    try:
        method, step, step_args = script_step(script, args)
        return runs_of(get_method(method), step, step_args, Caller.from_environ(environ))
    except (KeyError, ValueError) as exc:
        raise RuntimeError(f"{' '.join(command)}: {exc.args[0]}") from None


# --------------------------------------------------------------------------------------------
# Running a step (the scripts)
# --------------------------------------------------------------------------------------------
class StaleFolder(Exception):
    """A run's folder holds a run made with other settings and RERUN_STALE is not set."""


def has_run(folder: Path) -> bool:
    """Whether a folder holds a run (recorded, or the log of an older one): only those need the check."""
    return (folder / IDENTITY_FILE).is_file() or (folder / LOG_FILE).is_file()


def checked_state(run: TrainRun) -> Optional[FolderState]:
    """The folder's state, or None when it cannot be told (a bad config key...): then the run
    starts, and fails with train.py's own message."""
    try:
        return run.state()
    except Exception:  # noqa: BLE001  (whatever stops the config also stops train.py, which says why)
        return None


def finished_or_cleared(run: TrainRun, caller: Caller) -> bool:
    """True when the run's folder holds it, finished; a stale folder is moved aside (RERUN_STALE)
    or stops the step (StaleFolder)."""
    state = checked_state(run) if has_run(run.folder) else None
    if state is None or not (state.done or state.stale):
        return False
    if state.done:
        print(f"Results exist at {run.folder} (skip this job)", flush=True)
        return True
    line = f"[{state.label}] {run.folder}"
    if not caller.rerun_stale:
        raise StaleFolder(f"{line}\nStop: {run.folder} holds a run made with other settings than these (listed "
                          "above). Set RERUN_STALE=1 to move it aside and run again, or choose another OUTPUT.")
    aside = Path(f"{run.folder}.stale-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    os.rename(run.folder, aside)
    print(f"{line}: moved to {aside}, running again", flush=True)
    return False


def run_step(runs: Sequence[TrainRun], caller: Caller) -> int:
    """Run each train.py run in turn unless finished; the first failure's exit status stops the step."""
    for run in runs:
        if finished_or_cleared(run, caller):
            continue
        code = subprocess.run([caller.python, "train.py", *run.argv], cwd=REPO, preexec_fn=die_with_parent()).returncode
        if code:
            return code
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--script", default="steps", help="the script named in usage lines")
    parser.add_argument("method", help="a key of the registry (runs/methods.py), e.g. gopro")
    parser.add_argument("step")
    parser.add_argument("args", nargs="*")
    return parser


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    args = build_parser().parse_args(argv)
    try:
        caller = Caller.from_environ(environ)
        runs = runs_of(get_method(args.method), args.step, args.args, caller)
        caller.context.layout.record_backbone()
    except UsageError as exc:
        print(f"Usage: {args.script} {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyError, ValueError) as exc:
        print(exc.args[0], file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_step(runs, caller)
    except StaleFolder as exc:
        print(exc, file=sys.stderr)
        return EXIT_STALE


if __name__ == "__main__":
    sys.exit(main())
