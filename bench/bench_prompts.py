#!/usr/bin/env python
"""What per-image prompts cost: text-encoder throughput, train steps and evaluation, side by side.

    python bench/bench_prompts.py --quick                       # CPU, small model, C ∈ {10, 40}
    python bench/bench_prompts.py --device cuda                 # ViT-B/16, C ∈ {10, 100, 1000}

Measured in one run (every case in a fresh subprocess, so memory counters and caches start clean):

1. **text**: ImageNet's 1000 prompts "a photo of a {name}." through the frozen text tower,
   truncated (``ClipBackbone.encode_text``: every call cut at its longest end-of-text token,
   prompts in buckets of similar length) vs the full 77 tokens: sequences/s and the max absolute
   difference of the features (fp32).
2. **train**: one optimisation step (forward, backward, SGD) of each method of ``METHODS`` at
   batch 4 over C classes, built by ``build_trainer`` from the paper configs, plus the
   *official-style* GOPro reference (``bench/official_gopro.py``: the official code's work with our
   official mode's numbers, i.e. three branches in training and at test, views made on the training
   thread with B² AugMix runs per batch, per-image text calls at 77 tokens). Step time and peak memory.
3. **eval**: images/s of ``model_inference`` on test batches (text features of image-independent
   prompts are encoded once per evaluation, as ``trainer.test()`` does).
4. **backbone library** (``--open-clip METHOD ...``): the same methods on the same weights loaded
   through open_clip (``MODEL.BACKBONE.NAME open_clip:ViT-B-16:openai``) instead of OpenAI's clip:
   the ratio of step times and of evaluation speeds shows any overhead of the open_clip path.

CLIP has random weights (speed does not depend on them); its architecture is ViT-B/16, or a
smaller one with ``--quick``. Synthetic batches are fed straight to the trainer, so data loading is
not timed, except for the official-style reference whose views are made inside the step.

Times are the best of N repeats after one warm-up call, and of ``--rounds`` turns through all
cases (other processes and slow periods of a virtual machine can only add time).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the region minus the memory
allocated when it starts (activations and temporaries, in MiB). On CPU the high-water mark of the
process's resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
resident set when the region starts (freed memory is first returned to the OS with glibc's
``malloc_trim``): the same quantity plus allocator slack, so an upper bound.

Targets (ratios within one run) are printed at the end together with whether each one is met.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Tuple

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(REPO, "bench")
for _path in (REPO, BENCH):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402

import official_gopro  # noqa: E402

from tools.synthetic import (ARCHS, normalised_images, read_classnames, register_bench_dataset,  # noqa: E402
                             write_label_space, write_random_clip)

TEMPLATE = "a photo of a {}."
BATCH_SIZE = 4

OFFICIAL_STYLE = "GOPro official-style"
# The same random OpenAI-format weights through open_clip (its ``openai`` tag builds the model from them).
OPEN_CLIP_BACKBONE = "open_clip:ViT-B-16:openai"
OPEN_CLIP_SUFFIX = " [open_clip]"


def registry_methods() -> Dict[str, Tuple[str, str, List[str]]]:
    """name → (trainer, method config file, extra KEY VALUE options): every method of the registry
    (``runs/methods.py``) whose trainer and config are in this checkout, with the config its
    ImageNet base-to-new runs use (the benchmark's classes are ImageNet's), then the official-style
    GOPro reference."""
    from runs.methods import METHODS as REGISTRY

    methods = {}
    for method in REGISTRY.values():
        config = method.config_path(method.training_cfg("imagenet"))
        if method.in_checkout() and config.is_file():
            methods[method.label] = (method.trainer, str(config), [])
    official = osp.join(REPO, "configs", "trainers", "GOPro", f"{official_gopro.CONFIG}.yaml")
    methods[OFFICIAL_STYLE] = ("GOPro", official, list(official_gopro.OPTS))
    return methods


METHODS = registry_methods()


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> List[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def release_freed_memory() -> None:
    """Give memory freed by earlier work back to the OS (glibc), so the resident set at the start
    of a region is the memory actually in use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak extra memory of a code region in MiB (see the module docstring for what it means)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib: Optional[float] = None

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            release_freed_memory()
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the resident-set high-water mark (Linux >= 4.0)
                self._start = _proc_status_kib("VmRSS") * 1024
            except OSError:
                self._start = None  # not Linux: no per-region peak available
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
        elif self._start is not None:
            self.mib = (_proc_status_kib("VmHWM") * 1024 - self._start) / 2**20
        return False


