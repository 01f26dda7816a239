"""The files a run folder holds, read without building any config, and the one "last epoch" rule.

``train.py`` writes ``config.yaml`` (the resolved config) and ``run.json`` (``{"digest", "settings",
"command", "written"}``, see ``runs/identity.py``) into every output folder, beside ``log.txt``.
A record that cannot be read, or that is not what train.py writes (``run.json`` not an object,
``settings`` not an object, an ``OPTIM.MAX_EPOCH`` that is not an integer), tells nothing: it is
treated like a folder without one, with a warning naming the file, so that a damaged folder is
re-run or re-checked instead of crashing the caller.

``--load-epoch last`` is the final epoch of the training run in ``--model-dir`` (``last_epoch``):
every caller (train.py, the t-SNE tool) resolves it here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

IDENTITY_FILE = "run.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
LAST_EPOCH = "last"  # --load-epoch last: the final epoch of the run in --model-dir
EPOCH_CHECKPOINT = re.compile(r"model\.pth\.tar-(\d+)")


# --------------------------------------------------------------------------------------------
# run.json and config.yaml
# --------------------------------------------------------------------------------------------
def ignore_record(path: Path, why: str) -> None:
    """Say that a record is disregarded (the folder then counts as one without it)."""
    print(f"Warning: ignoring {path}: {why}", file=sys.stderr)


def read_identity(folder: Union[str, Path]) -> Optional[dict]:
    """A folder's run.json (None: none, unreadable, or not an object with a ``settings`` object)."""
    path = Path(folder) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        identity = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        ignore_record(path, f"not readable JSON ({exc})")
        return None
    if not isinstance(identity, dict) or not isinstance(identity.get("settings"), dict):
        ignore_record(path, 'not a record of train.py (a JSON object with a "settings" object)')
        return None
    return identity


def epoch_count(value: Any, path: Path) -> Optional[int]:
    """A recorded ``OPTIM.MAX_EPOCH`` as an int (None, with a warning, for anything else)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    ignore_record(path, f"OPTIM.MAX_EPOCH is {value!r}, not an integer")
    return None


def recorded_max_epoch(folder: Union[str, Path]) -> Optional[int]:
    """The ``OPTIM.MAX_EPOCH`` a run folder records: run.json's settings, else config.yaml (None: neither)."""
    identity = read_identity(folder)
    if identity is not None and "OPTIM.MAX_EPOCH" in identity["settings"]:
        return epoch_count(identity["settings"]["OPTIM.MAX_EPOCH"], Path(folder) / IDENTITY_FILE)
    config = Path(folder) / CONFIG_FILE
    if not config.is_file():
        return None
    import yaml

    try:
        epochs = (yaml.safe_load(config.read_text()) or {}).get("OPTIM", {}).get("MAX_EPOCH")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        ignore_record(config, f"not a readable config ({type(exc).__name__})")
        return None
    return epoch_count(epochs, config) if epochs is not None else None


# --------------------------------------------------------------------------------------------
# --load-epoch last
# --------------------------------------------------------------------------------------------
def epoch_argument(text: str) -> Union[int, str]:
    """``--load-epoch``: an epoch number, or ``last``."""
    if text == LAST_EPOCH:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid epoch {text!r}: give a number or '{LAST_EPOCH}'") from None


def resolve_load_epoch(load_epoch: Union[int, str, None], model_dir: str) -> Optional[int]:
    """The checkpoint epoch ``--load-epoch`` asks for: ``last`` becomes ``last_epoch(model_dir)``;
    a number stays; None stays (the trainer then loads ``model-best.pth.tar``)."""
    return last_epoch(model_dir) if load_epoch == LAST_EPOCH else load_epoch


def last_epoch(model_dir: str) -> int:
    """The final epoch of the training run in ``model_dir``.

    Its recorded ``OPTIM.MAX_EPOCH`` (run.json, else config.yaml: see ``recorded_max_epoch``) when the run
    has one, so that an unfinished run fails to load instead of silently giving an earlier epoch;
    else (upstream folders, runs from before run.json) the highest epoch of which every model
    folder holds a complete checkpoint that is not a resume-only one.
    """
    if not model_dir:
        raise FileNotFoundError(f"--load-epoch {LAST_EPOCH} needs --model-dir (the training run to load).")
    recorded = recorded_max_epoch(model_dir)
    if recorded is not None:
        return recorded
    saved = complete_epochs(model_dir)
    if not saved:
        files = sorted(os.path.relpath(os.path.join(folder, name), model_dir)
                       for folder, _, names in os.walk(model_dir) for name in names) if os.path.isdir(model_dir) else []
        raise FileNotFoundError(
            f"--load-epoch {LAST_EPOCH}: {model_dir!r} holds no training run to take the last epoch of: no run.json "
            f"or config.yaml with OPTIM.MAX_EPOCH and no complete model.pth.tar-N (files there: "
            f"{', '.join(files) or 'none'}). Check --model-dir, or give the epoch as a number.")
    return max(saved)


def complete_epochs(model_dir: str) -> List[int]:
    """Epochs N of which every model folder of ``model_dir`` (``<model_dir>/<name>/model.pth.tar-N``)
    holds a checkpoint that loads and is not resume-only (those exist only to resume a killed run)."""
    from dassl.engine.trainer import RESUME_ONLY_KEY
    from dassl.utils.torchtools import peek_checkpoint

    def final(path: str) -> bool:
        entries = peek_checkpoint(path)  # None: unreadable
        return isinstance(entries, dict) and not entries.get(RESUME_ONLY_KEY, False)

    folders = [entry.path for entry in os.scandir(model_dir) if entry.is_dir()] if os.path.isdir(model_dir) else []
    per_model = [epoch_checkpoints(folder) for folder in folders]
    usable = [{epoch for epoch, path in found.items() if final(path)} for found in per_model if found]
    return sorted(set.intersection(*usable)) if usable else []


def epoch_checkpoints(folder: str) -> Dict[int, str]:
    """``{N: path}`` of the ``model.pth.tar-N`` files in ``folder``."""
    matches = (EPOCH_CHECKPOINT.fullmatch(name) for name in os.listdir(folder))
    return {int(m.group(1)): os.path.join(folder, m.group(0)) for m in matches if m}
