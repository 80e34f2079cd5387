"""One config tree for every stage, each setting in exactly one place (STYLE rule 15).

    Config
    ├── seed, device, threads, progress      one run: one seed, one device
    ├── data: DataConfig                     the built-in captioned shapes
    ├── autoencoder: AutoencoderConfig       the first stage's model (kind "kl" or "vq")
    ├── autoencoder_train: AutoencoderTrainConfig
    ├── ldm: LDMConfig                       U-Net, schedule, text encoder, prediction type
    │   ├── unet: UNetConfig
    │   ├── schedule: ScheduleConfig
    │   └── text_encoder: TextEncoderConfig
    ├── train: TrainConfig                   the LDM's training loop
    ├── sample: SampleConfig                 sampler, steps, guidance
    └── eval: EvalConfig                     held-out prompts and their judge

A few fields follow from others and are never set by hand: the U-Net's in/out channels are
the autoencoder's latent channels, its context (and pooled) width is the text encoder's width,
and the LDM's image size is the data's: `derive(config)` computes them, here and nowhere else.
The text encoder's vocabulary is the size of the BPE vocabulary learned from the captions, known
once it is learned (`train.stages.build_text_ldm`). The command line offers none of these
(`DERIVED`). Every value is checked when its dataclass is built, and `check(config)` checks the
parts against each other, so bad input fails before any data or model work.

Three presets share the tree: `laptop` (the default: `make demo`, minutes on 2 CPU cores),
`quick` (seconds, checks the plumbing only) and `gpu` (one GPU: the same models trained longer).
"""

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from minildm.autoencoder import AutoencoderConfig, AutoencoderTrainConfig
from minildm.diffusion import ScheduleConfig
from minildm.flags import set_path, tree_from_dict
from minildm.ldm import LDMConfig
from minildm.nn import UNetConfig
from minildm.pipelines.sampling import FLOW_SAMPLERS, SAMPLERS, SIGMA_SAMPLERS
from minildm.text import TextEncoderConfig
from minildm.train.trainer import TrainConfig

DEVICES = ("auto", "cpu", "cuda", "mps")
PRESETS = ("quick", "laptop", "gpu")
# set by derive(), never by a flag
DERIVED = (
    "ldm.unet.in_channels",
    "ldm.unet.out_channels",
    "ldm.unet.context_dim",
    "ldm.unet.pooled_dim",
    "ldm.text_encoder.vocab_size",
    "ldm.image_size",
)


class ConfigError(ValueError):
    """A setting that cannot work; the command line reports it in one line (exit code 2)."""


