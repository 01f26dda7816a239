"""Checkpoint I/O and small model helpers.

Project rules on top of the upstream API:

* checkpoints and the ``checkpoint`` pointer file are written atomically (temp file in the same
  directory, fsync, ``os.replace``), so a crash or a full disk never leaves a truncated file; they
  get plain-file permissions under the user's umask (0644 with umask 022), like ``open()``;
* a resume loads the newest complete checkpoint: the ``checkpoint`` pointer only breaks ties (a
  pointer that is garbage, or names a missing file, is ignored with a logged warning), and a
  checkpoint that cannot be read, whatever the error, is skipped with a logged warning for the
  previous one (or training starts from scratch when none is readable). The warnings are printed,
  so they reach the console and ``log.txt`` whatever ``PYTHONWARNINGS`` says;
* every checkpoint records a digest of its payload (``payload_digest``, see
  :func:`payload_digest`), checked on every load: a file damaged after it was written (a flipped
  or zeroed block) is an unreadable checkpoint instead of silently wrong weights. Files without
  the key (upstream Dassl's, older ones) load unchecked, and upstream Dassl ignores the key;
* every load uses ``torch.load(weights_only=True)``. Upstream Dassl checkpoints whose warmup
  scheduler state holds a pickled torch scheduler (and, through it, its optimizer) are loaded by a
  second weights-only attempt that allowlists exactly those classes (see ``_LEGACY_SAFE_GLOBALS``);
* checkpoints carry the RNG states (``rng_state``) and resuming restores them.
"""

from __future__ import annotations

import hashlib
import os
import os.path as osp
import pickle
import random
import re
import secrets
import shutil
import warnings
from collections import OrderedDict
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .distributed import is_main_process
from .tools import log_warning, mkdir_if_missing

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "open_all_layers",
    "open_specified_layers",
    "count_num_param",
    "load_pretrained_weights",
    "init_network_weights",
    "get_rng_state",
    "set_rng_state",
    "find_latest_checkpoint",
    "resume_candidates",
    "load_first_readable",
    "load_newest_readable_checkpoint",
    "restore_training_state",
    "CheckpointWriteError",
    "DamagedCheckpointError",
    "payload_digest",
]

POINTER_FILE = "checkpoint"
BEST_MODEL_NAME = "model-best.pth.tar"
_EPOCH_CKPT = re.compile(r"^model\.pth\.tar-(\d+)$")


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


class CheckpointWriteError(OSError):
    """A checkpoint (or its pointer file) could not be written; no partial file was left."""


def _fsync_dir(dirname: str) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


TEMP_SUFFIX = ".tmp"


