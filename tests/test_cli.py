"""The command line: --help everywhere, typed --config.field=value, sampling to a grid, and
one-line errors (exit code 2, nothing half written) for every kind of bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_ldm import tiny_ldm

from minildm.autoencoder import save_autoencoder
from minildm.cli import UsageError, build_parser, main, model_options, parse_field
from minildm.demo import DemoConfig
from minildm.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "ldm.pt"
    save_checkpoint(tiny_ldm().checkpoint_state(), path)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors and --help
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "Traceback" not in err
    assert lines[-1].startswith("error:") or "error:" in lines[-1]
    for word in words:
        assert word in err, (word, err)


def test_python_m_minildm_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "minildm", "--help"], check=False, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train-autoencoder", "train-ldm", "sample", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["train-autoencoder", "train-ldm", "sample", "demo"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "usage:" in out


def test_config_fields_are_parsed_with_their_types():
    assert parse_field("1,2,4", tuple[int, ...], "x") == (1, 2, 4)
    assert parse_field("none", int | None, "x") is None and parse_field("3", int | None, "x") == 3
    assert parse_field("false", bool, "x") is False and parse_field("2e-3", float, "x") == 2e-3


def train_ldm_config(*options: str) -> DemoConfig:
    args = build_parser().parse_args(["train-ldm", "--autoencoder", "a.pt", "--out", "o", *options])
    return model_options(args, DemoConfig())


def test_the_unet_widths_follow_the_text_width():
    config = train_ldm_config("--text.width=32", "--text.num_heads=2")
    assert config.ldm.unet.context_dim == config.ldm.unet.pooled_dim == config.ldm.text_encoder.width == 32
    assert train_ldm_config("--text.width=32", "--text.num_heads=2", "--unet.pooled_dim=none").ldm.unet.pooled_dim is None


def test_ldm_fields_and_their_parts_are_checked_together():
    # eps prediction is refused on the default zero-terminal-SNR schedule, allowed with it off
    with pytest.raises(UsageError, match="zero-terminal-SNR schedule needs prediction_type"):
        train_ldm_config("--ldm.prediction_type=eps")
    config = train_ldm_config("--ldm.prediction_type=eps", "--schedule.zero_terminal_snr=false")
    assert config.ldm.prediction_type == "eps" and not config.ldm.schedule.zero_terminal_snr


def test_a_mistyped_field_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train-ldm", "--autoencoder", "a.pt", "--out", str(tmp_path), "--unet.base_channels=abc")
    assert code == 2 and "unet.base_channels must be a int, got 'abc'" in err
    code, _, err = run_cli(capsys, "train-ldm", "--autoencoder", "a.pt", "--out", str(tmp_path), "--unet.nope=1")
    assert code == 2 and "unrecognized arguments" in err


def test_sample_writes_a_grid(capsys, checkpoint, tmp_path):
    out = tmp_path / "grid.png"
    code, stdout, _ = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle", "--prompt", "a blue square",
        "--num", "2", "--steps", "2", "--out", str(out),
    )  # fmt: skip
    assert code == 0 and out.is_file() and "4 images" in stdout
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_sample_with_ddpm_and_no_guidance(capsys, checkpoint, tmp_path):
    out = tmp_path / "grid.png"
    code, _, _ = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle", "--sampler", "ddpm",
        "--steps", "2", "--guidance", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 0 and out.is_file()


def test_missing_checkpoint(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sample", "--checkpoint", str(tmp_path / "no.pt"), "--prompt", "a", "--out", str(tmp_path / "g.png"))
    assert_one_line_error(code, err, "no checkpoint at", "train one first")
    assert not (tmp_path / "g.png").exists()


def test_corrupt_checkpoint(capsys, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    code, _, err = run_cli(capsys, "sample", "--checkpoint", str(tmp_path / "bad.pt"), "--prompt", "a", "--out", str(tmp_path / "g.png"))
    assert_one_line_error(code, err, "not a readable minildm checkpoint")
    assert not (tmp_path / "g.png").exists()


def test_prompt_longer_than_the_context(capsys, checkpoint, tmp_path):
    long_prompt = "a large red circle at the top left " * 4
    code, _, err = run_cli(capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", long_prompt, "--out", str(tmp_path / "g.png"))
    assert_one_line_error(code, err, "too long", "at most 16")
    assert not (tmp_path / "g.png").exists()


def test_unknown_sampler(capsys, checkpoint, tmp_path):
    code, _, err = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a", "--sampler", "euler", "--out", str(tmp_path / "g.png")
    )
    assert code == 2 and "invalid choice: 'euler'" in err and "ddim" in err


def test_output_folder_that_cannot_be_written(capsys, checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a", "--out", str(blocker / "g.png"))
    assert_one_line_error(code, err, "cannot write to output folder", "choose another --out")
    code, _, err = run_cli(capsys, "demo", "--quick", "--out", str(blocker / "demo"))
    assert_one_line_error(code, err, "cannot write to output folder")


def test_a_size_the_autoencoder_cannot_take(capsys, tmp_path):
    save_autoencoder(tiny_ldm().autoencoder, tmp_path / "autoencoder.pt")
    code, _, err = run_cli(
        capsys, "train-ldm", "--autoencoder", str(tmp_path / "autoencoder.pt"), "--out", str(tmp_path / "out"), "--size", "24"
    )
    assert_one_line_error(code, err, "size 24 is not a size this autoencoder takes")
    assert not (tmp_path / "out").exists()


def test_bad_config_values_are_usage_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path), "--ldm.prediction_type=noise")
    assert_one_line_error(code, err, "prediction_type must be 'eps', 'x0' or 'v'")
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path), "--device", "cuda:7" if not torch.cuda.is_available() else "tpu")
    assert code == 2 and "error:" in err
