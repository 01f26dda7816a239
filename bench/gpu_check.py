#!/usr/bin/env python
"""One prepared check of speed, memory and numerics of every method, sized for one GPU session.

    bash bench/gpu_check.sh                          # CUDA: ViT-B/16, C ∈ {10, 100, 1000}, fp16 + bf16
    bash bench/gpu_check.sh --device cpu --quick     # CPU: tiny CLIP, small C (what the tests run)

It prints a table and writes ``--out DIR``/gpu_check.json (default bench/out). Sections, in order:

1. **kit**: one short real ``train.py`` run of GOPro on the tiny kit (``tools/kit/build.py``), with
   ``USE_CUDA True`` on a GPU: the real data loaders, views, precision policy and evaluation.
2. **text**: the frozen text tower on ImageNet's 1000 prompts, truncated at the end-of-text token
   vs the full 77 tokens (``bench_prompts.run_text_case``).
3. **precision**: GOPro's loss and the gradients of its learnable parameters in each low precision
   against fp32, from the same weights on the same batch (relative differences).
4. **methods**: every trainer in the registry (``TRAINER_REGISTRY``, so methods added later are
   measured without an edit here; those without learnable parameters, zero-shot CLIP, only
   evaluate): train-step time and peak memory at batch 4, evaluation images/s, for every C and
   precision, and at the largest C per-image prompt methods also with ``CHECKPOINT_TEXT True``.

5. **memory**: the memory predictor (``tools/memory.py``) against the measured peak of the same
   training step (batch 4), for ``MEMORY_TRAINERS`` at the precision section's C.

Precisions are the trainers' own ``PREC`` (``fp16``: the frozen towers in half precision, as the
paper configs run; ``bf16``; ``amp``: fp16 autocast), on a CPU too: the worker sets
``$GOPRO_HALF_ON_CPU=1``, so the towers take the real dtypes there instead of the CPU's fp32
fallback. Trainers without ``PREC`` (zero-shot CLIP: fp16 towers) run under the first one.

CLIP has random weights of the real architecture (ViT-B/16's shapes, or a tiny one with
``--quick``), built by ``clip.model`` and loaded through ``trainers.clip_backbone`` (no download).
Timing and memory are bench_prompts' (``torch.cuda.synchronize`` around every timed call, peak of
``torch.cuda.max_memory_allocated`` over the region minus the memory allocated when it starts).

**Time budget** (``--budget``, default 450 s on CUDA): sections and cases run while it lasts; a
case whose predicted time (from the same method at the previous C) does not fit, or that starts
after the budget is spent, becomes a "skipped: over budget" row, and a case still running at the
end is stopped. All cases run in one worker process (the CLIP file is read once); a worker that
dies (a crash, not an exception: those become "error" rows) is restarted for the cases left.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Dict, Iterator, List, Optional, Tuple
from unittest import mock

import bench_prompts as bp  # (puts the repository on sys.path)

from tools.synthetic import fit_prompt_depths  # noqa: E402
from trainers.clip_backbone import HALF_ON_CPU_ENV  # noqa: E402

import torch  # noqa: E402

REPO = bp.REPO

OVER_BUDGET = "skipped: over budget"
PRECISION_TRAINER = "GOPro"
KIT_TRAINER, KIT_CONFIG = "GOPro", "vit_b16"


@dataclass(frozen=True)
class Precision:
    """How a case runs: the trainers' ``PREC``."""

    name: str
    prec: str


PRECISIONS = {name: Precision(name, name) for name in ("fp16", "bf16", "amp", "fp32")}
MEMORY_TRAINERS = ("GOPro", "CoOp", "CoCoOp", "MaPLe", "PromptSRC")
REFERENCE = "fp32"
SIGNIFICANT = 0.01  # per-tensor gradient differences are reported for tensors with >= 1% of the gradient norm


@dataclass(frozen=True)
class Sizes:
    arch: str
    classes: Tuple[int, ...]
    precisions: Tuple[str, ...]
    steps: int
    eval_batches: int
    test_batch: int
    text_repeats: int
    budget_s: float
    kit_shots: int
    kit_workers: int


