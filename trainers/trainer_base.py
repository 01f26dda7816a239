"""The Dassl trainer every CLIP prompt learner builds on, and the config keys they share.

* ``add_prompt_keys`` / ``add_coop_keys`` / ``check_choices``: a method's ``TRAINER.<NODE>``;
* ``ClipPromptTrainer``: the ``TrainerX`` plumbing (backbone, precision policy, optimizer
  registration, the plug-ins of ``TRAINER.PLUGINS`` composed around the model and loss
  (``trainers/plugins.py``), upstream-compatible checkpoint loading) and one training step that reads like the
  paper's: views → model → loss::

      inputs, label = self.model_inputs(batch)     # the images (and views) the model needs
      output = self.model(*inputs)                 # a ModelOutput (trainers/models.py)
      loss, terms = self.criterion(output, label)  # the method's loss module
      self.update(loss, terms)                     # an optimizer step (or a method's own rule)

Only the Dassl API that upstream Dassl also has is used here, so every trainer built on this runs
on upstream Dassl.pytorch unchanged.
"""
from __future__ import annotations

import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.data import DataManager
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint

from .clip_backbone import PRECISIONS, ClipBackbone, build_backbone
from .deep_prompts import VLPrompts, build_vl_prompts
from .losses import ClassificationLoss
from .models import ModelOutput
from .plugins import Plugin, node_options, plugins_of, text_feature_caching


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
def add_prompt_keys(cfg, node_name: str, **defaults) -> CN:
    """Create ``cfg.TRAINER.<node_name>`` with the keys every prompt learner has.

    Upstream keys: N_CTX, CTX_INIT, PREC. Ours (speed only, results unchanged):
    TRUNCATE_TEXT (run the text tower only where it matters: up to the EOT, in buckets of similar
    length, per-image prefixes once per image), TEXT_CHUNK (max sequences per text-tower call,
    0 = all at once), CHECKPOINT_TEXT (recompute text activations in backward).
    """
    node = CN()
    node.N_CTX = 16
    node.CTX_INIT = ""
    node.PREC = "fp16"
    node.TRUNCATE_TEXT = True
    node.TEXT_CHUNK = 0
    node.CHECKPOINT_TEXT = False
    for key, value in defaults.items():
        setattr(node, key, value)
    setattr(cfg.TRAINER, node_name, node)
    return node


def add_coop_keys(cfg, **extra) -> CN:
    """``cfg.TRAINER.COOP``: CoOp's node, which upstream KgCoOp and ProGrad read as well (KgCoOp adds
    ``W``). Every call keeps the keys earlier calls added, so the methods' hooks run in any order."""
    kept = dict(cfg.TRAINER.get("COOP", {}))
    return add_prompt_keys(cfg, "COOP", **{"CSC": False, "CLASS_TOKEN_POSITION": "end", **kept, **extra})


