"""The layering rule of trainers/: a method file imports shared modules only, never another method."""
from __future__ import annotations

import ast
from pathlib import Path

TRAINERS = Path(__file__).resolve().parent.parent / "trainers"


def registers_a_trainer(path: Path) -> bool:
    return "@TRAINER_REGISTRY.register" in path.read_text()


def trainer_modules_imported(path: Path) -> set[str]:
    """Names of trainers/ modules that ``path`` imports (``from .x import``, ``from trainers.x import``,
    ``from . import x``, ``from trainers import x``, ``import trainers.x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module in (None, "trainers") and node.level <= 1):
            names.update(a.name for a in node.names)  # from . import x, from trainers import x
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 1:
                names.add(node.module.split(".")[0])
            elif node.module.startswith("trainers."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("trainers."))
    return names


def test_no_method_file_imports_another_method():
    methods = {p.stem for p in TRAINERS.glob("*.py") if registers_a_trainer(p)}
    assert {"coop", "gopro", "maple", "promptsrc"} <= methods  # the rule below is not vacuous
    offenders = {m: sorted(trainer_modules_imported(TRAINERS / f"{m}.py") & (methods - {m})) for m in sorted(methods)}
    assert not {m: imported for m, imported in offenders.items() if imported}, (
        "method files must import shared modules only (move the shared part to e.g. trainers/components.py)")


def test_nothing_imports_the_old_prompting_module():
    """``trainers/prompting.py`` only re-exports old names for code outside this repository: the
    repository itself imports prompts, models and trainer_base."""
    repo = TRAINERS.parent
    files = [p for folder in ("trainers", "tests", "bench", "tools") for p in (repo / folder).rglob("*.py")]
    files.append(repo / "train.py")
    assert len(files) > 20 and TRAINERS / "coop.py" in files  # the rule below is not vacuous
    importers = sorted(str(p.relative_to(repo)) for p in files
                       if p != TRAINERS / "prompting.py" and "prompting" in trainer_modules_imported(p))
    assert importers == [], "import from trainers/prompts.py, models.py or trainer_base.py instead"
