"""The method registry: every method the scripts, the job engine, the report and the kit run, each
described once, by one ``Method`` entry in ``METHODS``.

Adding a method is its trainer file (``trainers/<module>.py``), its configs
(``configs/trainers/<TRAINER>/``) and one entry here. From that entry alone:

* ``bash scripts/run.sh KEY STEP ...`` runs each protocol step (``base2new_train DATASET SEED``,
  ``base2new_test``, ``xd_train SEED``, ``xd_test``; see ``runs/steps.py``);
* the reproduce commands schedule it (``METHODS="... KEY" bash scripts/reproduce/table1.sh``);
* the report finds its runs (``runs/layout.py``) and labels its row;
* the kit fits its deep prompts to the tiny CLIP (``kit_depth_keys``, and any other ``kit_opts``).

``scripts/<key>/*.sh``, where a method has them, are its habitual entry points: thin calls of the
same steps, with no setting of their own. The epoch an evaluation loads is not written anywhere:
it is the last one of the training run (``train.py --load-epoch last``).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ("b2n", "xd")  # base-to-new; cross-dataset / domain generalisation (trained on the XD source)
# Method groups: rows of the GOPro paper's tables; modern baselines (their own report table);
# variants run by their scripts but shown in no table (MaPLe's language-only / vision-only ablations);
# other: the default, so that a newly added method is runnable everywhere but never a paper row.
PAPER, MODERN, VARIANT, OTHER = "paper", "modern", "variant", "other"


@dataclass(frozen=True)
class Sweep:
    """Base-to-new runs of one method that change a few of its options, one output tree per setting:
    ``scripts/<key>/<name>.sh SETTING DATASET SEED``. The ``default`` setting is the method's own
    configuration, so it shares the method's base-to-new runs instead of repeating them."""

    name: str                                     # the step (and script) name; the output folder
    argument: str                                 # what a setting is called in messages (ROW, M)
    points: Tuple[str, ...]                       # the settings a reproduce command runs
    default: str
    options: Callable[[str], Tuple[str, ...]]     # setting -> train.py KEY VALUE pairs (ValueError: no such setting)
    folder: Callable[[str], str]                  # setting -> its folder under <OUTPUT>/<name>/
    hint: str = ""                                # the settings, for a usage line

    @property
    def usage(self) -> str:
        return f"{self.argument} DATASET SEED" + (f"   ({self.argument}: {self.hint})" if self.hint else "")


@dataclass(frozen=True)
class Teacher:
    """A distillation teacher made by another method of the registry: its base-to-new training run
    (``method`` with config ``cfg``, same dataset and seed) and its exported features, whose folder
    the student's runs receive in config key ``option``. The teacher runs on ``cfg``'s backbone
    whatever the student's; the scripts' TEACHER_BACKBONE changes it, and the student's runs then
    receive that name in config key ``backbone_option`` (the backbone the student expects)."""

    method: str
    cfg: str
    option: str
    backbone_option: str


