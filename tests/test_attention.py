"""minildm.nn.attention: the written-out softmax(Q K^T / sqrt(d)) V against PyTorch's fused
kernel (values and gradients, with and without masks) and against diffusers' Attention."""

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention

from minildm.nn.attention import MultiHeadAttention, attention, causal_mask


def qkv(B=2, nh=3, T=5, L=7, hs=4):
    q = torch.randn(B, nh, T, hs, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, nh, L, hs, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, nh, L, hs, dtype=torch.float64, requires_grad=True)
    return q, k, v


def values_and_grads(q, k, v, mask, use_sdpa):
    out, _ = attention(q, k, v, mask, use_sdpa=use_sdpa)
    grads = torch.autograd.grad(
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(), (q, k, v)
    )
    return out, grads


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"], ids=["no-mask", "causal-mask", "key-padding-mask"])
def test_written_out_equals_sdpa_values_and_gradients(mask_kind):
    L = 5 if mask_kind == "causal" else 7
    q, k, v = qkv(L=L)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "causal":
        mask = causal_mask(5)
    else:
        # batch 0 sees all 7 keys, batch 1 only the first 3: (B, 1, 1, L)
        mask = (torch.arange(L)[None, :] < torch.tensor([[7], [3]]))[:, None, None, :]
    out_written, grads_written = values_and_grads(q, k, v, mask, use_sdpa=False)
    out_sdpa, grads_sdpa = values_and_grads(q, k, v, mask, use_sdpa=True)
    torch.testing.assert_close(out_written, out_sdpa, rtol=1e-10, atol=1e-10)
    for g_written, g_sdpa in zip(grads_written, grads_sdpa):
        torch.testing.assert_close(g_written, g_sdpa, rtol=1e-10, atol=1e-10)


def test_weights_are_a_distribution_and_masked_keys_get_zero():
    q, k, v = qkv()
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[:, 4:] = False
    out, weights = attention(q, k, v, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5, dtype=torch.float64))
    assert torch.all(weights[..., 4:] == 0)
    # the output is the weighted mean of the value vectors the mask lets through
    torch.testing.assert_close(out, weights[..., :4] @ v[:, :, :4])


def test_single_key_returns_its_value_and_scale_is_one_over_sqrt_d():
    q, k, v = qkv(L=1)
    out, weights = attention(q, k, v)
    torch.testing.assert_close(out, v.expand_as(out))
    q, k, v = qkv(T=1, L=2, hs=16)
    _, weights = attention(q, k, v)
    logit = ((q * (k[:, :, :1] - k[:, :, 1:])).sum(-1) / math.sqrt(16)).squeeze(-1)
    torch.testing.assert_close(weights[..., 0, 0], torch.sigmoid(logit))


@pytest.mark.parametrize("context_dim", [None, 12], ids=["self-attention", "cross-attention"])
def test_module_sdpa_flag_and_diffusers_parity(context_dim):
    ours = MultiHeadAttention(16, num_heads=4, context_dim=context_dim).double()
    ref = Attention(query_dim=16, cross_attention_dim=context_dim, heads=4, dim_head=4).double()
    ref.to_q.weight.data.copy_(ours.q_proj.weight)
    ref.to_k.weight.data.copy_(ours.k_proj.weight)
    ref.to_v.weight.data.copy_(ours.v_proj.weight)
    ref.to_out[0].load_state_dict(ours.out_proj.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64, requires_grad=True)
    context = None if context_dim is None else torch.randn(2, 6, 12, dtype=torch.float64)

    outputs, grads = [], []
    for use_sdpa in (False, True):
        ours.use_sdpa = use_sdpa
        out = ours(x, context)
        outputs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), [x, *ours.parameters()]))
    outputs.append(ref(x, encoder_hidden_states=context))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(outputs[0], outputs[2], rtol=1e-10, atol=1e-10)
    for g_written, g_sdpa in zip(*grads):
        torch.testing.assert_close(g_written, g_sdpa, rtol=1e-10, atol=1e-10)


def test_keep_attention_maps_and_context_width_error():
    attn = MultiHeadAttention(16, num_heads=2, context_dim=8, use_sdpa=True)
    attn.keep_attention_maps = True
    attn(torch.randn(3, 10, 16), torch.randn(3, 4, 8))
    assert attn.attention_maps.shape == (3, 2, 10, 4)
    torch.testing.assert_close(attn.attention_maps.sum(-1), torch.ones(3, 2, 10))
    with pytest.raises(ValueError, match="context must have width 8"):
        attn(torch.randn(3, 10, 16), torch.randn(3, 4, 9))
