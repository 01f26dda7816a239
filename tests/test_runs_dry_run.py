"""The ``--dry-run`` job list of every reproduce command is the one the checkout printed before the
run machinery moved into ``runs/`` (tests/data/dry_run/<table>.txt, made at commit e9886ba with the environment below
on an empty OUTPUT): the move and the scripts' move to Python change no job, argument or order."""
from __future__ import annotations

import subprocess

import pytest

from conftest import REPO, script_env

LISTINGS = REPO / "tests" / "data" / "dry_run"
ENVIRONMENT = {
    "METHODS": "zsclip slip coop cocoop maple stylip gopro kgcoop prograd promptsrc",
    "EPOCHS": "2", "BACKBONE": "ViT-B/32", "SEEDS": "1 2",
    "EXTRA_OPTS": "OPTIM.LR 0.01 TRAINER.GOPRO.CTX_INIT 'a photo of a'",
}


@pytest.mark.parametrize("table", ["table1", "xd", "table2", "table3", "fig2", "fig3"])
def test_the_dry_run_job_list_is_unchanged(table, kit, tmp_path):
    env = script_env(**ENVIRONMENT, DATA=str(kit.data), OUTPUT=str(tmp_path / "output"))
    proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce" / f"{table}.sh"), "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (LISTINGS / f"{table}.txt").read_text()
