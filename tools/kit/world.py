"""The synthetic world: a benchmark on which prompt learning has something to learn, on a CPU.

The tiny kit (``tools/kit/build.py``) shows that the pipeline runs; its 3 / 2 base / new classes with
10 test images each cannot show that a method *learns*. The world can:

* **Pre-training** (cached; about a CPU-minute, 500 steps): a tiny CLIP learns 8 colours × 4
  shapes from rendered images and captions such as "a photo of a red circle." Some images are
  taken under a *warm* or *cool* light, which shifts every hue by ``shift`` of the distance between
  two colour names, and their captions say so: "a warm photo of a red circle." Under warm light
  a red object looks like something between red and orange, the way a cool orange one does.
* **Downstream** (OxfordPets layout, so every script runs unchanged): 20 colour × shape classes,
  every image under warm light. The zero-shot prompt ("a photo of a red circle, a type of pet.")
  does not mention the light, so neighbouring colours get confused; a learned context can say
  "warm" and undo the shift, for base and new classes alike. Base classes are 5 colours × 2
  shapes, new classes the same colours × 2 other shapes: the colour words transfer, the shape
  words are new.
* **Domain shift** (the cross-dataset / DG protocol): the same 20 classes in the ImageNet layout as
  the source (the downstream look), and four targets the source never shows in the layouts of
  ImageNet-V2 / -Sketch / -A / -R (``TARGETS``: a warmer lamp, pencil sketches, a rival-hue
  background, striped renditions), so that ``scripts/reproduce/table2.sh`` and the report's DG
  table run on the world unchanged. Where the world departs from the real layouts is in
  ``dg_classnames`` (ImageNet-V2's labels).

    python -m tools.kit.build world/ --world          # or: python -m tools.kit.world world/
    export DATA=world/DATA EXTRA_OPTS="$(python -m tools.kit.build world/ --world --print-opts)"
    bash scripts/coop/base2new_train.sh oxford_pets 1
"""
from __future__ import annotations

import argparse
import math
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from tools.kit.build import IMAGE_SIZE, TINY_LAYERS, Kit, write_class_descriptions
from datasets.facts import benchmark_class
from runs.methods import METHODS, REPORTED_METHODS
from tools.kit.make_fixture_datasets import IMAGENET_CLASSES, write_lines
from tools.kit.make_tiny_clip import CLIP_MEAN, CLIP_STD, TINY_WIDE, build_tiny_clip, caption_pretrain

REPO = Path(__file__).resolve().parents[2]

# Evenly spaced hues (colour i has hue i / 8); the names only need to be distinct words.
COLOURS = ("red", "orange", "lime", "green", "cyan", "blue", "purple", "pink")
SHAPES = ("circle", "square", "triangle", "ring", "diamond", "cross", "bar", "frame")
LIGHTS = {"": 0, "warm": 1, "cool": -1}  # caption word -> direction of the hue shift
TEMPLATES = ("a {} photo of a {}.", "a {} {}.", "a {} photo of a {}, a type of pet.", "itap of a {} {}.")
DATASET = "oxford_pets"  # the layout (and dataset config) the world is written in
# Downstream classes: base = the first half of the labels (OxfordPets convention).
DOWNSTREAM_COLOURS = COLOURS[:5]
BASE_SHAPES, NEW_SHAPES = ("circle", "square"), ("triangle", "ring")


@dataclass(frozen=True)
class Domain:
    """How a split's images look beyond colour and shape: the world's source and its shifted targets.
    The defaults are the pre-training and downstream look (render draws the same random numbers for
    them as before domains existed, so a written world does not change)."""
    light: float = 1.0          # -1 cool, 0 daylight, 1 warm (times WorldSpec.shift)
    fill: str = "solid"         # "solid", "sketch" (pale tint, dark edge) or "stripes" (a rendition)
    background: str = "grey"    # "grey", "pale" (paper) or "clutter" (a random colour, a rival hue)
    noise: float = 0.04         # pixel noise std
    scale: float = 1.0          # times WorldSpec.object_scale

    def __post_init__(self):
        if self.fill not in ("solid", "sketch", "stripes"):
            raise ValueError(f"unknown fill {self.fill!r}; choose solid, sketch or stripes")
        if self.background not in ("grey", "pale", "clutter"):
            raise ValueError(f"unknown background {self.background!r}; choose grey, pale or clutter")


