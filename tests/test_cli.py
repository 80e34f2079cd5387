"""The command line: every flag it lists reaches the config, typed values, sampling to a grid,
and one-line errors (exit code 2, nothing half written) for every kind of bad input."""

import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from test_ldm import tiny_ldm

from minildm.autoencoder import save_autoencoder
from minildm.checkpoint import save_checkpoint
from minildm.cli import build_parser, command_config, main
from minildm.config import Config, ConfigError, preset, select_device
from minildm.flags import get_path, leaf_fields, parse_value

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("train-autoencoder", "train-ldm", "sample", "demo")
REQUIRED = {
    "train-autoencoder": ["--out", "o"],
    "train-ldm": ["--autoencoder", "a.pt", "--out", "o"],
    "sample": ["--checkpoint", "c.pt", "--prompt", "a", "--out", "g.png"],
    "demo": ["--out", "o"],
}
NOT_CONFIG = {
    "--help",
    "--out",
    "--checkpoint",
    "--prompt",
    "--num",
    "--autoencoder",
    "--overwrite",
    "--quick",
    "--preset",
}
OTHER_WORDS = {
    "device": ["cpu"], "sampler": ["ddpm"], "kind": ["vq"], "lr_schedule": ["cosine", "constant"],
    "pixel_loss": ["l1", "mse"], "gan_loss": ["non_saturating"], "lpips_net": ["vgg"],
    "beta_schedule": ["scaled_linear", "linear"],
    "prediction_type": ["x0"], "activation": ["gelu"], "objective": ["flow"], "flow_times": ["uniform"],
    "timesteps": ["flow_times"], "latent_norm": ["global", "channel"], "pool": ["mean"],
}  # fmt: skip
COMPANIONS = {"sample.karras": ["--sample.sampler=euler"]}  # a setting that needs another to be valid


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
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    for word in words:
        assert word in err, (word, err)


def candidates(value, annotation) -> list:
    """Values other than `value` that a field of type `annotation` may take."""
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)][0]
        return [None] if value is not None else {bool: [True, False], int: [1, 2, 8], float: [0.5, 1.0, 5.0]}[inner]
    if annotation is bool:
        return [not value]
    if annotation is int:
        return [value + 1, value * 2, value - 1, 1, 2]
    if annotation is float:
        return [value * 0.5, value + 0.1, 0.5, 1e-3]
    if typing.get_origin(annotation) is tuple:
        return [value[:-1], value + value[-1:], (1,), (0,)]
    return []


def as_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_in_help_changes_the_resolved_config(capsys, command):
    code, help_text, _ = run_cli(capsys, command, "--help")
    assert code == 0
    flags = sorted(set(re.findall(r"(--[a-z][\w.-]*)", help_text)) - NOT_CONFIG)
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    dest_of = {option: action.dest for action in sub._actions for option in action.option_strings}
    switches = {
        option: action.const for action in sub._actions for option in action.option_strings if action.nargs == 0
    }
    types = dict(leaf_fields(Config))
    base = command_config(parser.parse_args([command, *REQUIRED[command]]))
    assert len(flags) >= 4
    for flag in flags:
        path = dest_of[flag]
        current = get_path(base, path)
        if flag in switches:  # a flag without a value, e.g. --karras
            config = command_config(parser.parse_args([command, *REQUIRED[command], *COMPANIONS.get(path, []), flag]))
            assert get_path(config, path) == switches[flag] != current, flag
            continue
        field = path.split(".")[-1]
        options = OTHER_WORDS.get(field, []) if isinstance(current, str) else candidates(current, types[path])
        changed = False
        for value in options:
            if value == current:
                continue
            try:
                argv = [command, *REQUIRED[command], *COMPANIONS.get(path, []), f"{flag}={as_text(value)}"]
                config = command_config(parser.parse_args(argv))
            except ConfigError:
                continue
            assert get_path(config, path) == value, (flag, value)
            changed = True
            break
        assert changed, f"{command} {flag}: no value changed the config (tried {options})"


def test_derived_fields_are_not_flags_and_follow_what_they_derive_from(capsys):
    code, help_text, _ = run_cli(capsys, "demo", "--help")
    for derived in (
        "ldm.unet.in_channels",
        "ldm.unet.context_dim",
        "ldm.unet.pooled_dim",
        "ldm.text_encoder.vocab_size",
    ):
        assert f"--{derived}" not in help_text
    args = build_parser().parse_args(
        ["demo", "--out", "o", "--ldm.text_encoder.width=32", "--ldm.text_encoder.num_heads=2",
         "--autoencoder.latent_channels=8"]
    )  # fmt: skip
    config = command_config(args)
    assert config.ldm.unet.context_dim == config.ldm.unet.pooled_dim == 32
    assert config.ldm.unet.in_channels == config.ldm.unet.out_channels == 8
    off = command_config(build_parser().parse_args(["demo", "--out", "o", "--ldm.pooled_text=false"]))
    assert off.ldm.unet.pooled_dim is None


