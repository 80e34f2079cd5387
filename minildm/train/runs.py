"""What both trainers do the same way around their loops: where a run writes, when it may
resume or overwrite, how it draws random numbers, and when it shows progress.

- A folder that holds a checkpoint is never overwritten by accident: a run resumes it
  (`resume=True`), replaces it (`overwrite=True`), or refuses with a one-line RunError.
- Resuming checks the stored model and training configs against the current ones and names the
  fields that differ; asking for fewer steps than were already done is an error.
- Random numbers come from one generator per step, seeded from (seed, rank, step): a resumed
  run draws exactly what an uninterrupted one would, with no generator state to save.
- Progress bars show when stderr is a terminal, unless asked for or turned off.
"""

import os
import sys
from pathlib import Path

import torch

from minildm.checkpoint import CheckpointError, load_checkpoint, remove_stale_temp_files


class RunError(ValueError):
    """A run that would lose work or cannot continue the one it finds (one line, exit code 2)."""


def show_progress(progress: bool | None) -> bool:
    """progress=None: only when stderr is a terminal (not in CI logs or pipes)."""
    return sys.stderr.isatty() if progress is None else progress


def step_generator(seed: int, step: int, device: str | torch.device = "cpu", rank: int = 0) -> torch.Generator:
    """The generator for one training step; distinct for every (seed, rank, step)."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + rank * 7_919 + step) % 2**63)


def checkpoint_to_resume(
    path: Path | None, resume: bool, overwrite: bool, required_keys: tuple[str, ...], resume_flag: str
) -> dict | None:
    """The checkpoint at `path` to continue from, None to start afresh, or a RunError if
    starting afresh would overwrite it without being asked."""
    if path is None:
        return None
    remove_stale_temp_files(path)  # left by a run that was killed while writing
    if not path.exists():
        return None
    if resume:
        return load_checkpoint(path, required_keys=required_keys)
    if overwrite:
        return None
    raise RunError(
        f"{path} already holds a trained model: pass {resume_flag}=true to continue it, --overwrite to replace it, "
        "or choose another --out"
    )


def differing_fields(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two asdict() configs."""
    names = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += differing_fields(a, b, f"{prefix}{key}.")
        elif (list(a) if isinstance(a, tuple | list) else a) != (list(b) if isinstance(b, tuple | list) else b):
            names.append(f"{prefix}{key} ({a!r} in the checkpoint, {b!r} now)")
    return names


def check_resume(path: Path, stored_config: dict, current_config: dict, done_steps: int, steps: int) -> None:
    """Refuse to resume a checkpoint of another model, or with fewer steps than already done."""
    differ = differing_fields(stored_config, current_config)
    if differ:
        shown = "; ".join(differ[:4]) + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
        raise RunError(f"cannot resume {path}: its model config differs: {shown}")
    if steps < done_steps:
        raise RunError(f"cannot resume {path}: it has trained {done_steps} steps, more than the {steps} asked for")


def last_step(path: Path) -> int | None:
    """The step a checkpoint was saved at, or None if there is no readable one (for messages)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return None
    training = state.get("training")
    return int(training["step"]) if isinstance(training, dict) and "step" in training else None


def writable_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check that files can be written there, or raise RunError."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"output folder {folder} is a file: choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(
            f"cannot write to output folder {folder} ({err.strerror}): choose another --out or fix its permissions"
        ) from err
    if not os.access(folder, os.W_OK):
        raise RunError(
            f"cannot write to output folder {folder} (permission denied): choose another --out or fix its permissions"
        )
    return folder
