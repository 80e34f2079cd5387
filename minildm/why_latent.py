"""Why latent: the cost of diffusion in pixel space and in latent space, measured.

The paper's central claim (Rombach et al. 2022, sec. 1 and 4.1, fig. 6, table 6): a diffusion
model trained on the latents of an autoencoder with downsampling factor f = 4 to 16 costs far
less than the same model on pixels (f = 1) at similar or better quality; LDM-4 trains 2.9x and
samples 3.7x faster than LDM-1. Here the same U-Net configuration is trained, on the built-in
shapes dataset, class-conditional on the (shape, colour) of the main object, in

    pixel space   f = 1: H x W x 3        (LDM-1: the first stage is the identity, E(x) = D(x) = x)
    latent space  f = 4: H/4 x W/4 x 3    (a KL autoencoder, c = 3 as the paper's LDM-4)
    latent space  f = 8: H/8 x W/8 x 4    (c = 4 as LDM-8 and Stable Diffusion)

and three things are measured on the current device (minildm/measure.py says how):
1. training images per second: latents cached (encoded once, train/trainer.py) and encoded on
   the fly at every step; memory of a training step;
2. sampling time per image: DDIM with classifier-free guidance, decoding included;
3. quality at equal training time: each model trains for the same number of seconds (the
   step count comes from its measured step time), then the attribute classifier judges its
   samples: Frechet distance in its feature space and caption-match accuracy.

Notebook 08 shows them; `python bench/why_latent.py` prints them as tables, with the speed
levers (fused AdamW, gradient checkpointing, minildm against diffusers) beside them.
"""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from minildm.autoencoder import (
    AutoencoderConfig,
    AutoencoderKL,
    AutoencoderTrainConfig,
    load_autoencoder,
    save_autoencoder,
    train_autoencoder,
)
from minildm.datasets import COLOURS, SHAPES, ShapesDataset
from minildm.ldm import LatentDiffusion, LDMBatch, LDMConfig
from minildm.measure import median_seconds, memory_kind, peak_step_bytes
from minildm.metrics import AttributeClassifier, caption_match_accuracy, frechet_with_floor
from minildm.nn import UNetConfig
from minildm.pipelines import class_to_image, make_sampler
from minildm.train.trainer import TensorBatches, TrainConfig, train_ldm

NUM_CLASSES = len(SHAPES) * len(COLOURS)  # one class per (shape, colour) of the main object


@dataclass
class Space:
    name: str
    f: int  # downsampling factor: the model sees (c, H/f, W/f)
    channels: int  # c


SPACES = (Space("pixel f=1", 1, 3), Space("latent f=4", 4, 3), Space("latent f=8", 8, 4))


@dataclass
class WhyLatentConfig:
    size: int = 64  # image side in pixels
    base_channels: int = 64  # the U-Net, the same in every space
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1, 2)
    head_dim: int = 32
    norm_groups: int = 32
    ae_base_channels: int = 64  # the autoencoders
    ae_norm_groups: int = 32
    ae_steps: int = 3000
    batch: int = 64
    repeats: int = 10  # timed training steps per measurement
    warmup: int = 3
    sample_images: int = 16
    sample_steps: int = 50  # DDIM steps for the sampling time
    guidance: float = 4.0
    train_seconds: float = 600.0  # training time of every model in the quality comparison
    num_train: int = 20000
    num_eval: int = 500  # samples judged per model
    quality_sample_steps: int = 50
    lr: float = 1e-3
    levers_batch: int = 64
    judge_steps: int = 600  # training steps of the attribute classifier (cached under data/judges/)

    @classmethod
    def cpu(cls) -> "WhyLatentConfig":
        """A shared CPU: 32x32 images, a lighter U-Net, 60 s of training per model, 10 DDIM steps when judging."""
        return cls(size=32, base_channels=32, num_res_blocks=1, ae_base_channels=32, ae_steps=300, batch=16, repeats=3,
                   warmup=1, sample_images=4, train_seconds=60.0, num_train=5000, num_eval=48, quality_sample_steps=10,
                   levers_batch=8, judge_steps=400)  # fmt: skip

    @classmethod
    def quick(cls) -> "WhyLatentConfig":
        """Seconds end to end: checks the plumbing, measures nothing worth reading."""
        return cls(size=16, base_channels=16, channel_mult=(1, 2), attention_levels=(1,), head_dim=8, norm_groups=8,
                   ae_base_channels=8, ae_norm_groups=8, ae_steps=2, batch=4, repeats=1, warmup=1, sample_images=2,
                   sample_steps=2, train_seconds=1.0, num_train=64, num_eval=8, quality_sample_steps=2,
                   levers_batch=1, judge_steps=5)  # fmt: skip