@dataclass(frozen=True)
class Method:
    """One method and how the scripts run it.

    ``key`` names it on every command line (``scripts/<key>/``, ``METHODS``); ``label`` is the
    paper's row name (the key of the paper JSON). ``b2n_dataset_cfg`` maps a dataset to the config
    its base-to-new runs use instead of ``b2n_cfg`` (CoOp trains ImageNet for 50 epochs, not 200,
    as CoOp's own ImageNet recipe).
    """

    key: str
    label: str
    trainer: str
    b2n_cfg: str
    xd_cfg: str
    b2n_dataset_cfg: Mapping[str, str] = field(default_factory=dict, hash=False)
    group: str = OTHER
    config_folder: str = ""                       # configs/trainers/<config_folder or trainer>/
    module: str = ""                              # trainers/<module or key>.py
    kit_depth_keys: Tuple[str, ...] = ()          # prompt depths the kit lowers to the tiny CLIP's blocks
    kit_opts: Tuple[str, ...] = ()                # other KEY VALUE pairs that fit the paper configs to the kit
    fewshot_cfg: str = ""                         # config of the few-shot protocol ("" = not defined)
    sweeps: Tuple[Sweep, ...] = ()
    teacher: Optional[Teacher] = None             # a distilled method's teacher (PromptKD)
    plugins: Tuple[str, ...] = ()                 # plug-ins composed with the trainer (its configs' TRAINER.PLUGINS)
    feature_cache: bool = False                   # its trainer module adds TRAINER.FEATURE_CACHE_DIR (frozen
                                                  # features, trainers/feature_cache.py): the scripts pass one
                                                  # folder under OUTPUT (a fact of the trainer, stated here so
                                                  # that the scripts need not import it; tests check it)
    tags: Tuple[str, ...] = ()                    # regime shown in the report: "training-free", "fine-tuned",
                                                  # "transductive", "teacher ViT-L/14", "LLM text", "plug-in" ...
                                                  # (empty = inductive prompt learner)

    fewshot_cfg_by_shots: Mapping[int, str] = field(default_factory=dict, hash=False)  # per shot count (CoOp)
    fewshot_dataset_cfg: Mapping[str, str] = field(default_factory=dict, hash=False)  # per dataset, any shots
    @property
    def folder(self) -> str:
        """The trainer folder of its runs: the trainer, joined by ``_`` with its plug-ins
        (``PromptSRC_DePT``), so a composed method never shares the base method's folders."""
        return "_".join((self.trainer, *self.plugins))

    @property
    def paper_row(self) -> bool:
        return self.group == PAPER

    @property
    def zero_shot(self) -> bool:
        """Zero-shot CLIP has no training and no seed: one run per dataset and label subset."""
        return self.key == "zsclip"

    def cfg(self, protocol: str, dataset: str = "", asked: str = "") -> str:
        """The config name of a protocol's runs on ``dataset``. ``asked`` (the scripts' ``CFG``)
        replaces the default; asking for the default itself keeps the dataset's exception."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown protocol {protocol!r}: use 'b2n' or 'xd'.")
        default = self.b2n_cfg if protocol == "b2n" else self.xd_cfg
        if not default:
            raise ValueError(f"{self.key} does not define the {'base-to-new' if protocol == 'b2n' else 'cross-dataset'} "
                             f"protocol (its upstream has none); it runs the few-shot protocol.")
        if asked and asked != default:
            return asked
        return self.b2n_dataset_cfg.get(dataset, default) if protocol == "b2n" else default

    @property
    def fewshot(self) -> bool:
        """Whether the method defines the few-shot protocol (zero-shot CLIP: its one run per dataset)."""
        return bool(self.fewshot_cfg) or self.zero_shot

    def fewshot_config(self, dataset: str, shots: int, asked: str = "") -> str:
        """The config of a few-shot run: ``asked`` (the scripts' CFG), else the dataset's own (CoOp's
        ImageNet, PromptSRC's GPA datasets), else the shot count's (CoOp), else ``fewshot_cfg``."""
        if not self.fewshot:
            raise ValueError(f"{self.key} does not define the few-shot protocol (no fewshot_cfg in runs/methods.py)")
        if self.zero_shot:
            return asked or self.b2n_cfg
        return (asked or self.fewshot_dataset_cfg.get(dataset) or self.fewshot_cfg_by_shots.get(int(shots))
                or self.fewshot_cfg)

    def training_cfg(self, dataset: str = "") -> str:
        """The config of the method's main training, for tools that build any method (benchmarks,
        memory prediction, tests): base-to-new, or 16 shots for a method without that protocol."""
        return self.cfg("b2n", dataset) if self.b2n_cfg else self.fewshot_config(dataset, 16)

    def config_path(self, cfg: str) -> Path:
        return REPO / "configs" / "trainers" / (self.config_folder or self.trainer) / f"{cfg}.yaml"

    def in_checkout(self, repo: Path = REPO) -> bool:
        """Whether this checkout has the method's trainer file (and its plug-ins' files)."""
        files = [self.module or self.key, *(plugin.lower() for plugin in self.plugins)]
        return all((repo / "trainers" / f"{name}.py").is_file() for name in files)

    def sweep(self, name: str) -> Optional[Sweep]:
        return next((s for s in self.sweeps if s.name == name), None)


# --------------------------------------------------------------------------------------------
# GOPro's sweeps (the paper's Table 3 and Figure 2)
# --------------------------------------------------------------------------------------------
# Table 3: each row's paper label and loss switches (TRAINER.GOPRO.<KEY> VALUE). Zero-weight
# branches are not computed (trainers/gopro.py).
ABLATION: Dict[str, Tuple[str, Dict[str, str]]] = {
    "ce": ("L_ce", dict(W_CE="1.0", W_CON="0.0", W_SEM="0.0")),
    "ce_con": ("L_ce + L_Con", dict(W_CE="1.0", W_CON="1.0", W_SEM="0.0")),
    "ce_sem_x1": ("L_ce + L_Sem(x1)", dict(W_CE="1.0", W_CON="0.0", W_SEM="1.0", SEM_VIEWS="['moco']")),
    "ce_sem_x2": ("L_ce + L_Sem(x2)", dict(W_CE="1.0", W_CON="0.0", W_SEM="1.0", SEM_VIEWS="['augmix']")),
    "ce_sem_x1x2": ("L_ce + L_Sem(x1 + x2)",
                    dict(W_CE="1.0", W_CON="0.0", W_SEM="1.0", SEM_VIEWS="['moco', 'augmix']")),
    "all": ("L_ce + L_Sem + L_Con", dict(W_CE="1.0", W_CON="1.0", W_SEM="1.0", SEM_VIEWS="['moco', 'augmix']")),
}
ABLATION_ROWS: Dict[str, str] = {row: label for row, (label, _) in ABLATION.items()}
# Figure 2: prompt lengths M with a random context, and the default M = 4 "a photo of a" point.
NCTX_LENGTHS = (1, 2, 4, 8, 16)
NCTX_DEFAULT_POINT = "init"
NCTX_POINTS = tuple(str(m) for m in NCTX_LENGTHS) + (NCTX_DEFAULT_POINT,)


def ablation_options(row: str) -> Tuple[str, ...]:
    if row not in ABLATION:
        raise ValueError(f"Unknown ablation row '{row}': use one of {' '.join(ABLATION)}")
    return tuple(x for key, value in ABLATION[row][1].items() for x in (f"TRAINER.GOPRO.{key}", value))


def nctx_options(point: str) -> Tuple[str, ...]:
    """Any positive M (random context), or ``init``: GOPro's own M = 4 from "a photo of a"."""
    if point == NCTX_DEFAULT_POINT:
        return ("TRAINER.GOPRO.N_CTX", "4", "TRAINER.GOPRO.CTX_INIT", "a photo of a")
    if not re.fullmatch(r"[1-9][0-9]*", point):
        raise ValueError(f"Bad prompt length '{point}': use a positive integer (e.g. 1 2 4 8 16) or 'init'")
    return ("TRAINER.GOPRO.N_CTX", point, "TRAINER.GOPRO.CTX_INIT", "")


