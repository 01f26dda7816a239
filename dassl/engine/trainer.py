"""Trainer classes: ``TrainerBase`` (model bookkeeping, checkpoints, the epoch loop),
``SimpleTrainer`` (data, evaluator, test, checkpoint policy) and ``TrainerX`` (labeled data).

Upstream's ``TrainerXU`` (labeled + unlabeled batches) and ``SimpleNet`` default model are not
reimplemented: every client trainer is a ``TrainerX`` that builds its own model.

Single-process behaviour follows upstream Dassl 0.6.3 (construction order, hook order, printed
lines, checkpoint layout). Distributed (torchrun) support is layered on with helpers from
``dassl.utils.distributed`` that are no-ops in a single process: parameters are broadcast from
rank 0 at registration, gradients are averaged before every optimizer step, each rank's RNGs are
reseeded from (SEED, epoch, rank) as an epoch starts, only rank 0 writes files, and evaluation
gathers predictions from all ranks.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import os
import os.path as osp
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..evaluation import build_evaluator
from ..utils import (
    AverageMeter,
    MetricMeter,
    mkdir_if_missing,
    save_checkpoint,
    set_random_seed,
    tolist_if_not,
)
from ..utils.distributed import (
    all_reduce_mean_,
    barrier,
    broadcast_module_,
    gather_python_objects,
    get_rank,
    is_distributed,
    is_main_process,
)
from ..utils.torchtools import (
    epoch_files,
    get_rng_state,
    load_checkpoint,
    load_first_readable,
    older_epoch_checkpoints,
    peek_checkpoint,
    remove_temp_files,
    restore_training_state,
    resume_candidates,
)
from ..utils.output_lock import holds_output_dir
from ..utils.tools import log_warning

# Marks an epoch checkpoint that only exists so that a killed run can resume (it is deleted once a
# newer one is complete); upstream Dassl ignores the key.
RESUME_ONLY_KEY = "resume_only"
# A resume-only checkpoint is skipped when writing it now would make saving cost more than this
# fraction of the training time since the last save (see ResumePointSchedule).
MAX_RESUME_SAVE_OVERHEAD = 0.1

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX"]


class TrainerBase:
    """Registered models/optimizers/schedulers, checkpoint I/O and the generic epoch loop."""

    def __init__(self):
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Optional[torch.optim.Optimizer]]" = OrderedDict()
        self._scheds: "OrderedDict[str, Any]" = OrderedDict()
        self._writer = None
        # Epoch checkpoints written (or resumed from) only for resuming: removed once superseded.
        self._resume_only_files: List[str] = []

    # ------------------------------------------------------------------ model registry
    def register_model(self, name: str = "model", model: Optional[nn.Module] = None, optim=None, sched=None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if self.__dict__.get("_optims") is None:
            raise AttributeError("Cannot assign optim before super().__init__() call")
        if self.__dict__.get("_scheds") is None:
            raise AttributeError("Cannot assign sched before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"

        if model is not None:
            # Every rank must start from the same weights (random init / prompt init differ otherwise).
            broadcast_module_(model)
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None) -> List[str]:
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            assert name in names_real, f'Model "{name}" is not registered; registered: {names_real}'
        return names

    # ------------------------------------------------------------------ checkpoints
    def save_model(
        self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "",
        *, resume_only: bool = False,
    ) -> None:
        """Save every registered model to ``directory/<name>/`` (rank 0 only; stored epoch is 1-based).

        ``resume_only`` marks an epoch checkpoint that only exists so that a killed run can resume
        (see ``SimpleTrainer.after_epoch``); the trainer removes it once a newer one is complete.
        """
        rng_state = get_rng_state()
        for name in self.get_model_names():
            model_dict = self._models[name].state_dict()
            optim = self._optims[name]
            sched = self._scheds[name]
            state = {
                "state_dict": model_dict,
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "rng_state": rng_state,
            }
            if resume_only:
                state[RESUME_ONLY_KEY] = True
            save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name)

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model from ``directory/<name>/``; return the next epoch index.

        Unlike upstream (which only checked that the sub-directories exist), a sub-directory that
        holds no checkpoint file also means "train from scratch", and so do checkpoints of which
        none can be read (with a logged warning per file). Each model loads its newest complete
        checkpoint (see ``resume_candidates``); the models resume from one common epoch.
        """
        names = self.get_model_names()
        candidates = {name: resume_candidates(osp.join(directory, name)) for name in names}
        if not all(candidates.values()):
            print("No checkpoint found, train from scratch")
            return 0

        print(f"Found checkpoint at {directory} (will resume training)")
        found = {name: load_first_readable(paths) for name, paths in candidates.items()}
        if any(item is None for item in found.values()):
            log_warning(f"No checkpoint in {directory} could be read (see the warnings above); training from scratch")
            return 0
        found = _at_common_epoch(directory, found)
        epochs = {
            name: restore_training_state(checkpoint, self._models[name], self._optims[name], self._scheds[name])
            for name, (_, checkpoint) in found.items()
        }
        resumed = [path for path, ckpt in found.values() if ckpt.get(RESUME_ONLY_KEY, False)]
        self._resume_only_files = resumed + [older for path in resumed for older in _older_resume_only(path)]
        return epochs[names[-1]]

    def save_epoch_checkpoint(self, epoch: int, directory: str, resume_only: bool = False) -> None:
        """``save_model`` of epoch ``epoch``, then delete the resume-only checkpoints it supersedes.

        The previous resume-only file stays until every model's new file is complete (a kill in
        between leaves both, and a resume picks the newest epoch all models have).
        """
        self.save_model(epoch, directory, resume_only=resume_only)
        written = {osp.abspath(osp.join(directory, name, f"model.pth.tar-{epoch + 1}")) for name in self.get_model_names()}
        folders = {osp.dirname(path) for path in written}
        superseded = [path for path in self._resume_only_files
                      if osp.dirname(osp.abspath(path)) in folders and osp.abspath(path) not in written]
        if is_main_process():
            for path in superseded:
                if osp.isfile(path):
                    os.remove(path)
        kept = [path for path in self._resume_only_files if path not in superseded]
        self._resume_only_files = kept + (sorted(written) if resume_only else [])

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``model-best.pth.tar`` (``epoch=None``) or ``model.pth.tar-{epoch}`` into every model."""
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained model is given "
                "(ignore this if it's done on purpose)"
            )
            return

        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f"No model at {model_path}")
            checkpoint = load_checkpoint(model_path)
            val_result = checkpoint.get("val_result")
            # Upstream formatted val_result with :.1f and crashed on None (Dassl issue #56).
            val_text = "None" if val_result is None else f"{val_result:.1f}"
            print(f"Load {model_path} to {name} (epoch={checkpoint['epoch']}, val_result={val_text})")
            self._models[name].load_state_dict(checkpoint["state_dict"])

    # ------------------------------------------------------------------ modes / optimisation
    def set_model_mode(self, mode: str = "train", names=None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f"Unknown model mode {mode!r}; use 'train', 'test' or 'eval'")

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            where = ""
            if hasattr(self, "epoch") and hasattr(self, "batch_idx"):
                where = f" at epoch {self.epoch + 1}, batch {self.batch_idx + 1}"
            raise FloatingPointError(
                f"Loss is infinite or NaN{where}! Try {self._fp32_hint()} or a lower OPTIM.LR"
            )

    def _fp32_hint(self) -> str:
        """``TRAINER.<NODE>.PREC fp32`` when this trainer's config node has PREC (clients name the
        node after the upper-cased trainer name), else the generic pattern."""
        cfg = getattr(self, "cfg", None)
        node = cfg.TRAINER.NAME.upper() if cfg is not None else ""
        if node and "PREC" in cfg.TRAINER.get(node, {}):
            return f"TRAINER.{node}.PREC fp32"
        return "PREC fp32 (e.g. TRAINER.<NAME>.PREC fp32)"

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is not None:
                self._average_gradients(optim)
                optim.step()

    @staticmethod
    def _average_gradients(optim: torch.optim.Optimizer) -> None:
        """Distributed data parallelism: mean of the gradients over ranks (no-op single-process).

        Assumes every rank produced gradients for the same parameters (symmetric models), which
        holds for the trainers in this project.
        """
        if not is_distributed():
            return
        grads = [p.grad for group in optim.param_groups for p in group["params"] if p.grad is not None]
        all_reduce_mean_(grads)

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    # ------------------------------------------------------------------ tensorboard
    def init_writer(self, log_dir: str, purge_step: Optional[int] = None) -> None:
        """``purge_step``: a resumed run's first step; TensorBoard hides what the interrupted run
        logged from that step on, so the curves continue instead of overlapping."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir, purge_step=purge_step)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag: str, scalar_value, global_step=None) -> None:
        if self._writer is None:
            return
        self._writer.add_scalar(tag, scalar_value, global_step)

    # ------------------------------------------------------------------ loop
    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic loop; ``range`` is evaluated after ``before_train`` so resuming takes effect."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input, *args, **kwargs):
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """Trainer with data loaders, an evaluator and test(); subclasses build the model."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)

        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")

        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR

        self.cfg = cfg
        self.resume_schedule = ResumePointSchedule()
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg) -> None:
        """Hook to validate trainer-specific config before anything is built (``self.cfg`` unset)."""
        pass

    def build_data_loader(self) -> None:
        # Imported here so that the engine (and its unit tests) do not import the data pipeline
        # (transforms, dataset registry, tabulate) until a trainer is actually constructed.
        from ..data import DataManager

        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        """Build ``self.model`` and call ``register_model`` for what the checkpoints hold.

        Upstream's default builds a ``SimpleNet`` CNN classifier from ``cfg.MODEL``; no trainer of
        this project uses it, so every subclass implements this hook.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement build_model(): build self.model and "
            "register it with self.register_model(name, model, optim, sched)"
        )

    def train(self) -> None:
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self._remove_leftover_temp_files()
        self.start_epoch = self.resume_model_if_exist(directory)

        if is_main_process():
            writer_dir = osp.join(self.output_dir, "tensorboard")
            mkdir_if_missing(writer_dir)
            self.init_writer(writer_dir, purge_step=self._first_train_step())

        self.time_start = time.time()

    def after_epoch(self) -> None:
        """Upstream's policy (best-val model; ``model.pth.tar-N`` every ``CHECKPOINT_FREQ`` epochs and
        at the last one), plus a resume-only checkpoint of the other epochs (see ``_save_resume_point``)."""
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        meet_checkpoint_freq = (
            (self.epoch + 1) % self.cfg.TRAIN.CHECKPOINT_FREQ == 0 if self.cfg.TRAIN.CHECKPOINT_FREQ > 0 else False
        )

        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")

        if meet_checkpoint_freq or last_epoch:
            self._timed_epoch_save(resume_only=False)
            if last_epoch:
                self._remove_stray_resume_points()
        else:
            self._save_resume_point()

    def _first_train_step(self) -> int:
        """The TensorBoard step of the first batch of ``start_epoch`` (``train/*`` scalars count
        batches: see ``_after_train_batch``). Events an earlier, interrupted run logged from there
        on (also a run that restarts from scratch) are hidden by TensorBoard."""
        return self.start_epoch * self.batches_per_epoch()

    def batches_per_epoch(self) -> int:
        """The training loader's length, or ``TRAIN.MAX_BATCHES`` when that is set and shorter."""
        return capped(len(self.train_loader_x), self.cfg.TRAIN.MAX_BATCHES)

    def _remove_stray_resume_points(self) -> None:
        """A finished run keeps exactly upstream's files: once the last epoch's file is complete,
        every resume-only checkpoint left in the output folder goes too, also those this run did not
        write or resume from (a newer one that a kill kept the pointer from naming, say)."""
        if not is_main_process():
            return
        for name in self.get_model_names():
            for path in epoch_files(osp.join(self.output_dir, name)).values():
                entries = peek_checkpoint(path)
                if isinstance(entries, dict) and entries.get(RESUME_ONLY_KEY, False):
                    os.remove(path)

    def _remove_leftover_temp_files(self) -> None:
        """A run killed while writing a checkpoint leaves its temp file (as large as a checkpoint).
        Removed when this process holds the output folder (train.py locks it), i.e. when no other
        process can be writing there."""
        if not (is_main_process() and holds_output_dir(self.output_dir)):
            return
        for name in self.get_model_names():
            for path in remove_temp_files(osp.join(self.output_dir, name)):
                print(f"Removed {path} (left by a run killed while saving)")

    def _save_resume_point(self) -> None:
        """Resume by default: a run killed at any point continues from its newest finished epoch,
        whatever ``CHECKPOINT_FREQ`` says. The checkpoint is an ordinary ``model.pth.tar-N`` (so
        upstream code resumes from it too), kept only until a newer epoch's file is complete: a
        finished run holds exactly the files upstream would write."""
        if self.resume_schedule.due():
            self._timed_epoch_save(resume_only=True)

    def _timed_epoch_save(self, resume_only: bool) -> None:
        start = time.monotonic()
        self.save_epoch_checkpoint(self.epoch, self.output_dir, resume_only=resume_only)
        self.resume_schedule.record(start, time.monotonic())

    def after_train(self) -> None:
        print("Finish training")

        do_test = not self.cfg.TEST.NO_TEST
        if do_test:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                barrier()  # rank 0 wrote the file; let the others see it before loading
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()

        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.close_writer()

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``; ``val`` falls back to test if absent)."""
        self.set_model_mode("eval")
        self.evaluator.reset()

        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader

        print(f"Evaluate on the *{split}* set")
        num_batches = capped(len(data_loader), self.cfg.TEST.MAX_BATCHES)
        if num_batches < len(data_loader):
            print(f"TEST.MAX_BATCHES {self.cfg.TEST.MAX_BATCHES}: only the first {num_batches} of "
                  f"{len(data_loader)} batches")
        for batch in tqdm(itertools.islice(data_loader, num_batches), total=num_batches,
                          disable=not is_main_process()):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        _report_skipped_images(data_loader, split)
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input, *args, **kwargs):
        """``self.model(input, ...)``; extra arguments are forwarded (some clients pass the label)."""
        return self.model(input, *args, **kwargs)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    # ------------------------------------------------------------------ progress of a training epoch
    def _after_train_batch(self, losses: MetricMeter, batch_time: AverageMeter, data_time: AverageMeter) -> None:
        """Print the progress line (every ``PRINT_FREQ`` batches) and log the running averages."""
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
            print(self._progress_line(losses, batch_time, data_time))

        n_iter = self.epoch * self.num_batches + self.batch_idx
        for name, meter in losses.meters.items():
            self.write_scalar("train/" + name, meter.avg, n_iter)
        self.write_scalar("train/lr", self.get_current_lr(), n_iter)

    def _progress_line(self, losses: MetricMeter, batch_time: AverageMeter, data_time: AverageMeter) -> str:
        nb_remain = self.num_batches - self.batch_idx - 1
        nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
        eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
        return " ".join(
            [
                f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                f"{losses}",
                f"lr {self.get_current_lr():.4e}",
                f"eta {eta}",
            ]
        )


class ResumePointSchedule:
    """When an epoch that upstream would not save gets a resume-only checkpoint.

    Every epoch, unless writing checkpoints would then cost more than ``max_overhead`` of the
    training time: a save is due once the time since the previous save ended is at least the
    previous save's duration divided by ``max_overhead``. Cheap saves (a few learnable prompt
    vectors, or any model whose save takes under a tenth of an epoch) happen after every epoch, so a
    kill loses at most the epoch it interrupts; a costly save (a whole ViT-B/16 model on a slow
    disk, every few seconds of training) is spaced out so that a kill loses at most ten save
    durations plus the epoch it interrupts. Results do not depend on it: saving draws
    no random numbers, and a resume from any epoch continues bitwise. ``max_overhead=None``: every
    epoch, whatever it costs.
    """

    def __init__(self, max_overhead: Optional[float] = MAX_RESUME_SAVE_OVERHEAD):
        self.max_overhead = max_overhead
        self.last_save_end: Optional[float] = None
        self.last_save_seconds = 0.0

    def due(self, now: Optional[float] = None) -> bool:
        if self.last_save_end is None or self.max_overhead is None:
            return True
        now = time.monotonic() if now is None else now
        return (now - self.last_save_end) * self.max_overhead >= self.last_save_seconds

    def record(self, start: float, end: float) -> None:
        self.last_save_end, self.last_save_seconds = end, end - start


def _older_resume_only(path: str) -> List[str]:
    """Resume-only checkpoints older than ``path`` (a kill between writing a new one and deleting
    the one it superseded leaves both): superseded already, deleted with ``path``."""
    older = ((other, peek_checkpoint(other)) for other in older_epoch_checkpoints(path))
    return [other for other, entries in older if isinstance(entries, dict) and entries.get(RESUME_ONLY_KEY)]


def _at_common_epoch(directory: str, found: Dict[str, Tuple[str, dict]]) -> Dict[str, Tuple[str, dict]]:
    """Models resumed from different epochs (a kill between the files of one epoch) go back to
    the oldest of those epochs, whose files are kept until every model's newer file is complete."""
    epochs = {name: checkpoint["epoch"] for name, (_, checkpoint) in found.items()}
    target = min(epochs.values())
    if target == max(epochs.values()):
        return found
    aligned = dict(found)
    for name, epoch in epochs.items():
        path = osp.join(directory, name, f"model.pth.tar-{target}")
        if epoch != target and osp.isfile(path):
            print(f"Using {path} so that every model resumes from epoch {target}")
            aligned[name] = (path, load_checkpoint(path))
    if len({checkpoint["epoch"] for _, checkpoint in aligned.values()}) > 1:
        raise RuntimeError(
            f"The models in {directory} were resumed from different epochs {epochs} (a damaged or missing "
            "checkpoint in one of them); delete the newer files so that all models resume from the same epoch"
        )
    return aligned