class OtherProcessesLoad:
    """Share of the machine's CPU capacity used by *other* processes during a region (Linux):
    0 = this benchmark had the machine to itself, 1 = every core was busy with something else.
    Timings taken while it is high are inflated; compare them with care."""

    share: Optional[float] = None

    @staticmethod
    def _busy_seconds() -> float:
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        times = os.times()
        return times.user + times.system

    def __enter__(self):
        try:
            self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())
        except (OSError, ValueError):
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            wall, busy, own = (now - then for now, then in
                               zip((time.perf_counter(), self._busy_seconds(), self._own_seconds()), self._start))
            self.share = max(0.0, (busy - own) / (wall * os.cpu_count())) if wall > 0 else None
        return False


def best_ms(times: List[float]) -> float:
    """The fastest repeat: other processes on the machine can only add time."""
    return 1000 * min(times)


# --------------------------------------------------------------------------------------------
# Building models, label spaces and batches
# --------------------------------------------------------------------------------------------
def bench_train_args(trainer: str, config: Optional[str], root: str, work_dir: str, clip_path: str, arch: str,
                     device: str, test_batch: int) -> List[str]:
    """train.py arguments of a benchmark trainer: its method config (if any) over the synthetic
    class names of ``root`` (``BenchClassNames``), on the random CLIP at ``clip_path``."""
    resolution = ARCHS[arch]["image_resolution"]
    return ["--root", root, "--seed", "1", "--trainer", trainer, "--output-dir", work_dir,
            *(["--config-file", config] if config else []),
            "DATASET.NAME", "BenchClassNames", "MODEL.BACKBONE.PATH", clip_path,
            "INPUT.SIZE", f"({resolution},{resolution})", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(BATCH_SIZE), "DATALOADER.TEST.BATCH_SIZE", str(test_batch),
            "USE_CUDA", str(device == "cuda"), "VERBOSE", "False"]


def build_bench_trainer(spec: dict):
    """A real trainer (``dassl.engine.build_trainer``) from the method's paper config."""
    from runs import cli
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    trainer_name, config_path, extra = METHODS[spec["method"]]
    backbone = ["MODEL.BACKBONE.NAME", spec["backbone"]] if spec.get("backbone") else []
    node = method_node_name(trainer_name)
    speed_keys = [f"TRAINER.{node}.TEXT_CHUNK", str(spec["text_chunk"]),
                  f"TRAINER.{node}.CHECKPOINT_TEXT", str(spec.get("checkpoint_text", False))] if node else []
    args = cli.build_parser().parse_args([
        *bench_train_args(trainer_name, config_path, spec["root"], spec["work_dir"], spec["clip_path"],
                          spec["arch"], spec["device"], spec["test_batch"]), *speed_keys, *extra, *backbone,
    ])
    register_bench_dataset()
    cfg = cli.setup_cfg(args)
    set_random_seed(cfg.SEED)
    return (official_gopro.OfficialCostGOPro if spec["method"] == OFFICIAL_STYLE else build_trainer)(cfg)


def method_node_name(trainer_name: str) -> str:
    """The config node a trainer reads its options from (KgCoOp and ProGrad: COOP), or "" (zero-shot CLIP)."""
    from dassl.engine import TRAINER_REGISTRY
    from runs import cli

    cli.setup_cfg(cli.build_parser().parse_args([]))  # imports (registers) every trainer module
    return getattr(TRAINER_REGISTRY.get(trainer_name), "CFG_NODE", "")


def synthetic_batch(num_classes: int, resolution: int, generator: torch.Generator, views: int = 1) -> dict:
    """A Dassl batch with the extra views GOPro's workers would add (``img2``, ``img3``); with
    ``views`` > 1 (``DATALOADER.K_TRANSFORMS``, CoPrompt) ``img`` is a list of that many views."""
    batch = {key: normalised_images(BATCH_SIZE, resolution, generator) for key in ("img", "img2", "img3")}
    if views > 1:
        batch["img"] = [batch["img"]] + [normalised_images(BATCH_SIZE, resolution, generator) for _ in range(views - 1)]
    batch["label"] = torch.randint(num_classes, (BATCH_SIZE,), generator=generator)
    return batch


