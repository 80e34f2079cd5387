"""The KL-regularized latent: a diagonal Gaussian posterior q(z|x) (LDM sec. 3.1, VAE of
Kingma & Welling 2014).

The encoder predicts, per latent element, a mean mu and a log-variance log sigma^2:

    q(z | x) = N(z; mu, diag(sigma^2))
    sample:  z = mu + sigma * eps,  eps ~ N(0, I)     (the reparameterisation trick)
    mode:    z = mu
    KL(q || N(0, I)) = 1/2 sum_i (mu_i^2 + sigma_i^2 - 1 - log sigma_i^2)

LDM weights this KL by a tiny factor (kl_weight = 1e-6): it only keeps the latent from
drifting to an arbitrary scale, it does not make z a good sample of N(0, I). That is why a
scale factor is still needed before diffusion (see scale_factor.py).
"""

import torch


class DiagonalGaussian:
    """q(z|x) from the encoder's output (B, 2c, h, w) = [mean, log-variance] along channels."""

    def __init__(self, moments: torch.Tensor):
        if moments.ndim != 4 or moments.shape[1] % 2 != 0:
            raise ValueError(f"moments must be (B, 2c, h, w) = [mean, logvar], got {tuple(moments.shape)}")
        self.mean, logvar = moments.chunk(2, dim=1)  # (B, c, h, w) each
        # clamp as LDM does, so exp() neither overflows nor underflows on a bad step
        self.logvar = logvar.clamp(-30.0, 20.0)
        # sigma = exp(log sigma^2 / 2)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I); differentiable in mu and sigma."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        """The most likely z: the mean."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) per image, summed over the latent elements: shape (B,)."""
        # KL = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2)
        return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).sum(dim=(1, 2, 3))