def capped(length: int, cap: int) -> int:
    """``length`` limited to ``cap`` batches; a cap of 0 (or less) means no limit."""
    return min(length, cap) if cap > 0 else length


def _set_sampler_epoch(loader, epoch: int) -> None:
    """DistributedSampler reshuffles per epoch only if told the epoch."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _report_skipped_images(loader, split: str) -> None:
    """``DATALOADER.SKIP_CORRUPT``: name the unreadable images met so far, over all ranks' shards
    (a collective in distributed runs: every rank reaches the same call sites)."""
    dataset = getattr(loader, "dataset", None)
    local = list(getattr(dataset, "skipped_impaths", []))
    paths = sorted({path for part in gather_python_objects(local) for path in part})
    if paths:
        shown = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
        print(f"Skipped {len(paths)} unreadable image(s) of the {split} data so far (DATALOADER.SKIP_CORRUPT; "
              f"each was replaced by the next readable item): {shown}")


@functools.lru_cache(maxsize=None)
def _process_entropy() -> int:
    """A random base for unseeded distributed runs, fixed for the lifetime of this process."""
    return int.from_bytes(os.urandom(8), "little")


def _seed_rank_for_epoch(seed: int, epoch: int) -> None:
    """Distributed runs only: reseed Python/NumPy/torch from (SEED, epoch, rank) as an epoch starts.

    Every rank ran ``set_random_seed(SEED)``, so without this all ranks would draw the same random
    crops/flips/views for their (different) images wherever augmentation runs in the main process
    (``NUM_WORKERS 0``, or a trainer augmenting inside its step); DataLoader workers are already
    decorrelated by ``seed_worker``, and seeding from the torch RNG keeps it that way. Being a pure
    function of (SEED, epoch, rank), it also lets a resumed distributed run continue exactly,
    although a checkpoint holds rank 0's RNG state only. Unseeded runs (SEED < 0) mix in per-process
    entropy instead. Single process: nothing happens (upstream behaviour).
    """
    if not is_distributed():
        return
    base = seed if seed >= 0 else _process_entropy()
    set_random_seed(int(np.random.SeedSequence([base, epoch, get_rank()]).generate_state(1)[0]))


class TrainerX(SimpleTrainer):
    """Trainer for labeled data only (what every CLIP prompt-learning method uses).

    ``forward_backward`` must step the optimizer and, by convention, call ``self.update_lr()``
    when ``self.batch_idx + 1 == self.num_batches``: the base class never steps the scheduler.
    """

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        _set_sampler_epoch(self.train_loader_x, self.epoch)
        _seed_rank_for_epoch(self.cfg.SEED, self.epoch)
        self.num_batches = self.batches_per_epoch()

        end = time.time()
        for self.batch_idx, batch in enumerate(itertools.islice(self.train_loader_x, self.num_batches)):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            self._after_train_batch(losses, batch_time, data_time)
            end = time.time()
        _report_skipped_images(self.train_loader_x, "train_x")

    def parse_batch_train(self, batch):
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain
