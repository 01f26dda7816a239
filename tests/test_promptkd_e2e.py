"""A PromptKD teacher and student run end to end on the kit from the scripts alone (EPOCHS=1)."""
from __future__ import annotations

import json

import pytest

from conftest import accuracies, run_script

DATASET, SEED = "oxford_pets", "1"
TEACHER = "PromptSRC/vit_l14_c2_ep20_batch8_4+4ctx"
STUDENT = "PromptKD/vit_b16_c2_ep20_batch8_4+4ctx"


@pytest.mark.slow
def test_teacher_and_student_from_the_scripts(kit, tmp_path):
    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EPOCHS": "1", "EXTRA_OPTS": " ".join(kit.opts())}
    b2n = tmp_path / "base2new"
    teacher = b2n / "train_base" / DATASET / "shots_16" / TEACHER / f"seed{SEED}"
    trained = b2n / "train_base" / DATASET / "shots_16" / STUDENT / f"seed{SEED}"
    tested = b2n / "test_new" / DATASET / "shots_16" / STUDENT / f"seed{SEED}"

    out = run_script("promptkd/teacher_train.sh", DATASET, SEED, env=env).stdout
    assert "# classes  3" in out and len(accuracies(out)) == 1            # the teacher: base classes, labelled
    run_script("promptkd/teacher_export.sh", DATASET, SEED, env=env)
    assert (teacher / "teacher_features.pt").is_file()

    assert "are current (skip)" in run_script("promptkd/teacher_export.sh", DATASET, SEED, env=env).stdout
    out = run_script("promptkd/base2new_train.sh", DATASET, SEED, env=env).stdout
    assert f"Results exist at {teacher}" in out and "Exporting teacher" not in out   # the teacher is reused
    assert "loss_kd" in out and len(accuracies(out)) == 1
    identity = json.loads((trained / "run.json").read_text())
    teacher_digest = json.loads((teacher / "run.json").read_text())["digest"]
    assert identity["settings"]["TRAINER.PROMPTKD.TEACHER_RUN digest"] == teacher_digest
    assert identity["references"]["TRAINER.PROMPTKD.TEACHER_RUN"] == {
        "folder": str(teacher), "digest": teacher_digest, "backbone": "ViT-L/14"}

    out = run_script("promptkd/base2new_test.sh", DATASET, SEED, env=env).stdout
    assert "# classes  2" in out and len(accuracies(out)) == 1
    assert (tested / "run.json").is_file()
    again = run_script("promptkd/base2new_train.sh", DATASET, SEED, env=env).stdout
    assert f"Results exist at {trained}" in again
