"""Fine-tuning a trained latent diffusion model on a few captioned images: LoRA or every U-Net weight.

The loss is the model's own (LDM eq. 3) on the new images' cached latents z0 = s * E(x):

    L = E_{z0, y, eps, t} || target - eps_theta(z_t, t, tau_theta(y)) ||^2

and only the trainable weights move; the autoencoder and the text encoder tau_theta stay frozen.

- method "lora" (Hu et al., "LoRA", ICLR 2022, eq. 3): every attention projection W of the U-Net
  (W_Q, W_K, W_V, W_O of self- and cross-attention; nn/lora.py) becomes W + (alpha / r) B A, with B = 0
  at the start, so step 0 is the trained model exactly, and only A and B are trained. The adapter is
  saved alone, as safetensors in diffusers' and peft's key names (convert/diffusers_lora.py).
- method "full": every U-Net weight is trained (the usual fine-tuning), and the whole U-Net is
  what must be saved.

A run stops after `steps` steps or after `seconds` of wall time, whichever comes first, so the two
methods can be compared for the same time (bench/lora_new_shape.py).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minildm.convert.diffusers_lora import load_lora, save_lora
from minildm.ldm import LatentDiffusion
from minildm.nn.lora import add_lora, lora_layers
from minildm.train.trainer import TensorBatches

METHODS = ("lora", "full")


@dataclass
class FinetuneConfig:
    method: str = "lora"  # "lora" (the U-Net's attention projections) or "full" (every U-Net weight)
    rank: int = 4  # LoRA rank r
    alpha: float | None = None  # LoRA alpha; None: alpha = r (scale 1)
    steps: int = 300
    seconds: float | None = None  # also stop after this wall time; None: run every step
    batch_size: int = 16
    lr: float = 1e-3
    cond_drop_prob: float = 0.1  # keep training the null condition, for classifier-free guidance
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(
                f"need rank >= 1, steps >= 1, batch_size >= 1 and lr > 0, "
                f"got {self.rank}, {self.steps}, {self.batch_size}, {self.lr}"
            )
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be None or > 0, got {self.seconds}")


def prepare(ldm: LatentDiffusion, config: FinetuneConfig) -> list[torch.nn.Parameter]:
    """Freeze the model, then open what `config.method` trains (adding LoRA layers for "lora").
    Returns the trainable parameters."""
    ldm.requires_grad_(False)
    if config.method == "lora":
        if lora_layers(ldm.unet):
            raise ValueError("this U-Net already has LoRA layers: fine-tune a fresh copy of the model")
        # LoRA's A matrices are drawn from torch's global generator: seed it here, so a run does not
        # depend on what drew random numbers before it (another model built, a judge trained)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            add_lora(ldm.unet, config.rank, config.alpha)
    else:
        ldm.unet.requires_grad_(True)
    return [parameter for parameter in ldm.parameters() if parameter.requires_grad]


def finetune(
    ldm: LatentDiffusion, images: torch.Tensor, captions: list[str], config: FinetuneConfig, progress: bool = False
) -> dict[str, list[float] | float | int]:
    """Fine-tune `ldm` in place on images (N, 3, H, W) in [-1, 1] and their captions.

    Returns {"loss": the loss of every step, "seconds": training time (latents included),
    "steps": steps done, "trainable": number of trained numbers}."""
    if images.ndim != 4 or len(images) != len(captions):
        raise ValueError(f"need images (N, 3, H, W) and N captions, got {tuple(images.shape)} and {len(captions)}")
    start = time.perf_counter()
    parameters = prepare(ldm, config)
    device = ldm.device
    # z0 = s * E(x) once: the autoencoder is frozen
    latents = ldm.encode_images(images.to(device))  # (N, c, h, w)
    batches = TensorBatches(latents, tokens=ldm.tokenize(captions))
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(config.seed)
    ldm.train()
    losses = []
    for _ in tqdm(range(config.steps), desc=f"fine-tuning ({config.method})", disable=not progress, leave=False):
        batch = batches(generator, config.batch_size)
        loss = ldm.training_loss(batch, config.cond_drop_prob, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if config.seconds is not None and time.perf_counter() - start >= config.seconds:
            break
    ldm.eval()
    return {
        "loss": losses,
        "seconds": time.perf_counter() - start,
        "steps": len(losses),
        "trainable": sum(parameter.numel() for parameter in parameters),
    }


def save_adapter(ldm: LatentDiffusion, path: str | Path) -> Path:
    """The U-Net's LoRA adapter alone, as diffusers' `pytorch_lora_weights.safetensors`."""
    return save_lora(ldm.unet, path)


def load_adapter(ldm: LatentDiffusion, path: str | Path) -> list[str]:
    """Add a saved adapter's LoRA layers to a (fresh) model's U-Net; returns the adapted layers."""
    return load_lora(ldm.unet, path)
