"""Peak GPU memory of a method's training step and evaluation, predicted without a GPU.

    python -m tools.memory --trainer GOPro --config-file configs/trainers/GOPro/vit_b16.yaml \\
        --dataset-config-file configs/datasets/imagenet.yaml [--prec fp16] [--batch-size N]
    python -m tools.memory --readme-table     # every registry method x C = 100, 1000 x fp16, fp32

How: the real trainer (``dassl.engine.build_trainer`` from the method's config) is built over a
CLIP of the real architecture and runs one real training step (``forward_backward``: forward,
loss, backward, optimizer step) and one evaluation batch (``model_inference``), in a
``MemoryTracker``: a ``TorchDispatchMode`` that sees every tensor an operator makes and counts the
bytes of the storages alive, the way the GPU allocator would hold them (each storage rounded up to
512 bytes, as CUDA's caching allocator does). With ``meta=True`` (the prediction) every floating-
point tensor lives on PyTorch's meta device: shapes and dtypes without data, so ViT-L/14 at
C = 1000 costs neither memory nor compute. Integer tensors (token ids, end-of-text positions,
labels) stay real, so the data-dependent parts of the text path (truncation at the longest EOT,
length buckets, chunks) take the branches a real run takes. A scalar read from a meta tensor
(``loss.item()`` for the log) gets a placeholder value; the predictor counts such reads.

Every registry method is predicted; what "one training step" is follows what the method runs on
the GPU: a prompt learner's ``forward_backward``; CoPrompt's with its ``K_TRANSFORMS`` views of each
image; a plug-in (DePT) composed with its base method on the base classes, where its head trains
(the label space stands for them); a distilled student (PromptKD) with its teacher's image tower
running in every step (the teacher's text features are precomputed, as the trainer reads them from
its teacher run: a placeholder run of the real shapes is written); a frozen-feature method (GDA,
Tip-Adapter(-F), the linear probe) its GPU work before the fit, the zero-shot class features and
one feature-extraction batch, since its fit runs on the CPU's cached features. Only a backbone
without a known architecture (``tools.synthetic.ARCHS``: the OpenAI ViTs) is refused, by name.

The breakdown: frozen weights; learnable parameters with their gradients and optimizer state;
activations kept for backward (what is alive when backward starts, beyond the step's inputs);
temporaries (the rest of the peak). The GPU needs the predicted peak plus the CUDA context and
allocator slack: ``OVERHEAD_GIB`` is added before comparing with a card's memory.

Attention is counted as the fused kernels of CPUs and GPUs keep it (``fused_attention_on_meta``).
Checked against ``torch.cuda.max_memory_allocated`` of a step on an H200 (bench/RESULTS.md): within
9 % at C = 100 (GOPro, CoOp, CoCoOp, MaPLe, PromptSRC); at C = 1000 within 6 % for every trainer
but CLIP-LoRA (15 % over) and CLIP-Adapter (2 MiB under).

Known limits: ``PREC amp`` is predicted as fp32 activations (meta tensors bypass autocast: an
upper bound); fragmentation of the caching allocator and cuBLAS workspaces are in the overhead,
not modelled.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import weakref
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map_only

GIB = 2**30
BLOCK = 512                 # CUDA's caching allocator rounds every allocation up to this
OVERHEAD_GIB = 1.0          # CUDA context (~0.5 GiB) and allocator slack, added to the prediction
CARDS_GB = (16, 24, 40, 80)
aten = torch.ops.aten


# --------------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------------
def allocated_bytes(nbytes: int, block: int = BLOCK) -> int:
    return int(math.ceil(nbytes / block) * block)


class MemoryTracker(TorchDispatchMode):
    """Live and peak bytes of the tensors made while active (and of those ``track``-ed before).

    ``meta=True``: floating-point work runs on the meta device (see the module docstring).
    ``mark()`` returns the live bytes now; ``peak`` is the high-water mark since ``reset_peak``.
    ``live_at_backward`` is the live bytes just before the first backward operator ran.
    """

    def __init__(self, meta: bool, block: int = BLOCK):
        super().__init__()
        self.meta = meta
        self.block = block
        self.live = 0
        self.peak = 0
        self.placeholder_scalars = 0
        self.live_at_backward: Optional[int] = None
        self._storages: Dict[int, weakref.ref] = {}
        self._generation = 0

    def restart(self) -> None:
        """Forget every storage counted so far (their later frees are ignored)."""
        self.live, self.peak, self._storages = 0, 0, {}
        self._generation += 1

    # ---- bookkeeping -------------------------------------------------------------------------
    def track(self, tensor: torch.Tensor) -> None:
        """Count ``tensor``'s storage once, until it is freed."""
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._storages and self._storages[key]() is not None:
            return  # a view of (or the same) storage: no new allocation
        nbytes = allocated_bytes(storage.nbytes(), self.block)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        generation = self._generation
        self._storages[key] = weakref.ref(storage, lambda _: self._freed(key, nbytes, generation))

    def _freed(self, key: int, nbytes: int, generation: int) -> None:
        if generation == self._generation:
            self.live -= nbytes
            self._storages.pop(key, None)

    def track_all(self, tensors) -> int:
        """Track every tensor of ``tensors``; the bytes newly counted."""
        before = self.live
        for tensor in tensors:
            self.track(tensor)
        return self.live - before

    def reset_peak(self) -> None:
        self.peak = self.live

    # ---- the dispatch ------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.live_at_backward is None and torch._C._current_graph_task_id() != -1:
            self.live_at_backward = self.live
        if self.meta:
            if func is aten._local_scalar_dense.default and args[0].is_meta:
                self.placeholder_scalars += 1
                return {torch.bool: True}.get(args[0].dtype, 1.0 if args[0].is_floating_point() else 1)
            out, args, kwargs = self._run_meta(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        inputs = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and id(tensor) not in inputs:
                self.track(tensor)
        return out

    @staticmethod
    def _run_meta(func, args, kwargs):
        """(output, args, kwargs) of an operator in the meta world. An operator that touches a meta
        tensor runs on meta: its other tensors follow (no copy of data) and a device it asks for
        stays meta. One on real tensors only that asks for the model's device (meta) runs on the
        CPU and keeps an integer result real (token ids, positions: data the code branches on);
        a floating-point result moves to meta."""
        meta = torch.device("meta")
        if any(t.is_meta for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)):
            args, kwargs = tree_map_only(torch.Tensor, lambda t: t if t.is_meta else t.to(meta), (args, kwargs))
            if "device" in kwargs:
                kwargs = dict(kwargs, device=meta)
            return func(*args, **kwargs), args, kwargs
        if kwargs.get("device") != meta:
            return func(*args, **kwargs), args, kwargs
        kwargs = dict(kwargs, device=torch.device("cpu"))
        out = tree_map_only(torch.Tensor, lambda t: t.to(meta) if t.is_floating_point() else t, func(*args, **kwargs))
        return out, args, kwargs