SOURCE = Domain()
# The DG targets, each a shift the source (warm light, solid shapes on grey) never shows, each
# harder than the source for zero-shot CLIP and above chance on every tiny CLIP we pre-trained (two
# kernels × three seeds stand for other CPUs; bench/WORLD.md has the measurements).
TARGETS = {
    # a re-collection: a warmer lamp, smaller objects, more noise
    "imagenetv2": Domain(light=1.15, scale=0.75, noise=0.06),
    # pencil on paper, small
    "imagenet_sketch": Domain(light=1.1, fill="sketch", background="pale", scale=0.55),
    # a rival hue behind, more noise
    "imagenet_a": Domain(light=1.05, background="clutter", noise=0.1, scale=0.7),
    # striped renditions, small
    "imagenet_r": Domain(light=1.1, fill="stripes", scale=0.6),
}


@dataclass(frozen=True)
class WorldSpec:
    shift: float = 0.5           # hue shift of warm / cool light, in units of the colour spacing
    hue_jitter: float = 0.2      # per-image hue noise (same unit), uniform in ±hue_jitter
    shapes: int = 4              # pre-training knows the first ``shapes`` of SHAPES
    object_scale: float = 0.65   # object half-size / image half-size (±0.1 per image)
    steps: int = 500             # pre-training steps (batch 64)
    lr: float = 3e-3             # peak learning rate (50 warm-up steps, then cosine)
    trainval_per_class: int = 25  # the loader keeps 80 %: 20 train images, 16 shots
    test_per_class: int = 50
    seed: int = 0


# --------------------------------------------------------------------------------------------------
# Rendering


def shape_masks(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Masks [len(SHAPES), ...] of every shape, in object coordinates (the object spans about ±1)."""
    r, box = np.hypot(u, v), np.maximum(abs(u), abs(v))
    return np.stack([
        r < 1.0,                                                     # circle
        box < 0.85,                                                  # square
        (abs(v) < 0.8) & (abs(u) < (v + 0.8) * 0.6),                 # triangle (apex up)
        (r > 0.55) & (r < 1.0),                                      # ring
        abs(u) + abs(v) < 1.15,                                      # diamond
        ((abs(u) < 0.3) & (abs(v) < 1.0)) | ((abs(v) < 0.3) & (abs(u) < 1.0)),  # cross
        (abs(u) < 1.0) & (abs(v) < 0.35),                            # bar
        (box < 0.95) & (box > 0.55),                                 # frame
    ])


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, every argument in [0, 1]; returns [..., 3]."""
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] * (1 - s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def render(colour: np.ndarray, shape: np.ndarray, light: np.ndarray, spec: WorldSpec, rng: np.random.Generator,
           size: int = IMAGE_SIZE, domain: Domain = SOURCE) -> np.ndarray:
    """uint8 images [B, size, size, 3] of shapes of the given colour indices under the given light
    (-1, 0, 1): random position, size, saturation, brightness, background and pixel noise; the
    domain's fill, background and noise (its light is the caller's to pass)."""
    n = len(colour)
    hue = (colour + light * spec.shift + rng.uniform(-spec.hue_jitter, spec.hue_jitter, n)) / len(COLOURS)
    rgb = hsv_to_rgb(hue % 1.0, rng.uniform(0.65, 1.0, n), rng.uniform(0.7, 1.0, n))[:, None, None, :]
    grid = (np.arange(size) + 0.5) / size * 2 - 1
    object_scale = spec.object_scale * domain.scale
    centre = rng.uniform(-0.8, 0.8, (2, n, 1, 1)) * (0.9 - object_scale)
    scale = rng.uniform(-0.1, 0.1, (n, 1, 1)) + object_scale
    u, v = (grid[None, None, :] - centre[0]) / scale, (grid[None, :, None] - centre[1]) / scale
    mask = shape_masks(u, v)[shape, np.arange(n)]
    if domain.fill == "sketch":  # a pale tint inside a dark pencil edge (a bare edge would turn circles into rings)
        inside = shape_masks(u / 0.8, v / 0.8)[shape, np.arange(n)]
        rgb = np.where(inside[..., None], tint(rgb), 0.1)
    elif domain.fill == "stripes":  # every other diagonal band paler
        rgb = np.where((np.floor((u + v) * 2.5) % 2 == 0)[..., None], rgb, tint(rgb))
    pixels = np.where(mask[..., None], rgb, background(domain, n, spec, rng))
    pixels = pixels + rng.normal(0, domain.noise, (n, size, size, 3))
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


def tint(rgb: np.ndarray) -> np.ndarray:
    """The colour half-way to white."""
    return 0.5 * rgb + 0.45


def background(domain: Domain, n: int, spec: WorldSpec, rng: np.random.Generator) -> np.ndarray:
    """Per-image background colours [n, 1, 1, 1 or 3]."""
    if domain.background == "grey":
        return rng.uniform(0.15, 0.6, (n, 1, 1, 1))
    if domain.background == "pale":
        return rng.uniform(0.75, 0.95, (n, 1, 1, 1))
    # clutter: any hue, darker and greyer than the objects
    return hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0.3, 0.5, n), rng.uniform(0.3, 0.5, n))[:, None, None, :]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> CLIP-normalised float [B, 3, H, W]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


