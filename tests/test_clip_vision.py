"""CLIP's vision tower: parity with transformers' CLIPVisionModelWithProjection through the converter,
the class token as the pooled output, and inputs that are refused with an explanation."""

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig as HFCLIPConfig
from transformers import CLIPModel, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from minildm.clip.vision import VisionEncoder, VisionEncoderConfig
from minildm.convert.hf_clip_vision import (
    clip_from_hf,
    convert_hf_clip_vision_state_dict,
    vision_config_from_hf,
    vision_encoder_from_hf,
)


def _hf_config(hidden_act: str) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=16,
        patch_size=4,
        projection_dim=12,
        hidden_act=hidden_act,
    )


def _perturb(model: torch.nn.Module) -> None:
    """Random LayerNorm affines and biases, so a swapped or dropped parameter shows in the output."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(0.3 * torch.randn_like(param))


@pytest.mark.parametrize("hidden_act", ["quick_gelu", "gelu"])
def test_matches_transformers_clip_vision_model_with_projection(hidden_act):
    torch.manual_seed(0)
    hf = CLIPVisionModelWithProjection(_hf_config(hidden_act)).eval()
    _perturb(hf)
    ours = vision_encoder_from_hf(hf).eval()
    assert ours.config.projection_dim == 12 and ours.config.mlp_width == 80 and ours.config.num_patches == 16
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = hf(pixel_values=images)
        hidden, pooled = ours(images)
        image_embeds = ours.project(pooled)
    torch.testing.assert_close(hidden, expected.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(image_embeds, expected.image_embeds, atol=1e-5, rtol=0)


def test_pooled_matches_clip_vision_model_without_projection():
    torch.manual_seed(1)
    hf = CLIPVisionModel(_hf_config("quick_gelu")).eval()
    _perturb(hf)
    ours = vision_encoder_from_hf(hf).eval()
    assert ours.visual_projection is None
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(images)[1], hf(pixel_values=images).pooler_output, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no visual projection"):
        ours.project(torch.zeros(2, 32))


def test_converter_rejects_a_wrong_state_dict():
    hf = CLIPVisionModelWithProjection(_hf_config("quick_gelu"))
    state = hf.state_dict()
    ours = VisionEncoder(vision_config_from_hf(hf.config, projection_dim=12))
    assert set(convert_hf_clip_vision_state_dict(state, 3, projection=True)) == set(ours.state_dict())
    with pytest.raises(ValueError, match="with 4 layers"):
        convert_hf_clip_vision_state_dict(state, 4)


def test_pooled_is_the_class_token_and_every_patch_reaches_it():
    """Changing one patch changes the pooled vector (no mask); the pooled vector is LN_post of token 0."""
    torch.manual_seed(2)
    encoder = VisionEncoder(VisionEncoderConfig(image_size=16, patch_size=8, width=32, num_layers=2, num_heads=4))
    images = torch.randn(1, 3, 16, 16)
    hidden, pooled = encoder(images)
    torch.testing.assert_close(pooled, encoder.ln_post(hidden[:, 0]))
    changed = images.clone()
    changed[..., 8:, 8:] += 1.0  # the bottom-right patch only
    assert not torch.allclose(encoder(changed)[1], pooled)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        VisionEncoderConfig(image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        VisionEncoderConfig(width=30, num_heads=4)
    encoder = VisionEncoder(VisionEncoderConfig(image_size=16, patch_size=8, width=32, num_layers=1, num_heads=4))
    with pytest.raises(ValueError, match=r"shape \(B, 3, 16, 16\)"):
        encoder(torch.zeros(1, 3, 32, 32))


def test_a_whole_clip_model_matches_transformers_logits():
    """CLIPModel -> our CLIP: image and text embeddings (CLIPModel returns them normalised) and
    logits_per_image = exp(t) cos, t = log(1/0.07)."""
    torch.manual_seed(3)
    vision = _hf_config("quick_gelu").to_dict()
    text = dict(vocab_size=100, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, eos_token_id=2, bos_token_id=98, pad_token_id=0)  # fmt: skip
    hf = CLIPModel(HFCLIPConfig(text_config=text, vision_config=vision, projection_dim=12)).eval()
    _perturb(hf)
    ours = clip_from_hf(hf).eval()
    images = torch.randn(3, 3, 16, 16)
    tokens = torch.tensor([[98, 60, 61, 99, 0], [98, 70, 99, 0, 0]])
    with torch.no_grad():
        expected = hf(input_ids=tokens, pixel_values=images)
        torch.testing.assert_close(
            F.normalize(ours.encode_image(images), dim=-1), expected.image_embeds, atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            F.normalize(ours.encode_text(tokens), dim=-1), expected.text_embeds, atol=1e-5, rtol=0
        )
        torch.testing.assert_close(ours(images, tokens), expected.logits_per_image, atol=1e-5, rtol=0)