@contextlib.contextmanager
def fused_attention_on_meta() -> Iterator[None]:
    """``F.scaled_dot_product_attention`` on meta tensors as CPUs and GPUs run it. On meta, PyTorch
    takes its math path (the attention probabilities [.., L, L] kept for backward, half precision
    upcast to fp32 first); a CPU runs its fused flash kernel and a GPU flash or memory-efficient
    attention, which keep only the output and the log-sum-exp [.., L]. The math path made the
    prediction of a step 20-30 % too high on the GPU where both towers learn (MaPLe, PromptSRC)."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    def fused(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if not query.is_meta:
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, **kwargs)
        if attn_mask is not None and attn_mask.dtype == torch.bool:  # the kernels take it as additive
            attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
        return aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal,
                                                                 attn_mask=attn_mask, scale=scale)[0]

    with mock.patch.object(F, "scaled_dot_product_attention", fused):
        yield


def module_tensors(module: torch.nn.Module) -> List[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def trainer_modules(trainer) -> List[torch.nn.Module]:
    """The modules a trainer holds on its device: its model, its backbone (a frozen-feature
    method's model is only its fitted tensors) and every registered one (PromptSRC's GPA sum is
    not part of the model)."""
    held = [getattr(trainer, "model", None), getattr(trainer, "backbone", None)]
    modules = [m for m in held if isinstance(m, torch.nn.Module)]
    return modules + [trainer._models[name] for name in trainer.get_model_names()]


def onto_meta(modules: Sequence[torch.nn.Module]) -> None:
    """Move the real tensors the trainer built (learnable parameters, small buffers) to meta, keeping
    each parameter's identity (the optimizer holds them)."""
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        for module in modules:
            module.to("meta")
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)