def check_choices(node: CN, node_name: str, choices: Dict[str, Sequence]) -> None:
    """Raise a ValueError naming ``TRAINER.<node_name>.<KEY>`` for the first value outside its choices."""
    for key, allowed in choices.items():
        if node[key] not in allowed:
            raise ValueError(f"TRAINER.{node_name}.{key} must be one of {tuple(allowed)}, got {node[key]!r}")


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
class ClipPromptTrainer(TrainerX):
    """Base ``TrainerX`` for CLIP prompt learners.

    A method sets ``CFG_NODE`` (its config node, e.g. ``"COOP"``) and ``MODEL_NAME`` (the
    registered name of its learnable module, as upstream), and implements:

    * ``build_clip_model(backbone, classnames)``: the model (a ``PromptedCLIP``), built from
      ``self.options`` (the config read once, here, into constructor arguments);
    * ``build_criterion()``: its loss module, ``(output, label) -> (loss, terms)`` (default:
      cross-entropy of the logits);
    * ``model_inputs(batch)`` when the model needs more than the image (extra views).

    Evaluation calls ``self.model(image).logits``.
    """

    CFG_NODE = ""
    MODEL_NAME = "prompt_learner"
    CHOICES: Dict[str, Sequence] = {}  # TRAINER.<CFG_NODE>.<KEY> → allowed values, checked with PREC
    # Dataset registry name → {KEY: value} of TRAINER.<CFG_NODE> that upstream sets per dataset
    # (MMRL, CoPrompt); applied over the configured values when the node's DATASET_OPTIONS is True.
    PER_DATASET_OPTIONS: Dict[str, Dict[str, object]] = {}

    # ---- options -------------------------------------------------------------------------
    @property
    def options(self) -> CN:
        """The method's options: ``cfg.TRAINER.<CFG_NODE>`` completed (``method_options``) and
        resolved (``resolve_options``), read-only."""
        if getattr(self, "_options", None) is None:
            self._options = self.resolve_options(self.method_options(self.cfg))
        return self._options

    @classmethod
    def method_options(cls, cfg) -> CN:
        """``cfg.TRAINER.<CFG_NODE>`` with every key this trainer reads (a frozen copy).

        Our ``train.py`` adds all keys (each trainer module's ``extend_cfg``). An upstream client's
        ``train.py`` defines only its own (CoOp's TRAINER.COOP has no TRUNCATE_TEXT; GOPro's
        TRAINER.GOPRO has N_CTX, CTX_INIT and PREC only), or no node at all for methods it does
        not know: there the missing keys take this trainer's defaults, and the given ones win.
        """
        options = node_options(cfg, cls.CFG_NODE, _nearest_extend_cfg(cls))
        if options.get("DATASET_OPTIONS", False):  # the method's per-dataset table (MMRL, CoPrompt)
            options = options.clone()
            options.defrost()
            options.update(cls.PER_DATASET_OPTIONS.get(cfg.DATASET.NAME, {}))
            options.freeze()
        return options

    @classmethod
    def resolve_options(cls, options: CN) -> CN:
        """Hook: the effective options from the configured ones (e.g. a switch that sets several
        keys at once). Default: unchanged."""
        return options

    def check_cfg(self, cfg):
        options = self.resolve_options(self.method_options(cfg))
        check_choices(options, self.CFG_NODE, dict(PREC=PRECISIONS, **self.CHOICES))

    # ---- data and model ------------------------------------------------------------------
    def train_transforms(self):
        """Training transforms for ``DataManager``: None = Dassl's standard one; a list gives the
        extra views as ``img2``, ``img3``, ... (built from the raw image in the workers)."""
        return None

    def build_data_loader(self):
        """Dassl's ``SimpleTrainer.build_data_loader`` with this trainer's training transforms."""
        self.dm = DataManager(self.cfg, custom_tfm_train=self.train_transforms())
        for name in ("train_loader_x", "train_loader_u", "val_loader", "test_loader", "num_classes",
                     "num_source_domains", "lab2cname"):
            setattr(self, name, getattr(self.dm, name))

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.backbone = build_backbone(cfg, self.options.PREC, self.device)
        print(f"Building custom CLIP ({self.__class__.__name__})")
        self.model = self.build_clip_model(self.backbone, classnames).to(self.device)
        self.criterion = self.build_criterion()
        self.plugins = plugins_of(cfg, self.MODEL_NAME, classnames)
        for plugin in self.plugins:
            print(f"Composing plug-in {plugin.NAME} with {self.__class__.__name__}")
            self.model, self.criterion = plugin.compose(self.model, self.criterion)
            self.model.to(self.device)
        learnable = self.model.learnable
        if cfg.MODEL.INIT_WEIGHTS:
            from dassl.utils import load_pretrained_weights
            load_pretrained_weights(learnable, cfg.MODEL.INIT_WEIGHTS)
        trainable = sum(p.numel() for p in learnable.parameters() if p.requires_grad)
        print(f"# learnable params: {trainable:,}")
        self.optim = build_optimizer(learnable, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.MODEL_NAME, learnable, self.optim, self.sched)
        for plugin in self.plugins:
            self.register_plugin_module(plugin)

    def register_plugin_module(self, plugin: Plugin) -> None:
        """A plug-in's module as a model of its own: its folder, its optimizer (``OPTIM`` with the
        plug-in's learning-rate multiplier) and the same schedule."""
        optim_cfg = self.cfg.OPTIM.clone()
        optim_cfg.defrost()
        optim_cfg.LR = self.cfg.OPTIM.LR * plugin.lr_multiplier()
        optim = build_optimizer(plugin.module, optim_cfg)
        print(f"# {plugin.NAME} params: {sum(p.numel() for p in plugin.module.parameters()):,} (lr {optim_cfg.LR:g})")
        self.register_model(plugin.NAME, plugin.module, optim, build_lr_scheduler(optim, optim_cfg))

    def before_train(self):
        plugins = getattr(self, "plugins", ())
        if plugins and type(self).update is not ClipPromptTrainer.update:
            # A method's own update rule (ProGrad's projected gradient) steps its prompts only.
            raise ValueError(f"{type(self).__name__} has its own update rule, which does not train plug-in "
                             f"parameters: it cannot be composed with TRAINER.PLUGINS {[p.NAME for p in plugins]}.")
        for plugin in plugins:
            plugin.check_training()
        super().before_train()

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        raise NotImplementedError

    def build_criterion(self) -> nn.Module:
        """The method's objective, ``(output, label) -> (loss, terms)``."""
        return ClassificationLoss()

    # ---- one training step: views → model → loss -----------------------------------------
    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inputs(self, batch) -> Tuple[tuple, torch.Tensor]:
        """(arguments of ``self.model``, labels [B]) for a training batch. Default: the image."""
        image, label = self.parse_batch_train(batch)
        return (image,), label

    def forward_loss(self, batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], ModelOutput, torch.Tensor]:
        """(loss, its terms, the model's output, labels) of a training batch."""
        inputs, label = self.model_inputs(batch)
        output = self.model(*inputs)
        loss, terms = self.criterion(output, label)
        return loss, terms, output, label

    def compute_loss(self, batch) -> Tuple[torch.Tensor, Dict[str, float]]:
        loss, terms, output, label = self.forward_loss(batch)
        return loss, self.summarize(loss, terms, output, label)

    @staticmethod
    def summarize(loss: torch.Tensor, terms: Dict[str, torch.Tensor], output: ModelOutput,
                  label: torch.Tensor) -> Dict[str, float]:
        """What the log shows for a step: the loss, its terms and the batch accuracy."""
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                "acc": compute_accuracy(output.logits, label)[0].item()}

    def forward_backward(self, batch):
        loss, terms, output, label = self.forward_loss(batch)
        self.update(loss, terms)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return self.summarize(loss, terms, output, label)

    def update(self, loss: torch.Tensor, terms: Dict[str, torch.Tensor]) -> None:
        """One optimizer step from the loss (a method with its own update rule overrides this)."""
        self.model_backward_and_update(loss)

    # ---- evaluation ----------------------------------------------------------------------
    def model_inference(self, input, *args, **kwargs):
        return self.model(input).logits

    @torch.no_grad()
    def test(self, split=None):
        """Dassl's test loop; image-independent text features are encoded once per evaluation."""
        with text_feature_caching(self.model):
            return super().test(split)

    # ---- checkpoints ---------------------------------------------------------------------
    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Hook: rename the tensors of a checkpoint written by another implementation of this
        method to this trainer's names (default: unchanged)."""
        return state_dict

    def load_model(self, directory, epoch=None):
        """Load learnable weights saved by us or by upstream (CoOp/CoCoOp/MaPLe layouts).

        The class-name buffers ``token_prefix``/``token_suffix`` are dropped (the evaluation label
        space may differ from training, e.g. new classes), as upstream does; frozen CLIP weights in
        upstream files are ignored. Anything else must match by name and shape, and a mismatch is
        reported by name instead of a raw state-dict traceback. A plug-in's module loads from its
        own folder, or from an upstream file that holds the whole composed model (``split_upstream``,
        found under the plug-in's ``upstream_folder()``).
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given (ignore this if it's done on purpose)")
            return
        filename = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        plugins = {plugin.NAME: plugin for plugin in getattr(self, "plugins", ())}
        in_upstream_file: Dict[str, Dict[str, torch.Tensor]] = {}  # plug-in tensors of an upstream whole-model file
        for name in self.get_model_names():
            if name in plugins:
                continue
            path = self._checkpoint_path(directory, name, filename, plugins.values())
            checkpoint = load_checkpoint(path)
            state_dict = checkpoint["state_dict"]
            for plugin in plugins.values():
                state_dict, found = plugin.split_upstream(state_dict)
                if found:
                    in_upstream_file[plugin.NAME] = found
            self._load_state(name, self.convert_checkpoint(state_dict), path, checkpoint.get("epoch"))
        for name in plugins:
            path = osp.join(directory, name, filename)
            if osp.exists(path):
                checkpoint = load_checkpoint(path)
                self._load_state(name, checkpoint["state_dict"], path, checkpoint.get("epoch"))
            elif name in in_upstream_file:
                self._load_state(name, in_upstream_file[name], f"{path} (from upstream's whole-model file)", epoch)
            else:
                raise FileNotFoundError(
                    f"No {name} weights at {path}, nor in the base model's file: --model-dir must be a run "
                    f"trained with TRAINER.PLUGINS {list(plugins)} (or upstream's composed trainer).")

    def _checkpoint_path(self, directory: str, name: str, filename: str, plugins) -> str:
        """``directory/name/filename``, or a plug-in's upstream folder holding that file instead."""
        candidates = [name] + [p.upstream_folder() for p in plugins if p.upstream_folder()]
        for folder in candidates:
            path = osp.join(directory, folder, filename)
            if osp.exists(path):
                return path
        path = osp.join(directory, name, filename)
        raise FileNotFoundError(
            f"No model at {path}. Check --model-dir (it must hold a '{name}' folder, i.e. a run "
            f"of trainer {self.cfg.TRAINER.NAME}) and --load-epoch (files there: "
            f"{', '.join(_list_checkpoints(osp.join(directory, name))) or 'none'}).")

    def _load_state(self, name: str, state_dict: Dict[str, torch.Tensor], path: str, epoch) -> None:
        state_dict = adapt_state_dict(state_dict, self._models[name], path)
        print(f'Load {path} to {name} (epoch={epoch})')
        self._models[name].load_state_dict(state_dict, strict=False)