def test_each_command_offers_only_the_sections_it_reads(capsys):
    _, ae_help, _ = run_cli(capsys, "train-autoencoder", "--help")
    assert "--autoencoder_train.steps" in ae_help and "--ldm." not in ae_help and "--sample." not in ae_help
    _, sample_help, _ = run_cli(capsys, "sample", "--help")
    assert "--sample.guidance" in sample_help and "--train." not in sample_help and "--autoencoder." not in sample_help
    code, _, err = run_cli(capsys, "train-autoencoder", "--out", "o", "--sample.guidance=3")
    assert_one_line_error(code, err, "unrecognized arguments: --sample.guidance=3")


def test_values_are_parsed_with_their_types(capsys):
    assert parse_value("1,2,4", tuple[int, ...], "x") == (1, 2, 4)
    assert parse_value("none", int | None, "x") is None and parse_value("3", int | None, "x") == 3
    assert parse_value("false", bool, "x") is False and parse_value("2e-3", float, "x") == 2e-3
    code, _, err = run_cli(capsys, "train-ldm", "--autoencoder", "a.pt", "--out", "o", "--ldm.unet.base_channels=abc")
    assert_one_line_error(code, err, "--ldm.unet.base_channels must be an int, got 'abc'")
    for bad in ("nan", "inf", "-inf", "1e300"):
        code, _, err = run_cli(
            capsys, "sample", "--checkpoint", "c.pt", "--prompt", "a", "--out", "g.png", "--guidance", bad
        )
        assert_one_line_error(code, err, "guidance")


def test_bad_values_are_one_line_errors_before_any_work(capsys, tmp_path):
    cases = [
        (["train-ldm", "--autoencoder", "a.pt", "--steps", "-1"], "steps >= 0"),
        (["train-ldm", "--autoencoder", "a.pt", "--batch-size", "0"], "batch_size >= 1"),
        (["train-ldm", "--autoencoder", "a.pt", "--data.num_train", "0"], "num_train"),
        (["train-ldm", "--autoencoder", "a.pt", "--train.lr=nan"], "must be a finite number"),
        (["train-ldm", "--autoencoder", "a.pt", "--train.ema_decay=2"], "ema_decay must be in [0, 1)"),
        (["train-autoencoder", "--steps", "-3"], "steps >= 0"),
        (["train-autoencoder", "--batch-size", "0"], "batch_size >= 1"),
        (["demo", "--ldm.prediction_type=noise"], "prediction_type must be 'eps', 'x0' or 'v'"),
        (["demo", "--ldm.prediction_type=eps"], "zero-terminal-SNR schedule needs prediction_type"),
        (["demo", "--threads", "0"], "threads must be between 1 and 1024"),
        (["demo", "--size", "24"], "size 24 is not a size this autoencoder takes"),
        (["demo", "--device", "tpu"], "device must be one of"),
        (["demo", "--sample.guidance=-3"], "guidance must be a finite number in [0.0, 100.0]"),
        (["demo", "--data.partial_captions=1.5"], "data.partial_captions must be in [0, 1], got 1.5"),
    ]
    for argv, words in cases:
        out = tmp_path / "never"
        code, _, err = run_cli(capsys, *argv, "--out", str(out))
        assert_one_line_error(code, err, words)
        assert not out.exists(), argv  # refused before any work
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path), "--seed", "1e23")
    assert_one_line_error(code, err, "--seed must be an int")


def test_device_selection():
    assert select_device("auto", cuda=True, mps=True) == "cuda"
    assert select_device("auto", cuda=False, mps=True) == "mps"
    assert select_device("auto", cuda=False, mps=False) == "cpu"
    assert select_device("cpu", cuda=True, mps=True) == "cpu"
    assert select_device("cuda:1", cuda=True, mps=False) == "cuda:1"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        select_device("cuda", cuda=False, mps=False)
    with pytest.raises(ConfigError, match="no Apple GPU"):
        select_device("mps", cuda=False, mps=False)
    assert preset("laptop").device == "auto"


