"""Real-dataset loaders on small fixture files that the tests write: IDX, CIFAR-10 binary,
image folders, and downloads (file:// URLs only, never the network)."""

import dataclasses
import gzip
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from minildm.datasets import (
    MNIST,
    DatasetCorruptError,
    DatasetUnavailableError,
    RemoteFile,
    cifar,
    ensure_file,
    load_cifar10,
    load_idx_dataset,
    load_image_folder,
)  # fmt: skip
from minildm.datasets.download import md5_of
from minildm.datasets.idx import IDXDatasetSpec, read_idx


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def idx_fixture(folder, n=5):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        files[split] = tuple(
            RemoteFile((folder / name).as_uri(), name, md5_of(folder / name))
            for name in (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
        )
    return IDXDatasetSpec("fixture", MNIST.class_names, files), images, labels


def test_idx_loader_pads_and_scales(tmp_path):
    spec, images, labels = idx_fixture(tmp_path)
    data = load_idx_dataset(spec, "train", root=tmp_path)
    assert data.images.shape == (5, 3, 32, 32) and torch.equal(data.labels, torch.from_numpy(labels))
    assert torch.allclose(data.images[:, 0, 2:30, 2:30], torch.from_numpy(images).float() / 127.5 - 1)
    assert (data.images[:, :, :2] == -1).all() and data[0]["label"] == labels[0]


def test_truncated_idx_is_an_error(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((3, 28, 28)))
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write(raw[:-10])
    with pytest.raises(DatasetCorruptError, match="truncated"):
        read_idx(path)
    path.write_bytes(path.read_bytes()[:20])  # a cut gzip stream
    with pytest.raises(DatasetCorruptError):
        read_idx(path)


def test_offline_error_names_the_file_and_the_place(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="train-images-idx3-ubyte.gz"):
        load_idx_dataset(MNIST, "train", root=tmp_path / "mnist")
    # download=True from an unreachable source: still a clear error, nothing half-written left
    missing = RemoteFile((tmp_path / "nowhere.bin").as_uri(), "a.bin", "0" * 32)
    with pytest.raises(DatasetUnavailableError, match="place it at"):
        ensure_file(missing, tmp_path / "dest", download=True)
    assert not list((tmp_path / "dest").iterdir())


def test_download_verifies_the_checksum(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"minildm" * 100)
    good = RemoteFile(source.as_uri(), "copy.bin", md5_of(source))
    path = ensure_file(good, tmp_path / "dest", download=True)
    assert path.read_bytes() == source.read_bytes()
    bad = dataclasses.replace(good, filename="bad.bin", md5="0" * 32)
    with pytest.raises(DatasetCorruptError, match="md5"):
        ensure_file(bad, tmp_path / "dest", download=True)
    assert not (tmp_path / "dest" / "bad.bin").exists()
    (tmp_path / "dest" / "copy.bin").write_bytes(b"minildm" * 50)  # truncated in place
    with pytest.raises(DatasetCorruptError, match="truncated or corrupted"):
        ensure_file(good, tmp_path / "dest", download=False)


def cifar_fixture(path, records_per_batch=4, cut=0):
    rng = np.random.default_rng(1)
    tables = {}
    with tarfile.open(path, "w:gz") as archive:
        for name in cifar.BATCHES["train"] + cifar.BATCHES["test"]:
            table = rng.integers(0, 256, (records_per_batch, cifar.RECORD_BYTES)).astype(np.uint8)
            table[:, 0] %= 10
            tables[name] = table
            raw = table.tobytes()[: len(table.tobytes()) - cut]
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return tables


def test_cifar_binary_reader(tmp_path, monkeypatch):
    tables = cifar_fixture(tmp_path / "cifar-10-binary.tar.gz")
    monkeypatch.setattr(
        cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, md5=md5_of(tmp_path / "cifar-10-binary.tar.gz"))
    )
    data = load_cifar10("test", root=tmp_path)
    table = tables["cifar-10-batches-bin/test_batch.bin"]
    assert data.images.shape == (4, 3, 32, 32) and data.labels.tolist() == table[:, 0].tolist()
    # channel planes: the first 1024 bytes after the label are the red 32x32 image
    assert torch.allclose(data.images[0, 0], torch.from_numpy(table[0, 1:1025].reshape(32, 32)).float() / 127.5 - 1)
    assert len(load_cifar10("train", root=tmp_path)) == 20


def test_cifar_truncated_record_is_an_error(tmp_path):
    cifar_fixture(tmp_path / "c.tar.gz", cut=7)
    with pytest.raises(DatasetCorruptError, match="whole number"):
        cifar.read_cifar_archive(tmp_path / "c.tar.gz", "test")


def test_image_folder_with_jsonl_and_with_txt(tmp_path):
    for i, colour in enumerate(("red", "blue", "red")):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{i}.png")
    lines = [
        json.dumps({"file": f"{i}.png", "caption": f"a {c} picture", "label": c})
        for i, c in enumerate(("red", "blue", "red"))
    ]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines))
    data = load_image_folder(tmp_path, size=16)
    assert (
        data.images.shape == (3, 3, 16, 16)
        and data.class_names == ("blue", "red")
        and data.labels.tolist() == [1, 0, 1]
    )
    assert (
        torch.allclose(data.images[0, :, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
        and data[1]["caption"] == "a blue picture"
    )
    (tmp_path / "captions.jsonl").unlink()
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"caption {i}\n")
    assert load_image_folder(tmp_path, size=8).captions == ["caption 0", "caption 1", "caption 2"]
    (tmp_path / "1.png").write_bytes(b"not a png")
    with pytest.raises(DatasetCorruptError, match="1.png"):
        load_image_folder(tmp_path, size=8)
    (tmp_path / "2.txt").unlink()
    with pytest.raises(DatasetCorruptError, match="no caption"):
        load_image_folder(tmp_path, size=8)


def test_mnist_judge_trains_on_fixture_files_and_says_when_they_are_missing(tmp_path, monkeypatch):
    from minildm.metrics import ClassifierTrainConfig, load_or_train_mnist_classifier

    monkeypatch.setenv("MINILDM_DATA", str(tmp_path / "data"))
    with pytest.raises(DatasetUnavailableError, match="place it at"):
        load_or_train_mnist_classifier(
            root=tmp_path / "absent", train_config=ClassifierTrainConfig(steps=2, batch_size=4)
        )
    spec, _, _ = idx_fixture(tmp_path)
    judge = load_or_train_mnist_classifier(
        spec, root=tmp_path, train_config=ClassifierTrainConfig(steps=2, batch_size=4)
    )
    assert set(judge.accuracy) == {"label", "all"} and judge(torch.zeros(2, 3, 32, 32))["label"].shape == (2, 10)
    assert len(list((tmp_path / "data" / "judges").glob("fixture_judge_*.pt"))) == 1
