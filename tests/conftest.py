"""Shared fixtures: the tiny kit (tiny CLIP + miniature datasets on disk) and a train.py runner."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the repository root: train.py, trainers/, datasets/, tools/
    sys.path.insert(0, str(REPO))

from tools.kit.build import Kit, build_kit  # noqa: E402

ACCURACY = re.compile(r"^\* accuracy: ([\d.]+)%", re.M)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    from tools.kit.make_tiny_clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt", image_resolution=32)


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> Kit:
    return build_kit(tmp_path_factory.mktemp("kit"))


def run_train(*args: str, check: bool = True, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real ``train.py`` in a subprocess; on failure show its output."""
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def accuracies(text: str) -> List[float]:
    """Every ``* accuracy: X%`` result line of a log, in order."""
    return [float(v) for v in ACCURACY.findall(text)]


def run_script(script: str, *args: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(REPO / "scripts" / script), *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable, **env}, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def build_cfg(kit: Kit, output_dir: Path, trainer: str, config: str, *opts: str, dataset: str = "oxford_pets"):
    """The frozen config ``train.py`` would build for a paper config pointed at the kit; ``config``
    names a file of ``configs/trainers/<trainer>/`` or is the path of a ``.yaml`` file."""
    from runs import cli

    config_file = Path(config) if config.endswith(".yaml") else REPO / "configs" / "trainers" / trainer / f"{config}.yaml"
    args = cli.build_parser().parse_args([
        "--root", str(kit.data), "--seed", "1", "--trainer", trainer, "--output-dir", str(output_dir),
        "--dataset-config-file", str(REPO / "configs" / "datasets" / f"{dataset}.yaml"),
        "--config-file", str(config_file),
        *kit.opts(), "DATASET.NUM_SHOTS", "16", *opts,
    ])
    return cli.setup_cfg(args)


def make_trainer(kit: Kit, output_dir: Path, trainer: str, config: str, *opts: str, dataset: str = "oxford_pets"):
    """A real trainer object built from the real configs on the kit (seeded like train.py)."""
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    cfg = build_cfg(kit, output_dir, trainer, config, *opts, dataset=dataset)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)
