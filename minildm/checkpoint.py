"""Checkpoints that a crash cannot corrupt and that never run code when loaded.

Saving writes to a temporary file in the same folder, flushes it to disk, then renames it
over the target: `os.replace` is atomic on POSIX, so a reader sees either the old file or
the new one, never half of one. Loading uses `torch.load(weights_only=True)`, which
unpickles only tensors and plain containers (dict, list, str, numbers), so an untrusted
file cannot execute code. Store configs as `dataclasses.asdict(config)`, not as objects.
"""

import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not what the caller expected."""


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write `obj` to `path` atomically (temp file + fsync + rename). Returns the path."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise CheckpointError(f"cannot write a checkpoint into {folder}: the folder is not writable")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, required_keys: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint with weights_only=True; a clear CheckpointError if it is missing,
    corrupt, not a dict, or lacks one of `required_keys`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first or check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(
            f"{path} is not a readable minildm checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict checkpoint")
    missing = [k for k in required_keys if k not in obj]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; it has {sorted(obj)}")
    return obj
