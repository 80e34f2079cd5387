"""The conditional U-Net eps_theta(z_t, t, y) of latent diffusion (Rombach et al. 2022, sec. 3.3;
the U-Net of Ronneberger et al. 2015 as used by DDPM, Ho et al. 2020, App. B).

It predicts the noise in z_t (LDM eq. 2 and eq. 3). One class covers every conditioning of the
paper:

- unconditional: eps_theta(z_t, t);
- class-conditional: a label embedding is added to the time embedding. The table has
  num_classes + 1 rows: label == num_classes is the "null" label of classifier-free guidance
  (Ho & Salimans 2022), used when `class_labels` is None;
- text-conditional (LDM sec. 3.3; its loss is eq. 3): cross-attention from image positions to the text tokens
  tau_theta(y), in the SpatialTransformers of the levels listed in `attention_levels` and of
  the middle;
- concatenation (LDM sec. 3.3, 4.4 and 4.5): inpainting and super-resolution concatenate extra
  channels (mask + masked-image latent, or the upsampled low-res image) to z_t.

Optional, not in the paper: `coordinate_channels` appends two fixed channels holding each
position's (y, x) in [-1, 1] to the input (CoordConv, Liu et al. 2018). A convolution is
translation-equivariant, so a U-Net learns where it is only from the zero padding at the
borders; the coordinates hand a small, briefly trained model that for free. They are no cure on
their own: in minildm/demo.py's measurements position stayed at chance with coordinates until the
loss weighted the high-noise steps, where layout is decided (see diffusion/loss.py).

Shape through the net (level l has base_channels * channel_mult[l] channels, resolution H / 2^l):

    conv_in                      (B, in+extra, H, W) -> (B, C_0, H, W)          skip
    down level l: num_res_blocks x [ResBlock, SpatialTransformer?]              skip after each
                  Downsample (all but the last level)                           skip
    middle: ResBlock, SpatialTransformer, ResBlock
    up level l (deepest first): (num_res_blocks + 1) x [concat skip, ResBlock, SpatialTransformer?]
                  Upsample (all but the top level)
    GroupNorm, SiLU, conv_out    (B, C_0, H, W) -> (B, out, H, W)

`UNetEncoder` is everything up to the decoder (embeddings, encoder, middle); UNet adds the
decoder, and ControlNet (nn/controlnet.py, Zhang et al. 2023) is a trainable copy of the encoder
whose outputs `forward(..., down_residuals, mid_residual)` adds to the skips and to the middle.

The module names follow diffusers' `UNet2DConditionModel`, so that
minildm/convert/diffusers_unet.py, which loads its weights (and Stable Diffusion 1.x), stays short.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from minildm.nn.embeddings import TimestepEmbedding
from minildm.nn.resample import Downsample, Upsample
from minildm.nn.resblock import ResBlock
from minildm.nn.transformer import SpatialTransformer


@dataclass
class UNetConfig:
    in_channels: int = 4
    out_channels: int | None = None  # None: same as in_channels
    extra_in_channels: int = 0  # channels of x_concat (inpainting, super-resolution)
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1, 2)  # levels with a SpatialTransformer (the middle always has one)
    num_heads: int = 8  # used when head_dim is None: head_dim = channels // num_heads
    head_dim: int | None = None  # if set, num_heads = channels // head_dim at each level
    context_dim: int | None = None  # width of the text tokens; None: no cross-attention context
    num_classes: int | None = None  # class-conditional; label num_classes is the null label
    dropout: float = 0.0  # in the ResBlocks
    use_sdpa: bool = False  # fused attention kernel instead of the written-out softmax
    gradient_checkpointing: bool = False  # recompute blocks in backward: less memory, more time
    resblock_scale_shift: bool = False  # AdaGN: GroupNorm(h) (1 + s) + b instead of adding
    norm_groups: int = 32
    transformer_depth: int = 1  # TransformerBlocks per SpatialTransformer
    coordinate_channels: bool = False  # append (y, x) in [-1, 1] to the input (CoordConv; not in SD)
    pooled_dim: int | None = None  # width of a pooled text vector added to the time embedding (SDXL; not in SD 1.x)

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.attention_levels = tuple(self.attention_levels)
        if self.out_channels is None:
            self.out_channels = self.in_channels
        for level in self.attention_levels:
            if not 0 <= level < len(self.channel_mult):
                raise ValueError(
                    f"attention_levels must lie in 0..{len(self.channel_mult) - 1}, got {self.attention_levels}"
                )
        attended = set(self.attention_levels) | {len(self.channel_mult) - 1}  # the middle attends at the deepest level
        for level, channels in enumerate(self.level_channels):
            if channels % self.norm_groups != 0:
                raise ValueError(f"channels {channels} must be divisible by norm_groups={self.norm_groups}")
            if level in attended and channels % (self.head_dim or self.num_heads) != 0:
                split = f"head_dim={self.head_dim}" if self.head_dim else f"num_heads={self.num_heads}"
                raise ValueError(f"channels {channels} must be divisible by {split}")

    @property
    def level_channels(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_mult]

    def heads(self, channels: int) -> tuple[int, int]:
        """(num_heads, head_dim) of a SpatialTransformer with `channels` channels."""
        if self.head_dim is not None:
            return channels // self.head_dim, self.head_dim
        return self.num_heads, channels // self.num_heads


class UNetLevel(nn.Module):
    """One resolution level of the U-Net: ResBlocks, a SpatialTransformer after each (or none), and a
    resampler; UNet.forward runs them, since the decoder's ResBlocks also take the encoder's skips."""

    def __init__(self, resnets: list[ResBlock], attentions: list[SpatialTransformer], resample: nn.Module | None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)  # empty, or one per ResBlock
        self.resample = resample


def coordinate_grid(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W): channel 0 is the row y, channel 1 the column x, each from -1 to 1."""
    B, _, H, W = x.shape
    y = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype)
    x_ = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(y, x_, indexing="ij"))  # (2, H, W)
    return grid.expand(B, -1, -1, -1)