# --------------------------------------------------------------------------------------------------
# Pre-training


def captions(spec: WorldSpec) -> List[Tuple[int, int, int, str]]:
    """(colour, shape, light, "light colour shape") for every concept of the pre-training world."""
    return [(c, s, direction, " ".join(filter(None, (word, COLOURS[c], SHAPES[s]))))
            for word, direction in LIGHTS.items() for c in range(len(COLOURS)) for s in range(spec.shapes)]


def caption_tokens(concepts: Sequence[Tuple[int, int, int, str]]) -> torch.Tensor:
    """Token ids [templates, K, 77]: each template with the light word (if any) in its slot."""
    import clip

    def text(template: str, concept: str) -> str:
        words = concept.split(" ")
        light = words[0] if words[0] in LIGHTS else ""
        obj = " ".join(words[1:] if light else words)
        return " ".join(template.format(light, obj).split())  # no double space without a light

    return torch.stack([clip.tokenize([text(t, c[3]) for c in concepts]) for t in TEMPLATES])


def pretrain(spec: WorldSpec, batch_size: int = 64, **dims: int):
    """A tiny CLIP pre-trained on the world's captioned images (fp16 weights, eval mode); ``dims``
    widen it (``TINY_WIDE``: the stand-in for a distillation teacher's ViT-L/14)."""
    concepts = captions(spec)
    table = np.array([c[:3] for c in concepts])
    rng = np.random.default_rng(spec.seed)
    torch.manual_seed(spec.seed)

    def batch() -> Tuple[torch.Tensor, torch.Tensor]:
        index = rng.integers(len(concepts), size=batch_size)
        colour, shape, light = table[index].T
        return to_tensor(render(colour, shape, light, spec, rng)), torch.from_numpy(index)

    model = build_tiny_clip(seed=spec.seed, layers=TINY_LAYERS, image_resolution=IMAGE_SIZE, **dims)
    return caption_pretrain(model, batch, caption_tokens(concepts), spec.steps, spec.lr, warmup=50,
                            truncate=True)


# --------------------------------------------------------------------------------------------------
# The downstream dataset


def downstream_classes() -> List[Tuple[int, int]]:
    """(colour, shape) per label: base classes first."""
    return [(c, SHAPES.index(s)) for shapes in (BASE_SHAPES, NEW_SHAPES) for s in shapes
            for c in range(len(DOWNSTREAM_COLOURS))]


