"""PSNR and SSIM, for judging reconstructions (the autoencoder, LDM sec. 3.1 and table 8).

PSNR = 10 log10(L^2 / MSE), with L the data range (2 for images in [-1, 1]).

SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13), computed in every 11x11 window under
a Gaussian weighting with sigma 1.5, per colour channel, then averaged over windows and
channels:

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
    C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03

Only windows that lie fully inside the image count (a "valid" convolution), as in the
reference code and in scikit-image's `structural_similarity(gaussian_weights=True,
use_sample_covariance=False)`, with which the tests check parity.
"""

import torch
import torch.nn.functional as F


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"expected two image batches (B, C, H, W) of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR of each image pair in dB, (B, C, H, W) x2 -> (B,). Identical images give +inf."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    # PSNR = 10 log10(L^2 / MSE)
    return (10 * torch.log10(data_range**2 / mse)).float()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean PSNR over a batch, in dB."""
    return float(psnr_per_image(x, y, data_range).mean())


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2D Gaussian window (size, size), the outer product of a 1D Gaussian."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 2.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """The SSIM of every valid window, (B, C, H, W) x2 -> (B, C, H - 10, W - 10), in float64."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images must be at least {window_size}x{window_size} for SSIM, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    window = gaussian_window(window_size, sigma).to(x.device).expand(channels, 1, window_size, window_size)
    x, y = x.double(), y.double()

    def local_mean(image):  # Gaussian-weighted mean in each window, one channel at a time
        return F.conv2d(image, window, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    # sigma_x^2 = E[x^2] - mu_x^2, sigma_xy = E[xy] - mu_x mu_y (Gaussian-weighted expectations)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM of each image pair over windows and channels, (B,)."""
    return ssim_map(x, y, data_range).flatten(1).mean(1).float()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean SSIM over a batch (1 for identical images)."""
    return float(ssim_per_image(x, y, data_range).mean())