GOPRO_SWEEPS = (
    Sweep("ablation", "ROW", tuple(ABLATION), "all", ablation_options, folder=lambda row: row,
          hint=" ".join(ABLATION)),
    Sweep("nctx", "M", NCTX_POINTS, NCTX_DEFAULT_POINT, nctx_options, folder=lambda m: f"m{m}",
          hint="a positive number of tokens, or 'init'"),
)

# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------
# Deep-prompt depths of the paper configs (9 or 12 blocks): the kit's tiny CLIP has fewer.
MAPLE_DEPTHS = ("TRAINER.MAPLE.PROMPT_DEPTH",)
IVLP_DEPTHS = ("TRAINER.IVLP.PROMPT_DEPTH_TEXT", "TRAINER.IVLP.PROMPT_DEPTH_VISION")
VPT_DEPTHS = ("TRAINER.VPT.PROMPT_DEPTH_VISION",)
PROMPTSRC_DEPTHS = ("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION")
TCP_BLOCKS = ("TRAINER.TCP.TKE_BLOCK",)  # the kit's value, 3, is its last text block
# MMRL's representation tokens in the upper blocks (upstream: 6..12 of 12; the kit: 2..3 of 3).
MMRL_KIT_LAYERS = ("TRAINER.MMRL.REP_LAYERS", "[2,3]")
# CoPrompt's per-dataset table asks for depth 12, more than the kit's 3 blocks: the kit runs the config values.
COPROMPT_DEPTHS = ("TRAINER.COPROMPT.PROMPT_DEPTH",)
COPROMPT_KIT_OPTS = ("TRAINER.COPROMPT.DATASET_OPTIONS", "False")
PROMPTKD_DEPTHS = ("TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION")
# PromptKD: upstream's KD_WEIGHT is 200 on these datasets (1000 elsewhere).
PROMPTKD_KD200 = {d: "vit_b16_c2_ep20_batch8_4+4ctx_kd200" for d in ("fgvc_aircraft", "oxford_flowers", "dtd")}