# --------------------------------------------------------------------------------------------
# The cases (each runs in its own process)
# --------------------------------------------------------------------------------------------
def run_text_case(spec: dict) -> dict:
    """Text-tower throughput on the 1000 ImageNet prompts, truncated vs full, and their difference."""
    from trainers.clip_backbone import ClipBackbone, load_clip

    device = torch.device(spec["device"])
    names = read_classnames()
    results = {"sequences": len(names)}
    load = lambda precision: ClipBackbone(load_clip("ViT-B/16", spec["clip_path"]), precision=precision, device=device)
    with torch.no_grad():
        backbone = load(spec["precision"])
        tokens = backbone.tokenize([TEMPLATE.format(n) for n in names])
        embeddings, eot = backbone.embed_tokens(tokens), tokens.argmax(-1)
        results["longest_eot_length"] = int(eot.max()) + 1
        results["mean_eot_length"] = float(eot.float().mean()) + 1
        features = {}
        for truncate in (True, False):
            encode = lambda part=slice(None): backbone.encode_text(
                embeddings[part], eot[part], truncate=truncate, chunk_size=spec["text_chunk"])
            encode(slice(0, 64))  # warm-up on a slice
            times = timed(lambda: features.__setitem__(truncate, encode()), device, spec["text_repeats"], warmup=0)
            key = "truncated" if truncate else "full"
            results[f"{key}_ms"] = best_ms(times)
            results[f"{key}_seq_per_s"] = len(names) / min(times)
        if spec["precision"] != "fp32":  # the difference is measured in fp32
            backbone = load("fp32")
            features = {t: backbone.encode_text(embeddings, eot, truncate=t, chunk_size=spec["text_chunk"])
                        for t in (True, False)}
        results["max_abs_diff_fp32"] = float((features[True] - features[False]).abs().max())
    return results


def run_method_case(spec: dict) -> dict:
    """Train-step time and peak memory, then evaluation images/s, of one method at one C."""
    from trainers.models import TextFeatureCache

    device = torch.device(spec["device"])
    trainer = build_bench_trainer(spec)
    resolution = ARCHS[spec["arch"]]["image_resolution"]
    generator = torch.Generator().manual_seed(0)
    batch = synthetic_batch(spec["num_classes"], resolution, generator, trainer.cfg.DATALOADER.K_TRANSFORMS)

    result = {}
    if trainer.get_model_names():  # (zero-shot CLIP learns nothing: evaluation only)
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = 0, 10**9  # never the last batch: no LR update
        with PeakMemory(device) as train_memory:
            step_times = timed(lambda: trainer.forward_backward(batch), device, repeats=spec["steps"])
        result = {"step_ms": best_ms(step_times), "step_times_ms": [1000 * t for t in step_times],
                  "train_peak_mib": train_memory.mib}

    test_images = normalised_images(spec["test_batch"], resolution, generator).to(device)
    trainer.set_model_mode("eval")
    model = trainer.model
    caching = model.caching() if isinstance(model, TextFeatureCache) else nullcontext()
    with torch.no_grad(), caching, PeakMemory(device) as eval_memory:
        eval_times = timed(lambda: trainer.model_inference(test_images), device, repeats=spec["eval_batches"])
    return {
        **result,
        "eval_images_per_s": spec["test_batch"] / min(eval_times), "eval_times_ms": [1000 * t for t in eval_times],
        "eval_peak_mib": eval_memory.mib,
    }


def worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    torch.manual_seed(0)
    with OtherProcessesLoad() as load:
        result = run_text_case(spec) if spec["kind"] == "text" else run_method_case(spec)
    result["others_cpu_share"] = load.share
    with open(spec["result_path"], "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------------------------
# Orchestration, table and targets
# --------------------------------------------------------------------------------------------
def run_in_subprocess(spec: dict, log_dir: str, timeout: int) -> dict:
    label = spec["label"]
    log_path = osp.join(log_dir, re.sub(r"[^\w.-]+", "_", label) + ".log")
    print(f"[bench] {label} ...", end=" ", flush=True)
    start = time.perf_counter()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run([sys.executable, osp.abspath(__file__), "--worker", json.dumps(spec)],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"timed out after {timeout} s (log: {log_path})")
        return {"error": f"timed out after {timeout} s"}
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        reason = "out of memory" if "out of memory" in tail.lower() else f"exit code {proc.returncode}"
        print(f"failed: {reason} (log: {log_path})")
        return {"error": reason}
    with open(spec["result_path"]) as f:
        result = json.load(f)
    print(f"done in {elapsed:.0f} s")
    return result


def run_case(spec: dict, log_dir: str, timeout: int, retries: int) -> dict:
    """``run_in_subprocess``, run again (up to ``retries`` times) while other processes kept the
    machine busy; the quietest run is kept."""
    runs = [run_in_subprocess(spec, log_dir, timeout)]
    while retries > 0 and "error" not in runs[-1] and (runs[-1].get("others_cpu_share") or 0.0) > BUSY:
        print(f"[bench] {spec['label']}: other processes used {runs[-1]['others_cpu_share']:.0%} of the CPU, again")
        runs.append(run_in_subprocess(spec, log_dir, timeout))
        retries -= 1
    return min(runs, key=lambda r: ("error" in r, r.get("others_cpu_share") or 0.0))


def merge_rounds(runs: List[dict]) -> dict:
    """One case measured in several rounds: the best value of every time (``*_ms``, lowest) and
    throughput (``*_per_s``, highest), since slow periods of a shared or virtual machine only
    make things slower; the rest from the first successful round, every round kept under ``rounds``."""
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return runs[0]
    merged = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, float) and key.endswith("_ms"):
            merged[key] = min(run[key] for run in ok)
        elif isinstance(value, float) and key.endswith("_per_s"):
            merged[key] = max(run[key] for run in ok)
    merged["others_cpu_share"] = min((run.get("others_cpu_share") or 0.0) for run in ok)
    if len(runs) > 1:
        merged["rounds"] = runs
    return merged


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def check_targets(text: dict, methods: Dict[str, Dict[int, dict]], classes: List[int]) -> List[dict]:
    """Every target with its measured value, whether it is met (None = not measured) and whether
    one of the cases it compares ran while other processes kept the machine busy."""
    targets = []

    def add(name: str, value: Optional[float], goal: str, passes: Callable[[float], bool], *cases: dict):
        shares = [case.get("others_cpu_share") or 0.0 for case in cases]
        targets.append({"target": name, "value": value, "goal": goal,
                        "met": None if value is None else bool(passes(value)),
                        "busy": value is not None and max(shares, default=0.0) > BUSY})

    add("text: truncated vs full speed-up", ratio(text.get("full_ms"), text.get("truncated_ms")), ">= 3x",
        lambda v: v >= 3, text)
    add("text: max |truncated - full| (fp32)", text.get("max_abs_diff_fp32"), "<= 1e-4", lambda v: v <= 1e-4)
    for c in classes:
        case = lambda m: methods.get(m, {}).get(c, {})
        gopro, cocoop, official = case("GOPro"), case("CoCoOp"), case(OFFICIAL_STYLE)
        add(f"C={c}: GOPro step / CoCoOp step", ratio(gopro.get("step_ms"), cocoop.get("step_ms")), "<= 1.5",
            lambda v: v <= 1.5, gopro, cocoop)
        add(f"C={c}: official-style step / GOPro step", ratio(official.get("step_ms"), gopro.get("step_ms")),
            ">= 2", lambda v: v >= 2, official, gopro)
        add(f"C={c}: GOPro eval img/s / official-style eval img/s",
            ratio(gopro.get("eval_images_per_s"), official.get("eval_images_per_s")), ">= 2",
            lambda v: v >= 2, official, gopro)
        add(f"C={c}: GOPro eval img/s / CoCoOp eval img/s",
            ratio(gopro.get("eval_images_per_s"), cocoop.get("eval_images_per_s")), ">= 0.9",
            lambda v: v >= 0.9, gopro, cocoop)
        for label in methods:
            if label.endswith(OPEN_CLIP_SUFFIX):
                ours, theirs = case(label[:-len(OPEN_CLIP_SUFFIX)]), case(label)
                add(f"C={c}: {label} step / clip step", ratio(theirs.get("step_ms"), ours.get("step_ms")), "<= 1.1",
                    lambda v: v <= 1.1, theirs, ours)
    return targets


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}e}" if value and abs(value) < 10 ** -digits else f"{value:.{digits}f}"
    return str(value)


