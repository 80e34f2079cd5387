"""How well the first stage reconstructs (LDM sec. 3.1, Table 8): PSNR, SSIM, LPIPS where its
pretrained backbone exists, and reconstruction Frechet distance (rFD).

All on held-out images x and their reconstructions x~ = D(mode of E(x)) (the mean for KL,
the quantized latent for VQ). rFD is the Frechet distance between Gaussian fits of the
features of x and of x~, from the shapes classifier of minildm.metrics (the offline
stand-in for rFID's Inception network).
"""

import torch
from torch import nn

from minildm.autoencoder.first_stage import FirstStage
from minildm.autoencoder.perceptual import load_lpips
from minildm.metrics import frechet_distance, psnr, ssim


@torch.no_grad()
def reconstruct(model: FirstStage, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """x~ for images (N, 3, H, W) in [-1, 1], clamped to [-1, 1]; KL decodes the posterior mean."""
    model.eval()
    batches = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        batches.append(model.reconstruct(x).clamp(-1, 1))
    return torch.cat(batches)


@torch.no_grad()
def evaluate_reconstructions(
    model: FirstStage, images: torch.Tensor, feature_model: nn.Module | None = None, batch_size: int = 64
) -> dict[str, float | None]:
    """{"psnr", "ssim", "lpips", "rfd"}; lpips is None without LPIPS's pretrained backbone (a
    warning says so), rfd is None without a `feature_model` (anything with `.features(images)`)."""
    reconstructions = reconstruct(model, images, batch_size)
    results: dict[str, float | None] = {"psnr": psnr(reconstructions, images), "ssim": ssim(reconstructions, images)}
    perceptual = load_lpips("alex", allow_missing=True)
    results["lpips"] = None if perceptual is None else perceptual(images, reconstructions).mean().item()
    results["rfd"] = None
    if feature_model is not None:
        results["rfd"] = frechet_distance(feature_model.features(images), feature_model.features(reconstructions))
    return results
