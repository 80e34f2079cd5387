"""The denoising training loss, for any of the three prediction targets, with optional
min-SNR-gamma weighting.

DDPM (Ho et al. 2020) eq. 14, L_simple = E_{t, x_0, eps} || eps - eps_theta(x_t, t) ||^2, is the
eps-target case. Predicting x0 or v (Salimans and Ho 2022) changes the target, and so the
implicit weight over timesteps: ||x0 - x0_hat||^2 = SNR(t) ||eps - eps_hat||^2 and
||v - v_hat||^2 = (SNR(t) + 1) ||eps - eps_hat||^2.

Min-SNR-gamma (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV
2023, eq. 7-8) weights each sample so that its loss in x0 units is min(SNR(t), gamma) ||x0 -
x0_hat||^2; expressed per target:
    eps: w(t) = min(SNR, gamma) / SNR  = min(1, gamma / SNR)
    x0:  w(t) = min(SNR, gamma)
    v:   w(t) = min(SNR, gamma) / (SNR + 1)

A caution measured in minildm/demo.py: in x0 units both plain eps and min-SNR weight the
highest-noise steps by about SNR(t) ~ 0, and those are the steps where the layout (where an
object goes) is decided. A small model trained briefly with them learned colour and size from
text but ignored position; the plain v loss (weight SNR + 1 >= 1) learned it.
"""

import torch

from minildm.diffusion.schedule import NoiseSchedule, check_prediction_type


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """The min-SNR-gamma weight (B,) for each sample's mean squared error."""
    check_prediction_type(prediction_type)
    if gamma <= 0:
        raise ValueError(f"min_snr_gamma must be positive, got {gamma}")
    if prediction_type == "eps":
        # min(SNR, gamma) / SNR written as min(1, gamma / SNR): finite at SNR = 0 (zero-terminal-SNR)
        return torch.clamp(gamma / snr, max=1.0)
    if prediction_type == "x0":
        return torch.clamp(snr, max=gamma)
    return torch.clamp(snr, max=gamma) / (snr + 1)


def diffusion_loss(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    prediction_type: str = "eps",
    min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """Mean squared error between model_output and the target for `prediction_type`.

    model_output, x0, noise: (B, ...); t: LongTensor (B,). Returns a scalar: the per-sample MSE
    (mean over all but the batch dimension), weighted by min-SNR-gamma if given, averaged over B.
    """
    target = schedule.target(prediction_type, x0, noise, t)
    if model_output.shape != target.shape:
        raise ValueError(
            f"model_output must have the target's shape {tuple(target.shape)}, got {tuple(model_output.shape)}"
        )
    per_sample = ((model_output - target) ** 2).flatten(1).mean(dim=1)  # (B,)
    if min_snr_gamma is None:
        return per_sample.mean()
    weight = min_snr_weight(schedule.snr(t), min_snr_gamma, prediction_type)
    return (weight.to(device=per_sample.device, dtype=per_sample.dtype) * per_sample).mean()
