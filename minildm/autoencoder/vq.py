"""The VQ-regularized first stage (LDM sec. 3.1; VQ-VAE, van den Oord et al. 2017; VQGAN,
Esser et al. 2021).

The encoder's output z_e (B, c, h, w) is a grid of c-dimensional vectors; each is replaced
by its nearest neighbour in a learned codebook {e_k}, k = 1..K:

    k* = argmin_k ||z_e - e_k||^2 = argmin_k (||z_e||^2 + ||e_k||^2 - 2 z_e . e_k)
    z_q = e_{k*}

argmin has no gradient, so the straight-through estimator copies the decoder's gradient
from z_q to z_e:  z_q = z_e + sg[e_{k*} - z_e]  (sg = stop-gradient, `.detach()`).
The codebook is trained by the codebook loss, the encoder kept close to it by the
commitment loss (VQ-VAE eq. 3):

    L_vq = ||sg[z_e] - e_{k*}||^2 + beta ||z_e - sg[e_{k*}]||^2

Codebook health: perplexity = exp(-sum_k p_k log p_k) over the code frequencies p_k of a
batch (K when all codes are used equally, 1 when one code takes everything), and usage =
fraction of the K codes used at least once.

As in LDM, `encode` returns the continuous z_e and `decode` quantizes it first: the
diffusion model works on z_e and the decoder absorbs the quantization.
"""

from dataclasses import dataclass

import torch
from torch import nn

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.encoder_decoder import Decoder, Encoder
from minildm.autoencoder.scale_factor import from_diffusion, register_latent_norm, to_diffusion


@dataclass
class Quantized:
    z_q: torch.Tensor  # (B, c, h, w), straight-through: the values of e_{k*}, the gradient of z_e
    loss: torch.Tensor  # scalar L_vq
    indices: torch.Tensor  # (B, h, w) chosen codes k*
    perplexity: torch.Tensor  # scalar, in [1, K]
    usage: torch.Tensor  # scalar, fraction of codes used in this batch


class VectorQuantizer(nn.Module):
    """Nearest-neighbour lookup in a codebook of K vectors of size c."""

    def __init__(self, codebook_size: int, dim: int, beta: float):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, dim)  # weight (K, c)
        nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.beta = beta

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """k* for each vector of z_e (B, c, h, w): returns indices (B, h, w)."""
        B, c, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, c)  # (B*h*w, c)
        codes = self.codebook.weight  # (K, c)
        # ||z - e_k||^2 = ||z||^2 + ||e_k||^2 - 2 z . e_k
        distances = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()  # (B*h*w, K)
        return distances.argmin(dim=1).view(B, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for indices (B, h, w): returns (B, c, h, w)."""
        return self.codebook(indices).permute(0, 3, 1, 2)

    def forward(self, z_e: torch.Tensor) -> Quantized:
        indices = self.nearest(z_e)
        e = self.lookup(indices)  # (B, c, h, w)
        # L_vq = ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2
        loss = (z_e.detach() - e).pow(2).mean() + self.beta * (z_e - e.detach()).pow(2).mean()
        # straight-through: forward value e, backward gradient flows to z_e unchanged
        z_q = z_e + (e - z_e).detach()
        counts = torch.bincount(indices.flatten(), minlength=self.codebook.num_embeddings).float()
        p = counts / counts.sum()
        # perplexity = exp(-sum_k p_k log p_k), with 0 log 0 = 0
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        usage = (counts > 0).float().mean()
        return Quantized(z_q, loss, indices, perplexity, usage)


class VQAutoencoder(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] <-> latents (B, c, H/f, W/f) through a codebook of size K."""

    kind = "vq"
    sum_pixel_loss = False  # VQGAN's recipe averages the reconstruction loss over pixels

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        config.check_kind(self.kind)
        self.config = config
        c = config.latent_channels
        self.encoder = Encoder(config, out_channels=c)
        self.quant_conv = nn.Conv2d(c, c, 1)
        self.quantizer = VectorQuantizer(config.codebook_size, c, config.commitment_beta)
        self.post_quant_conv = nn.Conv2d(c, c, 1)
        self.decoder = Decoder(config)
        # scale_factor (and per channel a latent_shift), set by compute_scale_factor()
        register_latent_norm(self, config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous latent z_e (B, c, h, w), before quantization."""
        return self.quant_conv(self.encoder(x))

    def quantize(self, z_e: torch.Tensor) -> Quantized:
        return self.quantizer(z_e)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x~ = D(quantize(z)) for latents z (B, c, h, w); returns (B, 3, H, W)."""
        return self.decoder(self.post_quant_conv(self.quantize(z).z_q))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Reconstruction x~ and the quantization (its loss, codes, perplexity, usage)."""
        quantized = self.quantize(self.encode(x))
        return self.decoder(self.post_quant_conv(quantized.z_q)), quantized

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """The diffusion model's input: scale_factor * z_e (before quantization, as LDM-VQ: the
        decoder quantizes, LDM sec. 3.1); per channel with latent_norm="channel" (scale_factor.py)."""
        return to_diffusion(self, self.encode(x))

    def decode_latents(self, z_scaled: torch.Tensor) -> torch.Tensor:
        """Images from the diffusion model's latents: D(quantize(z_scaled / scale_factor)), per channel
        D(quantize(z_scaled / scale_factor + latent_shift))."""
        return self.decode(from_diffusion(self, z_scaled))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x~ = D(quantize(E(x)))."""
        return self(x)[0]

    def regularized_forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """For training: x~, the codebook loss L_vq and its logs (the generator is unused: VQ is deterministic)."""
        x_rec, quantized = self(x)
        logs = {
            "codebook_loss": quantized.loss.item(),
            "perplexity": quantized.perplexity.item(),
            "usage": quantized.usage.item(),
        }
        return x_rec, quantized.loss, logs
