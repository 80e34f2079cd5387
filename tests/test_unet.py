"""minildm.UNet: parity with diffusers' UNet2DConditionModel through the converter (values and
gradients), the SD 1.x key layout, the timestep embedding, and input checks."""

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import get_timestep_embedding

from minildm import UNet, UNetConfig
from minildm.convert.diffusers_unet import (
    config_from_diffusers,
    convert_state_dict,
    diffusers_config,
    load_diffusers_unet,
)
from minildm.nn.embeddings import timestep_embedding
from minildm.nn.unet import coordinate_grid

TINY = {"base_channels": 32, "channel_mult": (1, 2), "norm_groups": 8}
CONFIGS = {
    "text": UNetConfig(**TINY, attention_levels=(1,), context_dim=24, num_heads=4),
    "class": UNetConfig(**TINY, attention_levels=(), num_classes=5, head_dim=8, resblock_scale_shift=True),
    "inpaint": UNetConfig(**TINY, extra_in_channels=5, attention_levels=(0, 1), context_dim=24, transformer_depth=2),
    "pooled text": UNetConfig(**TINY, attention_levels=(1,), context_dim=24, num_heads=4, pooled_dim=6),
}


def inputs(cfg: UNetConfig, B=2, H=8):
    return {
        "x": torch.randn(B, cfg.in_channels, H, H),
        "t": torch.tensor([3, 700.5]),
        "context": torch.randn(B, 7, cfg.context_dim) if cfg.context_dim else None,
        "class_labels": torch.tensor([0, cfg.num_classes - 1]) if cfg.num_classes else None,
        "x_concat": torch.randn(B, cfg.extra_in_channels, H, H) if cfg.extra_in_channels else None,
        "pooled": torch.randn(B, cfg.pooled_dim) if cfg.pooled_dim else None,
    }


def diffusers_forward(ref, x, t, context, class_labels, x_concat, pooled):
    sample = x if x_concat is None else torch.cat([x, x_concat], dim=1)
    # the pooled vector goes in diffusers' class_embedding (simple_projection): emb = MLP(t) + W p
    return ref(sample, t, context, class_labels=class_labels if pooled is None else pooled).sample


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_with_diffusers(name):
    cfg = CONFIGS[name]
    ref = UNet2DConditionModel(**diffusers_config(cfg))
    assert config_from_diffusers(dict(ref.config)) == cfg
    ours = load_diffusers_unet(dict(ref.config), ref.state_dict())
    args = inputs(cfg)
    out_ref, out_ours = diffusers_forward(ref, **args), ours(**args)
    torch.testing.assert_close(out_ours, out_ref, rtol=0, atol=1e-5)
    # same gradients for every weight, matched through the converter's key mapping
    out_ref.square().mean().backward()
    out_ours.square().mean().backward()
    ref_grads = convert_state_dict({n: p.grad for n, p in ref.named_parameters()}, dict(ref.config))
    for n, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=0, atol=1e-5, msg=n)


def test_stable_diffusion_1x_layout_converts_key_for_key():
    sd_config = {
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
    }
    with torch.device("meta"):  # shapes only: no memory, no weights
        ref = UNet2DConditionModel(**sd_config)
        ours = UNet(config_from_diffusers(dict(ref.config)))
    converted = {k: tuple(v.shape) for k, v in convert_state_dict(ref.state_dict()).items()}
    assert converted == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == 859_520_964  # the SD 1.x U-Net


def test_timestep_embedding_matches_diffusers_and_starts_at_cos_0():
    t = torch.tensor([0, 1, 17, 999])
    ours = timestep_embedding(t, 32)
    torch.testing.assert_close(ours, get_timestep_embedding(t, 32, flip_sin_to_cos=True, downscale_freq_shift=0))
    torch.testing.assert_close(ours[0], torch.cat([torch.ones(16), torch.zeros(16)]))


