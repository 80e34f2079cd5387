"""Outpainting: extending an image beyond its borders, as inpainting of a shifted canvas.

Inpainting (LDM sec. 4.5; pipelines/inpaint.py) fills in the pixels a mask marks with 1 and keeps
the rest. Outpainting is the same mask trick (as Stable Diffusion's outpainting is done with its
inpainting model): move the image by (dy, dx) pixels on a canvas of the same size, so that a strip
of the canvas is left uncovered, and fill in exactly that strip,

    canvas[y + dy, x + dx] = x[y, x]        where 0 <= y + dy < H and 0 <= x + dx < W,
    canvas = 0 (mid grey in [-1, 1]) elsewhere,
    m = 1 where the canvas holds no pixel of x, 0 where it does.

Repeating it (each output shifted again) grows a panorama one strip at a time, at the model's
own resolution. The shift is a multiple of the autoencoder's downsampling factor f, so the known
region is whole f x f cells: every latent cell the mask keeps holds only pixels of x.

With a model trained for inpainting (trained=True) the canvas and mask go to `inpaint`
(x_concat = [m_z ; s * E(canvas * (1 - m))]); with any ordinary model to `inpaint_training_free`
(RePaint-style replacement of the known latent cells, which come back exactly).
"""

import torch

from minildm.diffusion.sampler import Sampler
from minildm.ldm import LatentDiffusion
from minildm.pipelines.inpaint import downsampling_factor, inpaint, inpaint_training_free


def outpaint_canvas(images: torch.Tensor, shift: tuple[int, int], factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The canvas (B, 3, H, W) holding images (B, 3, H, W) moved dy rows down and dx columns
    right (negative: up, left), 0 elsewhere, and the mask (B, 1, H, W), 1 where nothing is known.
    dy and dx must be multiples of factor (the autoencoder's f) and smaller than the image."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if len(shift) != 2 or not all(isinstance(offset, int) for offset in shift):
        raise TypeError(f"shift must be two integers (dy, dx) in pixels, got {shift!r}")
    B, _, H, W = images.shape
    dy, dx = shift
    if dy % factor or dx % factor:
        raise ValueError(
            f"shift must be a multiple of the autoencoder's downsampling factor {factor} in pixels, got {(dy, dx)}"
        )
    if abs(dy) >= H or abs(dx) >= W:
        raise ValueError(f"shift must leave part of the image on the canvas: |dy| < {H}, |dx| < {W}, got {(dy, dx)}")
    canvas = torch.zeros_like(images)
    mask = torch.ones(B, 1, H, W, dtype=images.dtype, device=images.device)
    # the rows and columns of the canvas that receive pixels of the image, and where those come from
    rows, source_rows = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H - max(dy, 0))
    cols, source_cols = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W - max(dx, 0))
    canvas[:, :, rows, cols] = images[:, :, source_rows, source_cols]
    mask[:, :, rows, cols] = 0
    return canvas, mask


@torch.no_grad()
def outpaint(
    ldm: LatentDiffusion,
    sampler: Sampler,
    images: torch.Tensor,
    shift: tuple[int, int],
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    trained: bool = False,
    generator: torch.Generator | None = None,
    return_latents: bool = False,
) -> torch.Tensor:
    """Move images (B, 3, H, W) by shift = (dy, dx) pixels and invent the uncovered strip, with a
    model trained for inpainting (trained=True) or any ordinary model (trained=False)."""
    canvas, mask = outpaint_canvas(images, shift, downsampling_factor(ldm))
    fill = inpaint if trained else inpaint_training_free
    args = (prompts, class_labels, negative_prompts, guidance_scale)
    return fill(ldm, sampler, canvas, mask, *args, generator=generator, return_latents=return_latents)