class UNetEncoder(nn.Module):
    """The U-Net's embeddings, encoder (down path) and middle block. UNet adds the decoder;
    ControlNet (nn/controlnet.py) is a trainable copy of exactly this part."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        channels = config.level_channels
        time_dim = 4 * config.base_channels
        self.time_embedding = TimestepEmbedding(config.base_channels, time_dim)
        self.class_embedding = (
            nn.Embedding(config.num_classes + 1, time_dim) if config.num_classes is not None else None
        )
        self.pooled_embedding = nn.Linear(config.pooled_dim, time_dim) if config.pooled_dim is not None else None
        coordinates = 2 if config.coordinate_channels else 0
        self.conv_in = nn.Conv2d(config.in_channels + config.extra_in_channels + coordinates, channels[0], 3, padding=1)

        # Encoder: remember the channel count of every skip connection it will hand to the decoder.
        self.skip_channels = [channels[0]]
        self.down_blocks = nn.ModuleList()
        ch = channels[0]
        for level, level_ch in enumerate(channels):
            last = level == len(channels) - 1
            resnets, attentions = [], []
            for _ in range(config.num_res_blocks):
                resnets.append(self.resblock(ch, level_ch))
                ch = level_ch
                if level in config.attention_levels:
                    attentions.append(self.transformer(ch))
                self.skip_channels.append(ch)
            self.down_blocks.append(UNetLevel(resnets, attentions, None if last else Downsample(ch)))
            if not last:
                self.skip_channels.append(ch)

        self.mid_block = UNetLevel([self.resblock(ch, ch), self.resblock(ch, ch)], [self.transformer(ch)], None)

    def resblock(self, cin: int, cout: int) -> ResBlock:
        config = self.config
        return ResBlock(
            cin, cout, 4 * config.base_channels, config.norm_groups, config.dropout, config.resblock_scale_shift
        )

    def transformer(self, ch: int) -> SpatialTransformer:
        config = self.config
        num_heads, head_dim = config.heads(ch)
        return SpatialTransformer(
            ch, num_heads, head_dim, config.context_dim, config.transformer_depth, config.norm_groups, config.use_sdpa
        )

    def run(self, block: nn.Module, h: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """block(h, cond), recomputed in backward instead of stored when gradient checkpointing."""
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, cond, use_reentrant=False)
        return block(h, cond)

    def embed(self, x, t, class_labels, x_concat, pooled) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input (B, in + extra (+ 2), H, W) and the embedding emb (B, 4 C_0) every ResBlock reads."""
        if x_concat is not None:
            x = torch.cat([x, x_concat], dim=1)  # (B, in + extra, H, W)
        if self.config.coordinate_channels:
            x = torch.cat([x, coordinate_grid(x)], dim=1)  # (B, in + extra + 2, H, W)
        emb = self.time_embedding(t).to(x.dtype)  # (B, 4 C_0)
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full_like(t, self.config.num_classes, dtype=torch.long)
            # the label enters like the time: emb = MLP(t) + E[y]
            emb = emb + self.class_embedding(class_labels).to(emb.dtype)
        if self.pooled_embedding is not None:
            # the whole caption enters every ResBlock like the time: emb = MLP(t) + W p (SDXL)
            emb = emb + self.pooled_embedding(pooled).to(emb.dtype)
        return x, emb

    def encode(
        self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """conv_in's output (B, C_0, H, W) down through the levels and the middle -> (deepest h, skips)."""
        skips = [h]
        for level in self.down_blocks:
            for i, resnet in enumerate(level.resnets):
                h = self.run(resnet, h, emb)
                if len(level.attentions) > 0:
                    h = self.run(level.attentions[i], h, context)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)  # (B, C, H/2, W/2)
                skips.append(h)

        h = self.run(self.mid_block.resnets[0], h, emb)
        h = self.run(self.mid_block.attentions[0], h, context)
        h = self.run(self.mid_block.resnets[1], h, emb)
        return h, skips

    def check_inputs(self, x, t, context, class_labels, x_concat, pooled=None) -> torch.Tensor:
        """Raise a ValueError naming the mismatch; return t as a (B,) tensor."""
        config = self.config
        if x.ndim != 4 or x.shape[1] != config.in_channels:
            raise ValueError(f"x must have shape (B, {config.in_channels}, H, W), got {tuple(x.shape)}")
        B, _, H, W = x.shape
        factor = 2 ** (len(config.channel_mult) - 1)
        if H % factor != 0 or W % factor != 0:
            raise ValueError(
                f"height and width must be divisible by 2^(levels-1) = {factor} "
                f"({len(config.channel_mult)} levels), got {H}x{W}"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must have shape (B,) = ({B},), got {tuple(t.shape)}")
        if config.extra_in_channels > 0:
            if x_concat is None or x_concat.shape != (B, config.extra_in_channels, H, W):
                got = None if x_concat is None else tuple(x_concat.shape)
                raise ValueError(f"x_concat must have shape ({B}, {config.extra_in_channels}, {H}, {W}), got {got}")
        elif x_concat is not None:
            raise ValueError(
                f"this UNet has extra_in_channels=0, so x_concat must be None, got {tuple(x_concat.shape)}"
            )
        if config.context_dim is None and context is not None:
            raise ValueError(f"this UNet has context_dim=None, so context must be None, got {tuple(context.shape)}")
        if config.context_dim is not None and (
            context is None or context.shape != (B, context.shape[1], config.context_dim)
        ):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context must have shape ({B}, L, {config.context_dim}), got {got}")
        if class_labels is not None:
            if config.num_classes is None:
                raise ValueError("this UNet has num_classes=None, so class_labels must be None")
            if class_labels.shape != (B,) or class_labels.dtype != torch.long:
                raise ValueError(
                    f"class_labels must be a long tensor of shape ({B},), "
                    f"got {class_labels.dtype} {tuple(class_labels.shape)}"
                )
            if class_labels.min() < 0 or class_labels.max() > config.num_classes:
                raise ValueError(
                    f"class_labels must lie in 0..{config.num_classes} ({config.num_classes} = null label), "
                    f"got min {class_labels.min().item()} max {class_labels.max().item()}"
                )
        if config.pooled_dim is None and pooled is not None:
            raise ValueError(f"this UNet has pooled_dim=None, so pooled must be None, got {tuple(pooled.shape)}")
        if config.pooled_dim is not None and (pooled is None or pooled.shape != (B, config.pooled_dim)):
            got = None if pooled is None else tuple(pooled.shape)
            raise ValueError(f"pooled must have shape ({B}, {config.pooled_dim}), got {got}")
        return t


class UNet(UNetEncoder):
    def __init__(self, config: UNetConfig):
        super().__init__(config)
        channels = config.level_channels
        ch = channels[-1]
        skip_channels = list(self.skip_channels)
        # Decoder, deepest level first: each ResBlock eats one skip, concatenated to its input.
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(channels))):
            resnets, attentions = [], []
            for _ in range(config.num_res_blocks + 1):
                resnets.append(self.resblock(ch + skip_channels.pop(), channels[level]))
                ch = channels[level]
                if level in config.attention_levels:
                    attentions.append(self.transformer(ch))
            self.up_blocks.append(UNetLevel(resnets, attentions, Upsample(ch) if level > 0 else None))

        self.conv_norm_out = nn.GroupNorm(config.norm_groups, ch, eps=1e-5)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch, config.out_channels, kernel_size=3, padding=1)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        x_concat: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
        down_residuals: list[torch.Tensor] | None = None,
        mid_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, in_channels, H, W), t: (B,) int or float steps, context: (B, L, context_dim),
        class_labels: (B,) long in 0..num_classes, x_concat: (B, extra_in_channels, H, W),
        pooled: (B, pooled_dim) -> eps prediction (B, out_channels, H, W).

        down_residuals (one per skip, shaped like it) and mid_residual (like the middle's output)
        are added to the skips and to the middle's output: a ControlNet's control (nn/controlnet.py)."""
        t = self.check_inputs(x, t, context, class_labels, x_concat, pooled)
        x, emb = self.embed(x, t, class_labels, x_concat, pooled)
        h, skips = self.encode(self.conv_in(x), emb, context)
        if down_residuals is not None:
            self.check_residuals(skips, down_residuals)
            skips = [skip + residual for skip, residual in zip(skips, down_residuals)]
        if mid_residual is not None:
            if mid_residual.shape != h.shape:
                raise ValueError(f"mid_residual must have shape {tuple(h.shape)}, got {tuple(mid_residual.shape)}")
            h = h + mid_residual

        for level in self.up_blocks:
            for i, resnet in enumerate(level.resnets):
                h = torch.cat([h, skips.pop()], dim=1)  # (B, C + C_skip, H, W)
                h = self.run(resnet, h, emb)
                if len(level.attentions) > 0:
                    h = self.run(level.attentions[i], h, context)
            if level.resample is not None:
                h = level.resample(h)  # (B, C, 2H, 2W)

        return self.conv_out(self.act(self.conv_norm_out(h)))

    @staticmethod
    def check_residuals(skips: list[torch.Tensor], residuals: list[torch.Tensor]) -> None:
        expected = [tuple(skip.shape) for skip in skips]
        got = [tuple(residual.shape) for residual in residuals]
        if got != expected:
            raise ValueError(f"down_residuals must have one tensor per skip, shaped {expected}, got {got}")

    def cross_attentions(self) -> dict[str, nn.Module]:
        """The second attention of every TransformerBlock (cross-attention when there is a context), by name."""
        return {name: module for name, module in self.named_modules() if name.endswith("attn2")}

    def set_keep_attention_maps(self, keep: bool) -> None:
        """Make every cross-attention store its weights (B, nh, H*W, L) on each forward."""
        for module in self.cross_attentions().values():
            module.keep_attention_maps = keep
            module.attention_maps = None

    def attention_maps(self) -> dict[str, torch.Tensor]:
        """Cross-attention weights of the last forward, name -> (B, nh, H*W, L); needs set_keep_attention_maps(True)."""
        return {
            name: module.attention_maps
            for name, module in self.cross_attentions().items()
            if module.attention_maps is not None
        }