def default_sizes(device: str, quick: bool) -> Sizes:
    precisions = ("fp16", "bf16") if device == "cuda" else ("fp32", "fp16", "bf16", "amp")
    if quick:
        return Sizes("tiny", (4,), precisions, steps=1, eval_batches=1, test_batch=4, text_repeats=1,
                     budget_s=300, kit_shots=1, kit_workers=0)
    return Sizes("ViT-B/16", (10, 100, 1000), precisions, steps=3, eval_batches=2, test_batch=64, text_repeats=3,
                 budget_s=450, kit_shots=4, kit_workers=4)


# --------------------------------------------------------------------------------------------
# Methods: the trainer registry
# --------------------------------------------------------------------------------------------
def default_cfg():
    """Our ``train.py`` defaults with every trainer module's keys."""
    from runs import cli

    return cli.setup_cfg(cli.build_parser().parse_args([]))


def registered_trainers() -> List[str]:
    """Every method of this checkout: the trainers that trainers/*.py register (not trainers a
    caller registered for itself, e.g. a test's toy trainer in the same process)."""
    from dassl.engine import TRAINER_REGISTRY

    default_cfg()  # imports (registers) every trainer module
    return [name for name in TRAINER_REGISTRY.registered_names()
            if TRAINER_REGISTRY.get(name).__module__.startswith("trainers.")]


def method_node(cfg, trainer: str):
    """``cfg.TRAINER.<CFG_NODE>`` of a trainer, or None (trainers without a node: zero-shot CLIP)."""
    from dassl.engine import TRAINER_REGISTRY

    node = getattr(TRAINER_REGISTRY.get(trainer), "CFG_NODE", "")
    return cfg.TRAINER.get(node) if node else None


def method_config(trainer: str) -> Optional[str]:
    """The method file a trainer runs with here: its base-to-new config in the methods registry
    (``runs/methods.py``), else the first ViT-B/16 one in ``configs/trainers/<trainer>/``, else
    none (the trainer's defaults)."""
    from runs.methods import METHODS

    folder = osp.join(REPO, "configs", "trainers", trainer)
    paper = [osp.join(folder, f"{m.training_cfg()}.yaml") for m in METHODS.values() if m.trainer == trainer]
    candidates = paper + sorted(glob.glob(osp.join(folder, "vit_b16*.yaml"))) + sorted(glob.glob(osp.join(folder, "*.yaml")))
    return next((c for c in candidates if osp.isfile(c)), None)


# --------------------------------------------------------------------------------------------
# Worker: the cases
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def clip_read_once() -> Iterator[None]:
    """``trainers.clip_backbone.load_clip`` reading each file once per process (every case builds
    its trainer from the same random CLIP; a copy of the CPU model is handed out each time)."""
    from trainers import clip_backbone

    loaded = {}
    load = clip_backbone.load_clip

    def cached(name: str, path: str = ""):
        if (name, path) not in loaded:
            loaded[name, path] = load(name, path)
        return copy.deepcopy(loaded[name, path])

    with mock.patch.object(clip_backbone, "load_clip", cached):
        yield


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_trainer(run: dict, trainer: str, num_classes: int, precision: Precision, checkpoint_text: bool = False):
    """A real trainer (``dassl.engine.build_trainer``) over C synthetic classes, from its method config."""
    from runs import cli
    from dassl.engine import build_trainer as dassl_build_trainer
    from dassl.utils import set_random_seed

    argv = bp.bench_train_args(trainer, method_config(trainer), run["roots"][str(num_classes)],
                               osp.join(run["work_dir"], trainer), run["clip_path"], run["arch"], run["device"],
                               run["test_batch"])
    bp.register_bench_dataset()
    cfg = cli.setup_cfg(cli.build_parser().parse_args(argv))
    cfg.defrost()
    node = method_node(cfg, trainer)  # (None: the trainer has no options, zero-shot CLIP)
    if node is not None:
        fit_prompt_depths(node, run["arch"])
        if "TEACHER_RUN" in node:  # a distilled student (PromptKD)
            node.TEACHER_RUN = stand_in_teacher(run, num_classes, node.TEACHER_NAME)
        if "PREC" in node:
            node.PREC = precision.prec
        if checkpoint_text:
            node.CHECKPOINT_TEXT = True
    cfg.freeze()
    set_random_seed(cfg.SEED)
    return dassl_build_trainer(cfg)


