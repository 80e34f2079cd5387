"""A folder of images with captions: your own data.

Captions come from `captions.jsonl` in the folder (one {"file": "cat.png", "caption": "...",
"label": "cat"} per line; "label" optional) or, without it, from a `.txt` next to each image
(`cat.png` + `cat.txt`). Labels, when given, become class ids (sorted names) usable as class
conditioning; without them every label is 0. Each image is centre-cropped to a square and
resized to size x size. A broken image or a missing caption is an error naming the file.
"""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from minildm.datasets.download import DatasetCorruptError
from minildm.datasets.labelled import LabelledImages

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_entries(folder: Path) -> list[dict]:
    """[{"file", "caption", "label"?}] from captions.jsonl or from per-image .txt files."""
    index = folder / "captions.jsonl"
    if index.is_file():
        entries = []
        for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetCorruptError(f"{index} line {number} is not JSON ({err})") from err
            if not isinstance(entry, dict) or "file" not in entry or "caption" not in entry:
                raise DatasetCorruptError(f"{index} line {number} must have 'file' and 'caption', got {line[:100]!r}")
            entries.append(entry)
        return entries
    entries = []
    for image_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        caption_path = image_path.with_suffix(".txt")
        if not caption_path.is_file():
            raise DatasetCorruptError(f"{image_path} has no caption: write {caption_path} or a captions.jsonl in {folder}")
        entries.append({"file": image_path.name, "caption": caption_path.read_text(encoding="utf-8").strip()})
    return entries


def load_image(path: Path, size: int) -> torch.Tensor:
    """Read, centre-crop to a square, resize: (3, size, size) in [-1, 1]."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            pixels = np.asarray(image, dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetCorruptError(f"{path} is not a readable image ({type(err).__name__}: {err})") from err
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0  # (H, W, 3) -> (3, H, W)


def load_image_folder(folder: Path, size: int = 64) -> LabelledImages:
    """A captioned image folder -> LabelledImages with captions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")
    entries = read_entries(folder)
    if not entries:
        raise DatasetCorruptError(f"{folder} holds no captioned images")
    class_names = tuple(sorted({str(e["label"]) for e in entries if "label" in e}))
    if class_names and any("label" not in e for e in entries):
        raise DatasetCorruptError(f"in {folder}/captions.jsonl either every entry has a 'label' or none does")
    images = torch.stack([load_image(folder / e["file"], size) for e in entries])
    labels = torch.tensor([class_names.index(str(e["label"])) if class_names else 0 for e in entries])
    return LabelledImages(images, labels, class_names or ("image",), [str(e["caption"]) for e in entries])
