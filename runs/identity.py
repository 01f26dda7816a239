"""Run identity: which settings a run was made with, and whether a folder holds the run asked for.

``train.py`` writes two files into every output folder (training and ``--eval-only`` runs alike):

* ``config.yaml``: the fully resolved config the run used (``cfg.dump()``);
* ``run.json``: ``{"digest", "settings", "command", "written"}``, where ``settings`` are the flat
  ``KEY: value`` pairs that change results and ``digest`` is a short hash of them.

**The rule** for "changes results": every config key, except

* where things are, not what they are: ``OUTPUT_DIR``, ``RESUME``, ``DATASET.ROOT``,
  ``MODEL.BACKBONE.PATH`` (the weights are named by ``MODEL.BACKBONE.NAME``),
  ``TRAINER.FEATURE_CACHE_DIR`` (the feature cache: its entries are keyed by what they hold);
* how the run is watched or how fast it goes, documented as results-unchanged: worker counts,
  print and checkpoint frequencies, the evaluation batch size, confusion-matrix / per-class
  printing, and the text-tower speed knobs ``TRAINER.<X>.TRUNCATE_TEXT / TEXT_CHUNK / CHECKPOINT_TEXT``;
* the nodes of other trainers: only ``TRAINER.NAME``'s own node and the nodes of the plug-ins in
  ``TRAINER.PLUGINS`` (e.g. ``TRAINER.DEPT``) count (all nodes when the trainer declares none, to
  stay on the safe side);

plus three run arguments: ``--eval-only``, ``--load-epoch`` and, for an evaluation, the digest of
the model folder it loads (so an evaluation goes stale when its training run is redone). Likewise a
trainer key naming another run's folder, ``TRAINER.<NODE>.<X>_RUN`` (PromptKD's ``TEACHER_RUN``),
counts by that run's digest (``<key> digest``), not by its path; run.json also records such a run
under ``references`` (folder, digest, backbone).

Two settings are **the same** when every key both of them have holds the same value: a key only one
side knows comes from a code change (a new option with its default), not from the run. A folder is

* ``done``: finished (its log holds the final result) with the settings asked for;
* ``todo``: not finished, and the settings agree or nothing is recorded yet (the run resumes);
* ``stale``: recorded settings differ from the ones asked (``[stale: OPTIM.MAX_EPOCH 2 ≠ 50]``);
* ``done, settings unknown``: finished, but nothing tells its settings (neither ``run.json`` nor the
  config that ``train.py`` prints into ``log.txt``, which is how folders from before ``run.json`` are
  read). Such folders count as finished and are reported as unknown.

``train.py --check-finished ARGS`` answers for one folder (exit 0 done, 1 to run, 3 stale);
``runs/jobs.py`` and ``tools/experiments/report.py`` ask in-process for many runs (``asked_settings``).
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from runs.cli import build_parser, setup_cfg
from runs.records import CONFIG_FILE, IDENTITY_FILE, LAST_EPOCH, LOG_FILE, read_identity
from runs.results import TEST_END_SIGNAL, TRAIN_END_SIGNALS, read_metric



# Config keys that do not change results (see the module docstring for the rule).
IGNORED_KEYS = frozenset({
    "OUTPUT_DIR", "RESUME", "DATASET.ROOT", "MODEL.BACKBONE.PATH", "MODEL.BACKBONE.OPEN_CLIP_CONFIG",
    "DATALOADER.NUM_WORKERS", "DATALOADER.TEST.BATCH_SIZE", "TRAIN.PRINT_FREQ", "TRAIN.CHECKPOINT_FREQ",
    "TEST.COMPUTE_CMAT", "TEST.PER_CLASS_RESULT",
    "TRAINER.FEATURE_CACHE_DIR",  # where frozen features are cached (trainers/feature_cache.py)
})
IGNORED_TRAINER_KEYS = frozenset({"TRUNCATE_TEXT", "TEXT_CHUNK", "CHECKPOINT_TEXT"})
# Run arguments that change results (they are not config keys).
EVAL_ONLY, LOAD_EPOCH, MODEL_DIGEST = "--eval-only", "--load-epoch", "--model-dir digest"

# A trainer key holding the output folder of another run (e.g. a distillation teacher).
RUN_REFERENCE = re.compile(r"TRAINER\.[A-Z0-9_]+\.[A-Z0-9_]*_RUN")
REFERENCE_DIGEST = " digest"  # a referenced run's key in the settings: "<key> digest"


def is_reference_digest(key: str) -> bool:
    """Whether a settings key is the digest of a run this one builds on (``TEACHER_RUN digest``)."""
    return key.endswith(REFERENCE_DIGEST) and RUN_REFERENCE.fullmatch(key[:-len(REFERENCE_DIGEST)]) is not None

# Exit status of ``train.py --check-finished``.
EXIT_DONE, EXIT_TODO, EXIT_STALE = 0, 1, 3


# --------------------------------------------------------------------------------------------
# Settings of a config
# --------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON value: tuples become lists, so stored and freshly built settings compare equal."""
    return json.loads(json.dumps(value))


