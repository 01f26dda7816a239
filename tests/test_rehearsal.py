"""The ImageNet-size rehearsal (tools/rehearsal.py): its machinery on the tiny CLIP and a few
classes (normal suite), and the full size, 1000 classes and a real-size ViT-B/16, behind the
``rehearsal`` marker (``pytest -m rehearsal``; ``make rehearsal`` runs the same with a report)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools import rehearsal
from tools.synthetic import read_classnames


def test_phase_clock_counts_a_nested_call_once():
    clock = rehearsal.PhaseClock()

    def outer(self, batch):
        return inner(self, batch) + 1

    inner = clock.timed("eval_batch", lambda self, batch: len(batch), count_images=True)
    outer = clock.timed("eval_batch", outer, count_images=True)
    assert outer(None, [1, 2, 3]) == 4
    assert len(clock.seconds["eval_batch"]) == 1 and clock.images["eval_batch"] == [3]


def test_summary_keeps_the_first_step_and_eval_batch_apart():
    record = {"seconds": {"train_step": [5.0, 1.0, 2.0], "eval_batch": [9.0, 0.5, 0.5]},
              "images": {"eval_batch": [2, 2, 1]}, "peak_rss_mib": 100.0}
    summary = rehearsal.summarize(record)
    assert summary["first_step_s"] == 5.0 and summary["step_s"] == 1.5 and summary["steps"] == 3
    assert summary["first_eval_batch_s"] == 9.0 and summary["eval_images_per_s"] == 3.0
    assert summary["eval_images"] == 5


@pytest.mark.slow
def test_rehearsal_machinery_on_the_tiny_clip(tmp_path):
    """CoOp's real base-to-new script on the tree in ImageNet's layout (6 of its 1000 classes with
    images, so 3 base classes and 3 one-shot images): TRAIN.MAX_BATCHES stops the epoch after 2 of
    its 3 batches, TEST.MAX_BATCHES the test after 2 of 3 images; the probe times every phase."""
    tree = rehearsal.Tree(tmp_path, arch="tiny")
    report = rehearsal.rehearse(tree, methods=("coop",), batch_size=1, steps=2, eval_batches=2, classes=6,
                                scripts=rehearsal.STEPS[:1], log=lambda _: None)

    lines = (tree.imagenet / "classnames.txt").read_text().splitlines()
    assert len(lines) == 1000 and lines[0] == "n01440764 tench"
    assert [line.split(" ", 1)[1] for line in lines] == read_classnames(1000)
    assert len(list((tree.imagenet / "images" / "train").iterdir())) == 6
    assert report["build"]["write_dataset"] > 0 and report["build"]["write_clip"] > 0

    (run,) = report["runs"]
    assert (run["method"], run["step"]) == ("coop", "base2new_train")
    (summary,) = run["summary"]
    assert run["runs"][0]["exit"] == 0
    assert summary["steps"] == 2 and summary["eval_images"] == 2
    assert summary["model_build_s"] > summary["clip_load_s"] > 0 and summary["dataset_s"] > 0
    assert summary["peak_rss_mib"] > 0 and run["predicted_step_gib"] > 0
    assert json.loads((tree.root / "rehearsal.json").read_text())["runs"][0]["summary"] == run["summary"]
    assert len(run["load_average"]) == 2
    assert "| coop | base2new_train | 3 | 1 |" in rehearsal.markdown_table(report)
    assert rehearsal.build_tree(tree, classes=6) == {"write_dataset": 0.0, "write_clip": 0.0}  # written once


@pytest.mark.rehearsal
def test_imagenet_size_rehearsal(tmp_path):
    """Every rehearsed method's base-to-new and cross-dataset training script at 1000 classes on a
    real-size ViT-B/16, bounded, at batch 1 (GOPro 2) (REHEARSAL_ROOT keeps the tree between runs)."""
    root = Path(os.environ.get("REHEARSAL_ROOT") or tmp_path)
    report = rehearsal.rehearse(rehearsal.Tree(root), batch_size=1, steps=2, eval_batches=2)
    assert len(report["runs"]) == 2 * len(rehearsal.METHODS)
    for run in report["runs"]:
        (summary,) = run["summary"]
        assert summary["steps"] == 2 and summary["eval_images"] == 2 * run["batch_size"], run["command"]
