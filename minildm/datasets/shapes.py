"""The built-in captioned dataset: coloured shapes on textured backgrounds, made offline.

No machine that builds minildm reaches the internet, so the default data is generated. It
is rich enough that text conditioning (LDM sec. 3.3) is worth learning and measurable:
captions name shape, colour, size and position, and with two objects how they relate;
every image carries its ground truth (attributes, boxes, an object mask for inpainting,
LDM sec. 4.5); and the `heldout` split holds (shape, colour) pairs that `train` never shows,
to test generalisation by composition (see `attributes.HELDOUT_COMBINATIONS`).

Splits: "train" (no held-out pair anywhere), "heldout" (the main object is a held-out pair,
the second object is not), "all" (every pair; for training the attribute classifier, which
is a judge and not the model under test).

Layout: positions are cells of a 3x3 grid (centres at 0.21, 0.5, 0.79 of the side, jittered
by up to 0.025); radii are 0.16 (large) or 0.10 (small) of the side, +-10%. A second object
goes in another cell whose bounding box keeps clear of the first; when no cell is clear
(the main object is large and in the centre, say) the image has one object. The main object
is always the one named first in the caption.

Generation is deterministic from (seed, split) and vectorised (see `render.py`). Images are
quantised to 8 bits like real images, so a cached dataset equals a freshly generated one.

New shapes, opt-in: `new_shape_data("star", n)` draws single-object images of a star or a heart
(`NEW_SHAPES`, ids 4 and 5 after the four of `SHAPES`) in every colour, size and position, with
captions ("a small red star at the top left"). The standard splits never contain them and do not
change by a pixel: they are what fine-tuning (train/finetune.py) teaches a trained model.
"""

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from minildm.checkpoint import load_checkpoint, save_checkpoint
from minildm.datasets.attributes import (
    COLOUR_HUES,
    COLOURS,
    HELDOUT_COMBINATIONS,
    POSITION_CELLS,
    POSITIONS,
    SHAPES,
    SIZES,
)
from minildm.datasets.captions import (
    COLOUR_WORDS,
    POSITION_WORDS,
    SINGLE_TEMPLATES,
    SIZE_WORDS,
    caption_for,
)
from minildm.datasets.render import (
    SHAPE_EXTENTS,
    coverage,
    hsv_to_rgb,
    textured_background,
)

GENERATOR_VERSION = 1  # bump when the pictures change, so stale caches are not reused
SPLITS = ("train", "heldout", "all")
RADIUS_FRACTION = torch.tensor([0.10, 0.16])  # small, large, as a fraction of the image side
CELL_CENTRES = (0.21, 0.5, 0.79)
JITTER = 0.025
GAP = 0.02  # minimum free space between two objects' boxes, as a fraction of the side
CHUNK = 2048
NEW_SHAPES = ("star", "heart")  # opt-in shapes, never in the standard splits
ALL_SHAPES = SHAPES + NEW_SHAPES  # shape ids of render.py: 0-3 standard, 4 star, 5 heart
NEW_SHAPES_STREAM = 7  # a random stream of its own, apart from SPLITS.index(split) in 0-2


def data_root() -> Path:
    """Where datasets live: $MINILDM_DATA if set, else the repository's data/ folder."""
    return Path(os.environ.get("MINILDM_DATA", Path(__file__).resolve().parents[2] / "data"))


@dataclass
class ShapesConfig:
    size: int = 32  # image side in pixels, a power of two
    num_samples: int = 10000
    seed: int = 0
    split: str = "train"  # "train", "heldout" or "all"
    max_objects: int = 2  # 1 or 2 objects per image
    cache: bool = True  # save to / load from data/shapes/

    def __post_init__(self):
        if self.size < 16 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 16, got {self.size}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.max_objects not in (1, 2):
            raise ValueError(f"max_objects must be 1 or 2, got {self.max_objects}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")