def test_python_m_minildm_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "minildm", "--help"], check=False, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


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


@pytest.mark.parametrize(
    "content, words",
    [(None, "no checkpoint at"), (b"\x00garbage", "not a readable minildm checkpoint"), (b"", "")],
)
def test_missing_corrupt_or_empty_checkpoint(capsys, tmp_path, content, words):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run_cli(
        capsys, "sample", "--checkpoint", str(path), "--prompt", "a", "--out", str(tmp_path / "g.png")
    )
    assert_one_line_error(code, err, words, str(path))
    assert not (tmp_path / "g.png").exists()
    code, _, err = run_cli(capsys, "train-ldm", "--autoencoder", str(path), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, str(path))


def test_prompt_longer_than_the_context(capsys, checkpoint, tmp_path):
    long_prompt = "a large red circle at the top left " * 4
    code, _, err = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", long_prompt, "--out", str(tmp_path / "g.png")
    )
    assert_one_line_error(code, err, "too long", "at most 16")
    assert not (tmp_path / "g.png").exists()


def test_unknown_sampler(capsys, checkpoint, tmp_path):
    code, _, err = run_cli(
        capsys,
        "sample",
        "--checkpoint",
        str(checkpoint),
        "--prompt",
        "a",
        "--sampler",
        "lms",
        "--out",
        str(tmp_path / "g.png"),
    )
    assert_one_line_error(code, err, "invalid choice: 'lms'", "ddim")


def test_outputs_that_cannot_be_written(capsys, checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a", "--out", str(blocker / "g.png")
    )
    assert_one_line_error(code, err, "choose another --out")
    code, _, err = run_cli(capsys, "demo", "--quick", "--out", str(blocker / "demo"))
    assert_one_line_error(code, err, "cannot write to output folder")
    code, _, err = run_cli(capsys, "demo", "--quick", "--out", str(blocker))
    assert_one_line_error(code, err, "is a file")
    (tmp_path / "folder.png").mkdir()
    code, _, err = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a", "--out", str(tmp_path / "folder.png")
    )
    assert_one_line_error(code, err, "--out must name a .png file")


def test_a_trained_autoencoder_is_not_overwritten(capsys, tmp_path):
    save_autoencoder(tiny_ldm().autoencoder, tmp_path / "autoencoder.pt")
    before = (tmp_path / "autoencoder.pt").read_bytes()
    code, _, err = run_cli(capsys, "train-autoencoder", "--preset", "quick", "--out", str(tmp_path))
    assert_one_line_error(code, err, "already holds a trained model", "--autoencoder_train.resume=true", "--overwrite")
    assert (tmp_path / "autoencoder.pt").read_bytes() == before


def test_a_pickle_payload_never_runs_through_the_command_line(capsys, tmp_path):
    from test_reliability_checkpoint import write_payloads

    marker = tmp_path / "ran"
    for evil in write_payloads(tmp_path, marker):
        resume_dir = tmp_path / f"resume_{evil.stem}"
        resume_dir.mkdir()
        (resume_dir / "ldm.pt").write_bytes(evil.read_bytes())
        save_autoencoder(tiny_ldm().autoencoder, resume_dir / "autoencoder.pt")
        for argv in (
            ["sample", "--checkpoint", str(evil), "--prompt", "a", "--out", str(tmp_path / "g.png")],
            ["train-ldm", "--preset", "quick", "--autoencoder", str(evil), "--out", str(tmp_path / "o")],
            ["train-ldm", "--preset", "quick", "--size", "16", "--data.num_train", "16", "--autoencoder",
             str(resume_dir / "autoencoder.pt"), "--out", str(resume_dir), "--train.resume=true"],
            ["demo", "--quick", "--autoencoder", str(evil), "--out", str(tmp_path / "d")],
        ):  # fmt: skip
            code, _, err = run_cli(capsys, *argv)
            assert_one_line_error(code, err, "refused")
            assert "weights_only" not in err and not marker.exists(), argv


def test_sample_with_dpm_solver_and_karras_sigmas(capsys, checkpoint, tmp_path):
    out = tmp_path / "grid.png"
    code, _, err = run_cli(capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle",
                           "--sampler", "dpmpp_2m", "--karras", "--steps", "3", "--out", str(out))  # fmt: skip
    assert code == 0 and out.is_file(), err
    code, _, err = run_cli(
        capsys, "sample", "--checkpoint", str(checkpoint), "--prompt", "a", "--karras", "--out", str(out)
    )
    assert_one_line_error(code, err, "karras applies only to the samplers")
