"""MNIST and Fashion-MNIST from their IDX files (LeCun et al. 1998; Xiao et al. 2017).

IDX format: a big-endian header, magic = (0, 0, dtype code, number of dimensions), then one
uint32 per dimension, then the raw array. Images are (N, 28, 28) uint8, labels (N,) uint8.
The loader pads 28x28 to 32x32 (a power of two, as the U-Net's downsampling wants), copies
the grey channel to three (every minildm image is (B, 3, H, W)) and maps [0, 255] to [-1, 1].
Labels serve as class conditioning.
"""

import gzip
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from minildm.checkpoint import error_summary
from minildm.datasets.download import DatasetCorruptError, RemoteFile, ensure_file
from minildm.datasets.labelled import LabelledImages
from minildm.datasets.shapes import data_root

IDX_UINT8 = 0x08


@dataclass(frozen=True)
class IDXDatasetSpec:
    name: str
    class_names: tuple[str, ...]
    # split -> (images file, labels file)
    files: dict[str, tuple[RemoteFile, RemoteFile]] = field(default_factory=dict)


def _spec(name: str, base_url: str, md5s: tuple[str, str, str, str], class_names: tuple[str, ...]) -> IDXDatasetSpec:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    remote = [RemoteFile(base_url + n, n, md5) for n, md5 in zip(names, md5s)]
    return IDXDatasetSpec(name, class_names, {"train": (remote[0], remote[1]), "test": (remote[2], remote[3])})


MNIST = _spec(
    "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
     "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
    tuple(str(d) for d in range(10)),
)  # fmt: skip
FASHION_MNIST = _spec(
    "fashion_mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
     "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)  # fmt: skip


def _expected_bytes(path: Path, dims: tuple[int, ...], header: int, gzipped: bool) -> int:
    """The data size the header announces, checked against the file's size before reading it."""
    # Python ints: a product of uint32s cannot overflow here as it would in numpy
    expected = math.prod(dims)
    on_disk = path.stat().st_size
    # deflate expands at most 1032:1, so a .gz of n bytes holds at most 1032 n bytes of data
    room = 1032 * on_disk if gzipped else on_disk - header
    if expected > room:
        raise DatasetCorruptError(
            f"{path} is truncated or its header is wrong: shape {dims} needs {expected:,} bytes of data, "
            f"the {on_disk:,}-byte file {'can hold at most' if gzipped else 'holds'} {room:,}"
        )
    return expected


def _read_at_most(f, count: int, chunk_size: int = 1 << 20) -> bytes:
    """Up to `count` bytes, in chunks: memory grows with what is really there, not with a claim."""
    chunks, total = [], 0
    while total < count:
        chunk = f.read(min(chunk_size, count - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_idx(path: Path) -> np.ndarray:
    """Parse a (gzipped) IDX file of uint8 into an array; a DatasetCorruptError naming the file if its
    header is cut short, announces more data than the file can hold, or the data is truncated."""
    gzipped = str(path).endswith(".gz")
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != IDX_UINT8 or magic[3] == 0:
                raise DatasetCorruptError(
                    f"{path} does not start with an IDX uint8 header (0, 0, 0x08, ndim >= 1), got {magic!r}"
                )
            ndim = magic[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DatasetCorruptError(
                    f"{path} is truncated in its header: it announces {ndim} dimensions "
                    f"but holds {len(raw_dims)} of their {4 * ndim} bytes"
                )
            dims = tuple(int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            expected = _expected_bytes(path, dims, 4 + 4 * ndim, gzipped)
            data = _read_at_most(f, expected + 1)  # one byte more reveals trailing data
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetCorruptError(f"{path} is not a readable IDX file ({error_summary(err)})") from err
    if len(data) != expected:
        raise DatasetCorruptError(
            f"{path} is truncated or has trailing bytes: header says shape {dims} ({expected:,} bytes of data), "
            f"file has {'more' if len(data) > expected else f'{len(data):,}'}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def load_idx_dataset(
    spec: IDXDatasetSpec, split: str = "train", root: Path | None = None, download: bool = False, size: int = 32
) -> LabelledImages:
    """MNIST-style dataset -> LabelledImages with images (N, 3, size, size) in [-1, 1] and labels (N,)."""
    if split not in spec.files:
        raise ValueError(f"split must be one of {tuple(spec.files)}, got {split!r}")
    folder = Path(root) if root is not None else data_root() / spec.name
    images_file, labels_file = (ensure_file(remote, folder, download) for remote in spec.files[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetCorruptError(f"{spec.name} {split}: images {images.shape} and labels {labels.shape} do not match")
    if size < images.shape[1]:
        raise ValueError(f"size must be >= {images.shape[1]}, got {size}")
    pad = size - images.shape[1]
    pixels = torch.from_numpy(images.copy()).float() / 127.5 - 1.0  # (N, 28, 28) in [-1, 1]
    # pad with the background value (-1) to size x size, centred
    pixels = torch.nn.functional.pad(pixels, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=-1.0)
    return LabelledImages(
        pixels.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
        spec.class_names,
    )
