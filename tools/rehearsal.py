"""The ImageNet-size rehearsal: the real scripts, at ImageNet's 1000 classes and ViT-B/16's size,
for a bounded number of steps, on the CPU, with the time and memory of every phase.

    python -m tools.rehearsal ROOT                       # make rehearsal: write, profile, run, report
    python -m tools.rehearsal ROOT --only-build          # the tree and the model only
    python -m tools.rehearsal ROOT --profile             # + cProfile of the dataset and model builds

What it writes under ROOT (once; a rerun reuses it):

* ``DATA/imagenet/``: the real ImageNet layout ``datasets/imagenet.py`` reads, ``classnames.txt``
  with 1000 lines (ImageNet's class names from ``bench/imagenet_classnames.txt``, next to the
  kit's sorted wnids: real ones where known, sorted stand-ins for the others) and a few tiny images
  per class in ``images/{train,val}/<wnid>/`` (the kit's class-patterned images);
* ``clip/ViT-B-16.pt``: a real-size ViT-B/16 CLIP with random weights in OpenAI's checkpoint
  format (an fp16 state dict, loaded through ``trainers.clip_backbone.load_clip``).

What it runs: for each method, ``scripts/<method>/base2new_train.sh imagenet 1`` (500 base classes)
and ``scripts/<method>/xd_train.sh 1`` (all 1000), unchanged, with ``EPOCHS=1``, ``SHOTS=1`` and
``TRAIN.MAX_BATCHES`` / ``TEST.MAX_BATCHES`` bounding the training epoch and the final test. The
scripts' interpreter is a probe (``python -m tools.rehearsal --probe``) that runs ``train.py``
unchanged in its own process and records, per run: the dataset build, the whole data setup, the
CLIP load, the model build (CLIP load + prompt construction + any precomputed text features), every
training step, every evaluation batch (the first one includes the text features of all classes) and
the peak RSS. The report adds ``tools.memory``'s prediction of the same step (fp32, the CPU's
precision) and writes ``ROOT/rehearsal.json`` and a Markdown table.

Sizes: ``--classes`` (wnid folders with images; classnames.txt keeps its 1000 lines), ``--arch``
(``tools.synthetic.ARCHS``; the test suite runs the machinery on ``tiny``), ``--batch-size``,
``--steps`` and ``--eval-batches``. Run it with ``OMP_NUM_THREADS=1`` on a shared machine.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import os
import pstats
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
METHODS = ("coop", "maple", "promptsrc", "cocoop", "gopro")  # cheapest first
STEPS = (("base2new_train", ("imagenet", "1")), ("xd_train", ("1",)))
PROBE_LOG_ENV = "REHEARSAL_PROBE_LOG"
DONE_MARK = ".written"
CONFIG_BACKBONE = "ViT-B/16"  # MODEL.BACKBONE.NAME of every method config
MIN_BATCH = {"gopro": 2}  # GOPro's contrastive loss contrasts the images of a batch: it refuses one


# --------------------------------------------------------------------------------------------
# The tree: ImageNet's layout and a real-size CLIP
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tree:
    root: Path
    arch: str = "ViT-B/16"

    @property
    def data(self) -> Path:
        return self.root / "DATA"

    @property
    def imagenet(self) -> Path:
        return self.data / "imagenet"

    @property
    def clip_dir(self) -> Path:
        return self.root / "clip"

    @property
    def clip_path(self) -> Path:
        """Named as the configs' backbone (ViT-B/16) whatever ``arch`` is, so every config loads it."""
        from trainers.clip_backbone import checkpoint_filename

        return self.clip_dir / checkpoint_filename(CONFIG_BACKBONE)

    @property
    def output(self) -> Path:
        return self.root / "output"