class PixelSpace(nn.Module):
    """The identity as a first stage, E(x) = D(x) = x: latent diffusion with f = 1 is pixel diffusion
    (LDM-1). It implements the first-stage interface (minildm/autoencoder/first_stage.py)."""

    kind = "identity"
    sum_pixel_loss = False

    def __init__(self):
        super().__init__()
        self.config = AutoencoderConfig(channel_mult=(1,), latent_channels=3)  # f = 2 ** 0 = 1, c = 3
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return x


def make_autoencoder(space: Space, cfg: WhyLatentConfig) -> nn.Module:
    if space.f == 1:
        return PixelSpace()
    levels = space.f.bit_length()  # f = 2 ** (levels - 1)
    mult = (1, 2, 4, 4, 4)[:levels]
    return AutoencoderKL(AutoencoderConfig(base_channels=cfg.ae_base_channels, channel_mult=mult, num_res_blocks=1,
                                           latent_channels=space.channels, attention_in_middle=False,
                                           norm_groups=cfg.ae_norm_groups))  # fmt: skip


def make_ldm(space: Space, cfg: WhyLatentConfig, autoencoder: nn.Module) -> LatentDiffusion:
    """A class-conditional LDM; only in_channels differs between spaces."""
    unet = UNetConfig(in_channels=space.channels, base_channels=cfg.base_channels, channel_mult=cfg.channel_mult,
                      num_res_blocks=cfg.num_res_blocks, attention_levels=cfg.attention_levels, head_dim=cfg.head_dim,
                      num_classes=NUM_CLASSES, norm_groups=cfg.norm_groups, use_sdpa=True)  # fmt: skip
    config = LDMConfig(unet=unet, conditioning="class", text_encoder=None, image_size=cfg.size)
    torch.manual_seed(0)
    return LatentDiffusion(config, autoencoder)


def class_labels(labels: torch.Tensor) -> torch.Tensor:
    """(N, 4) shape, colour, size, position -> (N,) class = shape * len(COLOURS) + colour."""
    return labels[:, 0] * len(COLOURS) + labels[:, 1]


def use_bf16(device: torch.device) -> bool:
    """Train and sample as minildm's trainer does: bf16 autocast on a GPU, fp32 on a CPU."""
    return device.type == "cuda"


def autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on a GPU, nothing on a CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16(device) else nullcontext()