BUSY = 0.1  # others' CPU share above which a case's timings are flagged


def busy(result: dict) -> str:
    share = result.get("others_cpu_share")
    return "-" if share is None else f"{share:.0%}" + (" (busy)" if share > BUSY else "")


def print_report(report: dict) -> None:
    from tabulate import tabulate

    text = report["text"]
    print(f"\n## Text tower: {text.get('sequences', '-')} ImageNet prompts ({report['setup']['arch']}, "
          f"longest EOT length {text.get('longest_eot_length', '-')}, mean {fmt(text.get('mean_eot_length'))})")
    if "error" in text:
        print(f"failed: {text['error']}")
    else:
        rows = [[k, fmt(text[f"{k}_ms"]), fmt(text[f"{k}_seq_per_s"])] for k in ("truncated", "full")]
        print(tabulate(rows, headers=["tokens", "ms", "sequences/s"], tablefmt="github"))
        print(f"max |truncated - full| (fp32): {text['max_abs_diff_fp32']:.2e}; others' CPU: {busy(text)}")

    print(f"\n## Train step (batch {BATCH_SIZE}) and evaluation (test batch {report['setup']['test_batch']})")
    rows = []
    for c in report["setup"]["classes"]:
        for method in report["methods"]:
            r = report["methods"][method].get(str(c), {})
            if "error" in r:
                rows.append([c, method, r["error"], "", "", ""])
                continue
            rows.append([c, method, fmt(r.get("step_ms")), fmt(r.get("train_peak_mib"), 0),
                         fmt(r.get("eval_images_per_s")), fmt(r.get("eval_peak_mib"), 0), busy(r)])
    print(tabulate(rows, headers=["C", "method", "step ms", "train peak MiB", "eval img/s", "eval peak MiB",
                                  "others' CPU"], tablefmt="github"))
    print("(others' CPU: share of the machine other processes used while the case ran; "
          f"above {BUSY:.0%} the times are inflated)")

    print("\n## Targets")
    rows = [[t["target"], fmt(t["value"], 2), t["goal"],
             {True: "MET", False: "MISSED", None: "n/a"}[t["met"]] + (" (busy machine)" if t["busy"] else "")]
            for t in report["targets"]]
    print(tabulate(rows, headers=["target", "measured", "goal", ""], tablefmt="github"))


CSV_COLUMNS = ("method", "num_classes", "step_ms", "train_peak_mib", "eval_images_per_s", "eval_peak_mib",
               "others_cpu_share", "error")


def case_rows(report: dict):
    """One dict per (method, C) of a report, in the table's order."""
    for c in report["setup"]["classes"]:
        for method, by_c in report["methods"].items():
            yield dict(by_c.get(str(c), {}), method=method, num_classes=c)


def write_csv(report: dict, path: str) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(case_rows(report))