def write_downstream(folder: Path, spec: WorldSpec) -> None:
    """The warm-light dataset in the OxfordPets layout: images/<colour>_<shape>_<n>.jpg and
    annotations/{trainval,test}.txt (``<name> <class id> <species> <breed id>``)."""
    from PIL import Image

    rng = np.random.default_rng([spec.seed, 1])
    per_class = spec.trainval_per_class + spec.test_per_class
    lines = {"trainval": [], "test": []}
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for label, (colour, shape) in enumerate(downstream_classes()):
        images = render(np.full(per_class, colour), np.full(per_class, shape), np.ones(per_class, int), spec, rng)
        for n, pixels in enumerate(images, start=1):
            name = f"{COLOURS[colour]}_{SHAPES[shape]}_{n}"
            Image.fromarray(pixels).save(folder / "images" / f"{name}.jpg", quality=95)
            split = "trainval" if n <= spec.trainval_per_class else "test"
            lines[split].append(f"{name} {label + 1} 2 {label + 1}")
    for split, split_lines in lines.items():
        write_lines(folder / "annotations" / f"{split}.txt", split_lines)


# --------------------------------------------------------------------------------------------------
# Domain shift: the source in the ImageNet layout, the targets in those of ImageNet-V2/-Sketch/-A/-R


def dg_wnids() -> List[str]:
    """The wnid of each downstream class (same label order): the first classes of the ImageNet-1k
    list that ImageNet-A and ImageNet-R both hold, so that every target can show every class,
    after line N-1 (lines 0..N-1 are the classes' ImageNetV2 folders, see dg_classnames)."""
    both = set(benchmark_class("imagenet_a").imagenet_wnids) & set(benchmark_class("imagenet_r").imagenet_wnids)
    count = len(downstream_classes())
    return [wnid for wnid, _ in IMAGENET_CLASSES[count:] if wnid in both][:count]


def class_name(colour: int, shape: int) -> str:
    return f"{COLOURS[colour]} {SHAPES[shape]}"


def dg_classnames() -> List[str]:
    """The world's classnames.txt: the 1000 lines of the kit's ImageNet list with the world's classes
    named twice, at their wnids (ImageNet, -Sketch, -A, -R) and at lines 0..N-1. ImageNetV2 labels
    an image by its folder number = line, and Dassl's class list is the labels present, so the
    world's V2 classes must be labels 0..N-1 (real V2 holds all 1000 classes and needs no such trick)."""
    names = [name for _, name in IMAGENET_CLASSES]
    wnids = [wnid for wnid, _ in IMAGENET_CLASSES]
    for label, (wnid, (colour, shape)) in enumerate(zip(dg_wnids(), downstream_classes())):
        names[label] = names[wnids.index(wnid)] = class_name(colour, shape)
    return [f"{wnid} {name}" for wnid, name in zip(wnids, names)]


def dg_folders(dataset: str) -> Tuple[Path, str, str]:
    """(image folder inside the dataset folder, dataset folder, file name pattern) of the real layouts."""
    return {"imagenet": (Path("images") / "{split}", "imagenet", "{n}.JPEG"),
            "imagenetv2": (Path("imagenetv2-matched-frequency-format-val"), "imagenetv2", "{n}.jpeg"),
            "imagenet_sketch": (Path("images"), "imagenet-sketch", "sketch_{n}.JPEG"),
            "imagenet_a": (Path("imagenet-a"), "imagenet-adversarial", "{n}.jpg"),
            "imagenet_r": (Path("imagenet-r"), "imagenet-rendition", "art_{n}.jpg")}[dataset]


