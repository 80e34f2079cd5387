"""ControlNet: at initialisation the controlled U-Net is exactly the base U-Net; parity with diffusers'
ControlNetModel + UNet2DConditionModel (down and mid residuals) through the converter; input checks."""

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from minildm import UNet, UNetConfig
from minildm.convert.diffusers_controlnet import load_diffusers_controlnet
from minildm.convert.diffusers_unet import diffusers_config, load_diffusers_unet
from minildm.nn.controlnet import ControlNet, ControlNetConfig

TINY = {"base_channels": 32, "channel_mult": (1, 2), "norm_groups": 8}
CONFIGS = {
    "text": UNetConfig(**TINY, attention_levels=(1,), context_dim=24, num_heads=4),
    "inpaint, classes": UNetConfig(
        **TINY, extra_in_channels=5, attention_levels=(0, 1), context_dim=24, num_classes=3, head_dim=8
    ),
}
HINT = ControlNetConfig(hint_channels=3, hint_widths=(8, 16))  # one stride-2 step: hint at twice the latent size


def inputs(cfg: UNetConfig) -> dict:
    torch.manual_seed(1)
    return {
        "x": torch.randn(2, cfg.in_channels, 8, 8),
        "t": torch.tensor([3, 700]),
        "context": torch.randn(2, 7, cfg.context_dim),
        "class_labels": torch.tensor([0, 2]) if cfg.num_classes else None,
        "x_concat": torch.randn(2, cfg.extra_in_channels, 8, 8) if cfg.extra_in_channels else None,
    }


def test_at_initialisation_the_output_is_exactly_the_base_models():
    cfg = CONFIGS["inpaint, classes"]
    unet = UNet(cfg).eval()
    controlnet = ControlNet.from_unet(unet, HINT).eval()
    args, hint = inputs(cfg), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        down, mid = controlnet(**args, hint=hint)
        assert all(torch.equal(r, torch.zeros_like(r)) for r in [*down, mid])
        assert torch.equal(unet(**args, down_residuals=down, mid_residual=mid), unet(**args))
        # the copy is the U-Net's own encoder: with the hint encoder silent, its skips are the U-Net's
        x, emb = unet.embed(args["x"], args["t"], args["class_labels"], args["x_concat"], None)
        torch.testing.assert_close(controlnet.encode(controlnet.conv_in(x), emb, args["context"])[1],
                                   unet.encode(unet.conv_in(x), emb, args["context"])[1], rtol=0, atol=0)  # fmt: skip
    # the zero convs get gradients at zero, and so leave zero after one step (ControlNet sec. 3.1)
    controlnet.train()
    down, mid = controlnet(**args, hint=hint)
    unet(**args, down_residuals=down, mid_residual=mid).square().mean().backward()
    assert controlnet.zero_conv_mid.weight.grad.abs().sum() > 0
    assert all(z.weight.grad.abs().sum() > 0 for z in controlnet.zero_convs)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_with_diffusers_controlnet_model(name):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    ref_unet = UNet2DConditionModel(**diffusers_config(cfg)).eval()
    ref = ControlNetModel.from_unet(ref_unet, conditioning_embedding_out_channels=HINT.hint_widths).eval()
    with torch.no_grad():  # leave initialisation: random zero convs and hint output, so every path counts
        for name_, p in ref.named_parameters():
            if name_.startswith(
                ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            ):
                p.normal_(0, 0.1)
    unet = load_diffusers_unet(dict(ref_unet.config), ref_unet.state_dict()).eval()
    controlnet = load_diffusers_controlnet(dict(ref.config), ref.state_dict(), unet.config).eval()
    assert controlnet.control_cfg == HINT
    args, hint = inputs(cfg), torch.rand(2, 3, 16, 16)
    sample = args["x"] if args["x_concat"] is None else torch.cat([args["x"], args["x_concat"]], dim=1)
    with torch.no_grad():
        ref_down, ref_mid = ref(sample, args["t"], args["context"], hint, conditioning_scale=0.7,
                                class_labels=args["class_labels"], return_dict=False)  # fmt: skip
        expected = ref_unet(sample, args["t"], args["context"], class_labels=args["class_labels"],
                            down_block_additional_residuals=ref_down,
                            mid_block_additional_residual=ref_mid).sample  # fmt: skip
        down, mid = controlnet(**args, hint=hint, conditioning_scale=0.7)
        out = unet(**args, down_residuals=down, mid_residual=mid)
    for ours, theirs in zip([*down, mid], [*ref_down, ref_mid], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert (out - unet(**args)).abs().max() > 1e-2  # the control changes the output


def test_bad_inputs_and_mismatched_configs_are_explained():
    cfg = CONFIGS["text"]
    unet = UNet(cfg)
    controlnet = ControlNet.from_unet(unet, HINT)
    args = inputs(cfg)
    with pytest.raises(ValueError, match="hint must have shape \\(2, 3, 16, 16\\) \\(latent size x 2\\)"):
        controlnet(**args, hint=torch.zeros(2, 3, 8, 8))
    down, _ = controlnet(**args, hint=torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="down_residuals must have one tensor per skip"):
        unet(**args, down_residuals=down[:-1])
    with pytest.raises(ValueError, match="mid_residual must have shape \\(2, 64, 4, 4\\)"):
        unet(**args, mid_residual=down[0])
    ref = ControlNetModel.from_unet(
        UNet2DConditionModel(**diffusers_config(cfg)), conditioning_embedding_out_channels=(8, 16)
    )
    wider = UNetConfig(**{**cfg.__dict__, "base_channels": 64})
    with pytest.raises(ValueError, match="differs from the U-Net's"):
        load_diffusers_controlnet(dict(ref.config), ref.state_dict(), wider)
    with pytest.raises(ValueError, match="reads 4 input channels, the U-Net 4 \\+ 5"):
        load_diffusers_controlnet(dict(ref.config), ref.state_dict(), CONFIGS["inpaint, classes"])