def imagenet_classes() -> List[tuple]:
    """(wnid, name) of the 1000 ImageNet classes in label order: the kit's sorted wnids with the
    real class names (``bench/imagenet_classnames.txt``), so tokenisation sees the real names."""
    from tools.kit.make_fixture_datasets import IMAGENET_CLASSES
    from tools.synthetic import read_classnames

    return [(wnid, name) for (wnid, _), name in zip(IMAGENET_CLASSES, read_classnames(1000))]


def write_imagenet_tree(dataset_dir: Path, classes: int, train_per_class: int, test_per_class: int,
                        image_size: int) -> None:
    """``classnames.txt`` (all 1000 lines) and images of the first ``classes`` wnids."""
    from tools.kit.make_fixture_datasets import Params, write_imagenet_images, write_lines

    table = imagenet_classes()
    write_lines(dataset_dir / "classnames.txt", (f"{wnid} {name}" for wnid, name in table))
    params = Params(num_classes=classes, train_per_class=train_per_class, test_per_class=test_per_class,
                    image_size=image_size, seed=0, key="imagenet")
    write_imagenet_images(dataset_dir, ((wnid, look) for look, (wnid, _) in enumerate(table[:classes])), params)


def build_tree(tree: Tree, classes: int = 1000, train_per_class: int = 2, test_per_class: int = 1,
               image_size: int = 32) -> Dict[str, float]:
    """Write what is missing (a finished part carries a mark, so an interrupted write is redone);
    returns the seconds each part took (0 when it was there)."""
    from tools.synthetic import write_random_clip

    seconds = {"write_dataset": 0.0, "write_clip": 0.0}
    if not (tree.imagenet / DONE_MARK).exists():
        start = time.perf_counter()
        shutil.rmtree(tree.imagenet, ignore_errors=True)
        write_imagenet_tree(tree.imagenet, classes, train_per_class, test_per_class, image_size)
        (tree.imagenet / DONE_MARK).write_text(f"{classes} classes\n")
        seconds["write_dataset"] = time.perf_counter() - start
    clip_path = tree.clip_path
    if not clip_path.exists():
        start = time.perf_counter()
        tree.clip_dir.mkdir(parents=True, exist_ok=True)
        partial = clip_path.with_suffix(".partial")
        write_random_clip(str(partial), tree.arch)
        partial.rename(clip_path)
        seconds["write_clip"] = time.perf_counter() - start
    return seconds


# --------------------------------------------------------------------------------------------
# The probe: train.py in this process, its phases timed
# --------------------------------------------------------------------------------------------
@dataclass
class PhaseClock:
    """Seconds per phase; a phase that calls itself (a subclass's ``super()``) counts once."""

    seconds: Dict[str, List[float]] = field(default_factory=dict)
    images: Dict[str, List[int]] = field(default_factory=dict)
    depth: Dict[str, int] = field(default_factory=dict)

    def timed(self, phase: str, function: Callable, count_images: bool = False) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if self.depth.get(phase, 0):
                return function(*args, **kwargs)
            self.depth[phase] = 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth[phase] = 0
                self.seconds.setdefault(phase, []).append(time.perf_counter() - start)
                if count_images:
                    self.images.setdefault(phase, []).append(len(args[1]))
        return wrapper


