"""Training the first stage (LDM sec. 3.1): the autoencoder against L1 + LPIPS + PatchGAN
(+ KL or codebook loss), the discriminator against its own loss, in alternation.

Each step:
  1. x~ = D(z), z ~ q(z|x) (KL) or z = quantize(E(x)) (VQ)
  2. autoencoder step on L_AE = L_rec + lambda * L_G + L_reg (losses.py)
  3. from `disc_start` on: discriminator step on L_D(x, sg[x~])
The learning rate (both players) warms up, then stays constant (LDM) or decays with a cosine
(train/lr.py), which helps short runs most. Then scale_factor = 1 / std(z) (or, per channel,
a mean and a std for each) is computed on a sample of the data (scale_factor.py) and stored with
the weights.

The loop follows the conventions of the LDM's (train/runs.py): `train_autoencoder(model,
images, config, device=, out_dir=, seed=, progress=, overwrite=)` returns the history; with
`out_dir` it writes `autoencoder.pt` atomically (with the optimizer states for resume),
`losses.png` and reconstruction grids; a folder that holds one is resumed or refused.

`AutoencoderTrainConfig.fast_cpu` is the short-run preset: >= 25 dB held-out PSNR with an f = 4
KL autoencoder on the 32x32 shapes in minutes on one CPU thread (docs/BENCHMARKS.md).
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minildm.autoencoder.discriminator import DiscriminatorConfig, PatchDiscriminator
from minildm.autoencoder.first_stage import FirstStage
from minildm.autoencoder.losses import AutoencoderLoss
from minildm.autoencoder.perceptual import load_lpips
from minildm.autoencoder.saving import save_autoencoder
from minildm.autoencoder.scale_factor import compute_scale_factor
from minildm.train.lr import check_lr_schedule, learning_rate
from minildm.train.runs import check_resume, checkpoint_to_resume, show_progress, step_generator
from minildm.viz import save_image_grid, save_loss_curves


@dataclass
class AutoencoderTrainConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine" (decay to 0 at the last step)
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps to lr
    pixel_loss: str = "l1"  # LDM's |x - x~|; "mse" for |x - x~|^2 (losses.py)
    kl_weight: float = 1e-6  # LDM's weight on the KL term (KL autoencoder)
    codebook_weight: float = 1.0  # weight on L_vq (VQ autoencoder)
    perceptual_weight: float = 1.0  # w_p on LPIPS; 0 turns it off
    lpips_net: str = "alex"
    allow_missing_lpips: bool = True  # without LPIPS's backbone: warn once and go on without it
    disc_start: int | None = 1000  # first step with the GAN terms; None: no GAN however long the run
    disc_weight: float = 0.5
    gan_loss: str = "hinge"  # or "non_saturating"
    disc_channels: int = 64
    disc_layers: int = 3
    disc_lr: float | None = None  # None: same as lr
    scale_factor_images: int = 512  # images used to measure std(z)
    image_every: int = 500  # reconstruction grid every this many steps (with out_dir)
    checkpoint_every: int = 500
    resume: bool = False  # continue from out_dir/autoencoder.pt

    def __post_init__(self):
        check_lr_schedule(self.lr_schedule)
        if self.steps < 0 or self.batch_size < 1 or self.warmup_steps < 0:
            raise ValueError(
                "need steps >= 0, batch_size >= 1 and warmup_steps >= 0, "
                f"got {self.steps}, {self.batch_size}, {self.warmup_steps}"
            )
        if self.disc_start is not None and self.disc_start < 0:
            raise ValueError(f"disc_start must be >= 0 (or None: no GAN), got {self.disc_start}")
        if self.image_every < 1 or self.checkpoint_every < 1 or self.scale_factor_images < 1:
            raise ValueError("image_every, checkpoint_every and scale_factor_images must be >= 1")
        for name in ("lr", "kl_weight", "codebook_weight", "perceptual_weight", "disc_weight", "disc_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.pixel_loss not in ("l1", "mse") or self.gan_loss not in ("hinge", "non_saturating"):
            raise ValueError(
                "pixel_loss must be 'l1' or 'mse' and gan_loss 'hinge' or 'non_saturating', "
                f"got {self.pixel_loss!r}, {self.gan_loss!r}"
            )

    @classmethod
    def fast_cpu(cls, steps: int = 2000) -> "AutoencoderTrainConfig":
        """The short-run preset: squared error, lr 4e-3 with a short warmup (at most a tenth of the
        run) and cosine decay, batch 8, no GAN and no LPIPS (in a few thousand CPU steps both cost
        PSNR and time: docs/BENCHMARKS.md). For small models such as the demo's
        AutoencoderConfig(base_channels=16, channel_mult=(1, 2, 2), latent_channels=4)."""
        return cls(
            steps=steps, batch_size=8, lr=4e-3, lr_schedule="cosine", warmup_steps=min(50, steps // 10),
            pixel_loss="mse", perceptual_weight=0.0, disc_start=None, image_every=max(1, steps),
            checkpoint_every=max(1, steps),
        )  # fmt: skip


def train_autoencoder(
    model: FirstStage,
    images: torch.Tensor,
    config: AutoencoderTrainConfig,
    *,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict[str, list[float]]:
    """Train the first stage `model` (KL or VQ) on `images` (N, 3, H, W) in [-1, 1]; returns the
    per-step history {name: [values]}. On return the model is in eval mode with its scale factor set."""
    if images.ndim != 4 or images.shape[1] != model.config.in_channels or images.shape[0] < 1:
        raise ValueError(f"images must be (N >= 1, {model.config.in_channels}, H, W), got {tuple(images.shape)}")
    device = torch.device(device)
    model.to(device).train()
    perceptual = load_lpips(config.lpips_net, config.allow_missing_lpips) if config.perceptual_weight > 0 else None
    if perceptual is not None:
        perceptual.to(device)
    disc_config = DiscriminatorConfig(model.config.in_channels, config.disc_channels, config.disc_layers)
    loss_fn = AutoencoderLoss(
        PatchDiscriminator(disc_config).to(device),
        perceptual,
        config.perceptual_weight,
        config.disc_weight,
        config.disc_start,
        config.gan_loss,
        sum_over_pixels=model.sum_pixel_loss,
        pixel_loss=config.pixel_loss,
    )
    reg_weight = config.kl_weight if model.kind == "kl" else config.codebook_weight
    # Adam with beta1 = 0.5 for both players, as LDM and VQGAN
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.5, 0.9))
    disc_lr = config.disc_lr or config.lr
    disc_optimizer = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=disc_lr, betas=(0.5, 0.9))
    history: dict[str, list[float]] = {}
    start = 0
    out_dir = Path(out_dir) if out_dir else None
    path = out_dir / "autoencoder.pt" if out_dir else None
    state = checkpoint_to_resume(
        path, config.resume, overwrite, ("config", "state_dict", "training"), "--autoencoder_train.resume"
    )
    if state is not None:
        check_resume(path, state["config"], asdict(model.config), state["training"]["step"], config.steps)
        model.load_state_dict(state["state_dict"])
        training = state["training"]
        loss_fn.discriminator.load_state_dict(training["discriminator"])
        optimizer.load_state_dict(training["optimizer"])
        disc_optimizer.load_state_dict(training["disc_optimizer"])
        history, start = training["history"], training["step"]

    def save(step: int) -> None:
        training = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "disc_optimizer": disc_optimizer.state_dict(),
            "discriminator": loss_fn.discriminator.state_dict(),
            "history": history,
            "train_config": asdict(config),
        }
        save_autoencoder(model, path, extra={"training": training})

    fixed = images[:8].to(device)  # the same images in every reconstruction grid
    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        disable=not show_progress(progress),
        desc="autoencoder",
    )
    for step in bar:
        generator = step_generator(seed, step)
        index = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
        x = images[index].to(device)
        factor = learning_rate(step, 1.0, config.steps, config.warmup_steps, config.lr_schedule)
        for opt, lr in ((optimizer, config.lr), (disc_optimizer, disc_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

        x_rec, reg_loss, logs = model.regularized_forward(x, step_generator(seed, step, device))
        loss, rec_logs = loss_fn.generator_loss(x, x_rec, reg_weight * reg_loss, step, model.decoder.last_layer)
        logs.update(rec_logs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        if loss_fn.gan_active(step):
            d_loss, d_logs = loss_fn.discriminator_loss(x, x_rec)
            disc_optimizer.zero_grad(set_to_none=True)  # drops the gradient L_G left in D
            d_loss.backward()
            disc_optimizer.step()
            logs.update(d_logs)

        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        bar.set_postfix(l1=f"{logs['l1']:.4f}", refresh=False)
        done = step + 1
        if out_dir is not None and (done % config.image_every == 0 or done == config.steps):
            with torch.no_grad():
                model.eval()
                recon = model.reconstruct(fixed)
                model.train()
            save_image_grid(torch.cat([fixed, recon]), out_dir / f"reconstructions_{done:06d}.png", nrow=8,
                            title=f"top: input, bottom: reconstruction (step {done})")  # fmt: skip
            save_loss_curves({k: history[k] for k in ("l1", "d_loss") if k in history}, out_dir / "losses.png")
        if out_dir is not None and done % config.checkpoint_every == 0 and done < config.steps:
            save(done)

    model.eval()
    compute_scale_factor(model, images[: config.scale_factor_images].to(device), seed=seed)
    if out_dir is not None:
        save(config.steps)
    return history