# --------------------------------------------------------------------------------------------
# Building the trainer at real size
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """What a prediction is made for: a method's config at a class count, precision and knobs."""

    trainer: str
    config_file: str
    num_classes: int
    prec: str = ""                     # "" = the config's
    batch_size: int = 0                # 0 = the config's
    text_chunk: int = 0
    checkpoint_text: bool = False
    backbone: str = ""                 # "" = the config's MODEL.BACKBONE.NAME
    opts: Tuple[str, ...] = ()
    classnames: Tuple[str, ...] = ()   # () = ImageNet's names (tools.synthetic.class_names)
    base_cfg: Optional[object] = field(default=None, compare=False)  # a run's config instead of config_file

    def describe(self) -> str:
        knobs = [f"batch {self.batch_size}" if self.batch_size else "",
                 f"TEXT_CHUNK {self.text_chunk}" if self.text_chunk else "",
                 "CHECKPOINT_TEXT" if self.checkpoint_text else ""]
        return ", ".join(k for k in knobs if k) or "config as is"


@contextlib.contextmanager
def clips_of_their_architecture(meta: bool) -> Iterator[None]:
    """``load_clip`` building a randomly initialised CLIP of the architecture its name gives
    (``tools.synthetic.ARCHS``; on the meta device when ``meta``) instead of reading a weights file,
    in every trainer module that calls it (the backbone, ProGrad's second construction, PromptKD's
    teacher)."""
    import sys

    from clip.model import CLIP, convert_weights

    import trainers.clip_backbone  # noqa: F401  (loaded, so that the backbone's own load_clip is patched too)

    def build(name: str, path: str = ""):
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = CLIP(**architecture_of(name))
            convert_weights(model)
        return model.eval()

    callers = [m for name, m in list(sys.modules.items())
               if name.startswith("trainers.") and callable(getattr(m, "load_clip", None))]
    with contextlib.ExitStack() as stack:
        for module in callers:
            stack.enter_context(mock.patch.object(module, "load_clip", build))
        yield


def method_node(trainer_name: str) -> str:
    from dassl.engine import TRAINER_REGISTRY

    return getattr(TRAINER_REGISTRY.get(trainer_name), "CFG_NODE", "")


def setting_cfg(setting: Setting, label_root: str, device: str):
    """The frozen config of ``setting`` over the synthetic label space at ``label_root``."""
    from runs import cli
    from tools.synthetic import LABEL_SPACE_DATASET, fit_prompt_depths, register_bench_dataset
    from trainers.plugins import PLUGINS_KEY

    register_bench_dataset()
    if setting.base_cfg is not None:
        cfg = setting.base_cfg.clone()
        cfg.defrost()
    else:
        args = cli.build_parser().parse_args([
            "--root", label_root, "--seed", "1", "--trainer", setting.trainer, "--config-file", setting.config_file,
            *setting.opts])
        cfg = cli.setup_cfg(args)
        cfg.defrost()
    cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.OUTPUT_DIR = LABEL_SPACE_DATASET, label_root, os.path.join(label_root, "run")
    cfg.DATALOADER.NUM_WORKERS, cfg.USE_CUDA, cfg.VERBOSE = 0, device == "cuda", False
    cfg.MODEL.INIT_WEIGHTS = ""
    if cfg.TRAINER.get(PLUGINS_KEY):
        # Plug-ins (DePT's head) train on the base classes of base-to-new: the label space stands
        # for them (the synthetic dataset keeps all its classes whatever SUBSAMPLE_CLASSES says).
        cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    if setting.backbone:
        cfg.MODEL.BACKBONE.NAME = setting.backbone
    resolution = architecture(cfg)["image_resolution"]
    cfg.INPUT.SIZE = (resolution, resolution)
    if setting.batch_size:
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = setting.batch_size
    node_name = method_node(setting.trainer)
    node = cfg.TRAINER.get(node_name) if node_name else None
    if node is not None:
        for key, value in (("PREC", setting.prec), ("TEXT_CHUNK", setting.text_chunk),
                           ("CHECKPOINT_TEXT", setting.checkpoint_text)):
            if key in node and value:
                node[key] = value
        fit_prompt_depths(node, cfg.MODEL.BACKBONE.NAME)
    cfg.freeze()
    return cfg


def architecture_of(name: str) -> dict:
    from tools.synthetic import ARCHS

    if name not in ARCHS:
        raise ValueError(f"No architecture known for backbone {name!r}: tools.synthetic.ARCHS has {', '.join(ARCHS)}")
    return ARCHS[name]


