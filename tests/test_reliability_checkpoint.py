"""Checkpoints under faults and hostile files (issue 15, items 3, 10 and 13): every damaged file is
a one-line CheckpointError naming it, a pickle payload never runs on any library load path, and a
save killed by SIGKILL leaves the old checkpoint loadable and a temp file the next save removes."""

import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from minildm.checkpoint import (
    CheckpointError,
    error_summary,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    stale_temp_files,
)

TORCH_ADVICE = (
    "weights_only",
    "False",
    "safe_globals",
    "trust",
)  # torch's text, which reads as advice to turn the check off


def assert_one_line(err: pytest.ExceptionInfo, path: Path, *phrases: str) -> str:
    message = str(err.value)
    assert message and "\n" not in message and str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


def damaged_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a damaged checkpoint, a phrase the error must contain)."""
    save_checkpoint({"step": 1, "weight": torch.ones(64)}, folder / "good.pt")
    good = (folder / "good.pt").read_bytes()
    (folder / "empty.pt").write_bytes(b"")
    (folder / "half.pt").write_bytes(good[: len(good) // 2])
    (folder / "text.pt").write_text("hello\nworld\n")
    (folder / "folder.pt").mkdir()
    with zipfile.ZipFile(folder / "other.zip", "w") as archive:
        archive.writestr("notes/readme.txt", "not a checkpoint")
    save_checkpoint({"x": torch.zeros(1)}, folder / "wrong_keys.pt")
    torch.save([1, 2, 3], folder / "list.pt")
    os.mkfifo(folder / "fifo.pt")  # opening it would block: it must be refused before
    return {
        "empty": (folder / "empty.pt", "empty (0 bytes)"),
        "truncated": (folder / "half.pt", "truncated or damaged"),
        "not a zip": (folder / "text.pt", "zip archive"),
        "a folder": (folder / "folder.pt", "is a folder"),
        "a zip that is not torch's": (folder / "other.zip", "truncated or damaged"),
        "missing": (folder / "absent.pt", "no checkpoint at"),
        "lacks keys": (folder / "wrong_keys.pt", "lacks ['step']"),
        "not a dict": (folder / "list.pt", "holds a list"),
        "not a regular file": (folder / "fifo.pt", "not a regular file"),
    }


def test_damaged_checkpoints_are_one_line_errors_naming_the_file(tmp_path):
    for path, phrase in damaged_files(tmp_path).values():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path, required_keys=("step",))
        assert_one_line(err, path, phrase)
    assert load_checkpoint(tmp_path / "good.pt", required_keys=("step",))["step"] == 1


class Payload:
    """Unpickling this calls open(marker, "w"): code from the file, creating a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_payloads(folder: Path, marker: Path) -> list[Path]:
    """The same payload as a torch.save zip and as a raw pickle, inside a plausible checkpoint."""
    state = {"kind": "minildm.LatentDiffusion", "config": Payload(marker), "model": {}, "state_dict": {}}
    torch.save(state, folder / "evil_zip.pt")
    (folder / "evil_raw.pt").write_bytes(pickle.dumps(state))
    return [folder / "evil_zip.pt", folder / "evil_raw.pt"]


def test_the_payload_is_real(tmp_path):
    """Without the protection the payload does run: the tests below would see it."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_a_malicious_checkpoint_is_refused_without_running_or_advising_to_disable_the_check(tmp_path):
    marker = tmp_path / "ran"
    for path in write_payloads(tmp_path, marker):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        message = assert_one_line(err, path, "refused", "run code")
        assert not any(words in message for words in TORCH_ADVICE), message
    zipped = str(pytest.raises(CheckpointError, load_checkpoint, tmp_path / "evil_zip.pt").value)
    assert re.search(r"it names [\w.]*open, which unpickling would import and call", zipped)  # what the file asked for
    assert not marker.exists()


def test_pickle_instructions_the_safe_loader_does_not_know_are_refused_in_our_words(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "odd.pt")
    torch_text = (
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
        "but it can result in arbitrary code execution.\n\nUnsupported operand 149\n\nCheck the documentation"
    )

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(torch_text)

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = assert_one_line(err, path, "refused", "(Unsupported operand 149), which could run code")
    assert not any(words in message for words in TORCH_ADVICE), message


def library_load_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every library function that reads a checkpoint (or a vocabulary) a user may hand it."""
    from test_ldm import tiny_ldm

    from minildm.autoencoder.saving import load_autoencoder
    from minildm.datasets import ShapesConfig, ShapesDataset
    from minildm.datasets.shapes import GENERATOR_VERSION, cache_path
    from minildm.ldm import load_ldm
    from minildm.metrics import ClassifierTrainConfig, load_or_train_mnist_classifier
    from minildm.metrics.caption_match import load_or_train_shapes_classifier
    from minildm.text import CLIPTokenizer
    from minildm.train.trainer import TrainConfig, train_ldm

    monkeypatch.setenv("MINILDM_DATA", str(tmp_path / "data"))
    shapes = ShapesConfig(size=32, num_samples=4, cache=True)
    judge_config = ClassifierTrainConfig(steps=1, batch_size=2)

    def resume(path: Path) -> None:
        ldm = tiny_ldm()
        train_ldm(
            ldm, lambda generator, n: None, TrainConfig(steps=1, resume=True), out_dir=path.parent, progress=False
        )

    return {
        "load_checkpoint": (lambda path: load_checkpoint(path), None),
        "load_autoencoder": (load_autoencoder, None),
        "load_ldm": (load_ldm, None),
        "train_ldm resume": (resume, tmp_path / "run" / "ldm.pt"),
        "shapes cache": (lambda path: ShapesDataset(shapes), cache_path(shapes)),
        "mnist judge cache": (
            lambda path: load_or_train_mnist_classifier(root=tmp_path, train_config=judge_config),
            tmp_path / "data" / "judges" / "mnist_judge_steps1.pt",
        ),
        "shapes judge cache": (
            lambda path: load_or_train_shapes_classifier(32, train_config=judge_config),
            tmp_path / "data" / "judges" / f"shapes_judge_v{GENERATOR_VERSION}_32px_steps1.pt",
        ),
        "tokenizer vocabulary": (lambda path: CLIPTokenizer(vocab_path=path), None),
    }


