"""Pictures: image grids and loss curves (matplotlib, no screen needed).

Images everywhere in minildm are tensors (B, 3, H, W) in [-1, 1]; these helpers map them to
[0, 1] for display.
"""

import os
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")  # draw to files on machines without a screen
import matplotlib.pyplot as plt
import numpy as np
import torch


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile images (B, C, H, W) in [-1, 1] into one (rows*(H+pad), nrow*(W+pad), 3) array in [0, 1]."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W), got {tuple(images.shape)}")
    images = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).expand(-1, 3, -1, -1)
    B, _, H, W = images.shape
    ncol = min(nrow, B)
    nrows = (B + ncol - 1) // ncol
    grid = np.ones((nrows * (H + pad) + pad, ncol * (W + pad) + pad, 3), dtype=np.float32)
    for i in range(B):
        r, c = divmod(i, ncol)
        top, left = pad + r * (H + pad), pad + c * (W + pad)
        grid[top : top + H, left : left + W] = images[i].permute(1, 2, 0).numpy()  # (H, W, 3)
    return grid


def save_image_grid(
    images: torch.Tensor, path: str | os.PathLike, nrow: int = 8, title: str | None = None, scale: float = 0.5
) -> Path:
    """Save a grid of images (B, C, H, W) in [-1, 1] as a PNG; returns the path."""
    grid = image_grid(images, nrow)
    height, width = grid.shape[:2]
    fig = plt.figure(figsize=(max(2.0, width * scale / 16), max(2.0, height * scale / 16) + (0.4 if title else 0)))
    plt.imshow(grid, interpolation="nearest")
    plt.axis("off")
    if title:
        plt.title(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return path


def save_loss_curves(history: dict[str, list[float]], path: str | os.PathLike, title: str = "training loss") -> Path:
    """Plot each named series of per-step values (a smoothed line over the raw points)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in history.items():
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            continue
        steps = np.arange(1, values.size + 1)
        ax.plot(steps, values, alpha=0.25)
        window = max(1, values.size // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=name, color=ax.lines[-1].get_color())
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return path


@torch.no_grad()
def cross_attention_maps(ldm, z0: torch.Tensor, prompt: str, t: int, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Where each token of `prompt` is read: noise the latent z0 (1, c, h, w) to step t, run the
    U-Net once, and average the cross-attention weights softmax(Q K^T / sqrt(d)) (LDM sec. 3.3)
    over heads and over the blocks at the finest resolution that has cross-attention.
    Returns the tokens (start, words, end) and their maps (tokens, side, side)."""
    from minildm.nn.attention import MultiHeadAttention

    # attn2 in each transformer block is the cross-attention (attn1 is self-attention)
    cross = [m for name, m in ldm.unet.named_modules() if name.endswith("attn2") and isinstance(m, MultiHeadAttention)]
    if not cross:
        raise ValueError("this LDM's U-Net has no cross-attention (conditioning must be 'text')")
    for module in cross:
        module.keep_attention_maps = True
    try:
        timestep = torch.tensor([t], device=z0.device)
        noise = torch.randn(z0.shape, generator=torch.Generator(z0.device).manual_seed(seed), device=z0.device)
        ldm.predict(ldm.schedule.q_sample(z0, timestep, noise), timestep, ldm.encode_condition([prompt]))
        positions = max(m.attention_maps.shape[2] for m in cross)
        # (B, heads, positions, tokens) -> mean over heads and blocks -> (positions, tokens)
        maps = torch.stack([m.attention_maps.mean(1)[0] for m in cross if m.attention_maps.shape[2] == positions]).mean(
            0
        )
    finally:
        for module in cross:
            module.keep_attention_maps = False
    tokens = ldm.tokenize([prompt])[0]
    used = int((tokens > 0).sum())  # start token, the words, end token (padding is 0)
    words = [ldm.tokenizer.decode([i]).strip() or "?" for i in tokens[:used].tolist()]
    side = int(positions**0.5)
    return words, maps[:, :used].T.reshape(used, side, side).cpu()  # (tokens, side, side)