def architecture(cfg) -> dict:
    return architecture_of(cfg.MODEL.BACKBONE.NAME)


def registry_teacher(trainer_name: str):
    """The ``Teacher`` of the registry method trained by ``trainer_name`` (None: it has none)."""
    from runs.methods import METHODS

    return next((m.teacher for m in METHODS.values() if m.trainer == trainer_name and m.teacher), None)


def write_placeholder_teacher(folder: str, teacher, classnames: Sequence[str], backbone: str) -> str:
    """A teacher run folder holding what a distilled student reads of its teacher (PromptKD's
    ``teacher_features.pt``: text features of all classes, the image-tower prompts its config
    gives, the backbone): zeros of the real shapes, since memory depends on shapes only. The
    teacher config's backbone is kept unless ``backbone`` names another (the small validation)."""
    import json

    import yaml

    from runs.methods import METHODS
    from trainers.promptkd import TEACHER_FILE, TeacherRecord

    teacher_method = METHODS[teacher.method]
    config = yaml.safe_load(teacher_method.config_path(teacher.cfg).read_text())
    backbone = backbone or config["MODEL"]["BACKBONE"]["NAME"]
    arch = architecture_of(backbone)
    node = config["TRAINER"][method_node(teacher_method.trainer)]
    layers = min(arch["vision_layers"], arch["transformer_layers"])
    vision = [node["N_CTX_VISION"], min(node["PROMPT_DEPTH_VISION"], layers)]
    text = [node["N_CTX_TEXT"], min(node["PROMPT_DEPTH_TEXT"], layers)]
    prompts = {"image_encoder.VPT": torch.zeros(vision[0], arch["vision_width"])}
    prompts.update({f"image_encoder.transformer.resblocks.{j}.VPT_shallow": torch.zeros(vision[0], arch["vision_width"])
                    for j in range(1, vision[1])})
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"digest": "memory-placeholder"}, f)
    TeacherRecord(text_features=torch.zeros(len(classnames), arch["embed_dim"]), classnames=list(classnames),
                  image_prompts=prompts, prompt_shapes={"vision": vision, "text": text}, backbone=backbone,
                  backbone_path="", run=folder, digest="memory-placeholder", epoch=1
                  ).save(os.path.join(folder, TEACHER_FILE))
    return backbone


def with_placeholder_teacher(cfg, setting: Setting, root: str, classnames: Sequence[str]):
    """``cfg`` of a distilled student reading a placeholder teacher run (``write_placeholder_teacher``)
    under ``root``; any other ``cfg`` (and a run's own config, whose teacher exists) as it is."""
    teacher = registry_teacher(setting.trainer)
    if teacher is None or setting.base_cfg is not None:
        return cfg
    folder = os.path.join(root, "teacher")
    backbone = write_placeholder_teacher(folder, teacher, classnames, setting.backbone)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list([teacher.option, folder, teacher.option.rsplit(".", 1)[0] + ".TEACHER_NAME", backbone])
    cfg.freeze()
    return cfg


@contextlib.contextmanager
def built_trainer(setting: Setting, meta: bool, device: str = "cpu"):
    """The real trainer of ``setting`` (random CLIP of its architecture, quiet), half-precision
    towers as on a GPU (``GOPRO_HALF_ON_CPU``). With ``meta`` it must be entered inside a
    ``MemoryTracker(meta=True)``, whose dispatch keeps the meta weights meta."""
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed
    from tools.synthetic import class_names, write_label_space
    from trainers.clip_backbone import HALF_ON_CPU_ENV

    with tempfile.TemporaryDirectory(prefix="memory_") as root, \
            mock.patch.dict(os.environ, {HALF_ON_CPU_ENV: "1"}), \
            contextlib.redirect_stdout(open(os.devnull, "w")):
        names = list(setting.classnames) or class_names(setting.num_classes)
        write_label_space(root, names)
        cfg = with_placeholder_teacher(setting_cfg(setting, root, device), setting, root, names)
        set_random_seed(cfg.SEED)
        with clips_of_their_architecture(meta):
            yield build_trainer(cfg)