def check_finite(name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise ConfigError unless `value` is a finite number within [low, high]."""
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f" in [{low}, {high}]" if low is not None and high is not None else f" >= {low}" if low is not None else ""
        )
        raise ConfigError(f"{name} must be a finite number{bounds}, got {value}")


@dataclass
class DataConfig:
    size: int = 32  # image side in pixels
    num_train: int = 10000  # training images
    max_objects: int = 1  # the judge reads the main object; 1 keeps captions and images aligned
    # share of training captions that leave out the colour or the shape (half each): each word also seen alone
    partial_captions: float = 0.0

    def __post_init__(self):
        if self.num_train < 1 or self.max_objects < 1:
            raise ConfigError(f"num_train and max_objects must be >= 1, got {self.num_train} and {self.max_objects}")
        if not 0.0 <= self.partial_captions <= 1.0:
            raise ConfigError(f"data.partial_captions must be in [0, 1], got {self.partial_captions}")


@dataclass
class SampleConfig:
    sampler: str = "ddim"
    steps: int = 25  # sampler steps
    guidance: float = 4.0  # classifier-free guidance scale w (1: no guidance)
    guidance_rescale: float = 0.0  # phi of Lin et al. sec. 3.4 (0: off): the guided output back to the conditional std
    eta: float = 0.0  # DDIM only: 0 deterministic, 1 as much noise as DDPM
    karras: bool = False  # Karras et al.'s noise levels (rho = 7), for euler, euler_a, heun and dpmpp_2m
    batch_size: int = 200  # images per forward pass

    def __post_init__(self):
        if self.sampler not in SAMPLERS + FLOW_SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS + FLOW_SAMPLERS)}, got {self.sampler!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"sample steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        check_finite("sample.guidance", self.guidance, 0.0, 100.0)
        check_finite("sample.eta", self.eta, 0.0, 1.0)
        check_finite("sample.guidance_rescale", self.guidance_rescale, 0.0, 1.0)
        if self.eta and self.sampler != "ddim":
            raise ConfigError(f"sample.eta applies only to the ddim sampler, got sampler {self.sampler!r}")
        if self.karras and self.sampler not in SIGMA_SAMPLERS:
            raise ConfigError(
                f"sample.karras applies only to the samplers {', '.join(SIGMA_SAMPLERS)}, got {self.sampler!r}"
            )


@dataclass
class EvalConfig:
    num_prompts: int = 300  # held-out prompts sampled and judged (and as many seen-pair prompts)
    judge_steps: int = 0  # 0: the standard judge (cached under data/judges/); > 0: a quick one

    def __post_init__(self):
        if self.num_prompts < 2 or self.judge_steps < 0:
            raise ConfigError(
                f"eval.num_prompts must be >= 2 and judge_steps >= 0, got {self.num_prompts}, {self.judge_steps}"
            )


def laptop_autoencoder() -> AutoencoderConfig:
    """f = 4: 32x32x3 -> 8x8x4, small enough for a few thousand CPU steps; each latent channel
    standardised for diffusion (EDM2; why: docs/EXPERIMENTS.md, *The preset's first stage trained
    twice as long, with per-channel latents*)."""
    return AutoencoderConfig(
        base_channels=16,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        latent_channels=4,
        attention_in_middle=False,
        norm_groups=8,
        latent_norm="channel",
    )


def laptop_ldm() -> LDMConfig:
    """The demo's LDM; docs/EXPERIMENTS.md has the runs behind each choice."""
    unet = UNetConfig(
        in_channels=4, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
        attention_levels=(0, 1),  # cross-attention at 8x8 as well as 4x4
        num_heads=4, head_dim=32, context_dim=64, norm_groups=8,
        coordinate_channels=True,  # the U-Net is told where each latent pixel is
        pooled_dim=64,
    )  # fmt: skip
    return LDMConfig(
        unet=unet,
        text_encoder=TextEncoderConfig(context_length=16, width=64, num_layers=2, num_heads=4),
        schedule=ScheduleConfig(zero_terminal_snr=True),
        prediction_type="v",  # the v loss weights the x0 error by SNR + 1: layout is learnt at high noise
        pooled_text=True,  # the caption's end-token state joins the time embedding (SDXL)
        tokenizer_merges=200,
    )


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"  # auto: cuda if present, else mps, else cpu
    threads: int = 1  # torch threads; one is fastest on a shared 2-core machine (docs/BENCHMARKS.md)
    progress: bool | None = None  # progress bars; None: only when stderr is a terminal
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=laptop_autoencoder)
    autoencoder_train: AutoencoderTrainConfig = field(default_factory=lambda: AutoencoderTrainConfig.fast_cpu(4000))
    ldm: LDMConfig = field(default_factory=laptop_ldm)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=1800, lr=2e-3, warmup_steps=100, ema_decay=0.995)
    )
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if not 1 <= self.threads <= 1024:
            raise ConfigError(f"threads must be between 1 and 1024, got {self.threads}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2**63), got {self.seed}")