def stand_in_teacher(run: dict, num_classes: int, name: str) -> str:
    """A teacher run folder for a distilled student: what the export writes (random text features
    of the C classes, no image prompts) with the benchmark's CLIP as the teacher's, so the student's
    step is measured with a teacher image tower of the student's size (a ViT-L/14 costs more)."""
    from trainers.promptkd import TEACHER_FILE, TeacherRecord

    folder = osp.join(run["work_dir"], f"teacher_C{num_classes}")
    if osp.isfile(osp.join(folder, TEACHER_FILE)):
        return folder
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(run["roots"][str(num_classes)], "classnames.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    features = torch.randn(len(names), bp.ARCHS[run["arch"]]["embed_dim"], generator=torch.Generator().manual_seed(0))
    with open(osp.join(folder, "run.json"), "w") as f:
        json.dump({"digest": "stand-in", "settings": {}}, f)
    TeacherRecord(torch.nn.functional.normalize(features, dim=-1), names, {}, {"vision": [0, 0], "text": [0, 0]},
                  name, run["clip_path"], folder, "stand-in", 0).save(osp.join(folder, TEACHER_FILE))
    return folder


def is_per_image(trainer) -> bool:
    """Prompts conditioned on each image (B·C text sequences per step) with a CHECKPOINT_TEXT switch."""
    from trainers.models import InstancePromptCLIP

    model = getattr(trainer, "model", None)
    return isinstance(model, InstancePromptCLIP) and "CHECKPOINT_TEXT" in getattr(trainer, "options", {})


def measure(trainer, run: dict, num_classes: int, precision: Precision) -> dict:
    """Train-step time and peak memory (when the trainer learns anything; a frozen-feature method:
    one whole fit on its cached features, after an untimed one that encodes them), then evaluation images/s."""
    from trainers.frozen_features import FrozenFeatureTrainer
    from trainers.models import TextFeatureCache

    device = torch.device(run["device"])
    resolution = bp.ARCHS[run["arch"]]["image_resolution"]
    generator = torch.Generator().manual_seed(0)
    result = {}
    if isinstance(trainer, FrozenFeatureTrainer):  # training is one fit on frozen features (encoding included)
        with bp.PeakMemory(device) as memory:
            times = bp.timed(trainer.fit_head, device, repeats=1)
        result.update(fit_ms=bp.best_ms(times), train_peak_mib=memory.mib, note="step = one fit on cached features")
    elif trainer.get_model_names():
        batch = bp.synthetic_batch(num_classes, resolution, generator, trainer.cfg.DATALOADER.K_TRANSFORMS)
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = 0, 10**9  # never the last batch: no LR update

        def step():
            trainer.forward_backward(batch)

        with bp.PeakMemory(device) as memory:
            times = bp.timed(step, device, repeats=run["steps"])
        result.update(step_ms=bp.best_ms(times), train_peak_mib=memory.mib)
    else:
        result["note"] = "eval only"
    images = bp.normalised_images(run["test_batch"], resolution, generator).to(device)
    trainer.set_model_mode("eval")
    model = getattr(trainer, "model", None)
    caching = model.caching() if isinstance(model, TextFeatureCache) else contextlib.nullcontext()
    with torch.no_grad(), caching, bp.PeakMemory(device) as memory:
        times = bp.timed(lambda: trainer.model_inference(images), device, repeats=run["eval_batches"])
    result.update(eval_images_per_s=run["test_batch"] / min(times), eval_peak_mib=memory.mib)
    return result


def error_row(exc: BaseException) -> dict:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return {"status": "out of memory"}
    return {"status": f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


class MethodCases:
    """The methods section: one case per (C, precision, trainer), smallest C first; predicts each
    case's time from the same trainer and precision at the previous C (build time + run time × C ratio)."""

    def __init__(self, run: dict, deadline: float):
        self.run, self.deadline = run, deadline
        self.device = torch.device(run["device"])
        self.precisions = PRECISIONS
        self.history: Dict[Tuple[str, str], Tuple[int, float, float]] = {}

    def predicted_s(self, trainer: str, precision: str, num_classes: int) -> float:
        if (trainer, precision) not in self.history:
            return 0.0
        previous_c, build_s, run_s = self.history[trainer, precision]
        return build_s + run_s * num_classes / previous_c

    def fits(self, seconds: float) -> bool:
        return time.time() + seconds < self.deadline

    def __call__(self, case: dict) -> List[dict]:
        name, c, precision = case["trainer"], case["num_classes"], self.precisions[case["precision"]]
        row = dict(num_classes=c, method=name, precision=precision.name, checkpoint_text=False)
        if not self.fits(self.predicted_s(name, precision.name, c)):
            return [dict(row, status=OVER_BUDGET)]
        rows = [self.measure_case(row, precision)]
        if case["checkpoint_variant"] and rows[0].get("per_image_prompts"):
            # the same case with activation checkpointing in the text tower: about one more text forward
            _, build_s, run_s = self.history[name, precision.name]
            row = dict(row, checkpoint_text=True)
            rows.append(self.measure_case(row, precision) if self.fits(build_s + 1.5 * run_s)
                        else dict(row, status=OVER_BUDGET))
        return rows

    def measure_case(self, row: dict, precision: Precision) -> dict:
        """``row`` with the measurements of its trainer, or with the error that stopped them."""
        name, c = row["method"], row["num_classes"]
        trainer = None
        try:
            started = time.time()
            trainer = build_trainer(self.run, name, c, precision, checkpoint_text=row["checkpoint_text"])
            built = time.time()
            measured = measure(trainer, self.run, c, precision)
            if not row["checkpoint_text"]:
                self.history[name, precision.name] = (c, built - started, time.time() - built)
            return dict(row, **measured, status="ok", wall_s=time.time() - started,
                        per_image_prompts=is_per_image(trainer))
        except Exception as exc:  # one method failing must not stop the others
            return dict(row, **error_row(exc))
        finally:
            trainer = None
            release(self.device)


def loss_and_gradients(trainer, batch: dict, precision: Precision, device: torch.device):
    """GOPro's loss and the fp32 gradients of its learnable parameters on ``batch`` (no update)."""
    trainer.set_model_mode("train")
    learnable = trainer.model.learnable
    learnable.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss, _ = trainer.compute_loss(batch)
    loss.backward()
    grads = {n: p.grad.detach().float().flatten() for n, p in learnable.named_parameters() if p.grad is not None}
    return loss.item(), grads


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (0 when both are 0)."""
    scale = float(b.norm())
    return float((a - b).norm()) / scale if scale > 0 else float((a - b).norm())


def run_precision_case(run: dict, case: dict) -> dict:
    """Loss and gradients in one precision against fp32, same initial weights, same batch."""
    device = torch.device(run["device"])
    precisions = PRECISIONS
    c = case["num_classes"]
    batch = bp.synthetic_batch(c, bp.ARCHS[run["arch"]]["image_resolution"], torch.Generator().manual_seed(0))
    reference = build_trainer(run, PRECISION_TRAINER, c, precisions[REFERENCE])
    weights = copy.deepcopy(reference.model.learnable.state_dict())
    ref_loss, ref_grads = loss_and_gradients(reference, batch, precisions[REFERENCE], device)
    reference = None
    release(device)
    precision = precisions[case["precision"]]
    trainer = build_trainer(run, PRECISION_TRAINER, c, precision)
    trainer.model.learnable.load_state_dict(weights)
    loss, grads = loss_and_gradients(trainer, batch, precision, device)
    trainer = None
    release(device)
    names = sorted(ref_grads)
    total = float(torch.cat([ref_grads[n] for n in names]).norm())
    # per tensor only where the reference gradient is not ~0 (its relative difference would be noise)
    carrying = [n for n in names if float(ref_grads[n].norm()) >= SIGNIFICANT * total] or names
    per_tensor = {n: relative(grads[n], ref_grads[n]) for n in carrying}
    worst = max(carrying, key=per_tensor.get)
    return dict(method=PRECISION_TRAINER, precision=precision.name, num_classes=c, status="ok",
                loss=loss, loss_fp32=ref_loss, loss_rel_diff=abs(loss - ref_loss) / max(abs(ref_loss), 1e-12),
                grad_rel_diff=relative(torch.cat([grads[n] for n in names]), torch.cat([ref_grads[n] for n in names])),
                worst_tensor=worst, worst_tensor_rel_diff=per_tensor[worst], tensors=len(names))


def run_memory_case(run: dict, case: dict) -> dict:
    """The predicted extra memory of one training step (``tools.memory``, on meta tensors) against
    the peak measured on the device for the same trainer, C, precision and batch."""
    from tools.memory import Setting, predict

    trainer_name, c, precision = case["trainer"], case["num_classes"], PRECISIONS[case["precision"]]
    setting = Setting(trainer_name, method_config(trainer_name), c, prec=precision.prec, batch_size=bp.BATCH_SIZE,
                      backbone=run["arch"])
    predicted = predict(setting).step_extra / 2**20
    trainer = build_trainer(run, trainer_name, c, precision)
    measured = measure(trainer, dict(run, steps=1, eval_batches=1), c, precision)
    trainer = None
    release(torch.device(run["device"]))
    error = predicted / measured["train_peak_mib"] - 1 if measured.get("train_peak_mib") else None
    return dict(method=trainer_name, num_classes=c, precision=precision.name, status="ok",
                predicted_step_mib=predicted, measured_step_mib=measured.get("train_peak_mib"), relative_error=error)


def worker(spec_path: str) -> None:
    """Run the cases of a spec file in order, appending one JSON line per case start and result."""
    with open(spec_path) as f:
        spec = json.load(f)
    run, deadline = spec["run"], spec["deadline"]
    device = torch.device(run["device"])
    os.environ[HALF_ON_CPU_ENV] = "1"  # PREC's real dtypes on a CPU too (a GPU always has them)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.py
    methods = MethodCases(run, deadline)

    def emit(record: dict) -> None:
        with open(spec["results"], "a") as f:
            f.write(json.dumps(record) + "\n")

    with clip_read_once():
        for case in spec["cases"]:
            emit({"start": case["id"]})
            base = {k: case[k] for k in ("num_classes", "precision") if k in case}
            if case["section"] == "methods":
                rows = methods(case)
            elif time.time() >= deadline:
                rows = [dict(base, status=OVER_BUDGET)]
            else:
                try:
                    if case["section"] == "text":
                        rows = [dict(bp.run_text_case(dict(run, precision=case["precision"])), **base, status="ok")]
                    elif case["section"] == "memory":
                        rows = [run_memory_case(run, case)]
                    else:
                        rows = [run_precision_case(run, case)]
                except Exception as exc:
                    rows = [dict(base, **error_row(exc))]
                release(device)
            emit({"done": case["id"], "section": case["section"], "rows": rows})
            print(f"[gpu_check] {case['id']}: {', '.join(r['status'] for r in rows)}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
def plan_cases(device: str, sizes: Sizes, trainers: List[str]) -> List[dict]:
    """Text, precision, then methods by increasing C (so a short budget drops the largest C first)."""
    cfg = default_cfg()
    text_precision = "fp16" if device == "cuda" else "fp32"
    cases = [dict(id="text", section="text", precision=text_precision)]
    # GOPro's numerics at the largest C up to 100 (C = 1000 is for the speed cases)
    precision_classes = max([c for c in sizes.classes if c <= 100] or [min(sizes.classes)])
    low = [p for p in sizes.precisions if p != REFERENCE]
    cases += [dict(id=f"precision {p}", section="precision", precision=p, num_classes=precision_classes) for p in low]
    memory_precision = next(p for p in sizes.precisions if p != REFERENCE) if len(sizes.precisions) > 1 else REFERENCE
    cases += [dict(id=f"memory {t}", section="memory", trainer=t, precision=memory_precision,
                   num_classes=precision_classes) for t in MEMORY_TRAINERS if t in trainers]
    for c in sizes.classes:
        for i, precision in enumerate(sizes.precisions):
            for trainer in trainers:
                node = method_node(cfg, trainer)
                if i > 0 and (node is None or "PREC" not in node):
                    continue  # the trainer fixes its precision: measured once per C
                cases.append(dict(id=f"{trainer} C={c} {precision}", section="methods", trainer=trainer,
                                  num_classes=c, precision=precision, checkpoint_variant=c == max(sizes.classes)))
    return cases


def placeholder(case: dict, status: str) -> dict:
    """The record of a case that produced no rows of its own (not run, or its worker died)."""
    row = {k: case[k] for k in ("num_classes", "precision") if k in case}
    if "trainer" in case:
        row.update(method=case["trainer"], checkpoint_text=False)
    return dict(done=case["id"], section=case["section"], rows=[dict(row, status=status)])


def read_records(path: str) -> Iterator[dict]:
    """The JSON lines a worker appended to ``path`` (a last line cut off by a kill is left out)."""
    if not osp.exists(path):
        return
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return


def run_worker(cases: List[dict], run: dict, deadline: float, work: str, log_path: str) -> Dict[str, dict]:
    """Run ``cases`` in a worker process, again for the cases left when one dies, until every case
    has its rows: a case a worker died in gets an error row, one still running at the end of the
    budget is stopped, and cases never started are over budget."""
    results_path = osp.join(work, "results.jsonl")
    done: Dict[str, dict] = {}
    pending = list(cases)
    while pending:
        spec_path = osp.join(work, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(dict(run=run, deadline=deadline, cases=pending, results=results_path), f)
        timeout = max(1.0, deadline - time.time()) + 20  # the worker itself starts no case after the deadline
        with open(log_path, "a") as log:
            try:
                # progress lines and a crashing worker's traceback on stderr; the trainers' output into the log
                proc = subprocess.run([sys.executable, osp.abspath(__file__), "--worker", spec_path], cwd=REPO,
                                      stdout=log, timeout=timeout)
                ended = f"died (exit code {proc.returncode})" if proc.returncode else "ended early"
                failure = f"error: worker {ended}"
            except subprocess.TimeoutExpired:
                failure = "stopped: over budget"
        before, started = len(done), None
        for record in read_records(results_path):
            if "done" in record:
                done[record["done"]] = record
            else:
                started = record["start"]
        by_id = {case["id"]: case for case in pending}
        if started in by_id and started not in done:
            done[started] = placeholder(by_id[started], failure)
        progress = len(done) > before
        pending = [case for case in pending if case["id"] not in done]
        if pending and (not progress or time.time() >= deadline):
            status = OVER_BUDGET if progress or failure == "stopped: over budget" else failure
            done.update((case["id"], placeholder(case, status)) for case in pending)
            pending = []
    return done


def run_kit(device: str, sizes: Sizes, kit_root: str, work: str, log_path: str, deadline: float) -> dict:
    """One short real ``train.py`` run (GOPro, one epoch) on the tiny kit (built in ``kit_root`` if missing)."""
    from tools.kit.build import build_kit

    started = time.time()
    kit = build_kit(kit_root)
    command = [sys.executable, "train.py", "--root", str(kit.data), "--seed", "1", "--trainer", KIT_TRAINER,
               "--dataset-config-file", osp.join("configs", "datasets", "oxford_pets.yaml"),
               "--config-file", osp.join("configs", "trainers", KIT_TRAINER, f"{KIT_CONFIG}.yaml"),
               "--output-dir", osp.join(work, "kit_run"), *kit.opts(workers=sizes.kit_workers),
               "DATASET.NUM_SHOTS", str(sizes.kit_shots), "OPTIM.MAX_EPOCH", "1", "USE_CUDA", str(device == "cuda")]
    shown = " ".join(osp.relpath(a, REPO) if osp.isabs(a) and a.startswith(REPO) else a for a in command[1:])
    result = dict(command=f"python {shown}", use_cuda=device == "cuda")
    timeout = deadline - time.time()
    if timeout <= 0:
        return dict(result, status=OVER_BUDGET)
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, HALF_ON_CPU_ENV: "1"})  # the config's PREC fp16, also on a CPU
    except subprocess.TimeoutExpired:
        return dict(result, status="stopped: over budget", wall_s=time.time() - started)
    with open(log_path) as f:
        log_text = f.read()
    accuracy = re.findall(r"^\* accuracy: ([\d.]+)%", log_text, re.M)
    ok = proc.returncode == 0 and bool(accuracy)
    return dict(result, status="ok" if ok else f"error: exit code {proc.returncode}", returncode=proc.returncode,
                accuracy=float(accuracy[-1]) if accuracy else None, wall_s=time.time() - started)


def collect(done: Dict[str, dict]) -> dict:
    report = {"text": {}, "precision": [], "methods": [], "memory": []}
    for record in done.values():
        if record["section"] == "text":
            report["text"] = record["rows"][0]
        else:
            report[record["section"]].extend(record["rows"])
    report["methods"].sort(key=lambda r: (r["num_classes"], r["precision"], r["method"], r["checkpoint_text"]))
    return report


def print_report(report: dict) -> None:
    from tabulate import tabulate

    fmt = bp.fmt
    setup = report["setup"]
    print(f"\n## GPU check: {setup['machine']}\n{setup['arch']} CLIP (random weights), device {setup['device']}, "
          f"budget {setup['budget_s']:.0f} s, used {report['wall_s']:.0f} s")

    kit = report["kit"]
    print(f"\n## Real train.py run on the kit ({kit.get('command', '')})")
    print(f"{kit['status']}: accuracy {fmt(kit.get('accuracy'))}%, {fmt(kit.get('wall_s'))} s (kit build included)")

    text = report["text"]
    print(f"\n## Text tower: {text.get('sequences', '-')} ImageNet prompts, {text.get('precision', '')}")
    if text.get("status") != "ok":
        print(text.get("status"))
    else:
        rows = [[k, fmt(text[f"{k}_ms"]), fmt(text[f"{k}_seq_per_s"])] for k in ("truncated", "full")]
        print(tabulate(rows, headers=["tokens", "ms", "sequences/s"], tablefmt="github"))
        print(f"speed-up {text['full_ms'] / text['truncated_ms']:.2f}x, "
              f"max |truncated - full| (fp32) {text['max_abs_diff_fp32']:.2e}")

    print(f"\n## {PRECISION_TRAINER}: loss and gradients against fp32 (same weights, same batch; worst tensor "
          f"among those with >= {SIGNIFICANT:.0%} of the gradient norm)")
    rows = [[r["precision"], r.get("num_classes"), fmt(r.get("loss_fp32"), 4), fmt(r.get("loss"), 4),
             fmt(r.get("loss_rel_diff"), 4), fmt(r.get("grad_rel_diff"), 4),
             f"{r['worst_tensor']} {r['worst_tensor_rel_diff']:.2e}" if "worst_tensor" in r else "", r["status"]]
            for r in report["precision"]]
    print(tabulate(rows, headers=["precision", "C", "loss fp32", "loss", "loss rel. diff", "grad rel. diff",
                                  "worst tensor", "status"], tablefmt="github"))

    print("\n## Memory predictor (tools/memory.py) vs the measured training step (MiB beyond the model; "
          "on a CPU the measurement is the resident set's, an upper bound)")
    rows = [[r.get("method"), r.get("num_classes"), r.get("precision"), fmt(r.get("predicted_step_mib"), 0),
             fmt(r.get("measured_step_mib"), 0),
             f"{r['relative_error']:+.0%}" if r.get("relative_error") is not None else "-", r["status"]]
            for r in report.get("memory", [])]
    print(tabulate(rows, headers=["method", "C", "precision", "predicted MiB", "measured MiB", "error", "status"],
                   tablefmt="github"))

    print(f"\n## Train step (batch {bp.BATCH_SIZE}) and evaluation (test batch {setup['test_batch']})")
    rows = [[r["num_classes"], r["method"] + (" +CHECKPOINT_TEXT" if r["checkpoint_text"] else ""), r["precision"],
             fmt(r.get("step_ms", r.get("fit_ms"))), fmt(r.get("train_peak_mib"), 0), fmt(r.get("eval_images_per_s")),
             fmt(r.get("eval_peak_mib"), 0), fmt(r.get("wall_s")), r.get("note") or r["status"]]
            for r in report["methods"]]
    print(tabulate(rows, headers=["C", "method", "precision", "step ms", "train peak MiB", "eval img/s",
                                  "eval peak MiB", "case s", "status"], tablefmt="github"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny CLIP, C = 4, one timed step (seconds on a CPU)")
    parser.add_argument("--out", default=osp.join(bp.BENCH, "out"), help="folder for gpu_check.json and the logs")
    parser.add_argument("--kit", help="tiny kit folder for the train.py run, built there if missing (default: a temporary one)")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (default 450; quick 300)")
    parser.add_argument("--classes", type=int, nargs="+", help="class counts C (default 10 100 1000; quick 4)")
    parser.add_argument("--precisions", nargs="+", help="precisions (CUDA: fp16 bf16 amp fp32; CPU: fp32 bf16)")
    parser.add_argument("--methods", nargs="+", help="trainers to measure (default: every registered one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def check(args, argv) -> None:
    """The whole check: plan, run within the budget, print the tables, write the JSON."""
    started = time.time()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (on a CPU: --device cpu --quick)")
    unknown = sorted(set(args.precisions or ()) - set(PRECISIONS))
    if unknown:
        raise SystemExit(f"--precisions {' '.join(unknown)}: on {args.device} choose from {' '.join(PRECISIONS)}")
    given = dict(classes=args.classes and tuple(args.classes), precisions=args.precisions and tuple(args.precisions),
                 budget_s=args.budget)
    sizes = replace(default_sizes(args.device, args.quick), **{k: v for k, v in given.items() if v})
    trainers = registered_trainers()
    missing = sorted(set(args.methods or ()) - set(trainers))
    if missing:
        raise SystemExit(f"--methods {' '.join(missing)}: not registered; choose from {' '.join(trainers)}")
    trainers = [t for t in trainers if not args.methods or t in args.methods]
    deadline = started + sizes.budget_s
    os.makedirs(args.out, exist_ok=True)
    worker_log = osp.join(args.out, "gpu_check_worker.log")
    if osp.exists(worker_log):
        os.remove(worker_log)  # (appended to by every worker of this check)
    setup = dict(device=args.device, arch=sizes.arch, classes=list(sizes.classes), precisions=list(sizes.precisions),
                 methods=trainers, batch_size=bp.BATCH_SIZE, test_batch=sizes.test_batch, steps=sizes.steps,
                 budget_s=sizes.budget_s, machine=bp.machine_description(args.device),
                 date=time.strftime("%Y-%m-%d", time.gmtime(started)),
                 command=" ".join(["bash bench/gpu_check.sh", *(sys.argv[1:] if argv is None else argv)]))
    print(f"[gpu_check] {setup['machine']}\n[gpu_check] {sizes.arch} CLIP, {args.device}, C {list(sizes.classes)}, "
          f"{list(sizes.precisions)}, {len(trainers)} trainers, budget {sizes.budget_s:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        print("[gpu_check] kit: train.py run ...", flush=True)
        kit = run_kit(args.device, sizes, args.kit or osp.join(work, "kit"), work,
                      osp.join(args.out, "gpu_check_kit.log"), deadline)
        print(f"[gpu_check] kit: {kit['status']}", flush=True)
        names = bp.read_classnames()
        run = dict(device=args.device, arch=sizes.arch, steps=sizes.steps, eval_batches=sizes.eval_batches,
                   test_batch=sizes.test_batch, text_repeats=sizes.text_repeats, text_chunk=0,
                   clip_path=bp.write_random_clip(osp.join(work, "clip.pt"), sizes.arch), work_dir=osp.join(work, "runs"),
                   roots={str(c): bp.write_label_space(osp.join(work, f"classes{c}"), names[:c]) for c in sizes.classes})
        done = run_worker(plan_cases(args.device, sizes, trainers), run, deadline, work, worker_log)
    report = dict(setup=setup, kit=kit, **collect(done), wall_s=time.time() - started)
    print_report(report)
    path = osp.join(args.out, "gpu_check.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\n[gpu_check] wrote {path} ({report['wall_s']:.0f} s in all; logs beside it)")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
    else:
        check(args, argv)


if __name__ == "__main__":
    main()