def test_a_pickle_payload_never_runs_through_any_library_load_path(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    evil = write_payloads(tmp_path, marker)
    for name, (load, where) in library_load_paths(tmp_path, monkeypatch).items():
        for source in evil:
            target = source if where is None else where
            target.parent.mkdir(parents=True, exist_ok=True)
            if target != source:
                target.write_bytes(source.read_bytes())
            with pytest.raises((CheckpointError, ValueError)) as err:
                load(target)
            assert "\n" not in str(err.value) and str(target) in str(err.value), (name, str(err.value))
            assert not marker.exists(), name


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "ldm.pt")

    def disk_full(obj, f):
        f.write(b"PK\x03\x04partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint({"step": 2}, path)
    assert_one_line(err, path, "No space left on device", "untouched")
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["ldm.pt"]
    with pytest.raises(CheckpointError) as err:
        save_checkpoint({"step": 2}, tmp_path)
    assert_one_line(err, tmp_path, "is a folder")
    with pytest.raises(CheckpointError) as err:
        save_checkpoint({"step": 2}, path / "under_a_file.pt")
    assert_one_line(err, path, "cannot create the folder")


def test_error_summaries_are_one_short_line_and_never_empty():
    assert error_summary(EOFError()) == "EOFError" and error_summary(KeyError("")) == "KeyError: ''"
    assert error_summary(RuntimeError("first sentence. second one\nline two")) == "RuntimeError: first sentence"
    assert (
        error_summary(ValueError("\n\n  x" + "y" * 500)).endswith("...")
        and len(error_summary(ValueError("y" * 500))) < 180
    )


# A child that saves step 2 over a checkpoint and stops half-way through writing the temp file.
KILLED_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    import minildm.checkpoint as checkpoint

    def half_then_stall(obj, f):
        f.write(b"PK\\x03\\x04" + bytes(10_000))
        f.flush()
        print("writing", flush=True)
        time.sleep(120)

    checkpoint.torch.save = half_then_stall
    checkpoint.save_checkpoint({"step": 2}, sys.argv[1])
    """
)


def test_kill_9_mid_write_leaves_the_old_checkpoint_and_the_next_save_cleans_up(tmp_path):
    path = save_checkpoint({"step": 1}, tmp_path / "ldm.pt")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline() == "writing\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()  # reaped: its pid no longer names a process
    left = [p for p in tmp_path.iterdir() if p != path]
    assert [p.name.split(".")[3] for p in left] == [str(child.pid)] and left[0].stat().st_size > 10_000
    assert load_checkpoint(path)["step"] == 1  # kill -9 never leaves an unloadable checkpoint
    assert stale_temp_files(path) == left
    # left alone: a live writer's temp file, another target's, and files that only look alike
    alive = tmp_path / f".ldm.pt.{os.getpid()}.abc123.tmp"
    others = [tmp_path / f".other.pt.{child.pid}.abc123.tmp", tmp_path / ".ldm.pt.notes.tmp", tmp_path / "ldm.pt.tmp"]
    for keep in [alive, *others]:
        keep.write_bytes(b"")
    save_checkpoint({"step": 3}, path)
    assert load_checkpoint(path)["step"] == 3 and not left[0].exists()
    assert all(p.exists() for p in [alive, *others])
    assert remove_stale_temp_files(path) == []


def test_ctrl_c_during_a_save_finishes_the_checkpoint_first(tmp_path, monkeypatch):
    """An interrupt inside torch.save's zip writer would surface as a RuntimeError and a traceback;
    the save holds Ctrl-C until the file is written, then raises KeyboardInterrupt."""
    import os
    import signal

    from minildm.checkpoint import load_checkpoint, save_checkpoint

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest-xdist workers ignore SIGINT
    real_save = torch.save

    def save_with_ctrl_c(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of the write
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", save_with_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint({"x": torch.arange(3)}, tmp_path / "model.pt")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert torch.equal(load_checkpoint(tmp_path / "model.pt")["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
