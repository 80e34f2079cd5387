"""Classifier-free guidance (Ho and Salimans, "Classifier-Free Diffusion Guidance", 2022, eq. 6).

One network is trained both with and without its conditioning (the condition is dropped, e.g.
replaced by the empty caption, for a fraction of training samples). At sampling time its two
predictions are extrapolated away from the unconditional one:

    eps_guided = eps_uncond + w (eps_cond - eps_uncond)

w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 trades diversity for
fidelity to the condition. (The paper writes (1 + w') eps_cond - w' eps_uncond, so w = 1 + w'.)
The same formula applies to x0 or v predictions, since each is linear in eps at a fixed x_t.
"""

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
