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


# The public names of upstream Dassl 0.6.3 (its ``__init__.py`` files and its trainer, data and config modules). Trainer
# and dataset files must run on upstream Dassl too, so they may import these and nothing else
# (this engine's extras, e.g. dassl.utils.distributed, would break them there).
UPSTREAM_DASSL = {
    "dassl.config": {"get_cfg_default", "clean_cfg", "cfg_default"},
    "dassl.engine": {"TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX", "TrainerXU",
                     "SimpleNet"},
    "dassl.data": {"DataManager", "DatasetWrapper"},
    "dassl.data.data_manager": {"DataManager", "DatasetWrapper", "build_data_loader"},
    "dassl.data.transforms": {"build_transform", "INTERPOLATION_MODES"},
    "dassl.data.datasets": {"DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase"},
    "dassl.data.datasets.base_dataset": {"Datum", "DatasetBase"},
    "dassl.optim": {"build_optimizer", "build_lr_scheduler"},
    "dassl.metrics": {"compute_accuracy"},
    "dassl.evaluation": {"build_evaluator", "EVALUATOR_REGISTRY", "EvaluatorBase", "Classification"},
    "dassl.utils": {
        "setup_logger", "Logger", "set_random_seed", "collect_env_info", "mkdir_if_missing", "check_isfile",
        "read_json", "write_json", "listdir_nohidden", "read_image", "download_url", "check_availability",
        "get_most_similar_str_to_a_from_b", "tolist_if_not", "AverageMeter", "MetricMeter", "Registry",
        "save_checkpoint", "load_checkpoint", "resume_from_checkpoint", "load_pretrained_weights",
        "count_num_param", "open_all_layers", "open_specified_layers", "init_network_weights",
    },
}


def dassl_imports(path: Path) -> set[tuple[str, str]]:
    """``(module, name)`` for every ``from dassl... import name`` in ``path``; ``(module, "")`` for
    ``import dassl...``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "dassl":
            found.update((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update((a.name, "") for a in node.names if a.name.split(".")[0] == "dassl")
    return found


def test_trainers_and_datasets_import_only_what_upstream_dassl_has():
    files = sorted(TRAINERS.glob("*.py")) + sorted((TRAINERS.parent / "datasets").glob("*.py"))
    imports = {path.relative_to(TRAINERS.parent).as_posix(): dassl_imports(path) for path in files}
    assert ("dassl.engine", "TRAINER_REGISTRY") in imports["trainers/coop.py"]  # the check is not vacuous
    offenders = {
        name: sorted(f"{module}.{item}" if item else module for module, item in found
                     if item not in UPSTREAM_DASSL.get(module, set()))
        for name, found in imports.items()
    }
    assert not {name: bad for name, bad in offenders.items() if bad}, (
        "trainers/ and datasets/ must run on upstream Dassl: import only its public names "
        "(put project helpers in trainers/, e.g. trainers/distributed.py)")


def test_no_plugin_file_imports_a_method_or_another_plugin():
    """A plug-in (``@register_plugin``, trainers/plugins.py) composes with any method at build time, so
    it imports none of them, and no method imports a plug-in."""
    methods = {p.stem for p in TRAINERS.glob("*.py") if registers_a_trainer(p)}
    plugins = {p.stem for p in TRAINERS.glob("*.py") if "@register_plugin" in p.read_text() and p.stem != "plugins"}
    assert "dept" in plugins
    offenders = {f: sorted(trainer_modules_imported(TRAINERS / f"{f}.py") & ((methods | plugins) - {f}))
                 for f in sorted(methods | plugins)}
    assert not {f: imported for f, imported in offenders.items() if imported}


# The backbone interface: trainers/ reaches CLIP only through ClipBackbone's public names, so every
# method runs on whichever library builds the model (OpenAI's clip or open_clip).
BACKBONE_MODULES = {"clip_backbone", "open_clip_backbone"}
CLIP_LIBRARIES = ("clip", "open_clip")


def library_imports(tree: ast.AST) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return {m for m in modules if m.split(".")[0] in CLIP_LIBRARIES}


def backbone_reads_outside_the_interface(tree: ast.AST, interface: set[str]) -> set[str]:
    """``<...>.backbone.X`` / ``backbone.X`` with X not a public name of ClipBackbone, and every ``.clip``."""
    reads = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        if node.attr == "clip" or (owner == "backbone" and node.attr not in interface):
            reads.add(f"{owner}.{node.attr}")
    return reads


def test_trainers_reach_clip_only_through_the_backbone_interface():
    from trainers.clip_backbone import ClipBackbone

    interface = {name for name in dir(ClipBackbone) if not name.startswith("_")} - {"clip"}
    files = [p for p in TRAINERS.glob("*.py") if p.stem not in BACKBONE_MODULES]
    assert any(registers_a_trainer(p) for p in files)
    offenders = {}
    for path in files:
        tree = ast.parse(path.read_text())
        found = library_imports(tree) | backbone_reads_outside_the_interface(tree, interface)
        if found:
            offenders[path.name] = sorted(found)
    assert not offenders, ("trainers/ must not import clip / open_clip or read the library model (backbone.clip): "
                           f"add what you need to ClipBackbone (trainers/clip_backbone.py) instead: {offenders}")


def test_the_interface_rule_catches_a_library_read():
    tree = ast.parse("import open_clip\nx = self.backbone.clip.visual.conv1\ny = backbone.logit_scale\n")
    assert library_imports(tree) == {"open_clip"}
    assert backbone_reads_outside_the_interface(tree, {"logit_scale"}) == {"backbone.clip"}