# --------------------------------------------------------------------------------------------
# One step and one evaluation batch
# --------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    setting: Setting
    weights: int = 0             # frozen backbone (and any other module state that is not learned)
    learnable: int = 0           # learnable parameters and buffers
    grads_and_optimizer: int = 0 # what the step leaves behind: gradients, momentum buffers
    activations: int = 0         # alive when backward starts, beyond the step's inputs
    temporaries: int = 0         # the rest of the training peak
    train_peak: int = 0
    step_extra: int = 0          # train_peak minus what was alive before the step
    eval_peak: int = 0
    eval_batch: int = 0
    placeholder_scalars: int = 0  # scalars read from meta tensors (log lines), given placeholder values

    def needed_gib(self) -> float:
        """Memory a card needs: the larger peak plus the CUDA context and allocator slack."""
        return max(self.train_peak, self.eval_peak) / GIB + OVERHEAD_GIB


def fits_frozen_features(trainer) -> bool:
    from trainers.frozen_features import FrozenFeatureTrainer

    return isinstance(trainer, FrozenFeatureTrainer)


def synthetic_inputs(trainer, resolution: int, test_batch: int, on_meta: bool):
    """A training batch as the trainer's loader gives it (``K_TRANSFORMS`` views of each image in
    a list, the extra views its workers add as ``img2``, ...) and evaluation images. A frozen-
    feature method's "training" batch is a feature-extraction batch: the test batch size."""
    cfg = trainer.cfg
    batch_size = cfg.DATALOADER.TEST.BATCH_SIZE if fits_frozen_features(trainer) else cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    make = (lambda n: torch.empty(n, 3, resolution, resolution, device="meta")) if on_meta else \
        (lambda n: torch.randn(n, 3, resolution, resolution))
    views = len(getattr(trainer, "train_transforms", lambda: None)() or [])
    k = cfg.DATALOADER.K_TRANSFORMS
    batch = {"img": [make(batch_size) for _ in range(k)] if k > 1 else make(batch_size),
             "label": torch.arange(batch_size) % trainer.num_classes}
    batch.update({f"img{i + 2}": make(batch_size) for i in range(views)})
    return batch, make(test_batch)


def training_step(trainer, batch) -> None:
    """What one training step runs on the GPU. A prompt learner: ``forward_backward`` (forward,
    loss, backward, optimizer step). A frozen-feature method: its GPU work before the fit, the
    zero-shot class features (where it uses them) and one batch of the feature-extraction pass; the fit itself
    (closed forms, Tip-Adapter-F's and the linear probe's training) runs on the CPU's cached
    features (``trainers/frozen_features.py``), so it adds no GPU memory."""
    trainer.set_model_mode("train")
    if fits_frozen_features(trainer):
        with torch.no_grad():
            if trainer.USES_ZERO_SHOT:
                trainer.zero_shot_weights()
            # the batch's copy to the device as encode_split makes it (trainer.device: the backbone's is
            # meta here, which would skip the copy a GPU makes)
            trainer.backbone.encode_image(batch["img"].to(trainer.device))
        return
    trainer.batch_idx, trainer.num_batches = 0, 10**9  # not the epoch's last batch
    trainer.forward_backward(batch)


def evaluation_step(trainer, images) -> None:
    """One evaluation batch: ``model_inference`` (class features encoded once per evaluation where
    the model caches them); a frozen-feature method's test pass encodes images and classifies
    the cached features on the CPU."""
    from trainers.models import TextFeatureCache

    trainer.set_model_mode("eval")
    caching = trainer.model.caching() if isinstance(trainer.model, TextFeatureCache) else contextlib.nullcontext()
    with torch.no_grad(), caching:
        if fits_frozen_features(trainer):
            trainer.backbone.encode_image(images.to(trainer.device))
        else:
            trainer.model_inference(images)


