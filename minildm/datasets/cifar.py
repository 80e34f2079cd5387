"""CIFAR-10 from its binary version (Krizhevsky 2009), read straight from the .tar.gz, never pickle.

Each record is 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each a
32x32 image in row-major order). data_batch_1..5.bin form the training split, test_batch.bin
the test split. The pickled "python version" is not used: unpickling a downloaded file can
run arbitrary code.
"""

import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from minildm.checkpoint import error_summary
from minildm.datasets.download import DatasetCorruptError, RemoteFile, ensure_file
from minildm.datasets.labelled import LabelledImages
from minildm.datasets.shapes import data_root

CIFAR10 = RemoteFile(
    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar-10-binary.tar.gz",
    "c32a1d4ab5d03f1284b67883e8d87530",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD_BYTES = 1 + 3 * 32 * 32
RECORDS_PER_BATCH = 10_000  # each of the six batch files; checked before a member is read
BATCHES = {
    "train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("cifar-10-batches-bin/test_batch.bin",),
}


def read_cifar_archive(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) uint8) of a split, from the archive."""
    records = []
    try:
        with tarfile.open(path, "r:gz") as archive:
            for name in BATCHES[split]:
                info = archive.getmember(name)
                if info.size > RECORDS_PER_BATCH * RECORD_BYTES:
                    raise DatasetCorruptError(
                        f"{name} in {path} has {info.size:,} bytes, "
                        f"more than the {RECORDS_PER_BATCH:,} records of a CIFAR-10 batch"
                    )
                member = archive.extractfile(info)
                if member is None:
                    raise DatasetCorruptError(f"{path} has no file {name}")
                raw = member.read()
                if len(raw) == 0 or len(raw) % RECORD_BYTES:
                    raise DatasetCorruptError(
                        f"{name} in {path} has {len(raw)} bytes, not a whole number of {RECORD_BYTES}-byte records"
                    )
                records.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES))
    except (tarfile.TarError, EOFError, OSError, KeyError, zlib.error) as err:
        raise DatasetCorruptError(f"{path} is not a readable CIFAR-10 binary archive ({error_summary(err)})") from err
    table = np.concatenate(records)  # (N, 3073)
    return table[:, 1:].reshape(-1, 3, 32, 32), table[:, 0]


def load_cifar10(split: str = "train", root: Path | None = None, download: bool = False) -> LabelledImages:
    """CIFAR-10 -> LabelledImages, images (N, 3, 32, 32) in [-1, 1], labels (N,) in 0..9."""
    if split not in BATCHES:
        raise ValueError(f"split must be one of {tuple(BATCHES)}, got {split!r}")
    folder = Path(root) if root is not None else data_root() / "cifar10"
    images, labels = read_cifar_archive(ensure_file(CIFAR10, folder, download), split)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DatasetCorruptError(
            f"CIFAR-10 labels in {folder / CIFAR10.filename} must be in 0..9, found {labels.max()}"
        )
    pixels = torch.from_numpy(images.copy()).float() / 127.5 - 1.0
    return LabelledImages(pixels, torch.from_numpy(labels.astype(np.int64)), CIFAR10_CLASSES)