def machine_description(device: str) -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    desc = f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device == "cuda" and torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small CLIP, C in {10, 40}, fewer repeats (under 10 minutes on 2 CPU cores)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=osp.join(BENCH, "out", "results.json"), help="JSON results file")
    parser.add_argument("--classes", type=int, nargs="+", help="class counts C (default 10 100 1000; quick 10 100)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--steps", type=int, help="timed train steps per case (default 5; quick 4, official-style 1)")
    parser.add_argument("--test-batch", type=int, help="evaluation batch size (default 100; quick 8)")
    parser.add_argument("--text-chunk", type=int, default=0, help="TEXT_CHUNK of every trainer (0 = all at once)")
    parser.add_argument("--checkpoint-text", action="store_true",
                        help="CHECKPOINT_TEXT True for every trainer (activation checkpointing in the text tower: "
                             "less memory, one more text forward; for C = 1000)")
    parser.add_argument("--rounds", type=int,
                        help="measure every case this many times, in turns, and keep the best (default 1; quick 2; "
                             "the official-style reference runs once)")
    parser.add_argument("--open-clip", nargs="*", choices=[m for m in METHODS if m != OFFICIAL_STYLE], metavar="METHOD",
                        help="also run these methods (none given: CoOp MaPLe GOPro) on the same weights loaded "
                             f"through open_clip ({OPEN_CLIP_BACKBONE})")
    parser.add_argument("--retries", type=int, default=0,
                        help="run a case again up to this many times when other processes kept the CPU busy")
    parser.add_argument("--case-timeout", type=int, default=1800, help="seconds before a case is abandoned")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch (use --device cpu --quick)")
    quick = args.quick
    open_clip_methods = [] if args.open_clip is None else (args.open_clip or ["CoOp", "MaPLe", "GOPro"])
    setup = dict(
        arch="quick" if quick else "ViT-B/16", device=args.device,
        precision="fp16" if args.device == "cuda" else "fp32",  # what the paper configs' PREC fp16 gives
        classes=args.classes or ([10, 40] if quick else [10, 100, 1000]),
        steps=args.steps or (4 if quick else 5), test_batch=args.test_batch or (8 if quick else 100),
        eval_batches=4 if quick else 3, text_repeats=1 if quick else 3, text_chunk=args.text_chunk,
        checkpoint_text=args.checkpoint_text, rounds=args.rounds or (2 if quick else 1),
        command=" ".join([osp.relpath(sys.executable, REPO), "bench/bench_prompts.py", *(argv or sys.argv[1:])]),
        machine=machine_description(args.device),
    )
    print(f"[bench] {setup['machine']}\n[bench] {setup['arch']} CLIP (random weights), device {args.device}, "
          f"C {setup['classes']}, methods {args.methods}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_prompts_") as tmp:
        log_dir = osp.join(osp.dirname(osp.abspath(args.out)), "logs")
        os.makedirs(log_dir, exist_ok=True)
        clip_path = write_random_clip(osp.join(tmp, "clip.pt"), setup["arch"])
        base = dict(setup, clip_path=clip_path, work_dir=osp.join(tmp, "work"))
        names = read_classnames()
        specs = [dict(base, kind="text", label="text tower", result_path=osp.join(tmp, "text.json"))]
        for c in setup["classes"]:
            root = write_label_space(osp.join(tmp, f"classes{c}"), names[:c])
            for method in args.methods:
                repeats = {}
                if quick and method == OFFICIAL_STYLE and not args.steps:  # long enough to time one step
                    repeats = dict(steps=1, eval_batches=1)
                specs.append(dict(base, **repeats, kind="method", method=method, num_classes=c, root=root,
                                  label=f"{method} C={c}",
                                  result_path=osp.join(tmp, f"{method.replace(' ', '_')}_{c}.json")))
            for method in open_clip_methods:
                specs.append(dict(base, kind="method", method=method, num_classes=c, root=root,
                                  backbone=OPEN_CLIP_BACKBONE, label=f"{method}{OPEN_CLIP_SUFFIX} C={c}",
                                  result_path=osp.join(tmp, f"{method}_open_clip_{c}.json")))
        runs: Dict[str, List[dict]] = {spec["label"]: [] for spec in specs}
        for round_index in range(setup["rounds"]):
            for spec in specs:
                if round_index and spec.get("method") == OFFICIAL_STYLE:
                    continue  # many times slower than the rest: one round says enough
                runs[spec["label"]].append(run_case(spec, log_dir, args.case_timeout, args.retries))
        text = merge_rounds(runs["text tower"])
        labels = [*args.methods, *(m + OPEN_CLIP_SUFFIX for m in open_clip_methods)]
        methods = {m: {str(c): merge_rounds(runs[f"{m} C={c}"]) for c in setup["classes"]} for m in labels}
    by_int = {m: {int(c): r for c, r in rs.items()} for m, rs in methods.items()}
    setup.pop("work_dir", None)
    report = dict(setup=setup, text=text, methods=methods, targets=check_targets(text, by_int, setup["classes"]),
                  wall_s=time.perf_counter() - started)
    print_report(report)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    csv_path = osp.splitext(args.out)[0] + ".csv"
    write_csv(report, csv_path)
    print(f"[bench] wrote {csv_path}")
    print(f"\n[bench] wrote {args.out} ({report['wall_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