def measure(setting: Setting, meta: bool, device: str = "cpu", block: int = BLOCK) -> Prediction:
    """The tracker's account of one training step and one evaluation batch of ``setting``: a
    prediction on meta tensors (``meta=True``) or the real allocation on this CPU; storages
    rounded up to ``block`` bytes."""
    prediction = Prediction(setting)
    tracker = MemoryTracker(meta=meta, block=block)
    with tracker, fused_attention_on_meta(), built_trainer(setting, meta, device) as trainer:
        models = trainer_modules(trainer)
        if meta:
            onto_meta(models)
        learnable = getattr(trainer.model, "learnable", None)
        learned = {id(t) for t in module_tensors(learnable)} if learnable is not None else set()
        everything = [t for m in models for t in module_tensors(m)]
        tracker.restart()  # count the model as the GPU would hold it, once
        prediction.learnable = tracker.track_all([t for t in everything if id(t) in learned])
        prediction.weights = tracker.track_all(everything)
        resolution = trainer.cfg.INPUT.SIZE[0]
        test_batch = trainer.cfg.DATALOADER.TEST.BATCH_SIZE
        batch, images = synthetic_inputs(trainer, resolution, test_batch, on_meta=meta)
        inputs = tracker.track_all([t for t in tree_leaves(batch) if isinstance(t, torch.Tensor)])
        start = tracker.live
        if trainer.get_model_names():
            tracker.reset_peak()
            training_step(trainer, batch)
            prediction.train_peak, prediction.step_extra = tracker.peak, tracker.peak - start
            prediction.grads_and_optimizer = max(0, tracker.live - start)
            prediction.activations = max(0, (tracker.live_at_backward or start) - start)
            prediction.temporaries = max(0, tracker.peak - start - prediction.activations
                                         - prediction.grads_and_optimizer) + inputs
        batch = None
        tracker.track(images)
        tracker.reset_peak()
        evaluation_step(trainer, images)
        prediction.eval_peak, prediction.eval_batch = tracker.peak, test_batch
    prediction.placeholder_scalars = tracker.placeholder_scalars
    return prediction


def predict(setting: Setting) -> Prediction:
    return measure(setting, meta=True)


