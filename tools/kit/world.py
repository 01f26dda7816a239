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

    python -m tools.kit.build world/ --world          # or: python -m tools.kit.world world/
    export DATA=world/DATA EXTRA_OPTS="$(python -m tools.kit.build world/ --world --print-opts)"
    bash scripts/coop/base2new_train.sh oxford_pets 1
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from tools.kit.build import IMAGE_SIZE, TINY_LAYERS, Kit, write_class_descriptions
from tools.kit.make_fixture_datasets import write_lines
from tools.kit.make_tiny_clip import CLIP_MEAN, CLIP_STD, build_tiny_clip, caption_pretrain

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
           size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 images [B, size, size, 3] of shapes of the given colour indices under the given light
    (-1, 0, 1): random position, size, saturation, brightness, grey background and pixel noise."""
    n = len(colour)
    hue = (colour + light * spec.shift + rng.uniform(-spec.hue_jitter, spec.hue_jitter, n)) / len(COLOURS)
    rgb = hsv_to_rgb(hue % 1.0, rng.uniform(0.65, 1.0, n), rng.uniform(0.7, 1.0, n))
    grid = (np.arange(size) + 0.5) / size * 2 - 1
    centre = rng.uniform(-0.8, 0.8, (2, n, 1, 1)) * (0.9 - spec.object_scale)
    scale = rng.uniform(-0.1, 0.1, (n, 1, 1)) + spec.object_scale
    u, v = (grid[None, None, :] - centre[0]) / scale, (grid[None, :, None] - centre[1]) / scale
    mask = shape_masks(u, v)[shape, np.arange(n)][..., None]
    background = rng.uniform(0.15, 0.6, (n, 1, 1, 1))
    pixels = np.where(mask, rgb[:, None, None, :], background) + rng.normal(0, 0.04, (n, size, size, 3))
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


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


def pretrain(spec: WorldSpec, batch_size: int = 64):
    """A tiny CLIP pre-trained on the world's captioned images (fp16 weights, eval mode)."""
    concepts = captions(spec)
    table = np.array([c[:3] for c in concepts])
    rng = np.random.default_rng(spec.seed)
    torch.manual_seed(spec.seed)

    def batch() -> Tuple[torch.Tensor, torch.Tensor]:
        index = rng.integers(len(concepts), size=batch_size)
        colour, shape, light = table[index].T
        return to_tensor(render(colour, shape, light, spec, rng)), torch.from_numpy(index)

    model = build_tiny_clip(seed=spec.seed, layers=TINY_LAYERS, image_resolution=IMAGE_SIZE)
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


def build_world(root: str | Path, spec: WorldSpec = WorldSpec()) -> Kit:
    """Write (once) the pre-trained tiny CLIP and the downstream dataset under ``root``."""
    world = Kit(Path(root))
    dataset = world.data / DATASET
    if not (dataset / "annotations" / "test.txt").exists():
        write_downstream(dataset, spec)
    write_class_descriptions(world.data, DATASET)  # CoPrompt's stand-in LLM descriptions
    if not world.clip_path.exists():
        world.clip_dir.mkdir(parents=True, exist_ok=True)
        partial = world.clip_path.with_suffix(".partial")
        torch.save(pretrain(spec).state_dict(), partial)
        partial.replace(world.clip_path)
    return world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="world folder (written once, then reused)")
    parser.add_argument("--print-opts", action="store_true", help="only print the train.py options")
    for field in fields(WorldSpec):  # a different spec needs a fresh root: a written world is reused
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args()
    spec = WorldSpec(**{field.name: getattr(args, field.name) for field in fields(WorldSpec)})
    world = build_world(args.root, spec)
    if args.print_opts:
        print(" ".join(world.opts()))
        return
    print(f'export DATA={world.data} EXTRA_OPTS="{" ".join(world.opts())}"  # dataset: {DATASET}')


if __name__ == "__main__":
    main()