def _create_temp_file(path: str) -> Tuple[int, str]:
    """A new hidden ``.<name>.<random>.tmp`` next to ``path``, opened for writing.

    Unlike ``tempfile.mkstemp`` (always 0600) the mode is 0666 filtered by the umask, so the
    renamed checkpoint gets the permissions any file the user writes gets.
    """
    dirname, name = osp.split(osp.abspath(path))
    while True:
        tmp_path = osp.join(dirname, f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp_path
        except FileExistsError:
            continue


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` via ``write(fileobj)`` so that readers see either the old or the new file.

    The data goes to a hidden temp file in the same directory (same filesystem, so ``os.replace``
    is atomic), is flushed and fsynced, then renamed over ``path``. On any failure the temp file
    is removed and :class:`CheckpointWriteError` names ``path``.
    """
    dirname = osp.dirname(osp.abspath(path))
    tmp_path = None
    try:
        fd, tmp_path = _create_temp_file(path)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        tmp_path = None
        _fsync_dir(dirname)
    except Exception as e:
        if tmp_path is not None and osp.exists(tmp_path):
            os.remove(tmp_path)
        raise CheckpointWriteError(
            f'Could not write "{path}" ({type(e).__name__}: {e}). Check free disk space and that the '
            "directory is writable; no partial file was left behind."
        ) from e


def remove_temp_files(directory: str) -> List[str]:
    """Delete the temp files that writes killed midway left in ``directory``; return their paths.

    Only safe while no other process writes checkpoints there (the caller holds the folder).
    """
    if not osp.isdir(directory):
        return []
    leftovers = [osp.join(directory, name) for name in sorted(os.listdir(directory))
                 if name.startswith(".") and name.endswith(TEMP_SUFFIX)]
    for path in leftovers:
        os.remove(path)
    return leftovers


def _torch_save_atomic(obj: Any, path: str) -> None:
    atomic_write(path, partial(_torch_save_to, obj))


def _torch_save_to(obj: Any, f) -> None:
    # Looked up at call time so tests can monkeypatch ``torch.save``.
    torch.save(obj, f)


def _copy_atomic(src: str, dst: str) -> None:
    def write(f):
        with open(src, "rb") as fsrc:
            shutil.copyfileobj(fsrc, f)

    atomic_write(dst, write)


def _write_pointer(save_dir: str, fname: str) -> None:
    atomic_write(osp.join(save_dir, POINTER_FILE), lambda f: f.write(f"{fname}\n"), mode="w")


# --------------------------------------------------------------------------------------------
# RNG state (kept as plain types / tensors so it loads with weights_only=True)
# --------------------------------------------------------------------------------------------


def get_rng_state() -> Dict[str, Any]:
    """Snapshot of the Python, NumPy, torch CPU and (if present) CUDA generators."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _as_python_random_state(value: Any) -> tuple:
    """``random.setstate`` needs tuples; be lenient about lists from other serialisers."""
    version, internal, gauss = value
    return version, tuple(int(v) for v in internal), gauss


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore a :func:`get_rng_state` snapshot (missing entries are skipped)."""
    if "python" in state:
        random.setstate(_as_python_random_state(state["python"]))
    if "numpy" in state:
        s = state["numpy"]
        key = s["key"].numpy() if isinstance(s["key"], torch.Tensor) else np.asarray(s["key"])
        np.random.set_state((s["bit_generator"], key.astype(np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
        else:
            log_warning(f"Checkpoint has CUDA RNG states for {len(states)} devices but {torch.cuda.device_count()} "
                        "are visible; CUDA RNG states not restored")


# --------------------------------------------------------------------------------------------
# Payload digest
# --------------------------------------------------------------------------------------------

# The checkpoint entry holding the digest (a string, so upstream Dassl and weights-only loads read
# the file as before). Kept inside the file rather than in a sidecar: a copy or a move (what
# ``model-best.pth.tar`` is, what users do with run folders) carries it along.
DIGEST_KEY = "payload_digest"
# SHA-256: ~0.18 s for a 300 MB state dict on one core where the CPU has SHA instructions, under a
# tenth of the save itself (bench/checkpoint_digest.py, bench/RESULTS.md). The record names the
# algorithm, so files stay verifiable if it ever changes.
DIGEST_ALGORITHM = "sha256"


class DamagedCheckpointError(RuntimeError):
    """A checkpoint's contents differ from the digest recorded when it was written."""


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor's elements (any dtype, bfloat16 included), without a copy on CPU."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _feed_digest(hasher: Any, value: Any) -> None:
    """Hash ``value`` in a canonical walk: the structure, every key, every leaf (tensors by dtype,
    shape and bytes; other leaves by ``repr``, exact for ints, floats and strings)."""
    if isinstance(value, torch.Tensor):
        hasher.update(f"tensor {value.dtype} {tuple(value.shape)};".encode())
        hasher.update(_tensor_bytes(value))
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)};".encode())
        for key, item in value.items():
            _feed_digest(hasher, key)
            _feed_digest(hasher, item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed_digest(hasher, item)
    else:
        hasher.update(f"{type(value).__name__} {value!r};".encode())


def payload_digest(state: Dict[str, Any], algorithm: str = DIGEST_ALGORITHM) -> str:
    """``"<algorithm>:<hex>"`` over every entry of a checkpoint dict except the digest itself."""
    hasher = hashlib.new(algorithm)
    _feed_digest(hasher, {key: value for key, value in state.items() if key != DIGEST_KEY})
    return f"{algorithm}:{hasher.hexdigest()}"


def verify_payload_digest(checkpoint: Any, fpath: str) -> None:
    """Raise :class:`DamagedCheckpointError` if ``checkpoint`` records a digest its contents do not
    match. Checkpoints without one (upstream Dassl's, plain state dicts) pass unchecked."""
    if not isinstance(checkpoint, dict) or DIGEST_KEY not in checkpoint:
        return
    recorded = checkpoint[DIGEST_KEY]
    algorithm = recorded.split(":", 1)[0] if isinstance(recorded, str) else ""
    if algorithm not in hashlib.algorithms_available:
        raise DamagedCheckpointError(f'Checkpoint "{fpath}" has an unreadable {DIGEST_KEY} entry ({recorded!r})')
    if payload_digest(checkpoint, algorithm) != recorded:
        raise DamagedCheckpointError(
            f'Checkpoint "{fpath}" is damaged: its contents no longer match the digest recorded when it was '
            "written (a changed or zeroed block: disk, copy or memory error). Use an older checkpoint or "
            "train again."
        )


# --------------------------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------------------------


def _strip_module_prefix(state_dict: Dict[str, Any]) -> "OrderedDict[str, Any]":
    """Remove a leading ``module.`` (added by DataParallel / DDP) from every key."""
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def save_checkpoint(
    state: Dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> Optional[str]:
    """Save ``state`` to ``save_dir/<model_name or model.pth.tar-{epoch}>`` and update the pointer.

    Both the checkpoint and ``save_dir/checkpoint`` (basename + newline) are written atomically;
    the checkpoint gets a ``payload_digest`` entry (the caller's ``state`` is not changed by it).
    With ``is_best`` the file is also copied to ``model-best.pth.tar``. Only rank 0 writes when
    distributed (other ranks return ``None``). Returns the path written.
    """
    if not is_main_process():
        return None
    mkdir_if_missing(save_dir)

    if remove_module_from_keys and "state_dict" in state:
        state["state_dict"] = _strip_module_prefix(state["state_dict"])
    state = {**state, DIGEST_KEY: payload_digest(state)}

    fname = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, fname)
    _torch_save_atomic(state, fpath)
    print(f"Checkpoint saved to {fpath}")
    _write_pointer(save_dir, osp.basename(fpath))

    if is_best:
        best_fpath = osp.join(osp.dirname(fpath), BEST_MODEL_NAME)
        _copy_atomic(fpath, best_fpath)
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


def _as_plain_dict(default_factory: Any = None, *args: Any) -> dict:
    """Stand-in for ``collections.defaultdict`` while unpickling legacy checkpoints.

    A pickled optimizer keeps its state in ``defaultdict(dict)``; the weights-only unpickler can
    only fill plain dicts, and a restored optimizer only reads (never defaults) that state, so a
    plain dict is an exact substitute. ``default_factory`` (the builtin ``dict``) is ignored, so
    no callable from the file is ever stored or invoked.
    """
    return dict(*args)


def _legacy_safe_globals() -> List[Any]:
    """Classes an upstream Dassl checkpoint may pickle, and nothing else.

    Upstream's warmup-scheduler ``state_dict()`` stores its successor scheduler object (one of
    the three torch schedulers ``build_lr_scheduler`` creates), whose ``optimizer`` attribute is
    one of the optimizers ``build_optimizer`` creates. All of them are plain data holders whose
    ``__setstate__`` only assigns attributes.
    """
    from torch.optim import lr_scheduler as lrs

    from ..optim.lr_scheduler import ConstantWarmupScheduler, LinearWarmupScheduler

    return [
        lrs.StepLR,
        lrs.MultiStepLR,
        lrs.CosineAnnealingLR,
        ConstantWarmupScheduler,
        LinearWarmupScheduler,
        torch.optim.SGD,
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.RMSprop,
        # upstream's own RAdam class, read as torch's: only its pickled attributes are restored
        (torch.optim.RAdam, "dassl.optim.radam.RAdam"),
        dict,  # only referenced as defaultdict's factory, see _as_plain_dict
        (_as_plain_dict, "collections.defaultdict"),
    ]


def _weights_only_load(fpath: str, map_location: Any, **kwargs: Any) -> Any:
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError:
        # Possibly an upstream checkpoint with a pickled scheduler: retry with its classes allowed.
        with torch.serialization.safe_globals(_legacy_safe_globals()):
            return torch.load(fpath, map_location=map_location, weights_only=True, **kwargs)


def _refused_callable(error: Exception) -> str:
    """The callable torch's weights-only unpickler refused to call, as a clause (torch's message
    names it as ``GLOBAL module.name``), or nothing when the message does not name one."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return f" (the Python callable {found.group(1)}, which unpickling would call)" if found else ""


def load_checkpoint(fpath: str) -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)`` onto GPU if available else CPU.

    Raises ``ValueError`` for ``None``, ``FileNotFoundError`` for a missing file,
    ``pickle.UnpicklingError`` explaining the situation when the file contains objects outside
    the weights-only allowlist (it is never unpickled in full), and :class:`DamagedCheckpointError`
    when its contents do not match its recorded digest.
    """
    if fpath is None:
        raise ValueError("File path is None")
    fpath = osp.abspath(osp.expanduser(fpath))
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        try:
            checkpoint = _weights_only_load(fpath, map_location)
        except UnicodeDecodeError:
            # Checkpoints pickled by Python 2 store byte strings; latin-1 maps them losslessly.
            checkpoint = _weights_only_load(fpath, map_location, encoding="latin1")
        verify_payload_digest(checkpoint, fpath)
        return checkpoint
    except pickle.UnpicklingError as e:
        print(f'Unable to load checkpoint from "{fpath}"')
        # Not torch's text, nor chained: it advises weights_only=False, i.e. running the file's code.
        raise pickle.UnpicklingError(
            f'Checkpoint "{fpath}" holds objects other than tensors and plain data{_refused_callable(e)}, so it '
            "was not loaded and nothing in it ran. Use a checkpoint written by this code or by upstream Dassl, "
            "or re-save trusted weights as plain tensors: torch.save({'state_dict': model.state_dict()}, path)."
        ) from None
    except Exception:
        print(f'Unable to load checkpoint from "{fpath}"')
        raise


def _read_pointer(fdir: str) -> Optional[str]:
    """The checkpoint file the ``checkpoint`` pointer of ``fdir`` names, or ``None``.

    ``None`` when there is no pointer; a pointer that cannot be read (garbage bytes, a
    permission error) or that names no file of ``fdir`` is ignored with a logged warning.
    """
    pointer = osp.join(fdir, POINTER_FILE)
    if not osp.isfile(pointer):
        return None
    try:
        with open(pointer, "r", encoding="utf-8") as f:
            fname = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        log_warning(f'Ignoring the checkpoint pointer "{pointer}", which cannot be read ({_one_line(e)}); '
                    "using the newest checkpoint file instead")
        return None
    if fname and osp.basename(fname) == fname and osp.isfile(osp.join(fdir, fname)):
        return osp.join(fdir, fname)
    log_warning(f'Ignoring the checkpoint pointer "{pointer}": it names {fname!r}, which is not a file of that '
                "folder; using the newest checkpoint file instead")
    return None


def epoch_files(fdir: str) -> Dict[int, str]:
    """``{N: path}`` of the ``model.pth.tar-N`` files of ``fdir`` (empty if it does not exist)."""
    if not osp.isdir(fdir):
        return {}
    matches = (_EPOCH_CKPT.match(name) for name in os.listdir(fdir))
    return {int(m.group(1)): osp.join(fdir, m.group(0)) for m in matches if m}


def _stored_epoch(path: str) -> int:
    entries = peek_checkpoint(path)
    epoch = entries.get("epoch") if isinstance(entries, dict) else None
    return epoch if isinstance(epoch, int) else -1


def resume_candidates(fdir: str) -> List[str]:
    """The checkpoint files a resume may load from ``fdir``, newest epoch first.

    Every ``model.pth.tar-N``, and the file the ``checkpoint`` pointer names when it is not one of
    them (upstream's pointer may name ``model-best.pth.tar``; placed by its stored epoch). The
    pointer only breaks a tie: a kill between writing ``model.pth.tar-13`` and updating the
    pointer (still naming -11) resumes from the complete 13, and an unreadable pointer costs
    nothing (see :func:`_read_pointer`).
    """
    by_epoch = epoch_files(fdir)
    pointed = _read_pointer(fdir)
    ranked = [(epoch, path == pointed, path) for epoch, path in by_epoch.items()]
    if pointed is not None and pointed not in by_epoch.values():
        ranked.append((_stored_epoch(pointed), True, pointed))
    return [path for *_, path in sorted(ranked, reverse=True)]


def find_latest_checkpoint(fdir: str) -> Optional[str]:
    """The checkpoint file a resume tries first in ``fdir`` (see :func:`resume_candidates`), or ``None``."""
    candidates = resume_candidates(fdir)
    return candidates[0] if candidates else None


def older_epoch_checkpoints(path: str) -> List[str]:
    """The ``model.pth.tar-M`` next to epoch checkpoint ``path`` with M below its epoch, newest first."""
    fdir, name = osp.split(path)
    match = _EPOCH_CKPT.match(name)
    if match is None:
        return []
    by_epoch = epoch_files(fdir)
    return [by_epoch[epoch] for epoch in sorted(by_epoch, reverse=True) if epoch < int(match.group(1))]


def peek_checkpoint(path: str) -> Optional[Dict[str, Any]]:
    """A checkpoint's entries without reading its tensors (memory-mapped), or ``None`` if unreadable."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 -- only a hint; unreadable files are dealt with by the resume
        return None


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def load_newest_readable_checkpoint(fdir: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``(path, checkpoint)`` of the newest checkpoint of ``fdir`` that loads, or ``None``.

    Our writes are atomic, so an unreadable file was damaged by something else (a partial copy,
    an upstream-style non-atomic writer, a full disk while copying, a foreign file, a changed
    block that its digest reveals). Whatever the error (torch raises ``RuntimeError``,
    ``EOFError``, ``OSError``, ``UnpicklingError``, ... depending on where the file was cut), it is
    skipped with one logged warning and the previous checkpoint is tried; ``None`` means no
    checkpoint of ``fdir`` could be read (each was warned about).
    """
    candidates = resume_candidates(fdir)
    if not candidates:
        raise FileNotFoundError(f'No checkpoint found in "{fdir}" (no "{POINTER_FILE}" file and no model.pth.tar-N)')
    return load_first_readable(candidates)


def load_first_readable(candidates: List[str]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``(path, checkpoint)`` of the first of ``candidates`` that loads, or ``None`` (each failure logged)."""
    for fpath in candidates:
        print(f'Loading checkpoint from "{fpath}"')
        try:
            return fpath, load_checkpoint(fpath)
        except Exception as e:  # noqa: BLE001 -- any read error means "use an older checkpoint"
            log_warning(f'Skipping unreadable checkpoint "{fpath}" ({_one_line(e)}); trying an older one')
    return None


def restore_training_state(checkpoint: Dict[str, Any], model: nn.Module, optimizer=None, scheduler=None) -> int:
    """Load a checkpoint's model, optimizer, scheduler and RNG states; return its stored epoch."""
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    if checkpoint.get("rng_state") is not None:
        set_rng_state(checkpoint["rng_state"])
        print("Loaded RNG states")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> int:
    """Restore model, optimizer, scheduler and RNG states from ``fdir``; return the stored epoch.

    The stored epoch is 1-based (number of finished epochs), i.e. the next epoch index to run.
    The checkpoint is the newest readable one (see :func:`load_newest_readable_checkpoint`).
    """
    found = load_newest_readable_checkpoint(fdir)
    if found is None:
        raise RuntimeError(
            f'No checkpoint in "{fdir}" can be read (see the warnings above). Delete the damaged files to '
            "train from scratch, or point --resume at another run."
        )
    return restore_training_state(found[1], model, optimizer, scheduler)


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Copy every tensor of ``weight_path`` whose key and shape match ``model``; report the rest."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    state_dict = _strip_module_prefix(state_dict)

    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in state_dict.items():
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    model_dict.update(matched)
    model.load_state_dict(model_dict)

    if not matched:
        warnings.warn(
            f'Cannot load "{weight_path}" (check the key names manually: none matched the model\'s keys '
            "with the same tensor size)"
        )
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")


def count_num_param(model: Optional[nn.Module] = None, params: Optional[Iterable] = None) -> int:
    """Number of elements in ``model``'s parameters (frozen ones included) or in ``params``."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("model and params must not both be None")


def open_all_layers(model: nn.Module) -> None:
    """Train mode and ``requires_grad=True`` for every parameter."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def open_specified_layers(model: nn.Module, open_layers) -> None:
    """Train only the named direct children (``str`` or list); freeze and eval the rest."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    children = dict(model.named_children())
    for layer in open_layers:
        if layer not in children:
            raise ValueError(f'"{layer}" is not a direct child of the model; children: {list(children)}')
    for name, module in children.items():
        is_open = name in open_layers
        module.train(is_open)
        for p in module.parameters():
            p.requires_grad = is_open


def init_network_weights(model: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialise conv/linear weights (``normal``, ``xavier``, ``kaiming``, ``orthogonal``) and norms."""
    initialisers = {
        "normal": lambda w: nn.init.normal_(w, 0.0, gain),
        "xavier": lambda w: nn.init.xavier_normal_(w, gain=gain),
        "kaiming": lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_in"),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=gain),
    }
    if init_type not in initialisers:
        raise NotImplementedError(f"initialization method {init_type} is not implemented; choose from {list(initialisers)}")

    def _init(m: nn.Module) -> None:
        classname = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in classname or "Linear" in classname):
            initialisers[init_type](m.weight.data)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif "BatchNorm" in classname or "InstanceNorm" in classname:
            if getattr(m, "weight", None) is not None:
                nn.init.constant_(m.weight.data, 1.0)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)

    model.apply(_init)
