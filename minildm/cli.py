"""The command line: python -m minildm {train-autoencoder, train-ldm, sample, demo} --help.

Every setting is a flag generated from the config tree (minildm/config.py, minildm/flags.py),
spelled by its path: `--autoencoder.kind=vq`, `--ldm.unet.channel_mult=1,2`, `--train.lr=2e-3`.
A command offers only the sections it reads; fields derived from others are not flags. A few
common ones have short names (`--steps`, `--batch-size`, `--size`, `--preset`).

Bad input (an unknown flag or value, a missing or corrupt checkpoint, a prompt longer than the
context, an output that cannot be written, a folder that already holds a trained model) ends
with one line on stderr that says what to do, and exit code 2, before any work starts. Files
are written atomically, so a failed or interrupted command (Ctrl-C: exit code 130) leaves
nothing half written.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minildm.autoencoder import load_autoencoder
from minildm.checkpoint import CheckpointError
from minildm.config import DERIVED, PRESETS, Config, ConfigError, check_sampler_fits, preset, resolve, select_device
from minildm.datasets import DatasetCorruptError, DatasetUnavailableError
from minildm.demo import run_demo
from minildm.evaluate import sample_prompts
from minildm.flags import add_tree_flags
from minildm.ldm import load_ldm
from minildm.pipelines.sampling import FLOW_SAMPLERS, SAMPLERS
from minildm.train.distributed import init_distributed, shutdown
from minildm.train.runs import RunError, last_step, writable_folder
from minildm.train.stages import train_first_stage, train_text_ldm
from minildm.viz import save_image_grid

# the commands train text models only: these fields would ask for another kind of model
NOT_OFFERED = (
    "ldm.conditioning",
    "ldm.unet.num_classes",
    "ldm.unet.extra_in_channels",
    "ldm.text_encoder.eos_token_id",
)
# the sections of the tree each command reads ("" is the top level: seed, device, threads, progress)
SECTIONS = {
    "train-autoencoder": ("", "data", "autoencoder", "autoencoder_train"),
    "train-ldm": ("", "data", "ldm", "train"),
    "sample": ("", "sample"),
    "demo": ("", "data", "autoencoder", "autoencoder_train", "ldm", "train", "sample", "eval"),
}
STEPS = {"train-autoencoder": "autoencoder_train", "train-ldm": "train", "sample": "sample", "demo": "train"}


class UsageError(ValueError):
    """Bad input from the command line: reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """argparse's errors (unknown flags, bad values) in one line, exit code 2."""
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


# ---- the config of a command -------------------------------------------------------------


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """{path: value} for every tree flag given on the command line."""
    return {key: value for key, value in vars(args).items() if key in args.tree_paths}


def command_config(args: argparse.Namespace) -> Config:
    """The preset with the command's flags applied, derived and checked (before any work)."""
    return resolve(preset(args.preset), overrides(args))


def start(config: Config) -> str:
    """Threads and the device, once the config is known; returns the device."""
    torch.set_num_threads(config.threads)
    return select_device(config.device)


# ---- the commands ------------------------------------------------------------------------


def cmd_train_autoencoder(args: argparse.Namespace) -> None:
    config = command_config(args)
    out = writable_folder(args.out)
    device = start(config)
    train_first_stage(config, device, out, overwrite=args.overwrite)
    print(f"wrote {out / 'autoencoder.pt'}")


def cmd_train_ldm(args: argparse.Namespace) -> None:
    config = command_config(args)
    autoencoder = load_autoencoder(args.autoencoder)  # a clear error now if it is missing or corrupt
    config = resolve(config, {f"autoencoder.{k}": v for k, v in dataclasses.asdict(autoencoder.config).items()})
    out = writable_folder(args.out)
    device = start(config)
    # under torchrun every rank runs this; without it, a single process (rank 0 of 1)
    dist_info = init_distributed(device)
    train_text_ldm(config, autoencoder, device, out, overwrite=args.overwrite)
    shutdown(dist_info)  # only after success: a rank that failed takes the others down anyway
    if dist_info.is_main:
        print(f"wrote {out / 'ldm.pt'}")


def cmd_sample(args: argparse.Namespace) -> None:
    config = command_config(args)
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.is_dir():
        raise UsageError(f"--out must name a .png file, got {args.out!r}")
    writable_folder(out.parent if str(out.parent) else ".")
    if not 1 <= args.num <= 4096:
        raise UsageError(f"--num must be between 1 and 4096, got {args.num}")
    if not args.prompt:
        raise UsageError("give at least one --prompt TEXT")
    device = start(config)
    ldm = load_ldm(args.checkpoint, device=device)
    if ldm.config.conditioning != "text":
        raise UsageError(
            f"{args.checkpoint} is a {ldm.config.conditioning!r}-conditioned model; sample takes text models"
        )
    for prompt in args.prompt:  # fail now, before sampling, on a prompt longer than the context
        length = len(ldm.tokenizer.encode(prompt)) + 2  # with the start and end tokens
        if length > ldm.context_length:
            raise UsageError(
                f"prompt {prompt[:60]!r} is too long for this model: {length} tokens with the start and end "
                f"tokens, it reads at most {ldm.context_length}; shorten the prompt"
            )
    sample = config.sample
    if sample.steps > ldm.schedule.num_timesteps:
        raise UsageError(
            f"--steps must be at most the model's {ldm.schedule.num_timesteps} timesteps, got {sample.steps}"
        )
    prompts = [p for p in args.prompt for _ in range(args.num)]  # (prompt 0 x num, prompt 1 x num, ...)
    images = sample_prompts(ldm, prompts, config, device)
    if not torch.isfinite(images).all():
        raise UsageError("the samples are not finite numbers (NaN or inf): lower --guidance or check the checkpoint")
    nrow = args.num if args.num > 1 else min(len(prompts), 8)
    save_png_atomically(images, out, nrow, f"{sample.sampler}, {sample.steps} steps, guidance {sample.guidance}")
    print(f"wrote {out} ({len(images)} images)")


