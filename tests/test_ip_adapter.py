"""IP-Adapter's decoupled cross-attention: parity with diffusers' IPAdapterAttnProcessor and
IPAdapterAttnProcessor2_0, the image projection with diffusers' ImageProjection, and identities
(scale 0 is the text-only attention; the adapter goes into a U-Net without changing it)."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection as DiffusersImageProjection

from minildm.nn.attention import MultiHeadAttention
from minildm.nn.ip_adapter import DecoupledCrossAttention, ImageProjection, add_ip_adapter, set_ip_adapter_scale
from minildm.nn.unet import UNet, UNetConfig

QUERY_DIM, CONTEXT_DIM, HEADS, HEAD_DIM, TOKENS = 24, 16, 2, 8, 3


def _ours(use_sdpa: bool, scale: float) -> DecoupledCrossAttention:
    torch.manual_seed(0)
    cross = MultiHeadAttention(QUERY_DIM, HEADS, HEAD_DIM, context_dim=CONTEXT_DIM, use_sdpa=use_sdpa)
    adapter = DecoupledCrossAttention(cross, num_tokens=TOKENS, scale=scale)
    with torch.no_grad():  # W'_K, W'_V different from W_K, W_V, so a swap would show
        adapter.k_ip.weight.normal_()
        adapter.v_ip.weight.normal_()
    return adapter.eval()


def _diffusers(ours: DecoupledCrossAttention, processor_class, scale: float) -> Attention:
    cross = ours.cross_attention
    theirs = Attention(QUERY_DIM, cross_attention_dim=CONTEXT_DIM, heads=HEADS, dim_head=HEAD_DIM, bias=False)
    theirs.set_processor(processor_class(HEADS * HEAD_DIM, CONTEXT_DIM, num_tokens=(TOKENS,), scale=scale))
    with torch.no_grad():
        theirs.to_q.weight.copy_(cross.q_proj.weight)
        theirs.to_k.weight.copy_(cross.k_proj.weight)
        theirs.to_v.weight.copy_(cross.v_proj.weight)
        theirs.to_out[0].weight.copy_(cross.out_proj.weight)
        theirs.to_out[0].bias.copy_(cross.out_proj.bias)
        theirs.processor.to_k_ip[0].weight.copy_(ours.k_ip.weight)
        theirs.processor.to_v_ip[0].weight.copy_(ours.v_ip.weight)
    return theirs.eval()


@pytest.mark.parametrize("use_sdpa", [False, True])
@pytest.mark.parametrize("processor_class", [IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0])
@pytest.mark.parametrize("scale", [1.0, 0.6])
def test_matches_diffusers_ip_adapter_attention(use_sdpa, processor_class, scale):
    ours = _ours(use_sdpa, scale)
    theirs = _diffusers(ours, processor_class, scale)
    x = torch.randn(2, 10, QUERY_DIM)  # 10 image positions of the U-Net
    text, image = torch.randn(2, 7, CONTEXT_DIM), torch.randn(2, TOKENS, CONTEXT_DIM)
    with torch.no_grad():
        expected = theirs(x, encoder_hidden_states=(text, [image]))
        got = ours(x, torch.cat([text, image], dim=1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_image_projection_matches_diffusers():
    torch.manual_seed(1)
    ours = ImageProjection(image_embed_dim=12, context_dim=CONTEXT_DIM, num_tokens=TOKENS)
    theirs = DiffusersImageProjection(image_embed_dim=12, cross_attention_dim=CONTEXT_DIM, num_image_text_embeds=TOKENS)
    with torch.no_grad():
        ours.norm.weight.normal_()
        ours.norm.bias.normal_()
    theirs.load_state_dict(
        {"image_embeds." + k[len("proj.") :] if k.startswith("proj.") else k: v for k, v in ours.state_dict().items()}
    )
    image_embeds = torch.randn(4, 12)
    torch.testing.assert_close(ours(image_embeds), theirs(image_embeds), atol=1e-5, rtol=0)


def test_scale_zero_is_the_text_only_cross_attention():
    adapter = _ours(use_sdpa=False, scale=0.0)
    x, text, image = torch.randn(2, 5, QUERY_DIM), torch.randn(2, 4, CONTEXT_DIM), torch.randn(2, TOKENS, CONTEXT_DIM)
    torch.testing.assert_close(adapter(x, torch.cat([text, image], 1)), adapter.cross_attention(x, text))
    adapter.scale = 1.0
    assert not torch.allclose(adapter(x, torch.cat([text, image], 1)), adapter.cross_attention(x, text))


def test_add_ip_adapter_to_a_unet_keeps_it_unchanged_at_scale_zero():
    torch.manual_seed(2)
    unet = UNet(
        UNetConfig(
            in_channels=4, out_channels=4, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
            attention_levels=(1,), num_heads=2, context_dim=CONTEXT_DIM, norm_groups=8,
        )
    ).eval()  # fmt: skip
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    text, image = torch.randn(2, 6, CONTEXT_DIM), torch.randn(2, TOKENS, CONTEXT_DIM)
    with torch.no_grad():
        before = unet(x, t, context=text)
        names = add_ip_adapter(unet, num_tokens=TOKENS, scale=0.0)
        assert names and all(isinstance(unet.get_submodule(n), DecoupledCrossAttention) for n in names)
        torch.testing.assert_close(unet(x, t, context=torch.cat([text, image], 1)), before)
        set_ip_adapter_scale(unet, 1.0)
        assert not torch.allclose(unet(x, t, context=torch.cat([text, image], 1)), before)
    with pytest.raises(ValueError, match="already has an IP-Adapter"):
        add_ip_adapter(unet)


def test_bad_inputs_are_explained():
    adapter = _ours(use_sdpa=False, scale=1.0)
    with pytest.raises(ValueError, match=r"\(B, L \+ 3, 16\)"):
        adapter(torch.randn(1, 5, QUERY_DIM), torch.randn(1, 3, CONTEXT_DIM))
    with pytest.raises(TypeError, match="MultiHeadAttention"):
        DecoupledCrossAttention(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        ImageProjection(12, CONTEXT_DIM)(torch.randn(2, 10))
