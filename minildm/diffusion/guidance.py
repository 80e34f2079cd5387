"""Classifier-free guidance (Ho and Salimans, "Classifier-Free Diffusion Guidance", 2022, eq. 6).

One network is trained both with and without its conditioning (the condition is dropped, e.g.
replaced by the empty caption, for a fraction of training samples). At sampling time its two
predictions are extrapolated away from the unconditional one:

    eps_guided = eps_uncond + w (eps_cond - eps_uncond)

w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 trades diversity for
fidelity to the condition. (The paper writes (1 + w') eps_cond - w' eps_uncond, so w = 1 + w'.)
The same formula applies to x0 or v predictions, since each is linear in eps at a fixed x_t.

Guidance rescale (Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed",
2023, sec. 3.4): at large w the guided prediction's standard deviation grows past that of any
prediction the network makes, and images come out over-exposed. Rescaling it back to the
conditional prediction's standard deviation, then mixing with factor phi, fixes that:

    out_rescaled = out_guided * std(out_cond) / std(out_guided)     (std over each sample)
    out = phi out_rescaled + (1 - phi) out_guided

As in diffusers (`rescale_noise_cfg`), it acts on the model's output, whatever it predicts.

Composed guidance (Liu et al., "Compositional Visual Generation with Composable Diffusion
Models", ECCV 2022, eq. 10, the conjunction AND): a prompt given as several parts c_1 .. c_n
sums each part's guidance direction,

    eps_guided = eps_uncond + sum_i w_i (eps(x_t, c_i) - eps_uncond)

which with one part is classifier-free guidance again. It asks for an image that each part
would accept, so a model that has seen "a square" and "a green shape" apart can be asked for
both at once; it cannot create what no part draws.
"""

from collections.abc import Sequence

import torch


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """eps_uncond + guidance_scale (eps_cond - eps_uncond); tensors of one shape (B, ...)."""
    if eps_uncond.shape != eps_cond.shape:
        raise ValueError(
            "eps_uncond and eps_cond must have the same shape, "
            f"got {tuple(eps_uncond.shape)} and {tuple(eps_cond.shape)}"
        )
    # eps_guided = eps_uncond + w (eps_cond - eps_uncond)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def composed_guidance(
    eps_uncond: torch.Tensor, eps_parts: Sequence[torch.Tensor], scales: Sequence[float]
) -> torch.Tensor:
    """eps_uncond + sum_i scales[i] (eps_parts[i] - eps_uncond): Liu et al.'s AND over the parts."""
    if len(eps_parts) != len(scales) or not eps_parts:
        raise ValueError(
            f"need one scale per part and at least one part, got {len(eps_parts)} parts, {len(scales)} scales"
        )
    for eps_part in eps_parts:
        if eps_part.shape != eps_uncond.shape:
            raise ValueError(
                f"every part must have eps_uncond's shape {tuple(eps_uncond.shape)}, got {tuple(eps_part.shape)}"
            )
    # eps_guided = eps_uncond + sum_i w_i (eps(x_t, c_i) - eps_uncond)
    return eps_uncond + sum(scale * (eps_part - eps_uncond) for eps_part, scale in zip(eps_parts, scales))


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """Lin et al. sec. 3.4: the guided output (B, ...) brought back to the std of the conditional
    output, mixed with factor `rescale` (phi in [0, 1]; 0 leaves it unchanged)."""
    if not 0.0 <= rescale <= 1.0:
        raise ValueError(f"guidance rescale phi must be in [0, 1], got {rescale}")
    dims = list(range(1, guided.ndim))
    # out_rescaled = out_guided * std(out_cond) / std(out_guided)
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    # out = phi out_rescaled + (1 - phi) out_guided
    return rescale * rescaled + (1 - rescale) * guided