def preset(name: str) -> Config:
    """The `quick`, `laptop` or `gpu` configuration, derived and checked."""
    if name == "laptop":
        # the base models on both cores of a machine running nothing else, the LDM trained longer:
        # 3,000 steps fit notebook 06 in its 10 minutes (why this many: docs/EXPERIMENTS.md,
        # *Held-out shape in the course*); the first stage's 4,000 steps fit notebook 04 in its 10 minutes
        return resolve(Config(), {"threads": 2, "train.steps": 3000})
    if name == "quick":
        config = Config(
            data=DataConfig(num_train=256),
            autoencoder=AutoencoderConfig(
                base_channels=8, channel_mult=(1, 2, 2), latent_channels=4, attention_in_middle=False, norm_groups=4,
                latent_norm="channel",
            ),
            autoencoder_train=dataclasses.replace(AutoencoderTrainConfig.fast_cpu(3), batch_size=16),
            train=TrainConfig(steps=3, batch_size=16, warmup_steps=1),
            sample=SampleConfig(steps=2),
            eval=EvalConfig(num_prompts=16, judge_steps=5),
        )  # fmt: skip
        smaller = {"ldm.unet.base_channels": 16, "ldm.unet.head_dim": 8, "ldm.text_encoder.width": 32,
                   "ldm.text_encoder.num_layers": 1, "ldm.text_encoder.num_heads": 2}  # fmt: skip
        return resolve(config, smaller)
    if name == "gpu":
        # the laptop models on one GPU, trained longer: the LDM 7,200 steps (the laptop's 3,000) on
        # twice the batch, the first stage 8,000 (4,000)
        config = Config(
            device="cuda", train=TrainConfig(steps=7200, batch_size=128, lr=2e-3, warmup_steps=200, ema_decay=0.999)
        )
        return derive(dataclasses.replace(config, autoencoder_train=AutoencoderTrainConfig.fast_cpu(8000)))
    raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")


def fill_derived(tree: dict) -> None:
    """Set the DERIVED fields of an asdict(Config) tree from the fields they follow."""
    ldm, latent_channels = tree["ldm"], tree["autoencoder"]["latent_channels"]
    # the U-Net reads and predicts latents: as many channels as the autoencoder gives
    ldm["unet"]["in_channels"] = ldm["unet"]["out_channels"] = latent_channels
    if ldm["text_encoder"] is not None:
        width = ldm["text_encoder"]["width"]  # the U-Net reads the text encoder's states
        ldm["unet"]["context_dim"] = width
        ldm["unet"]["pooled_dim"] = width if ldm["pooled_text"] else None
    ldm["image_size"] = tree["data"]["size"]


def resolve(base: Config, overrides: dict[str, object]) -> Config:
    """`base` with each {"path.to.field": value} applied, the derived fields filled in, and
    everything checked at once: a ConfigError names the part and what it expected."""
    tree = dataclasses.asdict(base)
    for path, value in overrides.items():
        set_path(tree, path, value)
    fill_derived(tree)
    try:
        config = tree_from_dict(Config, tree)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    check(config)
    return config


def derive(config: Config) -> Config:
    """`config` with its derived fields filled in, checked."""
    return resolve(config, {})


def check(config: Config) -> None:
    """Check the parts against each other (each part checked its own fields when built)."""
    f = config.autoencoder.downsampling_factor
    size = config.data.size
    if size < 16 or size & (size - 1) or size % f:
        raise ConfigError(
            f"size {size} is not a size this autoencoder takes: use a power of two >= 16 divisible by its "
            f"downsampling factor f={f} (e.g. 32)"
        )
    if config.sample.steps > config.ldm.schedule.num_timesteps:
        raise ConfigError(
            f"sample.steps must be at most the schedule's {config.ldm.schedule.num_timesteps} timesteps, "
            f"got {config.sample.steps}"
        )


def select_device(requested: str, cuda: bool | None = None, mps: bool | None = None) -> str:
    """The torch device for --device: "auto" picks cuda, else mps, else cpu; an explicit device
    that is not there is a ConfigError. `cuda` / `mps` override what torch reports (for tests)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    mps = (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()) if mps is None else mps
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested.startswith("cuda") and not cuda:
        raise ConfigError(f"--device {requested} asked for, but torch sees no CUDA GPU here: use --device cpu or auto")
    if requested == "mps" and not mps:
        raise ConfigError("--device mps asked for, but torch sees no Apple GPU here: use --device cpu or auto")
    return requested


def check_sampler_fits(config: Config) -> None:
    """For commands that train and then sample: the sampler must fit the model's objective."""
    if (config.ldm.objective == "flow") != (config.sample.sampler == "flow_euler"):
        raise ConfigError(
            f"a flow-matching LDM samples with --sample.sampler=flow_euler, a diffusion LDM with any other sampler; "
            f"got objective {config.ldm.objective!r} and sampler {config.sample.sampler!r}"
        )
