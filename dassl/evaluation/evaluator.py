"""Evaluators accumulate predictions batch by batch and print/return metrics at the end."""

from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch

from ..utils.distributed import all_gather_tensor, is_distributed, is_main_process
from .build import EVALUATOR_REGISTRY


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)``, ``evaluate() -> dict``."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reset(self):
        raise NotImplementedError

    def process(self, mo, gt):
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error rate, macro-F1 (and optionally per-class accuracy / confusion matrix).

    In a distributed run every rank processes its shard of the test set; ``evaluate()`` gathers
    labels and predictions from all ranks first, so the totals cover the whole split.
    """

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs):
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class_res = None
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname (label -> class name) for the Classification evaluator")
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: List[int] = []
        self._y_pred: List[int] = []
        self._per_class_res = defaultdict(list) if self.cfg.TEST.PER_CLASS_RESULT else None

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: ``[B, C]`` scores; ``gt``: ``[B]`` labels."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).int()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.data.cpu().numpy().tolist())
        self._y_pred.extend(pred.data.cpu().numpy().tolist())

    def _gather_from_all_ranks(self) -> None:
        """Replace the local label lists by the concatenation over ranks (no-op single-process)."""
        if not is_distributed():
            return
        y_true = all_gather_tensor(torch.tensor(self._y_true, dtype=torch.long))
        y_pred = all_gather_tensor(torch.tensor(self._y_pred, dtype=torch.long))
        self._y_true, self._y_pred = y_true.tolist(), y_pred.tolist()
        self._total = len(self._y_true)
        self._correct = int((y_true == y_pred).sum().item())

    def evaluate(self) -> "OrderedDict[str, float]":
        from sklearn.metrics import f1_score

        self._gather_from_all_ranks()
        results = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * f1_score(self._y_true, self._y_pred, average="macro", labels=np.unique(self._y_true))
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1

        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class_res is not None:
            results["perclass_accuracy"] = self._print_per_class_result()
        if self.cfg.TEST.COMPUTE_CMAT:
            self._save_confusion_matrix()
        return results

    def _print_per_class_result(self) -> float:
        hits = defaultdict(list)
        for label, pred in zip(self._y_true, self._y_pred):
            hits[label].append(int(label == pred))
        self._per_class_res = hits
        print("=> per-class result")
        accs = []
        for label in sorted(hits):
            res = hits[label]
            correct, total = sum(res), len(res)
            acc = 100.0 * correct / total
            accs.append(acc)
            classname = self._lab2cname[label]
            print(f"* class: {label} ({classname})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {acc:.1f}%")
        mean_acc = np.mean(accs)
        print(f"* average: {mean_acc:.1f}%")
        return mean_acc

    def _save_confusion_matrix(self) -> None:
        from sklearn.metrics import confusion_matrix

        cmat = confusion_matrix(self._y_true, self._y_pred, normalize="true")
        save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
        if is_main_process():
            from ..utils.torchtools import atomic_write

            atomic_write(save_path, lambda f: torch.save(cmat, f))
        print(f"Confusion matrix is saved to {save_path}")
