"""The tiny kit: a tiny CLIP checkpoint and miniature datasets in their real on-disk layouts.

Used by the tests, the demo (``make demo``) and anyone who wants to try the pipeline without
downloading ViT-B/16 and the benchmarks:

    python -m tools.kit.build kit/                 # writes kit/clip/ViT-{B-16,L-14}.pt, kit/open_clip/ and kit/DATA/...
    export DATA=kit/DATA EXTRA_OPTS="$(python -m tools.kit.build kit/ --print-opts)"
    bash scripts/gopro/base2new_train.sh oxford_pets 1
    # the same on the tiny open_clip model (open_clip's own architecture, random weights)
    BACKBONE=open_clip:tiny-ViT:kit EXTRA_OPTS="$(python -m tools.kit.build kit/ --print-opts --open-clip)" \
        bash scripts/gopro/base2new_train.sh oxford_pets 1

``--world`` writes the synthetic world of ``tools/kit/world.py`` instead (a benchmark on which prompt
learning has something to learn; its dataset is ``oxford_pets``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Tuple

from runs.methods import METHODS, Method
from tools.kit.make_tiny_clip import TINY_OPEN_CLIP_ARCH, TINY_WIDE, write_tiny_clip, write_tiny_open_clip
from trainers.clip_backbone import checkpoint_filename

REPO = Path(__file__).resolve().parents[2]

IMAGE_SIZE = 32
TINY_LAYERS = 3  # transformer blocks per tower of the tiny CLIP
OPEN_CLIP_BACKBONE = f"open_clip:{TINY_OPEN_CLIP_ARCH}:kit"  # BACKBONE of the kit's tiny open_clip model
# The backbone names the kit's two tiny CLIPs answer to (file names in Kit.clip_dir).
KIT_BACKBONE, KIT_WIDE_BACKBONE = "ViT-B/16", "ViT-L/14"
# The demo/base-to-new dataset: 5 classes (odd, so base = 3 and new = 2 differ in size).
DEMO_DATASET = dict(name="oxford_pets", num_classes=5, train_per_class=20, test_per_class=10)
# ``--datasets all``: every benchmark of the paper's tables, in the same miniature size.
ALL_DATASETS = ("oxford_pets", "imagenet", "caltech101", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
                "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")


def methods_in_checkout() -> List[Method]:
    """The registry methods whose trainer is in this checkout (train.py refuses keys of a config
    node no trainer defines)."""
    return [method for method in METHODS.values() if method.in_checkout(REPO)]


def tiny_prompt_depth_keys() -> List[str]:
    """The prompt-depth keys to fit to the tiny CLIP (the paper configs prompt 9 or 12 blocks deep):
    each method's ``kit_depth_keys``, once per key (MaPLe and MaPLe + DePT share their trainer's)."""
    return list(dict.fromkeys(key for method in methods_in_checkout() for key in method.kit_depth_keys))


def tiny_method_opts() -> List[str]:
    """The other ``KEY VALUE`` pairs the methods need on the tiny CLIP (``kit_opts``, e.g. MMRL's
    representation-token blocks), once per key."""
    pairs = dict(pair for method in methods_in_checkout() for pair in zip(method.kit_opts[::2], method.kit_opts[1::2]))
    return [x for pair in pairs.items() for x in pair]


@dataclass
class Kit:
    root: Path

    @property
    def clip_dir(self) -> Path:
        """MODEL.BACKBONE.PATH: a folder of tiny CLIPs named like the official files, so that
        MODEL.BACKBONE.NAME (or the scripts' BACKBONE) picks one of them."""
        return self.root / "clip"

    @property
    def clip_path(self) -> Path:
        """The tiny CLIP every paper config (ViT-B/16) runs on."""
        return self.clip_dir / checkpoint_filename(KIT_BACKBONE)

    @property
    def wide_clip_path(self) -> Path:
        """The wider tiny CLIP standing in for a larger backbone (a PromptKD teacher's ViT-L/14)."""
        return self.clip_dir / checkpoint_filename(KIT_WIDE_BACKBONE)

    @property
    def open_clip_config(self) -> Path:
        return self.root / "open_clip" / f"{TINY_OPEN_CLIP_ARCH}.json"

    @property
    def open_clip_weights(self) -> Path:
        return self.root / "open_clip" / f"{TINY_OPEN_CLIP_ARCH}.pt"

    @property
    def data(self) -> Path:
        return self.root / "DATA"

    def opts(self, workers: int = 0, open_clip: bool = False) -> List[str]:
        """train.py ``KEY VALUE`` options that point a paper config at the kit (deep prompts of
        MaPLe, IVLP, VPT and PromptSRC reach through all the tiny CLIP's blocks instead of 9 or 12,
        TCP's class-aware tokens enter its last block, MMRL's representation tokens its upper two).
        ``open_clip``: the weights and model config of the tiny open_clip model instead of the tiny
        OpenAI CLIPs (run it with ``BACKBONE=open_clip:tiny-ViT:kit``, ``OPEN_CLIP_BACKBONE``)."""
        depths = [x for key in tiny_prompt_depth_keys() for x in (key, str(TINY_LAYERS))]
        weights = ["MODEL.BACKBONE.PATH", str(self.open_clip_weights),
                   "MODEL.BACKBONE.OPEN_CLIP_CONFIG", str(self.open_clip_config)] if open_clip else [
                   "MODEL.BACKBONE.PATH", str(self.clip_dir)]
        return [*weights, "INPUT.SIZE", f"({IMAGE_SIZE},{IMAGE_SIZE})",
                "DATALOADER.NUM_WORKERS", str(workers), "DATALOADER.TEST.BATCH_SIZE", "50",
                "TRAIN.PRINT_FREQ", "5", "USE_CUDA", "False", *depths, *tiny_method_opts()]


def build_kit(root: str | Path, datasets: Iterable[dict] = (DEMO_DATASET,), seed: int = 0) -> Kit:
    """Write the tiny CLIP (once) and the requested fixture datasets (each once)."""
    from tools.kit.make_fixture_datasets import write_fixture

    kit = Kit(Path(root))
    for spec in datasets:
        spec = dict(spec)
        name = spec.pop("name")
        if not (kit.data / name).exists():
            write_fixture(name, kit.data, image_size=IMAGE_SIZE, seed=seed, **spec)
        write_class_descriptions(kit.data, name)
    missing = [(path, dims) for path, dims in ((kit.clip_path, {}), (kit.wide_clip_path, TINY_WIDE)) if not path.exists()]
    if missing:
        pairs = [s for spec in datasets for s in training_pairs(kit.data, spec["name"])]
        for path, dims in missing:
            write_tiny_clip(path, seed=seed, layers=TINY_LAYERS, image_resolution=IMAGE_SIZE, pretrain_on=pairs, **dims)
    if not kit.open_clip_weights.exists():
        write_tiny_open_clip(kit.open_clip_weights.parent, seed=seed, layers=TINY_LAYERS, image_resolution=IMAGE_SIZE)
    return kit


def read_dataset(data: Path, config_name: str):
    """A kit dataset read by its real dataset class."""
    import random

    from runs import cli
    from dassl.data.datasets import build_dataset

    args = cli.build_parser().parse_args(["--root", str(data), "--dataset-config-file",
                                            str(REPO / "configs" / "datasets" / f"{config_name}.yaml")])
    cfg = cli.setup_cfg(args)
    state = random.getstate()
    random.seed(0)  # the split file a missing one is created with
    try:
        dataset = build_dataset(cfg)
    finally:
        random.setstate(state)
    return dataset


def training_pairs(data: Path, config_name: str) -> List[Tuple[str, str]]:
    """(image path, class name) of a dataset's full train split, read by its real dataset class."""
    return [(item.impath, item.classname) for item in read_dataset(data, config_name).train_x]


# Stand-ins for an LLM's class descriptions (CoPrompt), {} = the class name; the same count per class.
DESCRIPTION_TEMPLATES = ("A photo of a {}.", "A close-up photo of a {}, with its typical shape and colour.",
                         "A {} seen in its usual surroundings.")


def write_class_descriptions(data: Path, config_name: str) -> Path:
    """The dataset's descriptions file in upstream CoPrompt's format, where CoPrompt looks by default
    (``<DATA>/gpt_file/<name>_prompt.json``), written once."""
    import yaml

    from trainers.descriptions import default_path, write_descriptions

    config = yaml.safe_load((REPO / "configs" / "datasets" / f"{config_name}.yaml").read_text())
    path = Path(default_path(str(data), config["DATASET"]["NAME"]))
    if not path.exists():  # the class names come from the dataset itself (its split)
        names = [name.replace("_", " ") for name in read_dataset(data, config_name).classnames]
        write_descriptions(str(path), {name: [t.format(name) for t in DESCRIPTION_TEMPLATES] for name in names})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="kit folder")
    parser.add_argument("--print-opts", action="store_true", help="only print the train.py options")
    parser.add_argument("--open-clip", action="store_true",
                        help=f"options for the tiny open_clip model (run with BACKBONE={OPEN_CLIP_BACKBONE})")
    parser.add_argument("--datasets", nargs="+", default=[DEMO_DATASET["name"]], metavar="NAME",
                        help=f"fixture datasets to write, or 'all' (default: {DEMO_DATASET['name']}); "
                             f"names: {' '.join(ALL_DATASETS)}")
    parser.add_argument("--world", action="store_true",
                        help="write the synthetic world (tools/kit/world.py) instead of the fixture datasets")
    args = parser.parse_args()
    names = ALL_DATASETS if args.datasets == ["all"] else args.datasets
    unknown = sorted(set(names) - set(ALL_DATASETS))
    if unknown:
        parser.error(f"unknown dataset(s) {' '.join(unknown)}; choose from: {' '.join(ALL_DATASETS)} (or all)")
    if args.world:
        from tools.kit.world import build_world

        kit = build_world(args.root)
    else:
        kit = build_kit(args.root, [dict(DEMO_DATASET, name=name) for name in names])
    opts = " ".join(kit.opts(open_clip=args.open_clip))
    if args.print_opts:
        print(opts)
        return
    print(f"Tiny CLIPs: {kit.clip_dir} (ViT-B/16; ViT-L/14 a wider one)")
    print(f"Tiny open_clip model: {kit.open_clip_weights} ({OPEN_CLIP_BACKBONE})\nDatasets:  {kit.data}")
    backbone = f"BACKBONE={OPEN_CLIP_BACKBONE} " if args.open_clip else ""
    print(f'export {backbone}DATA={kit.data} EXTRA_OPTS="{opts}"')


if __name__ == "__main__":
    main()
