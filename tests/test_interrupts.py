"""Ctrl-C and kill -9 in the middle of real commands: one line and exit code 130 for Ctrl-C,
nothing half written, and the last checkpoint still loads (issue: nothing lost)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from test_ldm import tiny_ldm

from minildm.autoencoder import save_autoencoder
from minildm.checkpoint import load_checkpoint, save_checkpoint
from minildm.ldm import load_ldm

REPO = Path(__file__).resolve().parents[1]


def default_ctrl_c() -> None:
    """In the child: Ctrl-C's default disposition. A pytest-xdist worker ignores SIGINT, and an
    ignored signal is inherited across exec, so Python would never raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minildm", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=default_ctrl_c, text=True)  # fmt: skip


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def train_ldm_command(tmp_path: Path) -> list[str]:
    save_autoencoder(tiny_ldm().autoencoder, tmp_path / "autoencoder.pt")  # f = 2: 16x16 images
    return ["train-ldm", "--autoencoder", str(tmp_path / "autoencoder.pt"), "--out", str(tmp_path / "out"),
            "--preset", "quick", "--size", "16", "--data.num_train", "32", "--batch-size", "4", "--steps", "100000",
            "--train.checkpoint_every=2"]  # fmt: skip


def test_ctrl_c_while_training_says_where_the_last_checkpoint_is(tmp_path):
    process = start(*train_ldm_command(tmp_path))
    wait_for(tmp_path / "out" / "ldm.pt", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 130, err
    assert "Traceback" not in err and lines[-1].startswith("interrupted; last checkpoint at step ")
    assert str(tmp_path / "out") in lines[-1]
    step = int(lines[-1].split("step ")[1].split()[0])
    assert step >= 2 and load_checkpoint(tmp_path / "out" / "ldm.pt")["training"]["step"] == step
    load_ldm(tmp_path / "out" / "ldm.pt")  # loads
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_kill_9_while_training_leaves_a_loadable_checkpoint_and_resume_cleans_up(tmp_path):
    command = train_ldm_command(tmp_path)
    process = start(*command)
    wait_for(tmp_path / "out" / "ldm.pt", process)
    time.sleep(0.7)
    process.kill()
    process.wait()
    state = load_checkpoint(tmp_path / "out" / "ldm.pt")
    done = state["training"]["step"]
    resume = [*command[:-3], "--steps", str(done + 2), "--train.checkpoint_every=2", "--train.resume=true"]
    result = subprocess.run(
        [sys.executable, "-m", "minildm", *resume], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(tmp_path / "out" / "ldm.pt")["training"]["step"] == done + 2
    assert not list((tmp_path / "out").glob(".*.tmp"))  # a killed writer's temp files are cleaned at the next start


def test_ctrl_c_while_sampling_writes_nothing(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tiny_ldm().checkpoint_state(), tmp_path / "ldm.pt")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "minildm", "sample", "--checkpoint", str(tmp_path / "ldm.pt"),
             "--prompt", "a red circle", "--num", "600", "--steps", "100", "--out", str(tmp_path / "grid.png"),
             "--progress=true"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=default_ctrl_c,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while "denoising" not in log.read_text():  # the progress bar: the first denoising step is running
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    err = log.read_text()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted; nothing was saved"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ldm.pt", "stderr.txt"]
