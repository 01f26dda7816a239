"""Plug-ins: methods that improve any prompt learner (DePT, ...), one file each, composed at build time.

A plug-in does not copy a base trainer: ``ClipPromptTrainer.build_model`` builds the base method as
usual and then hands its model and loss to every plug-in named in ``TRAINER.PLUGINS``, in order::

    model     = trainer.build_clip_model(backbone, classnames)   # the base method's PromptedCLIP
    criterion = trainer.build_criterion()                        # its loss module
    for plugin in plugins_of(cfg, ...):
        model, criterion = plugin.compose(model, criterion)       # extra head / features, extra terms

A plug-in owns one module (``plugin.module``: what it learns), which the trainer registers as a
model of its own, ``<NAME>/`` in the output folder, with its own optimizer (``cfg.OPTIM`` with the
learning rate times ``lr_multiplier()``) and scheduler, so checkpoints, resume and evaluation
treat it like any registered model while the base method's files stay what they were. Its options
are its own config node ``TRAINER.<CFG_NODE>`` (defaults from the plug-in module's ``extend_cfg``),
which run identity counts together with ``TRAINER.PLUGINS``.

``PluggedCLIP`` is the base class of a composed model: ``forward`` runs the base model and lets
the plug-in change its output (``extend``); any other attribute (``learnable``, ``learning``,
``caching``, ...) is the base model's, so a base trainer's own code (GOPro's, PromptSRC's GPA)
keeps working on its part.

Writing a plug-in: subclass ``Plugin``, register it with ``@register_plugin``, give it an
``extend_cfg(cfg)`` for its node; see the README's "Adding a method" for a worked example.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

PLUGINS_KEY = "PLUGINS"   # TRAINER.PLUGINS: names of the plug-ins to compose, in order
PLUGIN_REGISTRY: Dict[str, Type["Plugin"]] = {}


def extend_cfg(cfg) -> None:
    cfg.TRAINER[PLUGINS_KEY] = []


def register_plugin(cls: Type["Plugin"]) -> Type["Plugin"]:
    """Class decorator: make ``cls`` selectable as ``TRAINER.PLUGINS ['<cls.NAME>']``."""
    if not cls.NAME or not cls.CFG_NODE:
        raise TypeError(f"Plug-in {cls.__name__} must set NAME and CFG_NODE")
    if PLUGIN_REGISTRY.get(cls.NAME, cls) is not cls:
        raise KeyError(f"Plug-in name {cls.NAME!r} is registered twice")
    PLUGIN_REGISTRY[cls.NAME] = cls
    return cls


def node_options(cfg, node_name: str, defaults_hook: Optional[Callable]) -> CN:
    """``cfg.TRAINER.<node_name>`` completed with the defaults ``defaults_hook`` (a module's
    ``extend_cfg``) writes into an empty tree; given keys win. Frozen copy.

    Upstream clients' ``train.py`` define only their own keys, or no node at all for what they do
    not know: the missing keys then take our defaults."""
    scratch = CN()
    scratch.TRAINER = CN()
    if defaults_hook is not None:
        defaults_hook(scratch)
    options = scratch.TRAINER.get(node_name, CN())
    for key, value in cfg.TRAINER.get(node_name, CN()).items():
        options[key] = value
    options.freeze()
    return options


def plugin_names(cfg) -> List[str]:
    """The names in ``TRAINER.PLUGINS`` (an upstream client's config has none)."""
    return list(cfg.TRAINER.get(PLUGINS_KEY, []) or [])


def check_plugin_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in PLUGIN_REGISTRY]
    if unknown:
        raise ValueError(f"TRAINER.PLUGINS names unknown plug-ins {unknown}: choose from {sorted(PLUGIN_REGISTRY)} "
                         "(a plug-in is a file in trainers/ with @register_plugin)")
    if len(set(names)) != len(names):
        raise ValueError(f"TRAINER.PLUGINS names a plug-in twice: {list(names)}")


def plugins_of(cfg, base_model_name: str, classnames: Sequence[str]) -> List["Plugin"]:
    """The plug-ins ``cfg`` asks for, built for a base trainer whose registered model is ``base_model_name``."""
    names = plugin_names(cfg)
    check_plugin_names(names)
    return [PLUGIN_REGISTRY[name](cfg, base_model_name, classnames) for name in names]


class Plugin:
    """One plug-in instance for one run. Subclasses set ``NAME`` (its ``TRAINER.PLUGINS`` name, its
    checkpoint folder) and ``CFG_NODE``, and implement ``compose``, which also sets ``self.module``
    (built there, where the base model and so its feature size are known). ``self.options`` is the
    plug-in's node with its module's defaults."""

    NAME = ""
    CFG_NODE = ""

    def __init__(self, cfg, base_model_name: str, classnames: Sequence[str]):
        self.cfg = cfg
        self.base_model_name = base_model_name
        self.classnames = list(classnames)
        self.options = node_options(cfg, self.CFG_NODE, getattr(sys.modules[type(self).__module__], "extend_cfg", None))
        self.module: nn.Module = nn.Module()

    def compose(self, model: nn.Module, criterion: nn.Module) -> Tuple[nn.Module, nn.Module]:
        """The composed (model, criterion) around the base method's."""
        raise NotImplementedError

    def lr_multiplier(self) -> float:
        """The plug-in's learning rate is ``OPTIM.LR`` times this (its own optimizer, same schedule)."""
        return 1.0

    def check_training(self) -> None:
        """Raise a ValueError when this run cannot train the plug-in (default: any run can)."""

    # ---- checkpoints of other implementations -------------------------------------------
    def upstream_folder(self) -> Optional[str]:
        """The folder under which upstream's composed trainer saved the whole model (base and
        plug-in in one file), if it differs from the base trainer's; None: none of its own."""
        return None

    def split_upstream(self, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """(the base model's tensors, this plug-in's tensors renamed to ``self.module``'s keys) of a
        file that holds both (upstream's layout); a file of the base alone gives ``(state_dict, {})``."""
        return state_dict, {}


class PluggedCLIP(nn.Module):
    """A base model (``base``) with a plug-in's module (``plugin``) around it.

    ``forward`` runs the base model with the same arguments and returns ``extend(output)``. Every
    other attribute is the base model's (``learnable``, ``learning``, ``backbone``, its text-feature
    ``caching``, a method's own such as GOPro's ``pv_in_logits``), so a base trainer's own code
    works on the composed model unchanged."""

    def __init__(self, base: nn.Module, plugin: nn.Module):
        super().__init__()
        self.base = base
        self.plugin = plugin

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base", "plugin"):
                raise
            return getattr(self._modules["base"], name)

    def extend(self, output):
        raise NotImplementedError

    def forward(self, *args, **kwargs):
        return self.extend(self.base(*args, **kwargs))


def text_feature_caching(model: nn.Module):
    """``model.caching()`` where the model caches class features during evaluation, else a no-op context."""
    caching = getattr(model, "caching", None)
    return caching() if callable(caching) else contextlib.nullcontext()