def instrument(clock: PhaseClock) -> None:
    """Wrap the phases of every trainer class (and the engine's) in ``clock``."""
    import dassl.data.data_manager as data_manager
    from dassl.engine import TRAINER_REGISTRY
    from dassl.engine.trainer import SimpleTrainer, TrainerX
    from runs.cli import import_plugins
    from trainers import clip_backbone

    import_plugins()  # registers every trainer

    data_manager.build_dataset = clock.timed("dataset", data_manager.build_dataset)
    data_manager.DataManager.__init__ = clock.timed("data_setup", data_manager.DataManager.__init__)
    clip_backbone.load_clip = clock.timed("clip_load", clip_backbone.load_clip)
    classes = {SimpleTrainer, TrainerX} | {TRAINER_REGISTRY.get(n) for n in TRAINER_REGISTRY.registered_names()}
    for cls in {c for k in classes for c in k.__mro__}:
        for name, phase, count in (("build_model", "model_build", False), ("forward_backward", "train_step", False),
                                   ("test", "test", False), ("model_inference", "eval_batch", True)):
            if name in vars(cls):
                setattr(cls, name, clock.timed(phase, vars(cls)[name], count_images=count))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def probe(argv: Sequence[str]) -> int:
    """Run ``train.py ARGS`` (argv[0] is the script) here, then append its record to $REHEARSAL_PROBE_LOG."""
    import runpy

    clock = PhaseClock()
    instrument(clock)
    sys.argv = list(argv)
    sys.path.insert(0, str(REPO))
    code = 0
    try:
        runpy.run_path(str(REPO / argv[0]), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        log = os.environ.get(PROBE_LOG_ENV)
        if log and clock.seconds:
            record = {"argv": list(argv[1:]), "exit": code, "peak_rss_mib": peak_rss_mib(),
                      "seconds": clock.seconds, "images": clock.images}
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
    return code


# --------------------------------------------------------------------------------------------
# Running the scripts
# --------------------------------------------------------------------------------------------
def extra_opts(tree: Tree, batch_size: int, steps: int, eval_batches: int, arch_opts: Sequence[str] = ()) -> List[str]:
    return ["MODEL.BACKBONE.PATH", str(tree.clip_dir), "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch_size), "DATALOADER.TEST.BATCH_SIZE", str(batch_size),
            "TRAIN.MAX_BATCHES", str(steps), "TEST.MAX_BATCHES", str(eval_batches), "TRAIN.PRINT_FREQ", "1",
            *arch_opts]


def arch_opts(arch: str) -> List[str]:
    """Options a smaller CLIP than the configs' ViT-B/16 needs: its input size and prompt depths
    (the kit's); none for ViT-B/16."""
    if arch == CONFIG_BACKBONE:
        return []
    from tools.kit.build import tiny_method_opts, tiny_prompt_depth_keys
    from tools.synthetic import ARCHS

    dims = ARCHS[arch]
    layers = min(dims["vision_layers"], dims["transformer_layers"])
    size = dims["image_resolution"]
    depths = [x for key in tiny_prompt_depth_keys() for x in (key, str(layers))]
    return ["INPUT.SIZE", f"({size},{size})", *depths, *tiny_method_opts()]


def write_probe_launcher(tree: Tree) -> Path:
    """The interpreter the scripts get (``PYTHON``): ``train.py`` runs under this module's probe,
    anything else (the scripts' own ``-m runs.steps``) under this Python as it is."""
    python = shlex.quote(sys.executable)
    path = tree.root / "probe-python"
    path.write_text(f'#!/bin/sh\nif [ "$1" = train.py ]; then exec {python} -m tools.rehearsal --probe "$@"; fi\n'
                    f'exec {python} "$@"\n')
    path.chmod(0o755)
    return path


def run_script(tree: Tree, method: str, step: str, args: Sequence[str], opts: Sequence[str], log: Path) -> dict:
    """One script, unchanged, with the probe as its interpreter; its wall time and probe records."""
    env = dict(os.environ, DATA=str(tree.data), OUTPUT=str(tree.output), EPOCHS="1", SHOTS="1",
               EXTRA_OPTS=shlex.join(opts), PYTHON=str(write_probe_launcher(tree)), RERUN_STALE="1",
               **{PROBE_LOG_ENV: str(log)}, PYTHONPATH=str(REPO))
    log.unlink(missing_ok=True)
    command = ["bash", f"scripts/{method}/{step}.sh", *args]
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return {"method": method, "step": step, "command": " ".join(command), "wall_s": wall, "runs": records,
            "load_average": [load_before, os.getloadavg()[0]]}  # a shared machine's timings need it


def summarize(record: dict) -> dict:
    """The numbers of one train.py run: phase seconds, step times (the first apart: it warms up),
    evaluation throughput after the first batch (which also encodes every class's text)."""
    s, images = record["seconds"], record["images"].get("eval_batch", [])
    steps, evals = s.get("train_step", []), s.get("eval_batch", [])
    later = sum(evals[1:])
    return {
        "dataset_s": sum(s.get("dataset", [])), "data_setup_s": sum(s.get("data_setup", [])),
        "clip_load_s": sum(s.get("clip_load", [])), "model_build_s": sum(s.get("model_build", [])),
        "first_step_s": steps[0] if steps else None,
        "step_s": (sum(steps[1:]) / len(steps[1:])) if len(steps) > 1 else (steps[0] if steps else None),
        "steps": len(steps), "first_eval_batch_s": evals[0] if evals else None,
        "eval_images_per_s": (sum(images[1:]) / later) if later else None,
        "eval_images": sum(images), "peak_rss_mib": record["peak_rss_mib"],
    }


def predicted_step_gib(method: str, classes: int, batch_size: int, arch: str) -> float:
    """``tools.memory``'s predicted training-step peak (fp32: the CPU runs fp32) for the method's
    registry config (the predictor builds every registry method)."""
    from runs.cli import import_plugins
    from runs.methods import get_method
    from tools.memory import GIB, Setting, predict

    import_plugins()  # registers every trainer
    entry = get_method(method)
    setting = Setting(entry.trainer, str(entry.config_path(entry.training_cfg())), classes, prec="fp32",
                      batch_size=batch_size, backbone=arch)
    with contextlib.redirect_stdout(io.StringIO()):
        return predict(setting).train_peak / GIB


# --------------------------------------------------------------------------------------------
# Profiles of the two builds
# --------------------------------------------------------------------------------------------
def profiled(function: Callable, top: int = 15) -> tuple:
    """(result, seconds, the ``top`` cumulative-time lines of cProfile)."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    result = profile.runcall(function)
    seconds = time.perf_counter() - start
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(top)
    return result, seconds, text.getvalue()


def run_cfg(tree: Tree, method: str, subsample: str, batch_size: int):
    """The frozen train.py config of ``method``'s base-to-new run on the tree (what the script passes)."""
    from runs import cli
    from runs.methods import get_method

    entry = get_method(method)
    args = cli.build_parser().parse_args([
        "--root", str(tree.data), "--seed", "1", "--trainer", entry.trainer,
        "--config-file", str(entry.config_path(entry.training_cfg())),
        "--dataset-config-file", str(REPO / "configs" / "datasets" / "imagenet.yaml"),
        "--output-dir", str(tree.root / "profile_run"),
        *extra_opts(tree, batch_size, 1, 1, arch_opts(tree.arch)),
        "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", subsample])
    return cli.setup_cfg(args)


def profile_builds(tree: Tree, method: str = "gopro", batch_size: int = 2) -> Dict[str, dict]:
    """cProfile of the dataset build (first: the few-shot split is drawn and cached; then cached)
    and of the trainer's build (dataset + CLIP + prompts + text features) at the tree's size."""
    from dassl.data.datasets import build_dataset
    from dassl.engine import build_trainer

    cfg = run_cfg(tree, method, "base", batch_size)
    shutil.rmtree(tree.imagenet / "split_fewshot", ignore_errors=True)
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for name in ("dataset_first", "dataset_cached"):
            _, seconds, text = profiled(lambda: build_dataset(cfg))
            out[name] = {"seconds": seconds, "profile": text}
        _, seconds, text = profiled(lambda: build_trainer(cfg))
        out["trainer_build"] = {"seconds": seconds, "profile": text}
    return out


# --------------------------------------------------------------------------------------------
# The whole rehearsal
# --------------------------------------------------------------------------------------------
def rehearse(tree: Tree, methods: Sequence[str] = METHODS, batch_size: int = 2, steps: int = 3,
             eval_batches: int = 2, classes: int = 1000, profile: bool = False, scripts=STEPS,
             log: Callable[[str], None] = print) -> dict:
    """Write the tree (once), optionally profile the builds, run ``scripts`` of every method from
    scratch, and write ``ROOT/rehearsal.json``; returns that report."""
    report = {"arch": tree.arch, "classes": classes, "batch_size": batch_size, "steps": steps,
              "eval_batches": eval_batches, "build": build_tree(tree, classes=classes), "runs": []}
    log(f"tree: {tree.root} (written in {report['build']})")
    if profile:
        report["profiles"] = profile_builds(tree, batch_size=batch_size)
        log("profiles: " + ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in report["profiles"].items()))
    shutil.rmtree(tree.output, ignore_errors=True)  # every run measured from scratch
    for method in methods:
        batch = max(batch_size, MIN_BATCH.get(method, 1))
        opts = extra_opts(tree, batch, steps, eval_batches, arch_opts(tree.arch))
        for step, args in scripts:
            run = run_script(tree, method, step, args, opts, tree.root / f"probe-{method}-{step}.jsonl")
            run["summary"], run["batch_size"] = [summarize(r) for r in run["runs"]], batch
            subsample_classes = (classes + 1) // 2 if step == "base2new_train" else classes
            run["predicted_step_gib"] = predicted_step_gib(method, subsample_classes, batch, tree.arch)
            report["runs"].append(run)
            (tree.root / "rehearsal.json").write_text(json.dumps(report, indent=1))  # kept run by run
            log(f"{method} {step}: {run['wall_s']:.0f} s, {run['summary']}")
    (tree.root / "rehearsal.json").write_text(json.dumps(report, indent=1))
    return report