def _combination_ids(split: str, main: bool) -> np.ndarray:
    """(shape, colour) index pairs an object may take, (K, 2)."""
    heldout = {(SHAPES.index(s), COLOURS.index(c)) for s, c in HELDOUT_COMBINATIONS}
    every = [(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))]
    if split == "all":
        return np.array(every)
    if split == "heldout" and main:
        return np.array(sorted(heldout))
    return np.array([pair for pair in every if pair not in heldout])


def sample_layout(config: ShapesConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Attributes and geometry of every object, vectorised. Returns arrays with a leading
    (N, 2) for (image, object slot): attributes (N, 2, 4) as (shape, colour, size, position)
    ids with -1 for an absent second object, centres (N, 2, 2) and radii (N, 2) as fractions
    of the side, and present (N, 2) bool."""
    n = config.num_samples
    cells = np.array([[CELL_CENTRES[col], CELL_CENTRES[row]] for row, col in POSITION_CELLS])  # (9, 2) as (x, y)
    extents = SHAPE_EXTENTS.numpy().astype(np.float64)  # (6, 2): the four standard shapes, star, heart

    def draw_object(split_main: bool):
        pairs = _combination_ids(config.split, split_main)
        pair = pairs[rng.integers(len(pairs), size=n)]  # (N, 2)
        size_id = rng.integers(len(SIZES), size=n)
        radius = RADIUS_FRACTION.numpy()[size_id] * rng.uniform(0.9, 1.1, size=n)
        jitter = rng.uniform(-JITTER, JITTER, size=(n, 2))
        return pair, size_id, radius, jitter

    pair1, size1, radius1, jitter1 = draw_object(True)
    position1 = rng.integers(len(POSITIONS), size=n)
    centre1 = cells[position1] + jitter1
    pair2, size2, radius2, jitter2 = draw_object(False)
    # every candidate cell for the second object, (N, 9, 2); keep those whose box clears the first
    candidates = cells[None] + jitter2[:, None]
    half1 = extents[pair1[:, 0]] * radius1[:, None]  # (N, 2) half width, half height
    half2 = extents[pair2[:, 0]] * radius2[:, None]
    apart = np.abs(candidates - centre1[:, None]) >= (half1 + half2 + GAP)[:, None]  # (N, 9, 2)
    clear = apart.any(axis=2) & (np.arange(len(POSITIONS))[None] != position1[:, None])
    scores = np.where(clear, rng.random((n, len(POSITIONS))), -1.0)
    position2 = scores.argmax(axis=1)
    wants_two = rng.integers(1, config.max_objects + 1, size=n) == 2
    two = wants_two & clear.any(axis=1)

    attributes = np.full((n, 2, 4), -1, dtype=np.int64)
    attributes[:, 0] = np.stack([pair1[:, 0], pair1[:, 1], size1, position1], axis=1)
    attributes[two, 1] = np.stack([pair2[:, 0], pair2[:, 1], size2, position2], axis=1)[two]
    return {
        "attributes": attributes,
        "centres": np.stack([centre1, candidates[np.arange(n), position2]], axis=1),
        "radii": np.stack([radius1, radius2], axis=1),
        "present": np.stack([np.ones(n, dtype=bool), two], axis=1),
    }


def render_layout(
    layout: dict[str, np.ndarray], size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a layout: returns images (N, 3, H, W) uint8 and masks (N, 1, H, W) bool (all objects)."""
    n = len(layout["attributes"])
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(n, 1, size, size, dtype=torch.bool)
    hue_centres = torch.tensor([COLOUR_HUES[c] for c in COLOURS])
    # a bar only for a long draw, and only on a terminal (not in logs or executed notebooks)
    quiet = n <= CHUNK or not sys.stderr.isatty()
    for start in tqdm(range(0, n, CHUNK), desc=f"drawing shapes {size}x{size}", disable=quiet, leave=False):
        stop = min(start + CHUNK, n)
        b = stop - start

        def uniform(low, high, shape=(b,)):
            return torch.from_numpy(rng.uniform(low, high, size=shape)).float()

        # background: a pale, slightly tinted colour; half the images plain, half mildly textured
        background_rgb = hsv_to_rgb(uniform(0, 360), uniform(0.0, 0.15), uniform(0.7, 0.95))
        textured = torch.from_numpy(rng.random(b) < 0.5).float()
        noise = (
            torch.from_numpy(rng.standard_normal((b, 1, 4, 4))).float(),
            torch.from_numpy(rng.standard_normal((b, 1, size, size))).float(),
        )
        canvas = textured_background(
            background_rgb, textured * uniform(0.02, 0.08), textured * uniform(0.0, 0.03), noise, size
        )
        union = torch.zeros(b, size, size)
        for slot in range(2):
            attributes = torch.from_numpy(layout["attributes"][start:stop, slot])
            present = torch.from_numpy(layout["present"][start:stop, slot]).float()
            shape_ids = attributes[:, 0].clamp(min=0)
            # colour: the hue of its name +- 6 degrees, saturated, a little variation in shade
            hue = hue_centres[attributes[:, 1].clamp(min=0)] + uniform(-6, 6)
            rgb = hsv_to_rgb(hue, uniform(0.75, 1.0), uniform(0.75, 1.0))
            centres = torch.from_numpy(layout["centres"][start:stop, slot]).float() * size
            radii = torch.from_numpy(layout["radii"][start:stop, slot]).float() * size
            alpha = coverage(shape_ids, centres, radii, size) * present.view(-1, 1, 1)  # (b, H, W)
            # "over" compositing: canvas = alpha * colour + (1 - alpha) * canvas
            canvas = alpha.unsqueeze(1) * rgb.view(b, 3, 1, 1) + (1 - alpha.unsqueeze(1)) * canvas
            union = torch.maximum(union, alpha)
        images[start:stop] = (canvas * 255).round().clamp(0, 255).to(torch.uint8)
        masks[start:stop] = (union > 0.5).unsqueeze(1)
    return images, masks


def boxes_of(layout: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Bounding boxes (x0, y0, x1, y1) in pixels, (N, 2, 4)."""
    shape_ids = layout["attributes"][:, :, 0].clip(min=0)
    half = SHAPE_EXTENTS.numpy()[shape_ids] * layout["radii"][..., None]  # (N, 2, 2)
    centres = layout["centres"]
    return np.concatenate([centres - half, centres + half], axis=2) * size


def generate_shapes(config: ShapesConfig) -> dict:
    """Generate a dataset as plain tensors and lists (what the cache stores)."""
    rng = np.random.default_rng([config.seed, SPLITS.index(config.split), GENERATOR_VERSION])
    layout = sample_layout(config, rng)
    images, masks = render_layout(layout, config.size, rng)
    objects = objects_from_arrays(layout["attributes"], boxes_of(layout, config.size))
    captions = [caption_for(image_objects, rng) for image_objects in objects]
    return {
        "config": asdict(config),
        "images": images,
        "masks": masks,
        "attributes": torch.from_numpy(layout["attributes"]),
        "boxes": torch.from_numpy(boxes_of(layout, config.size)).float(),
        "captions": captions,
    }


def objects_from_arrays(attributes: np.ndarray, boxes: np.ndarray) -> list[list[dict]]:
    """Per-image lists of object dicts {shape, colour, size, position, box} from (N, 2, 4) arrays."""
    objects = []
    for image_attributes, image_boxes in zip(attributes.tolist(), np.round(boxes, 2).tolist()):
        objects.append(
            [
                {
                    "shape": SHAPES[s],
                    "colour": COLOURS[c],
                    "size": SIZES[z],
                    "position": POSITIONS[p],
                    "box": tuple(box),
                }
                for (s, c, z, p), box in zip(image_attributes, image_boxes)
                if s >= 0
            ]
        )
    return objects


def cache_path(config: ShapesConfig) -> Path:
    name = (
        f"shapes_v{GENERATOR_VERSION}_{config.split}_{config.size}px_n{config.num_samples}"
        f"_seed{config.seed}_obj{config.max_objects}.pt"
    )
    return data_root() / "shapes" / name


class ShapesDataset(Dataset):
    """Coloured shapes with captions. Attributes:
    images (N, 3, H, W) float32 in [-1, 1]; masks (N, 1, H, W) float32, 1 on the objects;
    captions list[str]; labels (N, 4) long: shape, colour, size, position ids of the main
    object; objects: per image a list of {shape, colour, size, position, box=(x0, y0, x1, y1)}."""

    def __init__(self, config: ShapesConfig):
        self.config = config
        path = cache_path(config)
        if config.cache and path.is_file():
            data = load_checkpoint(path, required_keys=("images", "masks", "attributes", "boxes", "captions"))
        else:
            data = generate_shapes(config)
            if config.cache:
                save_checkpoint(data, path)
        self.images = data["images"].float() / 127.5 - 1.0  # uint8 [0, 255] -> [-1, 1]
        self.masks = data["masks"].float()
        self.captions = list(data["captions"])
        self.labels = data["attributes"][:, 0].clone()  # (N, 4) main object
        self.objects = objects_from_arrays(data["attributes"].numpy(), data["boxes"].numpy())

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        return {
            "image": self.images[index],
            "mask": self.masks[index],
            "caption": self.captions[index],
            "labels": self.labels[index],
        }


def new_shape_prompt(shape: str, colour: str, size: str, position: str, template: int = 0) -> str:
    """A single-object caption naming a shape of ALL_SHAPES: new_shape_prompt("star", "red",
    "small", "top left") -> "a small red star at the top left" (template 0 is the canonical
    form of captions.prompt_for, and so the prompt that the judge's accuracy is measured on)."""
    if shape not in ALL_SHAPES:
        raise ValueError(f"shape must be one of {ALL_SHAPES}, got {shape!r}")
    words = {
        "size": SIZE_WORDS[size][0],
        "colour": COLOUR_WORDS[colour][0],
        "shape": shape,
        "where": POSITION_WORDS[position][0],
    }
    return SINGLE_TEMPLATES[template].format(**words)


def new_shape_data(shape: str, num_samples: int, size: int = 32, seed: int = 0) -> dict:
    """Single-object images of a new shape (a NEW_SHAPES name) in every colour, size and position,
    drawn like the standard data: {"images" (N, 3, H, W) float in [-1, 1], "masks" (N, 1, H, W)
    float, "labels" (N, 4) long (shape id in ALL_SHAPES, colour, size, position), "captions"}.
    Captions vary the template (not the words) as captions.caption_for does."""
    if shape not in NEW_SHAPES:
        raise ValueError(f"shape must be one of the new shapes {NEW_SHAPES}, got {shape!r}")
    config = ShapesConfig(size=size, num_samples=num_samples, seed=seed, split="all", max_objects=1, cache=False)
    rng = np.random.default_rng([seed, NEW_SHAPES_STREAM, ALL_SHAPES.index(shape), GENERATOR_VERSION])
    layout = sample_layout(config, rng)
    layout["attributes"][:, 0, 0] = ALL_SHAPES.index(shape)  # the main (only) object becomes the new shape
    images, masks = render_layout(layout, size, rng)
    labels = torch.from_numpy(layout["attributes"][:, 0].copy())  # (N, 4)
    templates = rng.integers(len(SINGLE_TEMPLATES), size=num_samples)
    captions = [
        new_shape_prompt(shape, COLOURS[c], SIZES[z], POSITIONS[p], int(template))
        for (_, c, z, p), template in zip(labels.tolist(), templates)
    ]
    return {"images": images.float() / 127.5 - 1.0, "masks": masks.float(), "labels": labels, "captions": captions}
