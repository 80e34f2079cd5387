"""Checkpoints that a crash cannot corrupt and that never run code when loaded.

Saving writes to a temporary file in the same folder, flushes it to disk, then renames it
over the target: `os.replace` is atomic on POSIX, so a reader sees either the old file or
the new one, never half of one. The temporary file is named `.<target>.<pid>.<random>.tmp`,
after the process that writes it: a save killed by SIGKILL leaves it behind, and the next
save of the same target (or `remove_stale_temp_files` at the start of a run) deletes those
whose writer is no longer alive.

Loading uses `torch.load(weights_only=True)`, which unpickles only tensors and plain
containers (dict, list, str, numbers), so an untrusted file cannot execute code. A file that
asks for anything else is refused with a message saying so. Store configs as
`dataclasses.asdict(config)`, not as objects. Every error is a one-line `CheckpointError`
that names the file and says what is wrong with it.
"""

import os
import pickle
import re
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
PICKLE_PROTO = b"\x80"  # a raw pickle (torch's legacy format, or plain pickle.dump) starts with PROTO


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe, or not what the caller expected."""


def error_summary(err: BaseException, limit: int = 160) -> str:
    """`err` as one short line: its type and the first sentence of its message (never empty)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    sentence = lines[0].split(". ")[0]
    text = sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _temp_pattern(target: Path) -> re.Pattern:
    # .<target name>.<pid>.<random from tempfile: [a-z0-9_]>.tmp
    return re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[a-z0-9_]+\.tmp")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OverflowError, ValueError):  # no process can have this id
        return False
    return True


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files of `save_checkpoint(..., path)` whose writing process is gone."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        return []
    pattern = _temp_pattern(target)
    stale = []
    for candidate in folder.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match and candidate.is_file() and not _process_alive(int(match.group(1))):
            stale.append(candidate)
    return sorted(stale)


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed saves of `path` left behind; returns them.

    Only files named after this target with the pattern `save_checkpoint` uses, and only
    those whose writer (the pid in the name) is no longer running on this machine.
    """
    removed = []
    for stale in stale_temp_files(path):
        stale.unlink(missing_ok=True)  # another process may have cleaned it first
        removed.append(stale)
    return removed


def _fsync_folder(folder: Path) -> None:
    # the rename is durable only once the folder entry itself is on disk
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def ctrl_c_after_the_write():
    """Hold Ctrl-C until the block is done, then raise KeyboardInterrupt. torch.save cannot stop
    half-way cleanly (an interrupt inside its zip writer surfaces as a RuntimeError on exit), so a
    checkpoint being written is finished first; only in the main thread with Python's own handler."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write `obj` to `path` atomically (temp file + fsync + rename). Returns the path."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise CheckpointError(
            f"cannot write a checkpoint to {path}: it is a folder, give a file name such as {path / 'model.pt'}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create the folder {folder} for {path.name}: {error_summary(err)}") from err
    if not os.access(folder, os.W_OK):
        raise CheckpointError(f"cannot write a checkpoint into {folder}: the folder is not writable")
    remove_stale_temp_files(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with ctrl_c_after_the_write(), os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp_name, path)
    except BaseException as err:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        if isinstance(err, OSError):  # disk full, quota, I/O error: the old checkpoint is untouched
            raise CheckpointError(
                f"could not write {path} (the previous file, if any, is untouched): {error_summary(err)}"
            ) from err
        raise
    _fsync_folder(folder)
    return path


def _refusal(path: Path, err: pickle.UnpicklingError) -> str:
    """Why `torch.load(weights_only=True)` refused `path`, in our words (never torch's advice)."""
    named = re.search(r"GLOBAL ([\w.]+)", str(err))
    if named:
        return (
            f"refused {path}: loading it would run code (it names {named.group(1)}, which unpickling would import "
            "and call); minildm loads only tensors and plain values, so save configs with dataclasses.asdict"
        )
    operand = re.search(r"Unsupported operand \d+", str(err))
    what = operand.group(0) if operand else error_summary(err).split(":")[0]
    return (
        f"refused {path}: it holds pickle instructions beyond tensors and plain values ({what}), which could run "
        "code; the file is damaged or was not written by minildm"
    )


def load_checkpoint(path: str | os.PathLike, required_keys: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint with weights_only=True; a one-line CheckpointError naming the file if it is
    missing, empty, truncated, not a checkpoint, asks to run code, not a dict, or lacks one of
    `required_keys`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file: pass the .pt file inside it")
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: train one first or check the path")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file, so it cannot be a checkpoint")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {error_summary(err)}") from err
    if size == 0:
        raise CheckpointError(
            f"{path} is not a readable minildm checkpoint: it is empty (0 bytes), its writing or copying was cut off; "
            "use another copy or train again"
        )
    if head.startswith(PICKLE_PROTO):
        raise CheckpointError(
            f"refused {path}: it is a raw pickle, not a torch.save zip archive, and unpickling it could run code; "
            "minildm loads only checkpoints written by torch.save"
        )
    if head != ZIP_MAGIC:
        raise CheckpointError(
            f"{path} is not a readable minildm checkpoint: torch.save writes a zip archive, "
            f"this file starts with {head!r}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, err)) from err
    except Exception as err:  # torch raises several types for a damaged archive
        raise CheckpointError(
            f"{path} is not a readable minildm checkpoint: truncated or damaged "
            f"({size:,} bytes; {error_summary(err)}); "
            "use another copy or train again"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict checkpoint")
    missing = [k for k in required_keys if k not in obj]
    if missing:
        keys = sorted(str(k) for k in obj)
        raise CheckpointError(f"{path} lacks {missing}; it has {keys[:12]}{' ...' if len(keys) > 12 else ''}")
    return obj
