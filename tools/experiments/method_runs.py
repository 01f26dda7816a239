"""What a method script runs: the train.py runs of one protocol step, from the method registry
(``methods.py``) and the output layout (``layout.py``) alone.

    python -m tools.experiments.method_runs --data DATA --output OUTPUT [--shots 16]
        [--xd-source imagenet] [--cfg CFG] METHOD STEP ARGS...

prints one shell command per run, ``run_train_py FOLDER TRAIN_PY_ARGS...`` (every word quoted),
which ``scripts/common.sh`` evaluates (``run_train_py`` adds BACKBONE, EPOCHS and EXTRA_OPTS,
skips a finished run and deals with a stale one). Steps:

    base2new_train DATASET SEED    training on the base classes
    base2new_test DATASET SEED     the new classes, with the last epoch of that training
    xd_train SEED                  all classes of the cross-dataset source (ImageNet)
    xd_test DATASET SEED           a cross-dataset / domain-generalisation target, the last epoch
    zeroshot DATASET [SUBSET]      zero-shot CLIP on all, base or new classes (no seed, no training)
    SWEEP SETTING DATASET SEED     a setting of one of the method's sweeps (GOPro: ablation ROW,
                                   nctx M): base-to-new training, then its test

Wrong arguments (their number, an unknown dataset, a step the method does not have, a bad setting)
exit with status 2 and the reason on stderr, before anything runs; ``--script`` names the script in
the usage line.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from tools.experiments.layout import Layout, sweep_layout
from tools.experiments.methods import REPO, Method, get_method

LOAD_LAST = ("--load-epoch", "last")  # evaluations load the final epoch of their training run
STEP_USAGE = {"base2new_train": "DATASET SEED", "base2new_test": "DATASET SEED", "xd_train": "SEED",
              "xd_test": "DATASET SEED", "zeroshot": "DATASET [all|base|new]"}
STEPS = tuple(STEP_USAGE)


class UsageError(ValueError):
    """Arguments that do not fit a step; the message is the step's usage."""


@dataclass(frozen=True)
class Context:
    """What the scripts' environment fixes: DATA, OUTPUT (as a layout), SHOTS, XD_SOURCE, CFG."""

    data: str
    layout: Layout
    cfg: str = ""  # the scripts' CFG: a config name that replaces the method's default

    @property
    def shots(self) -> str:
        return str(self.layout.shots)


@dataclass(frozen=True)
class TrainRun:
    folder: Path
    args: Tuple[str, ...]

    def command(self) -> str:
        return shlex.join(["run_train_py", str(self.folder), *self.args])


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
             options: Sequence[str] = ()) -> List[TrainRun]:
    """Training on the base classes (phase "train") and/or the new-class test of its last epoch ("test")."""
    cfg = method.cfg("b2n", dataset, ctx.cfg)
    trained = ctx.layout.b2n_dir("train_base", dataset, method.trainer, cfg, seed)
    shots = ("DATASET.NUM_SHOTS", ctx.shots)
    runs = []
    if "train" in phases:
        runs.append(TrainRun(trained, (*run_args(method, ctx, cfg, dataset, seed), *shots,
                                       "DATASET.SUBSAMPLE_CLASSES", "base", *options)))
    if "test" in phases:
        tested = ctx.layout.b2n_dir("test_new", dataset, method.trainer, cfg, seed)
        runs.append(TrainRun(tested, (*run_args(method, ctx, cfg, dataset, seed), "--model-dir", str(trained),
                                      *LOAD_LAST, "--eval-only", *shots, "DATASET.SUBSAMPLE_CLASSES", "new", *options)))
    return runs


def xd_train(method: Method, ctx: Context, seed: int) -> List[TrainRun]:
    cfg, source = method.cfg("xd", asked=ctx.cfg), ctx.layout.xd_source
    return [TrainRun(ctx.layout.xd_source_dir(method.trainer, cfg, seed),
                     (*run_args(method, ctx, cfg, source, seed), "DATASET.NUM_SHOTS", ctx.shots,
                      "DATASET.SUBSAMPLE_CLASSES", "all"))]


def xd_test(method: Method, ctx: Context, dataset: str, seed: int) -> List[TrainRun]:
    cfg = method.cfg("xd", asked=ctx.cfg)
    trained = ctx.layout.xd_source_dir(method.trainer, cfg, seed)
    return [TrainRun(ctx.layout.xd_target_dir(method.trainer, cfg, dataset, seed),
                     (*run_args(method, ctx, cfg, dataset, seed), "--model-dir", str(trained), *LOAD_LAST,
                      "--eval-only", "DATASET.SUBSAMPLE_CLASSES", "all"))]


def zeroshot(method: Method, ctx: Context, dataset: str, subset: str = "all") -> List[TrainRun]:
    cfg = method.cfg("b2n", dataset, ctx.cfg)
    return [TrainRun(ctx.layout.zeroshot_dir(subset, dataset),
                     (*run_args(method, ctx, cfg, dataset, None), "--eval-only", "DATASET.SUBSAMPLE_CLASSES", subset))]


def step_runs(method: Method, step: str, args: Sequence[str], ctx: Context) -> List[TrainRun]:
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
    dataset_config(args[0])
    if step == "zeroshot":
        return zeroshot(method, ctx, *args)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", required=True, help="dataset root (DATA)")
    parser.add_argument("--output", required=True, type=Path, help="output root (OUTPUT)")
    parser.add_argument("--shots", type=int, default=16, help="images per class (SHOTS)")
    parser.add_argument("--xd-source", default="imagenet", help="cross-dataset source (XD_SOURCE)")
    parser.add_argument("--cfg", default="", help="config name replacing the method's default (CFG)")
    parser.add_argument("--backbone", default="", help="MODEL.BACKBONE.NAME replacing the configs' (BACKBONE): "
                                                        "its runs get their own tree")
    parser.add_argument("--script", default="method_runs", help="the script named in usage lines")
    parser.add_argument("method", help="a key of the registry (tools/experiments/methods.py), e.g. gopro")
    parser.add_argument("step")
    parser.add_argument("args", nargs="*")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        layout = Layout(args.output, args.shots, args.xd_source, args.backbone)
        ctx = Context(args.data, layout, args.cfg)
        runs = step_runs(get_method(args.method), args.step, args.args, ctx)
        layout.record_backbone()
    except UsageError as exc:
        print(f"Usage: {args.script} {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    print("\n".join(run.command() for run in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
