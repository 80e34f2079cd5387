"""ControlNet (Zhang, Rao and Agrawala, "Adding Conditional Control to Text-to-Image Diffusion
Models", ICCV 2023): spatial control (a mask, an edge map, a pose) for a frozen U-Net.

The frozen U-Net block F(x; Theta) gets a trainable copy F(.; Theta_c) whose input also sees the
control c, joined to the original through zero-initialised 1x1 convolutions Z (ControlNet eq. 2):

    y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2)

For the U-Net (ControlNet sec. 3.2): the copy is the encoder and the middle block (UNetEncoder);
c is the control image turned into a feature map of the latent's size by a small hint encoder E
whose last conv is zero (Z(c; Theta_z1)); each skip the copy produces goes through its own zero
1x1 conv and is added to the frozen U-Net's matching skip, and the middle block's output likewise:

    h_0        = conv_in(z_t) + E(c)                     (B, C_0, H, W)
    skips, mid = encoder and middle of the copy, from h_0
    residual_i = s * Z_i(skip_i),   residual_mid = s * Z_mid(mid)      s: conditioning_scale
    eps        = UNet(z_t, t, y, down_residuals, mid_residual)

At initialisation every Z is zero, so the residuals are exactly zero and the model is the base
model; training moves Z away from zero without first harming the U-Net (ControlNet sec. 3.1).

The hint encoder: 3x3 conv, then for each step to the next width a 3x3 conv and a stride-2 3x3
conv, SiLU after every conv, a zero 3x3 conv out (the released code and diffusers'
`ControlNetConditioningEmbedding`; the paper describes four 4x4 stride-2 convs). A control image
of (H, W) * 2^(len(hint_channels) - 1) meets latents of (H, W): SD's (16, 32, 96, 256) maps
512 x 512 to 64 x 64.
"""

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minildm.nn.unet import UNet, UNetConfig, UNetEncoder


@dataclass
class ControlNetConfig:
    hint_channels: int = 3  # channels of the control image (3: RGB, 1: a mask)
    hint_widths: tuple[int, ...] = (16, 32, 96, 256)  # the hint encoder's widths; each step halves H and W

    def __post_init__(self):
        self.hint_widths = tuple(self.hint_widths)
        if len(self.hint_widths) < 1:
            raise ValueError("hint_widths must hold at least one width")


def zero_conv(cin: int, cout: int, kernel_size: int = 1) -> nn.Conv2d:
    """A convolution whose weight and bias start at zero (ControlNet's Z)."""
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class HintEncoder(nn.Module):
    """E: control image (B, hint_channels, H * 2^k, W * 2^k) -> features (B, C_0, H, W), zero at initialisation."""

    def __init__(self, hint_channels: int, widths: tuple[int, ...], out_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(hint_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for cin, cout in itertools.pairwise(widths):
            self.blocks.append(nn.Conv2d(cin, cin, 3, padding=1))
            self.blocks.append(nn.Conv2d(cin, cout, 3, padding=1, stride=2))  # halves H and W
        self.conv_out = zero_conv(widths[-1], out_channels, kernel_size=3)

    def forward(self, hint: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(hint))
        for conv in self.blocks:
            h = F.silu(conv(h))
        return self.conv_out(h)


class ControlNet(UNetEncoder):
    """A trainable copy of a U-Net's encoder and middle, a hint encoder, and zero 1x1 convs.

    forward returns (down_residuals, mid_residual) for UNet.forward; module names follow diffusers'
    ControlNetModel except hint_encoder (controlnet_cond_embedding), zero_convs
    (controlnet_down_blocks) and zero_conv_mid (controlnet_mid_block).
    """

    def __init__(self, unet_cfg: UNetConfig, config: ControlNetConfig):
        super().__init__(unet_cfg)
        self.control_cfg = config
        self.hint_encoder = HintEncoder(config.hint_channels, config.hint_widths, unet_cfg.level_channels[0])
        self.zero_convs = nn.ModuleList(zero_conv(ch, ch) for ch in self.skip_channels)
        self.zero_conv_mid = zero_conv(self.skip_channels[-1], self.skip_channels[-1])

    @classmethod
    def from_unet(cls, unet: UNet, config: ControlNetConfig | None = None) -> "ControlNet":
        """The copy starts as the U-Net's own encoder and middle (ControlNet sec. 3.2)."""
        controlnet = cls(unet.config, config if config is not None else ControlNetConfig())
        shared = {k: v for k, v in unet.state_dict().items() if k in controlnet.state_dict()}
        missing, _ = controlnet.load_state_dict(shared, strict=False)
        expected = [k for k in controlnet.state_dict() if k.startswith(("hint_encoder.", "zero_conv"))]
        if sorted(missing) != sorted(expected):
            raise ValueError(
                f"the U-Net lacks encoder weights the ControlNet needs: {sorted(set(missing) - set(expected))[:5]}"
            )
        weight = next(unet.parameters())
        return controlnet.to(device=weight.device, dtype=weight.dtype)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        hint: torch.Tensor,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        x_concat: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x, t, context, class_labels, x_concat, pooled as for UNet; hint: the control image
        (B, hint_channels, H * f, W * f), f = 2^(len(hint_widths) - 1) -> (down_residuals, mid_residual)."""
        t = self.check_inputs(x, t, context, class_labels, x_concat, pooled)
        factor = 2 ** (len(self.control_cfg.hint_widths) - 1)
        B, _, H, W = x.shape
        expected = (B, self.control_cfg.hint_channels, H * factor, W * factor)
        if tuple(hint.shape) != expected:
            raise ValueError(f"hint must have shape {expected} (latent size x {factor}), got {tuple(hint.shape)}")
        x, emb = self.embed(x, t, class_labels, x_concat, pooled)
        # h_0 = conv_in(z_t) + E(c): the control enters the copy at its input
        h = self.conv_in(x) + self.hint_encoder(hint.to(x.dtype))  # (B, C_0, H, W)
        mid, skips = self.encode(h, emb, context)
        # residual_i = s * Z_i(skip_i)
        down_residuals = [conditioning_scale * zero(skip) for zero, skip in zip(self.zero_convs, skips)]
        return down_residuals, conditioning_scale * self.zero_conv_mid(mid)
