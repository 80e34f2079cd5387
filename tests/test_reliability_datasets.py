"""Dataset loaders under corrupt and hostile files (issue 15, item 11): every case is a one-line
DatasetCorruptError that names the file and what is wrong, and nothing is read outside the dataset
folder. Fixture files are written here, a few bytes each."""

import dataclasses
import gzip
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_datasets_real import cifar_fixture

from minildm.datasets import (
    DatasetCorruptError,
    RemoteFile,
    cifar,
    ensure_file,
    load_image_folder,
)
from minildm.datasets.download import md5_of
from minildm.datasets.folder import MAX_IMAGE_PIXELS
from minildm.datasets.idx import read_idx


def corrupt(call, path: Path, *phrases: str) -> str:
    with pytest.raises(DatasetCorruptError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


def image_folder(folder: Path, entries: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(folder / "a.png")
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(e) for e in entries))
    return folder


def test_caption_files_that_are_not_utf8(tmp_path):
    folder = image_folder(tmp_path / "jsonl", [])
    (folder / "captions.jsonl").write_bytes(
        b'{"file": "a.png", "caption": "ok"}\n{"file": "a.png", "caption": "caf\xe9"}\n'
    )
    corrupt(lambda: load_image_folder(folder), folder / "captions.jsonl", "line 2 is not UTF-8")
    folder = tmp_path / "txt"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "a.txt").write_bytes(b"\xff\xfe a caption in UTF-16")
    corrupt(lambda: load_image_folder(folder), folder / "a.txt", "line 1 is not UTF-8")


@pytest.mark.parametrize(
    "field, value, phrase",
    [
        ("file", 5, "'file' must be a non-empty string, got 5"),
        ("file", "", "'file' must be a non-empty string, got ''"),
        ("caption", None, "'caption' must be a string, got None"),
        ("label", ["cat"], "'label' must be a string or an integer, got ['cat']"),
        ("label", True, "'label' must be a string or an integer, got True"),
    ],
)
def test_caption_entries_are_type_checked(tmp_path, field, value, phrase):
    folder = image_folder(tmp_path, [{"file": "a.png", "caption": "a red square", "label": "red", field: value}])
    corrupt(lambda: load_image_folder(folder), folder / "captions.jsonl", "line 1", phrase)


def test_entries_cannot_leave_the_dataset_folder(tmp_path):
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "outside.png")  # a readable image: only the check stops it
    folder = tmp_path / "data"
    for name in ("../outside.png", str(tmp_path / "outside.png"), "sub/../../outside.png"):
        image_folder(folder, [{"file": name, "caption": "x"}])
        corrupt(lambda: load_image_folder(folder), folder / "captions.jsonl", "relative path inside the dataset folder")
    os.symlink(tmp_path / "outside.png", folder / "link.png")
    image_folder(folder, [{"file": "link.png", "caption": "x"}])
    corrupt(lambda: load_image_folder(folder), folder / "captions.jsonl", "leads outside the dataset folder")
    image_folder(folder, [{"file": "missing.png", "caption": "x"}])
    corrupt(lambda: load_image_folder(folder), folder / "missing.png", "is not a file")
    image_folder(folder, [{"file": "a.png", "caption": "inside is fine"}])
    assert load_image_folder(folder, size=8).captions == ["inside is fine"]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels and holds none: the header of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "side, phrase", [(20000, "claims 400,000,000 pixels"), (9000, "is 9000 x 9000 = 81,000,000 pixels")]
)
def test_an_image_header_over_the_pixel_cap(tmp_path, side, phrase):
    assert side * side > MAX_IMAGE_PIXELS
    folder = image_folder(tmp_path, [{"file": "bomb.png", "caption": "x"}])
    (folder / "bomb.png").write_bytes(png_header(side, side))
    corrupt(lambda: load_image_folder(folder), folder / "bomb.png", phrase, "more than the limit of 67,108,864")


def write_idx_bytes(path: Path, raw: bytes) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_idx_headers_cut_short_or_overflowing(tmp_path, name):
    path = write_idx_bytes(tmp_path / name, bytes([0, 0, 8, 3]) + bytes(5))  # 3 dimensions, 1.25 of them written
    corrupt(lambda: read_idx(path), path, "truncated in its header", "3 dimensions")
    path = write_idx_bytes(tmp_path / name, bytes([0, 0, 8]))
    corrupt(lambda: read_idx(path), path, "does not start with an IDX uint8 header")
    # (2^32 - 1)^3 bytes: a product that wraps around in numpy int64; no file can hold it
    huge = np.array([2**32 - 1] * 3, dtype=">u4").tobytes()
    path = write_idx_bytes(tmp_path / name, bytes([0, 0, 8, 3]) + huge + bytes(100))
    corrupt(
        lambda: read_idx(path), path, "truncated or its header is wrong", "79,228,162,458,924,105,385,300,197,375 bytes"
    )
    path = write_idx_bytes(tmp_path / name, bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(7))  # 6 bytes + 1 extra
    corrupt(lambda: read_idx(path), path, "trailing bytes")
    path = write_idx_bytes(tmp_path / name, bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(6))
    assert read_idx(path).shape == (2, 3)


def test_checksum_messages_say_what_is_on_disk(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"minildm" * 100)
    bad = RemoteFile(source.as_uri(), "copy.bin", "0" * 32)
    dest = tmp_path / "dest"
    message = corrupt(
        lambda: ensure_file(bad, dest, download=True),
        dest / "copy.bin",
        "nothing was written at",
        "it was deleted",
        "700 bytes",
    )
    assert ".part" not in message and not list(dest.iterdir())  # it names no file that is gone, and none is left
    (dest / "copy.bin").write_bytes(b"minildm")
    corrupt(
        lambda: ensure_file(bad, dest, download=False), dest / "copy.bin", "the file on disk is truncated or corrupted"
    )
    (dest / "copy.bin").unlink()
    (dest / "copy.bin").mkdir()
    corrupt(lambda: ensure_file(bad, dest, download=True), dest / "copy.bin", "is a folder")


def test_a_cifar_member_larger_than_a_batch_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "c.tar.gz"
    cifar_fixture(path, records_per_batch=4)
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, md5=md5_of(path)))
    monkeypatch.setattr(cifar, "RECORDS_PER_BATCH", 3)
    corrupt(lambda: cifar.read_cifar_archive(path, "test"), path, "more than the 3 records of a CIFAR-10 batch")