def fmt(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def load_text(load: Optional[Sequence[float]]) -> str:
    """The 1-minute load average before → after a run ("–" where it was not recorded)."""
    return "–" if not load else f"{load[0]:.1f} → {load[1]:.1f}"


def markdown_table(report: dict) -> str:
    rows = ["| method | script | C | batch | data setup s | CLIP load s | model build s | step s (first) | "
            "eval: 1st batch s | eval img/s after | peak RSS GiB | predicted step GiB (fp32) | wall s | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        for s in run["summary"]:
            c = (report["classes"] + 1) // 2 if run["step"] == "base2new_train" else report["classes"]
            rows.append(f"| {run['method']} | {run['step']} | {c} | {run.get('batch_size', report['batch_size'])} | "
                        f"{fmt(s['data_setup_s'])} | {fmt(s['clip_load_s'])} | "
                        f"{fmt(s['model_build_s'])} | {fmt(s['step_s'])} ({fmt(s['first_step_s'])}) | "
                        f"{fmt(s['first_eval_batch_s'])} | {fmt(s['eval_images_per_s'], '.2f')} | "
                        f"{s['peak_rss_mib'] / 1024:.2f} | {fmt(run['predicted_step_gib'], '.2f')} | {run['wall_s']:.0f} | "
                        f"{load_text(run.get('load_average'))} |")
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--probe"]:
        return probe(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder for the tree, the runs and the report (reused on a rerun)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), metavar="KEY")
    parser.add_argument("--arch", default="ViT-B/16", help="tools.synthetic.ARCHS name (default: ViT-B/16)")
    parser.add_argument("--classes", type=int, default=1000, help="classes with images (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="TRAIN.MAX_BATCHES (default: 3)")
    parser.add_argument("--eval-batches", type=int, default=2, help="TEST.MAX_BATCHES (default: 2)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the dataset and trainer builds")
    parser.add_argument("--only-build", action="store_true", help="write the tree and stop")
    args = parser.parse_args(argv)
    tree = Tree(Path(args.root).resolve(), args.arch)
    if args.only_build:
        print(build_tree(tree, classes=args.classes))
        return 0
    report = rehearse(tree, args.methods, args.batch_size, args.steps, args.eval_batches, args.classes, args.profile)
    for name, part in report.get("profiles", {}).items():
        print(f"\n== cProfile: {name} ({part['seconds']:.2f} s)\n{part['profile']}")
    print(markdown_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