def plugged(base: Method, plugin: str, cfg: str) -> Method:
    """``base`` composed with ``plugin`` (a method of its own: key ``<base>+<plugin>``, row
    ``<Base>+<Plugin>``, trainer folder ``<Trainer>_<Plugin>``), trained and evaluated with
    ``configs/trainers/<plugin>/<cfg>.yaml`` in both protocols (it sets TRAINER.PLUGINS)."""
    return dataclasses.replace(base, key=f"{base.key}+{plugin.lower()}", label=f"{base.label}+{plugin}", b2n_cfg=cfg,
                               xd_cfg=cfg, b2n_dataset_cfg={}, group=MODERN, config_folder=plugin,
                               module=base.module or base.key, sweeps=(), plugins=(*base.plugins, plugin),
                               tags=(*base.tags, "plug-in"), fewshot_cfg="", fewshot_cfg_by_shots={},
                               fewshot_dataset_cfg={})  # the plug-in's configs define no few-shot runs


# The few-shot protocol (CoOp's, 1/2/4/8/16 shots, all classes). CoOp's scripts/coop/README.md trains
# fewer epochs at low shots (1 shot: *_ep50, 2 and 4: *_ep100, 8 and 16: the 200-epoch config) and
# ImageNet with *_ep50 at every shot count; its ViT-B/16 configs are the same files per backbone.
# PromptSRC's few-shot script uses its GPA-45 config on these five datasets. CoCoOp, MaPLe, IVLP,
# KgCoOp, ProGrad and GOPro ship no ViT-B/16 few-shot config: our choice is their base-to-new config
# (ProGrad's ImageNet exception included), trained on all classes.
COOP_FEWSHOT_BY_SHOTS = {1: "vit_b16_ep50", 2: "vit_b16_ep100", 4: "vit_b16_ep100"}
PROMPTSRC_FEWSHOT_GPA45 = {d: "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45"
                           for d in ("stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat")}

