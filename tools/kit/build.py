"""The tiny kit: a tiny CLIP checkpoint and miniature datasets in their real on-disk layouts.

Used by the tests, the demo (``make demo``) and anyone who wants to try the pipeline without
downloading ViT-B/16 and the benchmarks:

    python -m tools.kit.build kit/                 # writes kit/tiny-clip.pt and kit/DATA/...
    export DATA=kit/DATA EXTRA_OPTS="$(python -m tools.kit.build kit/ --print-opts)"
    bash scripts/gopro/base2new_train.sh oxford_pets 1

``--world`` writes the synthetic world of ``tools/kit/world.py`` instead (a benchmark on which prompt
learning has something to learn; its dataset is ``oxford_pets``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Tuple

from runs.methods import METHODS
from tools.kit.make_tiny_clip import write_tiny_clip

REPO = Path(__file__).resolve().parents[2]

IMAGE_SIZE = 32
TINY_LAYERS = 3  # transformer blocks per tower of the tiny CLIP
# The demo/base-to-new dataset: 5 classes (odd, so base = 3 and new = 2 differ in size).
DEMO_DATASET = dict(name="oxford_pets", num_classes=5, train_per_class=20, test_per_class=10)
# ``--datasets all``: every benchmark of the paper's tables, in the same miniature size.
ALL_DATASETS = ("oxford_pets", "imagenet", "caltech101", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
                "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")


def tiny_prompt_depth_keys() -> List[str]:
    """The prompt-depth keys to fit to the tiny CLIP (the paper configs prompt 9 or 12 blocks deep):
    each registry method's ``kit_depth_keys``, for the methods whose trainer is in this checkout
    (train.py refuses keys of a config node no trainer defines)."""
    return [key for method in METHODS.values() if method.in_checkout(REPO) for key in method.kit_depth_keys]


@dataclass
class Kit:
    root: Path

    @property
    def clip_path(self) -> Path:
        return self.root / "tiny-clip.pt"

    @property
    def data(self) -> Path:
        return self.root / "DATA"

    def opts(self, workers: int = 0) -> List[str]:
        """train.py ``KEY VALUE`` options that point a paper config at the kit (deep prompts of
        MaPLe, IVLP, VPT and PromptSRC reach through all the tiny CLIP's blocks instead of 9 or 12)."""
        depths = [x for key in tiny_prompt_depth_keys() for x in (key, str(TINY_LAYERS))]
        return ["MODEL.BACKBONE.PATH", str(self.clip_path), "INPUT.SIZE", f"({IMAGE_SIZE},{IMAGE_SIZE})",
                "DATALOADER.NUM_WORKERS", str(workers), "DATALOADER.TEST.BATCH_SIZE", "50",
                "TRAIN.PRINT_FREQ", "5", "USE_CUDA", "False", *depths]


def build_kit(root: str | Path, datasets: Iterable[dict] = (DEMO_DATASET,), seed: int = 0) -> Kit:
    """Write the tiny CLIP (once) and the requested fixture datasets (each once)."""
    from tools.kit.make_fixture_datasets import write_fixture

    kit = Kit(Path(root))
    for spec in datasets:
        spec = dict(spec)
        name = spec.pop("name")
        if not (kit.data / name).exists():
            write_fixture(name, kit.data, image_size=IMAGE_SIZE, seed=seed, **spec)
    if not kit.clip_path.exists():
        write_tiny_clip(kit.clip_path, seed=seed, layers=TINY_LAYERS, image_resolution=IMAGE_SIZE,
                        pretrain_on=[s for spec in datasets for s in training_pairs(kit.data, spec["name"])])
    return kit


def training_pairs(data: Path, config_name: str) -> List[Tuple[str, str]]:
    """(image path, class name) of a dataset's full train split, read by its real dataset class."""
    import random

    from runs import cli
    from dassl.data.datasets import build_dataset

    args = cli.build_parser().parse_args(["--root", str(data), "--dataset-config-file",
                                            str(REPO / "configs" / "datasets" / f"{config_name}.yaml")])
    state = random.getstate()
    random.seed(0)  # the split file a missing one is created with
    try:
        dataset = build_dataset(cli.setup_cfg(args))
    finally:
        random.setstate(state)
    return [(item.impath, item.classname) for item in dataset.train_x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="kit folder")
    parser.add_argument("--print-opts", action="store_true", help="only print the train.py options")
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
    if args.print_opts:
        print(" ".join(kit.opts()))
        return
    print(f"Tiny CLIP: {kit.clip_path}\nDatasets:  {kit.data}")
    print(f'export DATA={kit.data} EXTRA_OPTS="{" ".join(kit.opts())}"')


if __name__ == "__main__":
    main()
