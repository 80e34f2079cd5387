"""LoRA on the U-Net's attention projections: starts as the base model, merge and unmerge exact,
only the adapter trained and saved; parity with peft on diffusers' UNet2DConditionModel both ways."""

import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig
from safetensors import safe_open

from minildm import UNet, UNetConfig
from minildm.convert.diffusers_lora import load_lora, save_lora
from minildm.convert.diffusers_unet import diffusers_config, load_diffusers_unet
from minildm.nn.lora import (
    LoRALinear,
    add_lora,
    lora_layers,
    lora_state_dict,
    merge_lora,
    unmerge_lora,
)

CFG = UNetConfig(
    base_channels=32, channel_mult=(1, 2), norm_groups=8, attention_levels=(1,), context_dim=24, num_heads=4
)


def inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 4, 8, 8, generator=g, dtype=dtype), torch.tensor([3, 700]),
            torch.randn(2, 7, 24, generator=g, dtype=dtype))  # fmt: skip


def randomise_b(model: torch.nn.Module) -> None:
    """Leave initialisation (B = 0), as training would."""
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.normal_(0, 0.1)


def test_starts_as_the_base_model_and_merge_unmerge_are_exact():
    torch.manual_seed(0)
    # frozen before the base output, as add_lora leaves it: on some CPUs (AMD EPYC) PyTorch picks a
    # different kernel for parameters that require grad, which moves float64 outputs by ~1e-15
    unet = UNet(CFG).double().eval().requires_grad_(False)
    x, t, context = inputs(torch.float64)
    with torch.no_grad():
        base = unet(x, t, context)
        names = add_lora(unet, rank=4, alpha=8)
        assert (
            len(names) == 6 * 2 * 4
        )  # 6 transformers (2 down and 3 up at level 1, the middle), 2 attentions, 4 projections
        assert torch.equal(unet(x, t, context), base)  # B = 0
        randomise_b(unet)
        adapted = unet(x, t, context)
        weights = {n: p.clone() for n, p in unet.named_parameters()}
        merge_lora(unet)
        assert all(layer.merged for layer in lora_layers(unet).values())
        torch.testing.assert_close(unet(x, t, context), adapted, rtol=0, atol=1e-12)
        layer = unet.get_submodule(names[0])
        torch.testing.assert_close(
            layer.weight, weights[names[0] + ".weight"] + 2.0 * layer.lora_B.weight @ layer.lora_A.weight
        )
        unmerge_lora(unet)
        assert all(torch.equal(p, weights[n]) for n, p in unet.named_parameters())  # bit for bit
        assert torch.equal(unet(x, t, context), adapted)
    assert (adapted - base).abs().max() > 1e-3
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()


def test_only_the_adapter_trains_and_is_saved(tmp_path):
    unet = UNet(CFG)
    base_state = unet.state_dict()
    add_lora(unet, rank=2)
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable == set(lora_state_dict(unet)) and all(".lora_" in n for n in trainable)
    x, t, context = inputs()
    unet(x, t, context).square().mean().backward()
    assert all(unet.get_parameter(n).grad is not None for n in trainable)
    # the base keys are unchanged: a plain U-Net checkpoint still loads into the adapted model
    missing, unexpected = unet.load_state_dict(base_state, strict=False)
    assert unexpected == [] and set(missing) == trainable
    path = save_lora(unet, tmp_path / "pytorch_lora_weights.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys, metadata = set(f.keys()), json.loads(f.metadata()["lora_adapter_metadata"])
    assert "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_B.weight" in keys
    assert len(keys) == len(trainable) and (metadata["unet.r"], metadata["unet.lora_alpha"]) == (2, 2)
    with pytest.raises(TypeError, match="LoRA adapts an nn.Linear"):
        add_lora(unet, rank=2)
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_lora(UNet(CFG), tmp_path / "none.safetensors")


def diffusers_pair():
    torch.manual_seed(0)
    ref = UNet2DConditionModel(**diffusers_config(CFG)).eval()
    ours = load_diffusers_unet(dict(ref.config), ref.state_dict()).eval()
    return ref, ours


def test_our_adapter_file_loads_into_diffusers_through_peft(tmp_path):
    ref, ours = diffusers_pair()
    add_lora(ours, rank=4, alpha=6)
    randomise_b(ours)
    save_lora(ours, tmp_path / "pytorch_lora_weights.safetensors")
    # use_safetensors=True: else diffusers 0.42's model-level loader skips the file's metadata and takes alpha = r
    ref.load_lora_adapter(tmp_path, weight_name="pytorch_lora_weights.safetensors", use_safetensors=True, prefix="unet")
    x, t, context = inputs()
    with torch.no_grad():
        expected = ref(x, t, context).sample
        torch.testing.assert_close(ours(x, t, context), expected, rtol=0, atol=1e-5)
        ref.disable_adapters()
        assert (ref(x, t, context).sample - expected).abs().max() > 1e-3  # the adapter did something


def test_a_peft_made_adapter_loads_into_minildm(tmp_path):
    ref, ours = diffusers_pair()
    config = LoraConfig(r=4, lora_alpha=6, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    ref.add_adapter(config)  # peft injects its LoRA layers, B random (init_lora_weights=False)
    ref.save_lora_adapter(tmp_path)
    names = load_lora(ours, tmp_path / "pytorch_lora_weights.safetensors")
    assert len(names) == 48 and all(isinstance(ours.get_submodule(n), LoRALinear) for n in names)
    assert {layer.scale for layer in lora_layers(ours).values()} == {1.5}
    x, t, context = inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, context), ref(x, t, context).sample, rtol=0, atol=1e-5)


def test_an_adapter_minildm_cannot_compute_is_refused(tmp_path):
    ref, ours = diffusers_pair()
    ref.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], use_rslora=True))  # scale alpha / sqrt(r)
    ref.save_lora_adapter(tmp_path)
    with pytest.raises(ValueError, match="needs use_rslora=False, the adapter has True"):
        load_lora(ours, tmp_path / "pytorch_lora_weights.safetensors")
