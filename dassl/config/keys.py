"""Check config keys before merging them, so that a typo gets one line with the closest valid keys.

yacs stops at the first unknown key with ``KeyError: 'Non-existent config key: A.B'`` and
no hint; :func:`check_keys` names every unknown key, where it came from, and the most similar
dotted names of the tree (``difflib`` over the full names, so ``OPTIM.MAX_EPOCHS`` finds
``OPTIM.MAX_EPOCH`` and ``TRAINER.FIXMATCH.CONF_THR`` finds ``TRAINER.FIXMATCH.CONF_THRE``).
"""

from __future__ import annotations

import difflib
from typing import Iterable, Iterator, List

from yacs.config import CfgNode

__all__ = ["UnknownConfigKeyError", "check_keys", "leaf_keys"]


class UnknownConfigKeyError(ValueError):
    """A key that is not in the config tree (the message names it and the closest valid keys)."""


def leaf_keys(node: CfgNode, prefix: str = "") -> Iterator[str]:
    """Dotted names of every value (not node) under ``node``."""
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def is_known(cfg: CfgNode, dotted: str) -> bool:
    """Would yacs accept ``dotted``? Nodes that allow new keys accept anything below them, and a
    value reached early (a dict for a non-node key) is yacs' type error to report, not ours."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, CfgNode):
            return True
        if part not in node:
            return node.is_new_allowed() or cfg.key_is_deprecated(dotted)
        node = node[part]
    return True


def closest(dotted: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.75,
            spread: float = 0.05) -> List[str]:
    """The ``n`` most similar names, keeping only those about as close as the best one: full
    dotted names share long prefixes, so a plain cutoff would add every key of the same node."""
    scores = {name: difflib.SequenceMatcher(None, dotted, name).ratio() for name in candidates}
    floor = max(cutoff, max(scores.values(), default=0.0) - spread)
    return sorted((name for name, score in scores.items() if score >= floor), key=scores.get, reverse=True)[:n]


def suggestion(cfg: CfgNode, dotted: str) -> str:
    """``Did you mean: A, B or C?``, or the keys of the deepest existing node when none is close."""
    close = closest(dotted, leaf_keys(cfg))
    if close:
        names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
        return f"Did you mean: {names}?"
    node, path = cfg, []
    for part in dotted.split(".")[:-1]:
        if not isinstance(node.get(part), CfgNode):
            break
        node, path = node[part], path + [part]
    where = ".".join(path) or "the top level"
    return f"Keys at {where}: {', '.join(sorted(node.keys()))}."


def check_keys(cfg: CfgNode, keys: Iterable[str], source: str) -> None:
    """Raise :class:`UnknownConfigKeyError` naming every key of ``keys`` that ``cfg`` lacks.

    ``source`` says where the keys come from, e.g. ``"in configs/x.yaml"`` or ``"from the command line"``.
    """
    unknown: List[str] = [key for key in keys if not is_known(cfg, key)]
    if unknown:
        raise UnknownConfigKeyError(" ".join(
            f"Unknown config key '{key}' ({source}). {suggestion(cfg, key)}" for key in unknown))