def flatten(node: Mapping, prefix: str = "") -> Dict[str, Any]:
    """``{"OPTIM.MAX_EPOCH": 50, ...}`` for a nested config."""
    flat: Dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _plain(value)
    return flat


def trainer_node(name: str, nodes: Sequence[str]) -> Optional[str]:
    """The ``TRAINER.<NODE>`` trainer ``name`` reads (its class's ``CFG_NODE``, else its upper-cased
    name), or None when neither is among ``nodes`` (then every node is kept)."""
    declared = ""
    engine = sys.modules.get("dassl.engine")  # loaded with the trainers; not worth importing torch for
    if engine is not None and name in engine.TRAINER_REGISTRY:
        declared = getattr(engine.TRAINER_REGISTRY.get(name), "CFG_NODE", "") or ""
    return next((c for c in (declared, str(name).upper()) if c in nodes), None)


def plugin_nodes(config: Mapping[str, Any]) -> List[str]:
    """The ``TRAINER.<NODE>`` of each plug-in in a flat config's ``TRAINER.PLUGINS`` (its class's
    ``CFG_NODE``, else its upper-cased name)."""
    registry = getattr(sys.modules.get("trainers.plugins"), "PLUGIN_REGISTRY", {})
    return [getattr(registry.get(name), "CFG_NODE", "") or str(name).upper()
            for name in config.get("TRAINER.PLUGINS") or ()]


def counts(key: str, own_nodes: Optional[Sequence[str]]) -> bool:
    """Whether a flat config key is part of the settings that change results (``own_nodes``: the
    trainer nodes that count, None: all)."""
    if key in IGNORED_KEYS:
        return False
    parts = key.split(".")
    if parts[0] == "TRAINER" and len(parts) > 2:  # TRAINER.<NODE>.<KEY>
        if own_nodes is not None and parts[1] not in own_nodes:
            return False
        return parts[-1] not in IGNORED_TRAINER_KEYS
    return True


def select_settings(config: Mapping[str, Any], eval_only: bool, load_epoch: Optional[int],
                    model_digest: Optional[str] = None) -> Dict[str, Any]:
    """The settings that change results (the rule above) of a flat config and the run arguments."""
    nodes = {k.split(".")[1] for k in config if k.startswith("TRAINER.") and k.count(".") >= 2}
    own = trainer_node(config.get("TRAINER.NAME", ""), nodes)
    own_nodes = None if own is None else [own, *plugin_nodes(config)]
    settings = {k: v for k, v in config.items() if counts(k, own_nodes)}
    settings[EVAL_ONLY] = bool(eval_only)
    if eval_only:
        settings[LOAD_EPOCH] = load_epoch
        if model_digest:
            settings[MODEL_DIGEST] = model_digest
    return dict(sorted(settings.items()))


def settings_of(cfg, eval_only: bool = False, load_epoch: Union[int, str, None] = None,
                model_dir: str = "") -> Dict[str, Any]:
    """The settings of a run of config ``cfg`` (the model folder's digest from its run.json).

    ``--load-epoch last`` counts as the config's ``OPTIM.MAX_EPOCH``: the last epoch of the training
    run these settings make (the scripts give a training run and its evaluations the same config).
    A run records the epoch it loaded (train.py resolves ``last`` in the model folder first), so
    runs recorded with ``--load-epoch 50`` and asked with ``last`` are the same run.
    """
    epoch = cfg.OPTIM.MAX_EPOCH if load_epoch == LAST_EPOCH else load_epoch
    identity = read_identity(Path(model_dir)) if eval_only and model_dir else None
    config = flatten(cfg)
    for key, reference in referenced_runs(config).items():  # a run it builds on counts by its digest
        del config[key]
        config[key + REFERENCE_DIGEST] = reference["digest"]
    return select_settings(config, eval_only, epoch, identity and identity.get("digest"))