def write_dg_dataset(data: Path, dataset: str, splits: Sequence[Tuple[str, int]], domain: Domain,
                     spec: WorldSpec, seed: int) -> None:
    """One dataset of the DG protocol: ``per_class`` images of every class per (split, per_class),
    one folder per class (V2: its label; the others: its wnid), classnames.txt, README.txt where
    the release has one."""
    from PIL import Image

    image_dir, folder, pattern = dg_folders(dataset)
    root = data / folder
    rng = np.random.default_rng([spec.seed, seed])
    for split, per_class in splits:
        for label, ((colour, shape), wnid) in enumerate(zip(downstream_classes(), dg_wnids())):
            images = render(np.full(per_class, colour), np.full(per_class, shape),
                            np.full(per_class, domain.light), spec, rng, domain=domain)
            class_dir = root / str(image_dir).format(split=split) / (str(label) if dataset == "imagenetv2" else wnid)
            class_dir.mkdir(parents=True, exist_ok=True)
            for n, pixels in enumerate(images, start=1):
                Image.fromarray(pixels).save(class_dir / pattern.format(n=n), quality=95)
    if dataset == "imagenetv2":  # the loader needs every numbered folder
        for label in range(len(IMAGENET_CLASSES)):
            (root / str(image_dir) / str(label)).mkdir(parents=True, exist_ok=True)
    if dataset in ("imagenet_a", "imagenet_r"):
        write_lines(root / str(image_dir) / "README.txt", [f"{dataset}: the synthetic world's stand-in"])
    write_lines(root / "classnames.txt", dg_classnames())


def write_domain_shift(data: Path, spec: WorldSpec) -> None:
    """The DG protocol's four targets and its source (ImageNet layout, the downstream look). A target
    is written where its folder's stamp is missing or names another ``Domain``, so a world written
    before a target changed gets the new images (its old evaluations do not change: delete them to
    rerun). The stamp leaves the spec out: a written world keeps its spec (see main). The source
    goes last and only once: build_world takes its classnames.txt for a complete set, and trained
    runs depend on its images."""
    for seed, (dataset, domain) in enumerate(TARGETS.items(), start=3):
        root = data / dg_folders(dataset)[1]
        stamp, look = root / "world_domain.txt", repr(domain)
        if stamp.is_file() and stamp.read_text() == look:
            continue
        shutil.rmtree(root, ignore_errors=True)
        write_dg_dataset(data, dataset, [("", spec.test_per_class)], domain, spec, seed)
        stamp.write_text(look)  # last: its presence means the target is complete
    if not (data / "imagenet" / "classnames.txt").exists():
        write_dg_dataset(data, "imagenet", [("train", spec.trainval_per_class), ("val", spec.test_per_class)],
                         SOURCE, spec, seed=2)


def build_world(root: str | Path, spec: WorldSpec = WorldSpec(), teacher: bool = True) -> Kit:
    """Write (once) the pre-trained tiny CLIP, the downstream dataset and the DG source and targets
    under ``root``; with ``teacher``, also the wider tiny CLIP a distillation teacher runs on."""
    world = Kit(Path(root))
    dataset = world.data / DATASET
    if not (dataset / "annotations" / "test.txt").exists():
        write_downstream(dataset, spec)
    write_domain_shift(world.data, spec)  # what is missing or out of date
    for name in (DATASET, "imagenet", *TARGETS):  # CoPrompt's stand-in LLM descriptions
        write_class_descriptions(world.data, name)
    for path, dims in ((world.clip_path, {}), (world.wide_clip_path, TINY_WIDE))[:2 if teacher else 1]:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            torch.save(pretrain(spec, **dims).state_dict(), partial)
            partial.replace(path)
    return world


def world_methods() -> List[str]:
    """The rows of ``make world``: zero-shot CLIP and every method of the registry that trains, has
    its trainer in this checkout and a row in the report (the paper's and the modern baselines;
    MaPLe's variants are in no table)."""
    return [key for key in REPORTED_METHODS if METHODS[key].in_checkout()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="world folder (written once, then reused)")
    parser.add_argument("--print-opts", action="store_true", help="only print the train.py options")
    parser.add_argument("--print-methods", action="store_true",
                        help="only print the registry keys make world runs (writes nothing)")
    for field in fields(WorldSpec):  # a different spec needs a fresh root: a written world is reused
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args()
    if args.print_methods:
        print(" ".join(world_methods()))
        return
    spec = WorldSpec(**{field.name: getattr(args, field.name) for field in fields(WorldSpec)})
    world = build_world(args.root, spec)
    if args.print_opts:
        print(" ".join(world.opts()))
        return
    print(f'export DATA={world.data} EXTRA_OPTS="{" ".join(world.opts())}"  # dataset: {DATASET}')


if __name__ == "__main__":
    main()