def measured_step_extra_on_cpu(setting: Setting) -> int:
    """Peak bytes the CPU allocator held during one real training step of ``setting`` beyond what
    was allocated before it, read from PyTorch's profiler (its allocation events, independent of
    ``MemoryTracker``): what ``measure(..., block=1).step_extra`` predicts."""
    from torch.profiler import ProfilerActivity, profile

    with built_trainer(setting, meta=False) as trainer:
        if not trainer.get_model_names():
            return 0  # nothing trains (zero-shot CLIP): no step
        resolution = trainer.cfg.INPUT.SIZE[0]
        batch, _ = synthetic_inputs(trainer, resolution, 1, on_meta=False)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
            training_step(trainer, batch)
    events = sorted((e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


# --------------------------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------------------------
def knob_settings(setting: Setting) -> List[Setting]:
    """Settings from the cheapest to the most expensive change: the config; the text tower in
    chunks (same compute); chunks with activation checkpointing (one more text forward); then
    smaller batches (these change the recipe: results differ)."""
    from dataclasses import replace

    with tempfile.TemporaryDirectory(prefix="memory_") as root:
        cfg = setting_cfg(setting, root, "cpu")
    batch_size = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    node_name = method_node(setting.trainer)
    has_text_knobs = bool(node_name) and "CHECKPOINT_TEXT" in cfg.TRAINER.get(node_name, {})
    chunk = max(64, setting.num_classes)
    settings = [setting]
    if has_text_knobs:
        settings += [replace(setting, text_chunk=chunk), replace(setting, checkpoint_text=True),
                     replace(setting, text_chunk=chunk, checkpoint_text=True)]
    smaller = batch_size // 2
    while smaller >= 1:
        settings.append(replace(settings[-1], batch_size=smaller))
        smaller //= 2
    return settings


def cheapest_fitting(predictions: Sequence[Prediction], card_gb: float) -> Optional[Prediction]:
    return next((p for p in predictions if p.needed_gib() <= card_gb * 1e9 / GIB), None)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def dataset_classes(dataset_config_file: str, subsample: str) -> int:
    """The class count of a dataset config's dataset (its ``full_num_classes``), halved for
    base-to-new's base classes as Dassl splits them (the first ceil(C/2))."""
    from datasets.facts import benchmark_class

    module = os.path.splitext(os.path.basename(dataset_config_file))[0]  # configs/datasets/<module>.yaml
    total = benchmark_class(module).full_num_classes
    return math.ceil(total / 2) if subsample == "base" else total


def print_prediction(p: Prediction) -> None:
    s = p.setting
    print(f"{s.trainer} ({os.path.basename(s.config_file)}), C = {s.num_classes}, PREC {s.prec or 'as config'}, "
          f"{s.describe()}")
    rows = [("frozen weights", p.weights), ("learnable parameters", p.learnable),
            ("gradients + optimizer state", p.grads_and_optimizer), ("activations kept for backward", p.activations),
            ("temporaries (incl. inputs)", p.temporaries), ("= training step peak", p.train_peak),
            (f"evaluation peak (batch {p.eval_batch})", p.eval_peak)]
    for name, value in rows:
        print(f"  {name:32s} {value / GIB:8.2f} GiB")
    print(f"  a GPU needs about {p.needed_gib():.1f} GiB (+{OVERHEAD_GIB:g} GiB CUDA context and allocator slack)")
    print(f"  ({p.placeholder_scalars} scalars read from meta tensors, e.g. the logged loss, got placeholder values)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", default="GOPro")
    parser.add_argument("--config-file", help="method config (default: the registry's base-to-new config)")
    parser.add_argument("--dataset-config-file", default="configs/datasets/imagenet.yaml",
                        help="its dataset gives the class count (full_num_classes)")
    parser.add_argument("--subsample", default="all", choices=["all", "base"], help="all classes or base-to-new's base half")
    parser.add_argument("--classes", type=int, help="class count (overrides the dataset's)")
    parser.add_argument("--prec", choices=["fp16", "bf16", "fp32", "amp"], help="PREC (default: the config's)")
    parser.add_argument("--batch-size", type=int, help="DATALOADER.TRAIN_X.BATCH_SIZE (default: the config's)")
    parser.add_argument("--backbone", help="MODEL.BACKBONE.NAME (default: the config's), e.g. ViT-L/14")
    parser.add_argument("--no-knobs", action="store_true", help="only the setting asked, not the knobs")
    parser.add_argument("--readme-table", action="store_true", help="the README table: every registry method")
    parser.add_argument("--methods", nargs="+", metavar="KEY", help="with --readme-table: only these registry keys")
    parser.add_argument("--write", metavar="README", help="with --readme-table: put it between the markers of this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="more KEY VALUE config options")
    args = parser.parse_args(argv)
    if args.readme_table:
        lines = []
        for line in readme_table_lines(args.methods or ()):
            print(line, flush=True)
            lines.append(line)
        table = "\n".join(lines)
        if args.write:
            replace_between_markers(args.write, table)
        return
    from runs.methods import get_method

    config = args.config_file
    if not config:
        method = get_method(args.trainer)
        config = str(method.config_path(method.training_cfg()))
    classes = args.classes or dataset_classes(args.dataset_config_file, args.subsample)
    setting = Setting(args.trainer, config, classes, prec=args.prec or "", batch_size=args.batch_size or 0,
                      backbone=args.backbone or "", opts=tuple(args.opts))
    try:
        print_report(setting, knobs=not args.no_knobs)
    except ValueError as exc:  # a setting the predictor cannot build (unknown backbone, bad option)
        raise SystemExit(f"tools.memory: {exc}") from None


def print_report(setting: Setting, knobs: bool = True) -> None:
    first = predict(setting)
    print_prediction(first)
    if not knobs:
        return
    predictions = [first] + [predict(s) for s in knob_settings(setting)[1:]]
    print("\nSettings, cheapest first (GiB a GPU needs):")
    for p in predictions:
        print(f"  {p.needed_gib():7.1f}  {p.setting.describe()}")
    print("\nCheapest setting that fits:")
    for card in CARDS_GB:
        fit = cheapest_fitting(predictions, card)
        print(f"  {card:3d} GB: {fit.setting.describe() + f' ({fit.needed_gib():.1f} GiB)' if fit else 'none of these'}")


# --------------------------------------------------------------------------------------------
# The README table and train.py's warning
# --------------------------------------------------------------------------------------------
TABLE_CLASSES = (100, 1000)
TABLE_PRECISIONS = ("fp16", "fp32")
TABLE_CARD_GB = 24
TABLE_MARKERS = ("<!-- memory-table:start -->", "<!-- memory-table:end -->")


def fitting_setting(setting: Setting, card_gb: float) -> Tuple[Prediction, Optional[Prediction]]:
    """(the prediction of ``setting`` as configured, the cheapest knob setting that fits ``card_gb``
    or None), predicting further settings only while none fits."""
    first = predict(setting)
    if first.needed_gib() <= card_gb * 1e9 / GIB:
        return first, first
    for candidate in knob_settings(setting)[1:]:
        prediction = predict(candidate)
        if prediction.needed_gib() <= card_gb * 1e9 / GIB:
            return first, prediction
    return first, None


def readme_table_header() -> List[str]:
    header = ["method"] + [f"C = {c}, {p}" for c in TABLE_CLASSES for p in TABLE_PRECISIONS]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def readme_row_name(method) -> str:
    return f"{method.label} (`{method.training_cfg()}`)"


def readme_table_row(method) -> str:
    """One method's row: per C and PREC, the GiB a GPU needs as configured (ViT-B/16, the config
    of its main training) and, in brackets, the cheapest setting that fits a 24 GB card."""
    cells = []
    for c in TABLE_CLASSES:
        for prec in TABLE_PRECISIONS:
            setting = Setting(method.trainer, str(method.config_path(method.training_cfg())), c, prec=prec)
            first, fit = fitting_setting(setting, TABLE_CARD_GB)
            advice = "fits" if fit is first else (fit.setting.describe() if fit else "no knob fits")
            cells.append(f"{first.needed_gib():.1f} ({advice})")
    return f"| {readme_row_name(method)} | " + " | ".join(cells) + " |"


def table_methods(keys: Sequence[str] = ()) -> list:
    """The registry methods of the README table (those of this checkout; ``keys``: only these)."""
    from runs.methods import METHODS

    return [m for m in METHODS.values() if m.in_checkout() and (not keys or m.key in keys)]


def readme_table_lines(keys: Sequence[str] = ()) -> Iterator[str]:
    """The README table's markdown lines: every registry method x C x PREC (``readme_table_row``)."""
    yield from readme_table_header()
    for method in table_methods(keys):
        yield readme_table_row(method)


def marked_parts(content: str, path: str, markers: Tuple[str, str]) -> Tuple[str, str, str]:
    """(before the start marker, between the markers, from the end marker on) of a file's text."""
    start, end = markers
    if start not in content or end not in content:
        raise SystemExit(f"{path} has no {start} ... {end} markers around its generated table")
    before, rest = content.split(start, 1)
    inside, after = rest.split(end, 1)
    return before, inside, after


def text_between_markers(path: str, markers: Tuple[str, str] = TABLE_MARKERS) -> str:
    """The generated text between the two marker lines of the file at ``path``."""
    with open(path) as f:
        return marked_parts(f.read(), path, markers)[1].strip("\n")


def replace_between_markers(path: str, text: str, markers: Tuple[str, str] = TABLE_MARKERS) -> None:
    """Put ``text`` between the two marker lines of the file at ``path`` (a generated README table)."""
    with open(path) as f:
        before, _, after = marked_parts(f.read(), path, markers)
    with open(path, "w") as f:
        f.write(f"{before}{markers[0]}\n{text}\n{markers[1]}{after}")


MEMORY_CHECK_ENV = "GOPRO_MEMORY_CHECK"


def warn_if_memory_short(cfg, trainer) -> Optional[Prediction]:
    """On a CUDA device, predict this run's peak memory before training and print a warning when
    it exceeds the card's memory (a few seconds; ``$GOPRO_MEMORY_CHECK=0`` skips it). Skipped on a
    CPU and for backbones without a known architecture."""
    from tools.synthetic import ARCHS

    if not (cfg.USE_CUDA and torch.cuda.is_available()) or os.environ.get(MEMORY_CHECK_ENV) == "0":
        return None
    if cfg.MODEL.BACKBONE.NAME not in ARCHS or not trainer.get_model_names():
        return None
    classnames = tuple(trainer.dm.dataset.classnames)
    prediction = predict(Setting(cfg.TRAINER.NAME, "", len(classnames), classnames=classnames, base_cfg=cfg))
    card = torch.cuda.get_device_properties(torch.cuda.current_device())
    if prediction.needed_gib() > card.total_memory / GIB:
        print(f"Warning: this run is predicted to need about {prediction.needed_gib():.1f} GiB of GPU memory "
              f"(training step peak {prediction.train_peak / GIB:.1f} GiB, evaluation {prediction.eval_peak / GIB:.1f} GiB, "
              f"+{OVERHEAD_GIB:g} GiB context), more than this {card.name}'s {card.total_memory / GIB:.1f} GiB. "
              f"`python -m tools.memory --trainer {cfg.TRAINER.NAME} --config-file CONFIG --classes {len(classnames)}` "
              f"lists the settings that fit (TEXT_CHUNK, CHECKPOINT_TEXT, batch size).")
    return prediction


if __name__ == "__main__":
    main()