# Paper row order (Tables 1 and 2), then MaPLe's variants, then the modern baselines (not in the
# GOPro paper: KgCoOp, ProGrad, PromptSRC), which the reproduce commands run when METHODS names them.
METHODS: Dict[str, Method] = {m.key: m for m in (
    Method("zsclip", "CLIP", "ZeroshotCLIP", "vit_b16", "vit_b16", config_folder="CoOp", group=PAPER),
    Method("slip", "SLIP", "SLIP", "vit_b16", "vit_b16_xd", group=PAPER),
    Method("coop", "CoOp", "CoOp", "vit_b16_ctxv1", "vit_b16_ep50_ctxv1",
           b2n_dataset_cfg={"imagenet": "vit_b16_ep50_ctxv1"}, group=PAPER,
           fewshot_cfg="vit_b16", fewshot_cfg_by_shots=COOP_FEWSHOT_BY_SHOTS, fewshot_dataset_cfg={"imagenet": "vit_b16_ep50"}),
    Method("cocoop", "CoCoOp", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "vit_b16_c4_ep10_batch1_ctxv1", group=PAPER,
           fewshot_cfg="vit_b16_c4_ep10_batch1_ctxv1"),
    Method("maple", "MaPLe", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
           kit_depth_keys=MAPLE_DEPTHS, group=PAPER, fewshot_cfg="vit_b16_c2_ep5_batch4_2ctx"),
    Method("stylip", "StyLIP", "StyLIP", "vit_b16", "vit_b16_xd", group=PAPER),
    Method("gopro", "GOPro", "GOPro", "vit_b16", "vit_b16_xd", sweeps=GOPRO_SWEEPS, group=PAPER, fewshot_cfg="vit_b16"),
    Method("ivlp", "IVLP", "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", "vit_b16_c2_ep5_batch4_2+2ctx", group=VARIANT,
           kit_depth_keys=IVLP_DEPTHS, fewshot_cfg="vit_b16_c2_ep5_batch4_2+2ctx"),
    Method("vpt", "VPT", "VPT", "vit_b16_c2_ep5_batch4_4", "vit_b16_c2_ep5_batch4_4", group=VARIANT,
           kit_depth_keys=VPT_DEPTHS),
    Method("kgcoop", "KgCoOp", "KgCoOp", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", group=MODERN,
           fewshot_cfg="vit_b16_ep100_ctxv1"),
    Method("prograd", "ProGrad", "ProGrad", "vit_b16", "vit_b16_ep50",
           b2n_dataset_cfg={"imagenet": "vit_b16_ep50"}, group=MODERN,
           fewshot_cfg="vit_b16", fewshot_dataset_cfg={"imagenet": "vit_b16_ep50"}),
    Method("promptsrc", "PromptSRC", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
           "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", group=MODERN, kit_depth_keys=PROMPTSRC_DEPTHS,
           fewshot_cfg="vit_b16_c2_ep50_batch4_4+4ctx_few_shot", fewshot_dataset_cfg=PROMPTSRC_FEWSHOT_GPA45),
    Method("tcp", "TCP", "TCP", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", group=MODERN, kit_depth_keys=TCP_BLOCKS),
    Method("mmrl", "MMRL", "MMRL", "vit_b16", "vit_b16_cross_datasets", b2n_dataset_cfg={"imagenet": "vit_b16_imagenet"},
           group=MODERN, kit_opts=MMRL_KIT_LAYERS, fewshot_cfg="vit_b16_few_shot"),
    Method("coprompt", "CoPrompt", "CoPrompt", "coprompt", "coprompt_cross_datasets",
           b2n_dataset_cfg={"food101": "coprompt_food101"}, group=MODERN, kit_depth_keys=COPROMPT_DEPTHS,
           kit_opts=COPROMPT_KIT_OPTS, tags=("LLM text",)),
    Method("promptkd", "PromptKD", "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx",
           "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets", b2n_dataset_cfg=PROMPTKD_KD200, group=MODERN,
           kit_depth_keys=PROMPTKD_DEPTHS, tags=("transductive", "teacher ViT-L/14"),
           teacher=Teacher("promptsrc", "vit_l14_c2_ep20_batch8_4+4ctx", "TRAINER.PROMPTKD.TEACHER_RUN",
                           "TRAINER.PROMPTKD.TEACHER_NAME")),
    # Frozen-feature methods (trainers/frozen_features.py). A protocol whose config is "" is not
    # defined by the method's upstream. GDA's cross-dataset runs fit ImageNet and name each target's
    # classes with its unseen-class classifier (our choice: upstream has no cross-dataset script).
    Method("gda", "GDA", "GDA", "vit_b16_base2new", "vit_b16", module="gda",
           fewshot_cfg="vit_b16", feature_cache=True, tags=("training-free",)),
    Method("tip_adapter", "Tip-Adapter", "TipAdapter", "", "", module="tip_adapter",
           fewshot_cfg="vit_b16", feature_cache=True, tags=("training-free",)),
    Method("tip_adapter_f", "Tip-Adapter-F", "TipAdapterF", "", "", module="tip_adapter",
           fewshot_cfg="vit_b16", feature_cache=True, tags=("fine-tuned",)),
    Method("linear_probe", "Linear probe", "LinearProbe", "", "", module="linear_probe",
           fewshot_cfg="vit_b16", feature_cache=True, tags=("fine-tuned",)),
    Method("clip_adapter", "CLIP-Adapter", "CLIPAdapter", "", "", module="clip_adapter",
           fewshot_cfg="vit_b16", fewshot_cfg_by_shots={1: "vit_b16_ep50", 2: "vit_b16_ep100", 4: "vit_b16_ep100"},
           tags=("fine-tuned",)),
    Method("clip_lora", "CLIP-LoRA", "CLIPLoRA", "", "", module="clip_lora",
           fewshot_cfg="vit_b16", tags=("fine-tuned",)),
)}
PAPER_METHODS = tuple(key for key, m in METHODS.items() if m.group == PAPER)
# DePT (trainers/dept.py) on the base methods of its paper and ours; configs/trainers/DePT/<base>_<upstream cfg>.
DEPT_CONFIGS = {"coop": "coop_vit_b16_ep10_bs4_lr35", "cocoop": "cocoop_vit_b16_c4_ep10_batch1_ctxv1",
                "kgcoop": "kgcoop_vit_b16_ep10_ctxv1_bs4_lr35", "maple": "maple_vit_b16_c2_ep10_batch4_2ctx",
                "promptsrc": "promptsrc_vit_b16_c2_ep20_batch4_4+4ctx", "gopro": "gopro_vit_b16"}
# Composed methods: a base method of the registry with plug-ins (trainers/plugins.py), rows of their own.
COMPOSED = tuple(plugged(METHODS[base], "DePT", cfg) for base, cfg in DEPT_CONFIGS.items())
METHODS.update({m.key: m for m in COMPOSED})
MODERN_BASELINES = tuple(key for key, m in METHODS.items() if m.group == MODERN)
REPORTED_METHODS = PAPER_METHODS + MODERN_BASELINES  # the rows the report can show


def get_method(name: str) -> Method:
    """A method by key (``gopro``), paper label or trainer name (``GOPro``), case-insensitive."""
    wanted = name.strip().lower()
    for method in METHODS.values():
        if wanted in (method.key, method.label.lower(), method.trainer.lower()):
            return method
    raise KeyError(f"Unknown method {name!r}: choose from {' '.join(METHODS)}.")