def referenced_runs(config: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """``{key: {"folder", "digest", "backbone"}}`` for the keys of a flat config that name another
    run's folder (``RUN_REFERENCE``); digest and backbone are None where the folder has no run.json."""
    references = {}
    for key, folder in config.items():
        if RUN_REFERENCE.fullmatch(key) and folder:
            identity = read_identity(Path(folder)) or {}
            references[key] = {"folder": str(folder), "digest": identity.get("digest"),
                               "backbone": identity.get("settings", {}).get("MODEL.BACKBONE.NAME")}
    return references


def settings_of_args(cfg, args) -> Dict[str, Any]:
    """``settings_of`` for train.py's parsed arguments."""
    return settings_of(cfg, args.eval_only, args.load_epoch, args.model_dir)


def digest_of(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Comparing settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    key: str
    stored: Any
    asked: Any

    def __str__(self) -> str:
        return f"{self.key} {_show(self.stored)} ≠ {_show(self.asked)}"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def differences(stored: Mapping[str, Any], asked: Mapping[str, Any], ignore: Sequence[str] = ()) -> List[Difference]:
    """Keys both sides have whose values differ (see "the same" in the module docstring)."""
    return [Difference(k, stored[k], asked[k]) for k in sorted(set(stored) & set(asked))
            if k not in ignore and _plain(stored[k]) != _plain(asked[k])]


def describe(diffs: Sequence[Difference], limit: int = 4) -> str:
    text = ", ".join(str(d) for d in diffs[:limit])
    return text + (f" (+{len(diffs) - limit} more)" if len(diffs) > limit else "")


# --------------------------------------------------------------------------------------------
# What a folder holds
# --------------------------------------------------------------------------------------------
def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _banner_section(lines: List[str], title: str, line_pattern: str) -> List[str]:
    """The lines after train.py's ``** title **`` banner, as long as they match ``line_pattern``."""
    try:
        start = lines.index(f"** {title} **") + 2
    except ValueError:
        return []
    end = start
    while end < len(lines) and re.match(line_pattern, lines[end]):
        end += 1
    return lines[start:end]


def parse_config_dump(lines: Sequence[str]) -> Dict[str, Any]:
    """Flat settings from the config yacs prints (``KEY:`` opens a node, ``KEY: value`` is a leaf)."""
    flat: Dict[str, Any] = {}
    path: List[Tuple[int, str]] = []
    for line in lines:
        if not line.strip() or ":" not in line:
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, _, value = line.lstrip(" ").partition(":")
        while path and path[-1][0] >= indent:
            path.pop()
        if value == "":  # a node (a leaf holding "" prints as "KEY: ")
            path.append((indent, key))
            continue
        flat[".".join([p for _, p in path] + [key])] = _plain(_literal(value[1:]))
    return flat


def settings_from_log(log: Path) -> Optional[Dict[str, Any]]:
    """Settings of a folder made before ``run.json``: the arguments and config train.py printed."""
    if not log.is_file():
        return None
    lines = log.read_text(errors="replace").splitlines()
    config = parse_config_dump(_banner_section(lines, "Config", r" *[A-Z][A-Z0-9_]*:"))
    if "TRAINER.NAME" not in config:
        return None
    arguments = dict(line.split(": ", 1) for line in _banner_section(lines, "Arguments", r"[a-z_]+: "))
    return select_settings(config, arguments.get("eval_only") == "True", _literal(arguments.get("load_epoch", "None")))


@dataclass(frozen=True)
class Stored:
    settings: Dict[str, Any]
    source: str  # IDENTITY_FILE or LOG_FILE


def stored_settings(folder: Path) -> Optional[Stored]:
    """The settings a folder's run was made with: run.json, else the config printed into log.txt."""
    identity = read_identity(folder)
    if identity is not None:
        return Stored(identity["settings"], IDENTITY_FILE)
    legacy = settings_from_log(Path(folder) / LOG_FILE)
    return Stored(legacy, LOG_FILE) if legacy is not None else None


@dataclass(frozen=True)
class FolderState:
    finished: bool
    known: bool                          # the folder tells its settings
    differences: Tuple[Difference, ...] = ()

    @property
    def stale(self) -> bool:
        return bool(self.differences)

    @property
    def done(self) -> bool:
        return self.finished and not self.stale

    @property
    def label(self) -> str:
        if self.stale:
            return f"stale: {describe(self.differences)}"
        if self.done:
            return "done" if self.known else "done, settings unknown"
        return "todo"


def end_signals(eval_only: bool) -> Tuple[str, ...]:
    return (TEST_END_SIGNAL,) if eval_only else TRAIN_END_SIGNALS


def folder_state(folder: Path, signals: Sequence[str], asked: Callable[[], Mapping[str, Any]]) -> FolderState:
    """What ``folder`` holds, against the settings ``asked()`` (called only when the folder has any)."""
    folder = Path(folder)
    finished = read_metric(folder / LOG_FILE, "accuracy", tuple(signals)) is not None
    stored = stored_settings(folder) if folder.is_dir() else None
    if stored is None:
        return FolderState(finished, known=False)
    return FolderState(finished, True, tuple(differences(stored.settings, asked())))


# --------------------------------------------------------------------------------------------
# train.py: record a run, check a folder, build the settings of an argument list
# --------------------------------------------------------------------------------------------
def output_folder(output_dir: str) -> Path:
    """The run's folder: an OUTPUT_DIR ending in .txt / .log names the log file itself (upstream quirk)."""
    path = Path(output_dir)
    return path.parent if path.suffix in (".txt", ".log") else path


def check_record(cfg, args) -> Dict[str, Any]:
    """The run's settings; ValueError when training would go into a folder holding a run with
    other settings: it would resume from that run's checkpoints and mix the two."""
    folder = output_folder(cfg.OUTPUT_DIR)
    settings = settings_of_args(cfg, args)
    stored = stored_settings(folder)
    diffs = differences(stored.settings, settings) if stored else []
    if diffs and not args.eval_only:
        raise ValueError(
            f"{folder} holds a run with other settings ({describe(diffs)}; from its {stored.source}): training "
            f"there would resume and mix the two. Pass another --output-dir, or move the folder aside "
            f"(the scripts do this with RERUN_STALE=1).")
    return settings


def record(cfg, args, main_process: bool = True) -> None:
    """Write config.yaml and run.json into OUTPUT_DIR (called by train.py once the config is final).

    Stops first where ``check_record`` does.
    """
    folder = output_folder(cfg.OUTPUT_DIR)
    settings = check_record(cfg, args)
    if not main_process:
        return
    from dassl.utils.torchtools import atomic_write  # train.py's process: the repository is importable

    identity = {"digest": digest_of(settings), "settings": settings, "command": sys.argv,
                "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    references = referenced_runs(flatten(cfg))
    if references:
        identity["references"] = references
    for name, text in ((CONFIG_FILE, cfg.dump()), (IDENTITY_FILE, json.dumps(identity, indent=1) + "\n")):
        atomic_write(str(folder / name), lambda f, text=text: f.write(text), mode="w")


def check_folder(cfg, args) -> int:
    """``train.py --check-finished``: print the folder's state; exit 0 done, 1 to run, 3 stale."""
    folder = output_folder(cfg.OUTPUT_DIR)
    state = folder_state(folder, end_signals(args.eval_only), lambda: settings_of_args(cfg, args))
    print(f"[{state.label}] {cfg.OUTPUT_DIR}")
    if state.stale:
        return EXIT_STALE
    return EXIT_DONE if state.done else EXIT_TODO


def asked_settings(argv: Sequence[str]) -> Dict[str, Any]:
    """The settings ``train.py ARGV`` would run with, built in this process (no data, no model).

    The first call imports every trainer (seconds); later calls take milliseconds.
    """
    args = build_parser().parse_args(list(argv))
    return settings_of_args(setup_cfg(args), args)
