"""Multi-source domain generalisation, leave one domain out: the ``msdg`` step, the job list of
scripts/reproduce/msdg.sh, and the report's table from real runs on generated PACS images."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import run_script, script_env
from dassl.data.datasets.dg import PACS, VLCS, DomainNet, OfficeHomeDG
from dg_fixtures import write_pacs
from runs.methods import METHODS
from runs.results import MSDG_DOMAINS
from runs.steps import Caller, runs_of
from test_report import make_report, row_of

REPO = Path(__file__).resolve().parent.parent


def test_the_domains_are_those_of_the_dataset_classes():
    for key, cls in (("pacs", PACS), ("vlcs", VLCS), ("office_home_dg", OfficeHomeDG), ("domainnet", DomainNet)):
        assert MSDG_DOMAINS[key] == tuple(cls.domains)
    for key, domains in MSDG_DOMAINS.items():
        for target in domains:
            text = (REPO / "configs" / "datasets" / "dg" / f"{key}_{target}.yaml").read_text()
            assert f'TARGET_DOMAINS: ["{target}"]' in text


def test_the_step_trains_on_the_other_domains_and_tests_the_target(tmp_path):
    caller = Caller.from_environ({"OUTPUT": str(tmp_path), "DATA": "/data"})
    (run,) = runs_of(METHODS["gopro"], "msdg", ["pacs", "cartoon", "2"], caller)
    assert run.folder == tmp_path / "msdg" / "pacs" / "cartoon" / "GOPro" / "vit_b16_xd" / "seed2"
    argv = " ".join(run.argv)
    assert f"--dataset-config-file {REPO}/configs/datasets/dg/pacs_cartoon.yaml" in argv
    assert "--eval-only" not in argv
    with pytest.raises(ValueError, match="pacs has no domain 'clipart'"):
        runs_of(METHODS["gopro"], "msdg", ["pacs", "clipart", "1"], caller)
    with pytest.raises(ValueError, match="dtd is not a multi-domain dataset"):
        runs_of(METHODS["gopro"], "msdg", ["dtd", "photo", "1"], caller)


def test_the_dry_run_lists_every_held_out_domain_per_method_and_seed(tmp_path):
    proc = subprocess.run(["bash", "scripts/reproduce/msdg.sh", "--dry-run"], cwd=REPO, text=True, capture_output=True,
                          env=script_env(OUTPUT=str(tmp_path), METHODS="coop gopro zsclip"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    ids = re.findall(r"^\[todo\] (\S+)", proc.stdout, re.M)
    domains = sum(len(d) for d in MSDG_DOMAINS.values())
    assert len(ids) == len(set(ids)) == 2 * domains * 3
    assert "zsclip: skipped" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_leave_one_domain_out_on_generated_pacs_fills_the_table(kit, tmp_path):
    data, output = tmp_path / "data", tmp_path / "output"
    write_pacs(data, domains=MSDG_DOMAINS["pacs"], corrupt_entry=False)
    env = script_env(DATA=str(data), OUTPUT=str(output), EXTRA_OPTS=" ".join(kit.opts()), EPOCHS="1",
                     METHODS="coop", DATASETS="pacs", SEEDS="1")
    proc = run_script("reproduce/msdg.sh", "--gpus", "", env=env, timeout=1800)
    assert "0 failed" in proc.stdout, proc.stdout
    log = (output / "msdg/pacs/sketch/CoOp/vit_b16_ep50_ctxv1/seed1/log.txt").read_text()
    assert "sketch" in log
    text = make_report(output, "--tables", "msdg", "--methods", "coop", "--seeds", "1", "--datasets", "pacs")
    row = row_of(text, "PACS", "CoOp")
    values = [float(c.split(" ")[0]) for c in row[1:]]
    assert len(values) == 5 and all(0 <= v <= 100 for v in values), row
    assert values[-1] == pytest.approx(sum(values[:4]) / 4, abs=0.01)