def test_null_label_is_default_and_sdpa_and_checkpointing_change_nothing():
    cfg = CONFIGS["class"]
    unet = UNet(cfg)
    args = inputs(cfg)
    args["class_labels"] = None
    null = torch.full((2,), cfg.num_classes)
    torch.testing.assert_close(unet(**args), unet(**{**args, "class_labels": null}))

    cfg = CONFIGS["text"]
    plain = UNet(cfg)
    fast = UNet(UNetConfig(**{**cfg.__dict__, "use_sdpa": True, "gradient_checkpointing": True}))
    fast.load_state_dict(plain.state_dict())
    args = inputs(cfg)
    for unet in (plain, fast):
        unet(**args).square().mean().backward()
    for (name, p_plain), p_fast in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(p_fast.grad, p_plain.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_cross_attention_maps_one_per_transformer():
    cfg = CONFIGS["text"]
    unet = UNet(cfg)
    unet.set_keep_attention_maps(True)
    unet(**inputs(cfg))
    maps = unet.attention_maps()
    # level 1 (4x4) has 2 down + 3 up transformers, the middle one more
    assert len(maps) == 6
    assert maps["mid_block.attentions.0.blocks.0.attn2"].shape == (2, 4, 16, 7)
    for weights in maps.values():
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x": torch.randn(2, 4, 9, 9)}, "divisible by 2\\^\\(levels-1\\) = 2 \\(2 levels\\), got 9x9"),
        ({"x": torch.randn(2, 3, 8, 8)}, "x must have shape \\(B, 4, H, W\\)"),
        ({"context": torch.randn(2, 7, 25)}, "context must have shape \\(2, L, 24\\)"),
        ({"context": None}, "context must have shape"),
        ({"class_labels": torch.tensor([0, 6])}, "class_labels must lie in 0..5"),
        ({"x_concat": torch.randn(2, 5, 8, 8)}, "extra_in_channels=0"),
        ({"t": torch.tensor([1, 2, 3])}, "t must have shape \\(B,\\)"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_mismatch(change, message):
    cfg = UNetConfig(**TINY, attention_levels=(1,), context_dim=24, num_classes=5)
    unet = UNet(cfg)
    with pytest.raises(ValueError, match=message):
        unet(**{**inputs(cfg), **change})


def test_bad_config_raises():
    with pytest.raises(ValueError, match="attention_levels must lie in 0..1"):
        UNetConfig(**TINY, attention_levels=(2,))
    with pytest.raises(ValueError, match="divisible by norm_groups=32"):
        UNetConfig(base_channels=48)
    # heads split the channels only where there is attention: the listed levels and the middle
    with pytest.raises(ValueError, match="channels 16 must be divisible by head_dim=32"):
        UNetConfig(base_channels=16, channel_mult=(1, 2), attention_levels=(0,), head_dim=32, norm_groups=8)


def test_a_level_without_attention_need_not_split_into_heads():
    # the demo's f = 2 U-Net: 16 channels at 16x16 with no attention, heads of 32 below
    cfg = UNetConfig(
        in_channels=4,
        base_channels=16,
        channel_mult=(1, 2, 4),
        num_res_blocks=1,
        attention_levels=(1, 2),
        head_dim=32,
        context_dim=8,
        norm_groups=8,
    )
    unet = UNet(cfg)
    out = unet(torch.randn(2, 4, 8, 8), torch.tensor([1, 500]), context=torch.randn(2, 3, 8))
    assert out.shape == (2, 4, 8, 8)


def test_coordinate_channels_are_the_row_and_column_concatenated_to_the_input():
    cfg = CONFIGS["text"]
    with_coords = UNet(UNetConfig(**{**cfg.__dict__, "coordinate_channels": True}))
    as_concat = UNet(UNetConfig(**{**cfg.__dict__, "extra_in_channels": 2}))
    as_concat.load_state_dict(with_coords.state_dict())
    args = inputs(cfg, H=4)
    grid = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    rows, cols = grid[:, None].expand(4, 4), grid[None, :].expand(4, 4)
    concat = torch.stack([rows, cols]).expand(2, -1, -1, -1)
    torch.testing.assert_close(with_coords(**args), as_concat(**{**args, "x_concat": concat}))
    torch.testing.assert_close(coordinate_grid(torch.zeros(3, 1, 2, 3))[2], torch.tensor(
        [[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]]))  # fmt: skip


def test_pooled_text_enters_like_the_time_embedding():
    # emb = MLP(t) + W p: with W = 0 and b = 0 the model is the one without pooled input
    cfg = CONFIGS["text"]
    with_pooled = UNet(UNetConfig(**{**cfg.__dict__, "pooled_dim": 6}))
    without = UNet(cfg)
    missing, unexpected = without.load_state_dict(with_pooled.state_dict(), strict=False)
    assert missing == [] and unexpected == ["pooled_embedding.weight", "pooled_embedding.bias"]
    args, pooled = inputs(cfg), torch.randn(2, 6)
    del args["pooled"]  # None for the "text" config; given below
    with torch.no_grad():
        with_pooled.pooled_embedding.weight.zero_()
        with_pooled.pooled_embedding.bias.zero_()
        torch.testing.assert_close(with_pooled(**args, pooled=pooled), without(**args))
        with_pooled.pooled_embedding.weight.normal_()
        assert not torch.allclose(with_pooled(**args, pooled=pooled), without(**args), atol=1e-3)
    with pytest.raises(ValueError, match="pooled must have shape \\(2, 6\\), got None"):
        with_pooled(**args)
    with pytest.raises(ValueError, match="pooled_dim=None, so pooled must be None"):
        without(**args, pooled=pooled)


def test_the_converter_refuses_what_diffusers_cannot_hold():
    with pytest.raises(ValueError, match="no coordinate channels"):
        diffusers_config(UNetConfig(**TINY, attention_levels=(), coordinate_channels=True))
    with pytest.raises(ValueError, match="both num_classes and pooled_dim"):
        diffusers_config(UNetConfig(**TINY, attention_levels=(), num_classes=3, pooled_dim=6))
    with pytest.raises(ValueError, match="class_embed_type None or 'simple_projection'"):
        config_from_diffusers({**diffusers_config(CONFIGS["pooled text"]), "class_embed_type": "projection"})


def test_float64_matches_diffusers_and_bfloat16_runs_without_autocast():
    # the sinusoids are float32; they are cast to the MLP's dtype, as diffusers casts them to the sample's
    cfg = CONFIGS["class"]
    ref = UNet2DConditionModel(**diffusers_config(cfg))
    ours = load_diffusers_unet(dict(ref.config), ref.state_dict())
    args = inputs(cfg)
    with torch.no_grad():
        full = ours(**args)
        for dtype, atol in ((torch.float64, 1e-12), (torch.bfloat16, 3e-2)):  # bfloat16 keeps 8 bits: ~0.4% a step
            cast = {
                k: v.to(dtype) if v is not None and v.is_floating_point() and k != "t" else v for k, v in args.items()
            }
            out_ours = ours.to(dtype)(**cast)
            out_ref = diffusers_forward(ref.to(dtype), **cast)
            assert out_ours.dtype == dtype
            torch.testing.assert_close(out_ours, out_ref, rtol=0, atol=atol)
            torch.testing.assert_close(out_ours.float(), full, rtol=0, atol=max(atol, 1e-5))


def test_a_learned_variance_config_is_refused():
    config = {**diffusers_config(CONFIGS["text"]), "in_channels": 4, "out_channels": 8}
    with pytest.raises(ValueError, match="need out_channels <= in_channels, got in_channels=4, out_channels=8"):
        config_from_diffusers(config)
