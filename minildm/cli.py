"""The command line: python -m minildm {train-autoencoder, train-ldm, sample, demo} --help.

Every option that sets a config field is spelled `--<config>.<field>=<value>` and maps onto
that dataclass with its field's type checked (STYLE rule 7): `--unet.base_channels=64`,
`--unet.channel_mult=1,2`, `--train.lr=2e-3`, `--ldm.prediction_type=v`. A few common
ones have short names (`--steps`, `--batch-size`, `--device`, `--size`).

Bad input (a missing or corrupt checkpoint, a prompt longer than the context, an image size
the autoencoder cannot take, an unknown sampler, an output folder that cannot be written)
ends with a one-line message on stderr that says what to do, and exit code 2. Checks run
before any work, and files are written atomically (temp file, then rename), so a failed
command leaves nothing half written.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import types
import typing
from pathlib import Path

import torch

from minildm.autoencoder import AutoencoderConfig, load_autoencoder
from minildm.demo import DemoConfig, run_demo, train_autoencoder_stage, train_ldm_stage
from minildm.diffusion import ScheduleConfig
from minildm.ldm import LDMConfig, load_ldm
from minildm.nn import UNetConfig
from minildm.pipelines.sampling import SAMPLERS, make_sampler
from minildm.pipelines.text_to_image import text_to_image
from minildm.text import TextEncoderConfig
from minildm.checkpoint import CheckpointError
from minildm.train.distributed import init_distributed, shutdown
from minildm.train.trainer import TrainConfig
from minildm.viz import save_image_grid


class UsageError(ValueError):
    """Bad input from the command line: reported in one line with exit code 2."""


# ---- --config.field=value onto dataclasses ------------------------------------------------


def parse_field(text: str, annotation, name: str):
    """Convert `text` to the type `annotation` of dataclass field `name`, or raise ArgumentTypeError."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.lower() == "none":
            return None
        return parse_field(text, options[0], name)
    if typing.get_origin(annotation) is tuple:
        item_type = typing.get_args(annotation)[0]
        return tuple(parse_field(item, item_type, name) for item in text.split(",") if item)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise argparse.ArgumentTypeError(f"{name} must be true or false, got {text!r}")
    try:
        return annotation(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be a {annotation.__name__}, got {text!r}") from None


def add_config_arguments(
    parser: argparse.ArgumentParser, prefix: str, config_class, skip: tuple[str, ...] = ()
) -> None:
    """Add --prefix.field for every plain field (int, float, str, bool, tuples, optionals)
    except those in `skip` (set by another option)."""
    group = parser.add_argument_group(f"{prefix} options ({config_class.__name__})")
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if field.name in skip:
            continue
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation) or any(
            dataclasses.is_dataclass(a) for a in typing.get_args(annotation)
        ):
            continue  # nested configs have their own prefix
        name = f"{prefix}.{field.name}"
        group.add_argument(
            f"--{name}",
            dest=name,
            metavar=getattr(annotation, "__name__", str(annotation)).upper(),
            type=lambda text, a=annotation, n=name: parse_field(text, a, n),
            default=argparse.SUPPRESS,
        )


def field_overrides(args: argparse.Namespace, prefix: str) -> dict:
    """{field: value} for every --prefix.field given on the command line."""
    return {key.split(".", 1)[1]: value for key, value in vars(args).items() if key.startswith(prefix + ".")}


def config_from_args(args: argparse.Namespace, prefix: str, base):
    """`base` with every --prefix.field given on the command line replaced."""
    try:
        return dataclasses.replace(base, **field_overrides(args, prefix))
    except ValueError as err:
        raise UsageError(f"--{prefix}.*: {err}") from err


# ---- checks that run before any work -----------------------------------------------------


