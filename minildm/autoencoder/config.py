"""The configuration shared by the KL and VQ autoencoders (LDM sec. 3.1, App. G).

Channels at level i are base_channels * channel_mult[i]; every level but the last halves the
resolution, so the downsampling factor is f = 2 ** (len(channel_mult) - 1) and an image
(B, 3, H, W) becomes a latent (B, latent_channels, H/f, W/f). Stable Diffusion's VAE is
base_channels=128, channel_mult=(1, 2, 4, 4), num_res_blocks=2, latent_channels=4 (f = 8).
"""

from dataclasses import dataclass

KINDS = ("kl", "vq")
# how latents are brought to unit scale for diffusion (scale_factor.py)
LATENT_NORMS = ("global", "channel")


@dataclass
class AutoencoderConfig:
    kind: str = "kl"  # the regularizer: "kl" (AutoencoderKL) or "vq" (VQAutoencoder)
    in_channels: int = 3
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1  # ResnetBlocks per encoder level (the decoder has one more per level)
    latent_channels: int = 4  # c in the paper
    attention_in_middle: bool = True
    norm_groups: int = 32  # GroupNorm groups; every level's channel count must be a multiple
    codebook_size: int = 512  # VQ only: number of codebook vectors |Z|
    commitment_beta: float = 0.25  # VQ only: beta in ||z_e - sg[e]||^2 (van den Oord et al. 2017)
    # "global": LDM's one scale factor 1/std(z); "channel": each channel to mean 0, std 1 (EDM2)
    latent_norm: str = "global"

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)  # asdict -> json -> list; keep it a tuple
        if self.kind not in KINDS:
            raise ValueError(f"autoencoder kind must be 'kl' or 'vq', got {self.kind!r}")
        if self.latent_norm not in LATENT_NORMS:
            raise ValueError(f"latent_norm must be 'global' or 'channel', got {self.latent_norm!r}")
        if len(self.channel_mult) == 0:
            raise ValueError("channel_mult must have at least one level, got ()")
        for mult in self.channel_mult:
            if (self.base_channels * mult) % self.norm_groups != 0:
                raise ValueError(
                    f"base_channels * channel_mult = {self.base_channels * mult} must be a multiple of "
                    f"norm_groups = {self.norm_groups}"
                )
        if self.latent_channels < 1 or self.num_res_blocks < 1:
            raise ValueError(
                f"latent_channels and num_res_blocks must be >= 1, got {self.latent_channels} and {self.num_res_blocks}"
            )

    def check_kind(self, kind: str) -> None:
        """Refuse to build a `kind` autoencoder ("kl" or "vq") from a config of the other kind."""
        if self.kind != kind:
            raise ValueError(f"a {kind!r} autoencoder needs AutoencoderConfig(kind={kind!r}), got kind={self.kind!r}")

    @property
    def downsampling_factor(self) -> int:
        """f = H / h = 2 ** (number of levels - 1)."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def channels(self) -> list[int]:
        """Channel count at each level, from the image side down."""
        return [self.base_channels * mult for mult in self.channel_mult]
