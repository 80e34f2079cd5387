"""Download with a progress bar and checksum verification; offline, an error that says what to place where.

A dataset file is a `RemoteFile` (url, file name, md5). `ensure_file` returns its local path
after checking the md5: a file that is present but wrong (truncated, corrupted) is an error,
never a silently partial dataset. Downloads go to a temporary file and are renamed only once
verified. With no network, the error lists the URL and the exact path to put the file at.
"""

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm


class DatasetUnavailableError(FileNotFoundError):
    """A dataset file is missing and could not be downloaded."""


class DatasetCorruptError(ValueError):
    """A dataset file is present but truncated, corrupted or not what was expected."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    md5: str


def md5_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, destination: Path) -> None:
    """Copy `url` to `destination` with a tqdm progress bar (urllib; file:// URLs work too)."""
    with urllib.request.urlopen(url, timeout=30) as response, open(destination, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


def verify(path: Path, remote: RemoteFile) -> None:
    """A DatasetCorruptError if the file on disk at `path` does not have `remote`'s md5."""
    actual = md5_of(path)
    if actual != remote.md5:
        raise DatasetCorruptError(
            f"{path} has md5 {actual}, expected {remote.md5}: the file on disk is truncated or corrupted. "
            f"Delete it and download it again from {remote.url}"
        )


def ensure_file(remote: RemoteFile, folder: Path, download: bool) -> Path:
    """The verified local path of `remote` inside `folder`, downloading it if allowed."""
    path = Path(folder) / remote.filename
    if path.exists() and not path.is_file():
        raise DatasetCorruptError(
            f"{path} is a folder or a special file, expected the file {remote.filename} from {remote.url}"
        )
    if path.is_file():
        verify(path, remote)
        return path
    if not download:
        raise DatasetUnavailableError(
            f"{path} is missing: download {remote.url} and place it at {path}, or pass download=True"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        fetch(remote.url, partial)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            f"could not download {remote.url} ({err}). This machine may be offline: "
            f"download the file elsewhere and place it at {path}"
        ) from err
    actual, size = md5_of(partial), partial.stat().st_size
    if actual != remote.md5:
        partial.unlink()
        raise DatasetCorruptError(
            f"the download of {remote.url} has md5 {actual}, expected {remote.md5} ({size:,} bytes: cut short, or "
            f"changed on the server); it was deleted and nothing was written at {path}. "
            f"Try again, or place a good copy at {path}"
        )
    os.replace(partial, path)
    return path
