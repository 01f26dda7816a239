"""The method registry: every method the scripts, the job engine, the report and the kit run, each
described once, by one ``Method`` entry in ``METHODS``.

Adding a method is its trainer file (``trainers/<module>.py``), its configs
(``configs/trainers/<TRAINER>/``) and one entry here. From that entry alone:

* ``bash scripts/run.sh KEY STEP ...`` runs each protocol step (``base2new_train DATASET SEED``,
  ``base2new_test``, ``xd_train SEED``, ``xd_test``; see ``runs/steps.py``);
* the reproduce commands schedule it (``METHODS="... KEY" bash scripts/reproduce/table1.sh``);
* the report finds its runs (``runs/layout.py``) and labels its row;
* the kit fits its deep prompts to the tiny CLIP (``kit_depth_keys``).

``scripts/<key>/*.sh``, where a method has them, are its habitual entry points: thin calls of the
same steps, with no setting of their own. The epoch an evaluation loads is not written anywhere:
it is the last one of the training run (``train.py --load-epoch last``).
"""
from __future__ import annotations

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
class Method:
    """One method and how the scripts run it.

    ``key`` names it on every command line (``scripts/<key>/``, ``METHODS``); ``label`` is the
    paper's row name (the key of the paper JSON). ``b2n_dataset_cfg`` maps a dataset to the config
    its base-to-new runs use instead of ``b2n_cfg`` (CoOp trains ImageNet for 50 epochs, not 200:
    methods spec 9).
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
    sweeps: Tuple[Sweep, ...] = ()

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
        if asked and asked != default:
            return asked
        return self.b2n_dataset_cfg.get(dataset, default) if protocol == "b2n" else default

    def config_path(self, cfg: str) -> Path:
        return REPO / "configs" / "trainers" / (self.config_folder or self.trainer) / f"{cfg}.yaml"

    def in_checkout(self, repo: Path = REPO) -> bool:
        """Whether this checkout has the method's trainer file."""
        return (repo / "trainers" / f"{self.module or self.key}.py").is_file()

    def sweep(self, name: str) -> Optional[Sweep]:
        return next((s for s in self.sweeps if s.name == name), None)


# --------------------------------------------------------------------------------------------
# GOPro's sweeps (methods spec 8.7)
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

# Paper row order (Tables 1 and 2), then MaPLe's variants, then the modern baselines (not in the
# GOPro paper; modern-baselines spec), which the reproduce commands run when METHODS names them.
METHODS: Dict[str, Method] = {m.key: m for m in (
    Method("zsclip", "CLIP", "ZeroshotCLIP", "vit_b16", "vit_b16", config_folder="CoOp", group=PAPER),
    Method("slip", "SLIP", "SLIP", "vit_b16", "vit_b16_xd", group=PAPER),
    Method("coop", "CoOp", "CoOp", "vit_b16_ctxv1", "vit_b16_ep50_ctxv1",
           b2n_dataset_cfg={"imagenet": "vit_b16_ep50_ctxv1"}, group=PAPER),
    Method("cocoop", "CoCoOp", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "vit_b16_c4_ep10_batch1_ctxv1", group=PAPER),
    Method("maple", "MaPLe", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
           kit_depth_keys=MAPLE_DEPTHS, group=PAPER),
    Method("stylip", "StyLIP", "StyLIP", "vit_b16", "vit_b16_xd", group=PAPER),
    Method("gopro", "GOPro", "GOPro", "vit_b16", "vit_b16_xd", sweeps=GOPRO_SWEEPS, group=PAPER),
    Method("ivlp", "IVLP", "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", "vit_b16_c2_ep5_batch4_2+2ctx", group=VARIANT,
           kit_depth_keys=IVLP_DEPTHS),
    Method("vpt", "VPT", "VPT", "vit_b16_c2_ep5_batch4_4", "vit_b16_c2_ep5_batch4_4", group=VARIANT,
           kit_depth_keys=VPT_DEPTHS),
    Method("kgcoop", "KgCoOp", "KgCoOp", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", group=MODERN),
    Method("prograd", "ProGrad", "ProGrad", "vit_b16", "vit_b16_ep50",
           b2n_dataset_cfg={"imagenet": "vit_b16_ep50"}, group=MODERN),
    Method("promptsrc", "PromptSRC", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
           "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", group=MODERN, kit_depth_keys=PROMPTSRC_DEPTHS),
)}
PAPER_METHODS = tuple(key for key, m in METHODS.items() if m.group == PAPER)
MODERN_BASELINES = tuple(key for key, m in METHODS.items() if m.group == MODERN)
REPORTED_METHODS = PAPER_METHODS + MODERN_BASELINES  # the rows the report can show


def get_method(name: str) -> Method:
    """A method by key (``gopro``), paper label or trainer name (``GOPro``), case-insensitive."""
    wanted = name.strip().lower()
    for method in METHODS.values():
        if wanted in (method.key, method.label.lower(), method.trainer.lower()):
            return method
    raise KeyError(f"Unknown method {name!r}: choose from {' '.join(METHODS)}.")