def _nearest_extend_cfg(cls):
    """``extend_cfg`` of the module defining ``cls`` (or, failing that, its nearest base), or None."""
    for klass in cls.__mro__:
        hook = getattr(sys.modules.get(klass.__module__), "extend_cfg", None)
        if callable(hook):
            return hook
    return None


def _list_checkpoints(folder: str) -> List[str]:
    return sorted(f for f in os.listdir(folder) if f.startswith("model")) if osp.isdir(folder) else []


def _is_class_buffer(key: str) -> bool:
    return key.split(".")[-1] in ("token_prefix", "token_suffix")


def adapt_state_dict(state_dict: Dict[str, torch.Tensor], module: nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """Keep the entries of ``state_dict`` that ``module`` owns; explain any mismatch."""
    own = module.state_dict()
    kept = {k: v for k, v in state_dict.items() if k in own and not _is_class_buffer(k)}
    missing = [k for k in own if k not in state_dict and not _is_class_buffer(k)]
    if missing:
        found = [k for k in state_dict if not _is_class_buffer(k)][:8]
        raise RuntimeError(
            f"Checkpoint {path} does not fit this model: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}; it holds {found}. Was it written by another trainer "
            f"or configuration (TRAINER.NAME, N_CTX, PROMPT_DEPTH, backbone)?")
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in kept.items() if v.shape != own[k].shape]
    if wrong:
        raise RuntimeError(
            f"Checkpoint {path} has tensors of other shapes than this model: {'; '.join(wrong[:8])}. "
            f"It was trained with another backbone or prompt configuration (N_CTX, CSC, depth).")
    return kept


class DeepPromptTrainer(ClipPromptTrainer):
    """A ``ClipPromptTrainer`` that remembers the generator state CLIP was built from
    (``rng_before_clip``), which ``draw_prompts_in_upstream_order`` replays."""

    rng_before_clip: Optional[torch.Tensor] = None

    def build_model(self):
        self.rng_before_clip = torch.get_rng_state()
        super().build_model()

    def vl_prompts(self, backbone: ClipBackbone, classnames: Sequence[str]) -> VLPrompts:
        """Independent prompts in both towers from this trainer's options (``build_vl_prompts``)."""
        return build_vl_prompts(backbone, classnames, self.options, self.CFG_NODE, self.rng_before_clip,
                                type(self).__name__)
