"""A folder of images with captions: your own data.

Captions come from `captions.jsonl` in the folder (one {"file": "cat.png", "caption": "...",
"label": "cat"} per line; "label" optional) or, without it, from a `.txt` next to each image
(`cat.png` + `cat.txt`). Labels, when given, become class ids (sorted names) usable as class
conditioning; without them every label is 0. Each image is centre-cropped to a square and
resized to size x size. A broken image or caption file, an image over MAX_IMAGE_PIXELS, a
caption entry of the wrong type or one whose path leaves the folder is a DatasetCorruptError
naming the file and what is wrong.
"""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from minildm.checkpoint import error_summary
from minildm.datasets.download import DatasetCorruptError
from minildm.datasets.labelled import LabelledImages

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Decoding costs 3 bytes a pixel before the crop: 8192 x 8192 is 192 MiB, far above the 32 to
# 256 px that minildm trains at; a larger header is a huge photo or a forged (decompression bomb) file.
MAX_IMAGE_PIXELS = 8192 * 8192
UNREADABLE_IMAGE = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
)  # what Pillow raises for a broken file


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: Path) -> str:
    """A UTF-8 text file (a byte-order mark allowed); a DatasetCorruptError naming the file and line otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetCorruptError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DatasetCorruptError(
            f"{path} line {line} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from err


def path_inside(folder: Path, name: str, where: str) -> Path:
    """`folder / name`, refused unless it stays inside `folder` (no absolute path, no '..', no link out)."""
    relative = Path(name)
    if "\x00" in name or relative.is_absolute() or ".." in relative.parts:
        raise DatasetCorruptError(
            f"{where}: 'file' must be a relative path inside the dataset folder, got {_short(name)}"
        )
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise DatasetCorruptError(
            f"{where}: {name!r} leads outside the dataset folder {folder} through a symbolic link"
        )
    if not path.is_file():
        raise DatasetCorruptError(f"{where} names {name!r}, but {path} is not a file")
    return path


def check_entry(entry: object, where: str, line: str) -> dict:
    """One captions.jsonl entry, its fields type-checked: file (str), caption (str), label (str or int)."""
    if not isinstance(entry, dict) or "file" not in entry or "caption" not in entry:
        raise DatasetCorruptError(f"{where} must have 'file' and 'caption', got {line[:100]!r}")
    if not isinstance(entry["file"], str) or not entry["file"]:
        raise DatasetCorruptError(f"{where}: 'file' must be a non-empty string, got {_short(entry['file'])}")
    if not isinstance(entry["caption"], str):
        raise DatasetCorruptError(f"{where}: 'caption' must be a string, got {_short(entry['caption'])}")
    label = entry.get("label", "")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise DatasetCorruptError(f"{where}: 'label' must be a string or an integer, got {_short(label)}")
    return entry


def read_entries(folder: Path) -> list[dict]:
    """[{"file", "caption", "label"?, "path"}] from captions.jsonl or from per-image .txt files;
    "path" is the image's path, checked to lie inside `folder`."""
    index = folder / "captions.jsonl"
    if index.is_file():
        entries = []
        for number, line in enumerate(read_text(index).splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{index} line {number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetCorruptError(f"{where} is not JSON ({err})") from err
            entry = check_entry(entry, where, line)
            entries.append({**entry, "path": path_inside(folder, entry["file"], where)})
        return entries
    entries = []
    for image_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        caption_path = image_path.with_suffix(".txt")
        if not caption_path.is_file():
            raise DatasetCorruptError(
                f"{image_path} has no caption: write {caption_path} or a captions.jsonl in {folder}"
            )
        where = f"{image_path.name} in {folder}"
        entries.append(
            {
                "file": image_path.name,
                "caption": read_text(caption_path).strip(),
                "path": path_inside(folder, image_path.name, where),
            }
        )
    return entries


def open_image(path: Path) -> Image.Image:
    """Open `path` lazily (header only) and refuse it before decoding if it has too many pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below says it in one line
            image = Image.open(path)
    except Image.DecompressionBombError as err:
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise DatasetCorruptError(
            f"{path} claims {pixels}, more than the limit of {MAX_IMAGE_PIXELS:,} (8192 x 8192); shrink it first"
        ) from err
    except UNREADABLE_IMAGE as err:
        raise DatasetCorruptError(f"{path} is not a readable image ({error_summary(err)})") from err
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise DatasetCorruptError(
            f"{path} is {width} x {height} = {width * height:,} pixels, "
            f"more than the limit of {MAX_IMAGE_PIXELS:,} (8192 x 8192); shrink it first"
        )
    return image


def load_image(path: Path, size: int) -> torch.Tensor:
    """Read, centre-crop to a square, resize: (3, size, size) in [-1, 1]."""
    with open_image(path) as image:
        try:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            pixels = np.asarray(image, dtype=np.float32)
        except UNREADABLE_IMAGE as err:
            raise DatasetCorruptError(f"{path} is not a readable image ({error_summary(err)})") from err
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
    images = torch.stack([load_image(e["path"], size) for e in entries])
    labels = torch.tensor([class_names.index(str(e["label"])) if class_names else 0 for e in entries])
    return LabelledImages(images, labels, class_names or ("image",), [e["caption"] for e in entries])