def check_writable_folder(folder: Path) -> Path:
    """Create `folder` if needed and make sure we can write there, or raise UsageError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UsageError(
            f"cannot write to output folder {folder} ({err.strerror}): choose another --out or fix its permissions"
        ) from err
    return folder


def check_image_size(size: int, autoencoder_config: AutoencoderConfig) -> None:
    f = autoencoder_config.downsampling_factor
    if size < 16 or size & (size - 1) or size % f:
        raise UsageError(
            f"--size {size} is not a size this autoencoder takes: use a power of two >= 16 "
            f"divisible by its downsampling factor f={f} (e.g. 32)"
        )


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


# ---- the commands ------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {args.out!r}")
    check_writable_folder(out.parent if str(out.parent) else Path("."))
    if args.num < 1 or args.steps < 1:
        raise UsageError(f"--num and --steps must be >= 1, got {args.num} and {args.steps}")
    check_device(args.device)
    torch.set_num_threads(args.threads)
    ldm = load_ldm(args.checkpoint, device=args.device)
    if ldm.config.conditioning != "text":
        raise UsageError(f"{args.checkpoint} is a {ldm.config.conditioning!r}-conditioned model; sample takes text models")
    if not args.prompt:
        raise UsageError("give at least one --prompt TEXT")
    prompts = [p for p in args.prompt for _ in range(args.num)]  # (prompt 0 x num, prompt 1 x num, ...)
    for prompt in args.prompt:  # fail now, before sampling, on a prompt longer than the context
        length = len(ldm.tokenizer.encode(prompt)) + 2  # with the start and end tokens
        if length > ldm.context_length:
            raise UsageError(
                f"prompt {prompt[:60]!r} is too long for this model: {length} tokens with the start and end "
                f"tokens, it reads at most {ldm.context_length}; shorten the prompt"
            )
    if args.steps > ldm.schedule.num_timesteps:
        raise UsageError(f"--steps must be at most the model's {ldm.schedule.num_timesteps} timesteps, got {args.steps}")
    generator = torch.Generator(args.device).manual_seed(args.seed)
    sampler = make_sampler(ldm, args.sampler, args.steps)
    images = text_to_image(ldm, sampler, prompts, guidance_scale=args.guidance, generator=generator)
    nrow = args.num if args.num > 1 else min(len(prompts), 8)
    save_png_atomically(images, out, nrow=nrow, title=f"{args.sampler}, {args.steps} steps, guidance {args.guidance}")
    print(f"wrote {out} ({len(images)} images)")


def check_device(device: str) -> None:
    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device} asked for, but torch sees no GPU here: use --device cpu")


def cmd_train_autoencoder(args: argparse.Namespace) -> None:
    config = config_from_args(args, "demo", DemoConfig())
    ae_config = config_from_args(args, "ae", config.autoencoder)
    check_image_size(config.size, ae_config)
    out = check_writable_folder(Path(args.out))
    torch.set_num_threads(config.threads)
    config = dataclasses.replace(config, autoencoder=ae_config)
    train_autoencoder_stage(config, out)
    print(f"wrote {out / 'autoencoder.pt'}")


def model_options(args: argparse.Namespace, config: DemoConfig) -> DemoConfig:
    """`config` with the --ae.*, --ldm.*, --unet.*, --text.*, --schedule.*, --train.* options applied."""
    # LDMConfig checks its parts against each other (context width, schedule against prediction
    # type), so the --ldm.* fields and its parts are replaced in one step
    text_config = config_from_args(args, "text", config.ldm.text_encoder)
    unet_config = config_from_args(args, "unet", config.ldm.unet)
    if text_config is not None:  # the U-Net reads the text encoder's states: its widths follow --text.width
        pooled_dim = None if unet_config.pooled_dim is None else text_config.width
        unet_config = dataclasses.replace(unet_config, context_dim=text_config.width, pooled_dim=pooled_dim)
    schedule = config_from_args(args, "schedule", config.ldm.schedule)
    try:
        ldm_config = dataclasses.replace(
            config.ldm,
            unet=unet_config,
            text_encoder=text_config,
            schedule=schedule,
            **field_overrides(args, "ldm"),
        )
    except ValueError as err:
        raise UsageError(f"--ldm.*: {err}") from err
    return dataclasses.replace(
        config,
        autoencoder=config_from_args(args, "ae", config.autoencoder),
        ldm=ldm_config,
        train=config_from_args(args, "train", config.train),
    )


def cmd_train_ldm(args: argparse.Namespace) -> None:
    config = model_options(args, config_from_args(args, "demo", DemoConfig()))
    check_device(config.device)
    autoencoder = load_autoencoder(args.autoencoder)  # a clear error now if it is missing or corrupt
    check_image_size(config.size, autoencoder.config)
    out = check_writable_folder(Path(args.out))
    torch.set_num_threads(config.threads)
    # under torchrun every rank runs this; without it, a single process (rank 0 of 1)
    dist_info = init_distributed(config.device)
    train_ldm_stage(config, autoencoder, out)
    shutdown(dist_info)  # only after success: a rank that failed takes the others down anyway
    if dist_info.is_main:
        print(f"wrote {out / 'ldm.pt'}")


def cmd_demo(args: argparse.Namespace) -> None:
    config = DemoConfig.quick() if args.quick else DemoConfig()
    config = model_options(args, config_from_args(args, "demo", config))
    check_device(config.device)
    check_image_size(config.size, config.autoencoder)
    out = check_writable_folder(Path(args.out))
    torch.set_num_threads(config.threads)
    run_demo(config, out)


# ---- the parser ----------------------------------------------------------------------------


def add_common(parser: argparse.ArgumentParser, stage: str) -> None:
    """The short names for the most used DemoConfig fields; stage "ae_" or "" picks which steps."""
    parser.add_argument("--size", dest="demo.size", type=int, default=argparse.SUPPRESS, help="image side in pixels")
    parser.add_argument("--steps", dest=f"demo.{stage}steps", type=int, default=argparse.SUPPRESS, help="training steps")
    parser.add_argument("--batch-size", dest=f"demo.{stage}batch_size", type=int, default=argparse.SUPPRESS)
    parser.add_argument("--device", dest="demo.device", default=argparse.SUPPRESS, help="cpu or cuda")
    parser.add_argument("--dataset", choices=("shapes",), default="shapes", help="the built-in captioned shapes")
    parser.add_argument("--num-samples", dest="demo.num_train", type=int, default=argparse.SUPPRESS)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "ldm", LDMConfig, skip=("image_size",))
    # in_channels, context_dim and vocab_size follow the autoencoder and the learned vocabulary
    add_config_arguments(parser, "unet", UNetConfig, skip=("in_channels", "context_dim"))
    add_config_arguments(parser, "text", TextEncoderConfig, skip=("vocab_size",))
    add_config_arguments(parser, "schedule", ScheduleConfig)
    add_config_arguments(parser, "train", TrainConfig, skip=("steps", "batch_size", "lr", "device", "out_dir", "seed"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minildm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ae = commands.add_parser("train-autoencoder", help="train the KL autoencoder on the shapes dataset")
    ae.add_argument("--out", required=True, help="folder for autoencoder.pt")
    add_common(ae, "ae_")
    add_config_arguments(ae, "demo", DemoConfig)
    add_config_arguments(ae, "ae", AutoencoderConfig)
    ae.set_defaults(run=cmd_train_autoencoder)

    ldm = commands.add_parser("train-ldm", help="train a text-conditional latent diffusion model")
    ldm.add_argument("--autoencoder", required=True, help="autoencoder.pt from train-autoencoder")
    ldm.add_argument("--out", required=True, help="folder for ldm.pt (resumed with --train.resume=true)")
    add_common(ldm, "")
    add_config_arguments(ldm, "demo", DemoConfig)
    add_model_arguments(ldm)
    ldm.set_defaults(run=cmd_train_ldm)

    sample = commands.add_parser("sample", help="text-to-image with a trained ldm.pt, written as a grid")
    sample.add_argument("--checkpoint", required=True, help="ldm.pt from train-ldm or demo")
    sample.add_argument("--prompt", action="append", default=[], help="a prompt; repeat for several")
    sample.add_argument("--out", required=True, help="the grid, a .png file")
    sample.add_argument("--num", type=int, default=1, help="images per prompt (one row each)")
    sample.add_argument("--steps", type=int, default=50, help="sampler steps")
    sample.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale w")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="ddim or ddpm")
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--threads", type=int, default=1)
    sample.set_defaults(run=cmd_sample)

    demo = commands.add_parser("demo", help="train everything from scratch, sample held-out prompts, report")
    demo.add_argument("--out", required=True, help="folder for checkpoints, pictures and report.md")
    demo.add_argument("--quick", action="store_true", help="a tiny run of a few seconds (smoke test)")
    demo.add_argument("--device", dest="demo.device", default=argparse.SUPPRESS, help="cpu or cuda")
    add_config_arguments(demo, "demo", DemoConfig)
    add_config_arguments(demo, "ae", AutoencoderConfig)
    add_model_arguments(demo)
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UsageError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