def training_step(
    ldm: LatentDiffusion,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    latents: torch.Tensor | None,
    device: torch.device,
) -> Callable[[], None]:
    """One step of LDM eq. 3; the latents are encoded from `images` first when `latents` is None."""

    def step() -> None:
        with autocast(device):
            z0 = ldm.encode_images(images) if latents is None else latents
            loss = ldm.training_loss(LDMBatch(z0, class_labels=labels), cond_drop_prob=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def sample(
    ldm: LatentDiffusion, labels: torch.Tensor, steps: int, guidance: float, device: torch.device, seed: int = 0
) -> torch.Tensor:
    """Images (B, 3, H, W): DDIM with classifier-free guidance, then D(z0 / s)."""
    generator = torch.Generator(device).manual_seed(seed)
    with autocast(device):
        return class_to_image(ldm, make_sampler(ldm, "ddim", steps), labels, guidance, generator).float()


def measure_space(space: Space, cfg: WhyLatentConfig, data: ShapesDataset, device: torch.device) -> dict:
    """Training images/s (cached, on the fly), memory of a step, sampling seconds per image."""
    ldm = make_ldm(space, cfg, make_autoencoder(space, cfg)).to(device).train()
    optimizer = torch.optim.AdamW(ldm.unet.parameters(), lr=cfg.lr)
    images = data.images[: cfg.batch].to(device)
    labels = class_labels(data.labels[: cfg.batch]).to(device)
    latents = ldm.encode_images(images)
    steps = {
        "cached": training_step(ldm, optimizer, images, labels, latents, device),
        "on the fly": training_step(ldm, optimizer, images, labels, None, device),
    }
    seconds = median_seconds(steps, cfg.repeats, cfg.warmup, device)
    memory = peak_step_bytes(steps["cached"], ldm.parameters(), device)
    ldm.eval()
    sample_labels = labels[: cfg.sample_images]
    sample(ldm, sample_labels, 2, cfg.guidance, device)  # warm-up
    start = time.perf_counter()
    sample(ldm, sample_labels, cfg.sample_steps, cfg.guidance, device)
    sample_seconds = time.perf_counter() - start
    return {
        "latent": f"{cfg.size // space.f}x{cfg.size // space.f}x{space.channels}",
        "step_seconds": seconds["cached"],
        "cached": cfg.batch / seconds["cached"],
        "on the fly": cfg.batch / seconds["on the fly"],
        "memory": memory,
        "sample": sample_seconds / len(sample_labels),
    }


def spaces_table(results: dict[str, dict], cfg: WhyLatentConfig, device: torch.device) -> list[str]:
    """The measured rows, and every latent space's ratios against pixel space computed from them."""
    lines = [
        (
            f"{'space':<12} {'model input':>11} {'cached img/s':>13} {'on-the-fly img/s':>17} {'memory MiB':>11} "
            f"{'sample s/img':>13}"
        )
    ]
    lines.append("-" * len(lines[0]))
    for name, r in results.items():
        lines.append(f"{name:<12} {r['latent']:>11} {r['cached']:>13.1f} {r['on the fly']:>17.1f} "
                     f"{r['memory'] / 2**20:>11.1f} {r['sample']:>13.3f}")  # fmt: skip
    pixel = results[SPACES[0].name]
    lines.append("")
    lines.append(
        f"{'vs pixel':<12} {'train (cached)':>15} {'train (on the fly)':>19} {'less memory':>12} {'sampling':>9}"
    )
    for name, r in results.items():
        if name == SPACES[0].name:
            continue
        ratios = ratios_vs_pixel(r, pixel)
        lines.append(f"{name:<12} {ratios['train']:>14.2f}x {ratios['train on the fly']:>18.2f}x "
                     f"{ratios['memory']:>11.1f}x {ratios['sample']:>8.2f}x")  # fmt: skip
    lines.append(f"\nbatch {cfg.batch}, {cfg.size}x{cfg.size} images; median of {cfg.repeats} steps after {cfg.warmup}"
                 f" warm-up; {'bf16 autocast' if use_bf16(device) else 'fp32'}, SDPA attention, AdamW")  # fmt: skip
    lines.append(f"memory: {memory_kind(device)}")
    lines.append(f"sample: DDIM {cfg.sample_steps} steps, guidance {cfg.guidance} (2 U-Net passes per step as one "
                 f"batch), decoding included, {cfg.sample_images} images")  # fmt: skip
    return lines


def ratios_vs_pixel(latent: dict, pixel: dict) -> dict[str, float]:
    return {
        "train": latent["cached"] / pixel["cached"],
        "train on the fly": latent["on the fly"] / pixel["cached"],
        "memory": pixel["memory"] / latent["memory"],
        "sample": pixel["sample"] / latent["sample"],
    }


def target_lines(results: dict[str, dict], device: torch.device) -> list[str]:
    """The issue's GPU targets for f = 4 against pixel space, with the measured ratios."""
    ratios = ratios_vs_pixel(results[SPACES[1].name], results[SPACES[0].name])
    checks = [
        ("trains", ratios["train"], 3.0),
        ("samples", ratios["sample"], 3.5),
        ("less memory", ratios["memory"], 10.0),
    ]
    where = "GPU" if device.type == "cuda" else "CPU (the targets are for a GPU; GPU: not measured)"
    return [f"target f=4 {what} >= {goal}x: {value:.2f}x on {where} -> {'met' if value >= goal else 'not met'}"
            for what, value, goal in checks]  # fmt: skip


def trained_autoencoder(
    space: Space, cfg: WhyLatentConfig, images: torch.Tensor, device: torch.device, out_dir: Path
) -> nn.Module:
    """The first stage of a latent space, trained once (L1 + KL) and kept under out_dir."""
    if space.f == 1:
        return PixelSpace()
    path = out_dir / f"autoencoder_f{space.f}_{cfg.size}px_{cfg.ae_base_channels}ch_{cfg.ae_steps}steps.pt"
    if path.is_file():
        return load_autoencoder(path).to(device).eval()
    autoencoder = make_autoencoder(space, cfg)
    train_config = AutoencoderTrainConfig(steps=cfg.ae_steps, batch_size=32, lr=2e-3, perceptual_weight=0.0,
                                          disc_start=cfg.ae_steps + 1)  # fmt: skip
    train_autoencoder(autoencoder, images, train_config, device=device, progress=False)
    save_autoencoder(autoencoder, path)
    return autoencoder.eval()


@torch.no_grad()
def cache_latents(ldm: LatentDiffusion, images: torch.Tensor, device: torch.device, batch: int = 256) -> torch.Tensor:
    """z0 = s E(x) (N, c, H/f, W/f) for images (N, 3, H, W), encoded in batches."""
    return torch.cat([ldm.encode_images(images[i : i + batch].to(device)) for i in range(0, len(images), batch)])


def quality_at_equal_time(
    space: Space,
    cfg: WhyLatentConfig,
    step_seconds: float,
    train_data: ShapesDataset,
    device: torch.device,
    out_dir: Path,
) -> tuple[LatentDiffusion, dict]:
    """Train for cfg.train_seconds (steps = seconds / measured step time) with minildm's trainer."""
    start = time.perf_counter()
    autoencoder = trained_autoencoder(space, cfg, train_data.images, device, out_dir)
    autoencoder_seconds = time.perf_counter() - start
    ldm = make_ldm(space, cfg, autoencoder).to(device)
    latents = cache_latents(ldm, train_data.images, device)
    steps = max(1, round(cfg.train_seconds / step_seconds))
    train_config = TrainConfig(steps=steps, batch_size=cfg.batch, lr=cfg.lr, warmup_steps=min(100, steps // 5 + 1))
    start = time.perf_counter()
    batches = TensorBatches(latents, class_labels=class_labels(train_data.labels))
    history = train_ldm(ldm, batches, train_config, device=str(device), progress=False)
    train_seconds = time.perf_counter() - start
    return ldm, {"steps": steps, "train_seconds": train_seconds, "autoencoder_seconds": autoencoder_seconds,
                 "final_loss": sum(history["loss"][-20:]) / len(history["loss"][-20:])}  # fmt: skip


def judge_samples(judge: AttributeClassifier, samples: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> dict:
    """Caption-match accuracy of the conditioned attributes (shape, colour) and the Frechet
    distance in the judge's feature space, beside the real-vs-real floor."""
    accuracy = caption_match_accuracy(judge, samples, labels)
    frechet = frechet_with_floor(judge.extract_features(real), judge.extract_features(samples))
    return {"shape": accuracy["shape"], "colour": accuracy["colour"], **frechet}


def quality_table(quality: dict[str, dict], cfg: WhyLatentConfig) -> list[str]:
    header = (f"{'space':<12} {'steps':>6} {'train s':>8} {'loss':>6} {'Frechet':>8} {'floor':>6} "
              f"{'shape acc':>9} {'colour acc':>10}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for name, q in quality.items():
        lines.append(f"{name:<12} {q['steps']:>6} {q['train_seconds']:>8.1f} {q['final_loss']:>6.3f} "
                     f"{q['frechet']:>8.2f} {q['floor']:>6.2f} {q['shape']:>9.2f} {q['colour']:>10.2f}")  # fmt: skip
    seconds = ", ".join(f"f={s.f}: {quality[s.name]['autoencoder_seconds']:.0f} s" for s in SPACES[1:])
    lines.append(f"\naim: {cfg.train_seconds:.0f} s of training per model (steps = aim / step time measured above; "
                 f"'train s' is what it took), batch "
                 f"{cfg.batch}, {cfg.size}x{cfg.size}, class-conditional on (shape, colour), EMA weights")  # fmt: skip
    lines.append(f"{cfg.num_eval} samples per model, DDIM {cfg.quality_sample_steps} steps, guidance {cfg.guidance};"
                 f" judge: the attribute classifier (Frechet in its feature space, n = {q['n']} per set; "
                 f"chance accuracy: shape {1 / len(SHAPES):.2f}, colour {1 / len(COLOURS):.2f})")  # fmt: skip
    lines.append(f"first stages, {cfg.ae_steps} steps of L1 + KL, trained once or loaded from --out (not counted, as "
                 f"in the paper): {seconds}")  # fmt: skip
    return lines
