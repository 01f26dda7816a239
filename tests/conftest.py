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
OPT_IN_MARKER = "rehearsal"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``rehearsal`` (the ImageNet-size rehearsal: a real-size ViT-B/16 on the CPU)
    run only when a marker expression names them (``pytest -m rehearsal``): ``make test``,
    ``make test-fast`` and any other ``-m`` leave them out."""
    if OPT_IN_MARKER in (config.getoption("markexpr") or ""):
        return
    left_out = [item for item in items if item.get_closest_marker(OPT_IN_MARKER)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker(OPT_IN_MARKER)]


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


# The knobs the scripts read (runs/): a developer's shell that exports one must not change what a test runs.
SCRIPT_KNOBS = ("CFG", "SHOTS", "SHOTS_LIST", "DATASETS", "SEEDS", "METHODS", "EPOCHS", "EXTRA_OPTS", "XD_SOURCE",
                "BACKBONE", "ROWS", "NCTX", "RERUN_STALE", "TEACHER_BACKBONE", "TEACHER_OPTS")


def script_env(**env: str) -> dict:
    """This process's environment without the scripts' knobs, with this Python, then ``env``."""
    kept = {k: v for k, v in os.environ.items() if k not in SCRIPT_KNOBS}
    return {**kept, "PYTHON": sys.executable, **env}


def run_script(script: str, *args: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(REPO / "scripts" / script), *args], cwd=REPO, capture_output=True,
                          text=True, env=script_env(**env), timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def build_cfg(kit: Kit, output_dir: Path, trainer: str, config: str, *opts: str, dataset: str = "oxford_pets",
              config_folder: str = ""):
    """The frozen config ``train.py`` would build for a paper config pointed at the kit; ``config``
    names a file of ``configs/trainers/<config_folder or trainer>/`` or is the path of a ``.yaml`` file."""
    from runs import cli

    config_file = Path(config) if config.endswith(".yaml") else \
        REPO / "configs" / "trainers" / (config_folder or trainer) / f"{config}.yaml"
    args = cli.build_parser().parse_args([
        "--root", str(kit.data), "--seed", "1", "--trainer", trainer, "--output-dir", str(output_dir),
        "--dataset-config-file", str(REPO / "configs" / "datasets" / f"{dataset}.yaml"),
        "--config-file", str(config_file),
        *kit.opts(), "DATASET.NUM_SHOTS", "16", *opts,
    ])
    return cli.setup_cfg(args)


def make_trainer(kit: Kit, output_dir: Path, trainer: str, config: str, *opts: str, dataset: str = "oxford_pets",
                 config_folder: str = ""):
    """A real trainer object built from the real configs on the kit (seeded like train.py)."""
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    cfg = build_cfg(kit, output_dir, trainer, config, *opts, dataset=dataset, config_folder=config_folder)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def train_teacher(kit: Kit, folder: Path) -> Path:
    """A distillation teacher in ``folder`` (PromptKD's: PromptSRC at the kit's ViT-L/14, the wider
    tiny CLIP), one epoch on the base classes, its features exported by the command line."""
    from runs.methods import METHODS
    from tools.experiments import teacher_features

    teacher = METHODS["promptkd"].teacher
    trainer = METHODS[teacher.method].trainer
    run_train("--root", str(kit.data), "--seed", "1", "--trainer", trainer,
              "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
              "--config-file", str(REPO / "configs/trainers" / trainer / f"{teacher.cfg}.yaml"),
              "--output-dir", str(folder), *kit.opts(), "DATASET.NUM_SHOTS", "16", "OPTIM.MAX_EPOCH", "1",
              "DATASET.SUBSAMPLE_CLASSES", "base")
    assert teacher_features.main([str(folder)]) == 0
    return folder


@pytest.fixture(scope="session")
def teacher_run(kit, tmp_path_factory) -> Path:
    """The session's teacher run, for tests that build every registry method (never modify it)."""
    return train_teacher(kit, tmp_path_factory.mktemp("teacher") / "run")


def make_method_trainer(kit: Kit, output_dir: Path, method, *opts: str, request=None):
    """A trainer of registry ``method`` as its base-to-new training builds it (its config, the base
    classes) on the kit, or its 16-shot training where it has no base-to-new protocol; a distilled
    method gets the session's teacher run (``request``: the test's, to reach the ``teacher_run`` fixture)."""
    opts = ("DATASET.SUBSAMPLE_CLASSES", "base" if method.b2n_cfg else "all", *opts)
    if method.teacher is not None:
        opts = (method.teacher.option, str(request.getfixturevalue("teacher_run")), *opts)
    return make_trainer(kit, output_dir, method.trainer, method.training_cfg(), *opts, config_folder=method.config_folder)


def readme_guide(heading: str) -> str:
    """The README's text under ``heading`` (e.g. "### Adding a method") up to the next "### " heading."""
    return (REPO / "README.md").read_text().split(heading, 1)[1].split("\n### ", 1)[0]


def copy_of_repository(repo: Path) -> Path:
    """A copy of the code (no tests, no outputs) to edit as a README guide says."""
    import shutil

    for name in ("dassl", "datasets", "trainers", "configs", "tools", "runs", "scripts"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "train.py", repo / "train.py")
    return repo


def run_base2new_steps(repo: Path, key: str, env: dict) -> None:
    """``bash scripts/run.sh KEY base2new_train|base2new_test oxford_pets 1`` in ``repo``."""
    for step in ("base2new_train", "base2new_test"):
        proc = subprocess.run(["bash", "scripts/run.sh", key, step, "oxford_pets", "1"], cwd=repo,
                              env={**os.environ, "PYTHON": sys.executable, **env}, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def follow_readme_guide(repo: Path, guide: str, files: List[str], entry_pattern: str, marker: str) -> None:
    """Do what a README guide shows in ``repo``: write each of ``files`` (the guide's fenced block that
    starts with ``# <path>``) and insert the registry entry (``entry_pattern``'s group 1) before
    ``marker`` in the registry."""
    for path in files:
        fence = "python" if path.endswith(".py") else "yaml"
        body = re.search(rf"```{fence}\n# {re.escape(path)}\n(.*?)```", guide, re.S).group(1)
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    entry = re.search(entry_pattern, guide, re.S).group(1)
    registry = repo / "runs" / "methods.py"
    source = registry.read_text()
    assert source.count(marker) == 1, f"the registry has no single {marker!r}"
    registry.write_text(source.replace(marker, "\n" + entry.rstrip("\n") + marker))