def cmd_demo(args: argparse.Namespace) -> None:
    config = command_config(args)
    if args.autoencoder:  # as train-ldm: the file's first stage, so the report records the one used
        autoencoder = load_autoencoder(args.autoencoder)
        config = resolve(config, {f"autoencoder.{k}": v for k, v in dataclasses.asdict(autoencoder.config).items()})
    check_sampler_fits(config)
    out = writable_folder(args.out)
    device = start(config)
    run_demo(config, out, device, autoencoder_path=args.autoencoder, overwrite=args.overwrite)


def save_png_atomically(images: torch.Tensor, path: Path, nrow: int, title: str) -> None:
    """Write the grid to a temporary PNG beside `path`, then rename it over `path`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        save_image_grid(images, tmp_name, nrow=nrow, title=title)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


# ---- the parser ----------------------------------------------------------------------------


def add_command(commands, name: str, help_text: str, run) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(run=run, command=name)
    parser.add_argument("--preset", choices=PRESETS, default="laptop", help="quick (seconds), laptop (default), gpu")
    paths = add_tree_flags(parser, Config, SECTIONS[name], hidden=DERIVED + NOT_OFFERED)
    stage = STEPS[name]
    parser.add_argument(
        "--steps", dest=f"{stage}.steps", type=int, default=argparse.SUPPRESS, help=f"= --{stage}.steps"
    )
    paths.append(f"{stage}.steps")
    if name != "sample":
        parser.add_argument("--batch-size", dest=f"{stage}.batch_size", type=int, default=argparse.SUPPRESS,
                            help=f"= --{stage}.batch_size")  # fmt: skip
        parser.add_argument("--size", dest="data.size", type=int, default=argparse.SUPPRESS, help="= --data.size")
        parser.add_argument(
            "--overwrite", action="store_true", help="replace a trained model in --out instead of refusing"
        )
    parser.set_defaults(tree_paths=set(paths) | {"data.size", f"{stage}.batch_size"})
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m minildm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    ae = add_command(
        commands, "train-autoencoder", "train the first stage (KL or VQ) on the shapes dataset", cmd_train_autoencoder
    )
    ae.add_argument("--out", required=True, help="folder for autoencoder.pt")

    ldm = add_command(commands, "train-ldm", "train a text-conditional latent diffusion model", cmd_train_ldm)
    ldm.add_argument("--autoencoder", required=True, help="autoencoder.pt from train-autoencoder")
    ldm.add_argument("--out", required=True, help="folder for ldm.pt (continued with --train.resume=true)")

    sample = add_command(commands, "sample", "text-to-image with a trained ldm.pt, written as a grid", cmd_sample)
    sample.add_argument("--checkpoint", required=True, help="ldm.pt from train-ldm or demo")
    sample.add_argument("--prompt", action="append", default=[], help="a prompt; repeat for several")
    sample.add_argument("--out", required=True, help="the grid, a .png file")
    sample.add_argument("--num", type=int, default=1, help="images per prompt (one row each)")
    sample.add_argument(
        "--sampler",
        dest="sample.sampler",
        choices=SAMPLERS + FLOW_SAMPLERS,
        default=argparse.SUPPRESS,
        help="= --sample.sampler",
    )
    sample.add_argument(
        "--guidance", dest="sample.guidance", type=float, default=argparse.SUPPRESS, help="= --sample.guidance"
    )
    sample.add_argument("--karras", dest="sample.karras", action="store_const", const=True, default=argparse.SUPPRESS,
                        help="= --sample.karras=true")  # fmt: skip

    demo = add_command(commands, "demo", "train everything from scratch, sample held-out prompts, report", cmd_demo)
    demo.add_argument("--out", required=True, help="folder for checkpoints, pictures and report.md")
    demo.add_argument("--quick", dest="preset", action="store_const", const="quick", help="= --preset quick")
    demo.add_argument("--autoencoder", default=None, help="reuse this autoencoder.pt instead of training one")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UsageError, ConfigError, CheckpointError, RunError, DatasetCorruptError, DatasetUnavailableError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        for bar in list(getattr(tqdm, "_instances", ())):  # close open progress bars first, so the message is last
            bar.close()
        out = Path(getattr(args, "out", "."))
        name = {"train-autoencoder": "autoencoder.pt", "train-ldm": "ldm.pt", "demo": "ldm.pt"}.get(args.command)
        step = last_step(out / name) if name else None
        saved = f"; last checkpoint at step {step} in {out}" if step is not None else "; nothing was saved"
        print(f"\ninterrupted{saved}", file=sys.stderr)
        return 130
    return 0
