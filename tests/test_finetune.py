"""Fine-tuning a trained LDM (train/finetune.py): LoRA trains only the adapter, the loss falls,
the saved adapter reloads to the same outputs; full fine-tuning trains every U-Net weight."""

import copy

import pytest
import torch
from safetensors import safe_open
from test_ldm import CAPTIONS, tiny_ldm

from minildm.ldm import LDMBatch
from minildm.nn.lora import lora_layers
from minildm.train.finetune import FinetuneConfig, finetune, load_adapter, prepare, save_adapter


def images_and_captions(n: int = 6) -> tuple[torch.Tensor, list[str]]:
    generator = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, 16, 16, generator=generator) * 2 - 1, [CAPTIONS[i % 3] for i in range(n)]


def fixed_loss(ldm, images, captions) -> float:
    """The loss on fixed noise and timesteps, so two models are compared on the same draws."""
    batch = LDMBatch(ldm.encode_images(images), tokens=ldm.tokenize(captions))
    with torch.no_grad():
        losses = [ldm.training_loss(batch, generator=torch.Generator().manual_seed(seed)) for seed in range(8)]
    return float(torch.stack(losses).mean())


def test_lora_step_trains_only_the_adapter_and_reduces_the_loss():
    ldm = tiny_ldm()
    images, captions = images_and_captions()
    before = {name: p.detach().clone() for name, p in ldm.named_parameters()}
    loss_before = fixed_loss(ldm, images, captions)
    history = finetune(ldm, images, captions, FinetuneConfig(steps=30, batch_size=6, lr=1e-2))
    assert history["steps"] == 30
    trained = {name for name, p in ldm.named_parameters() if p.requires_grad}
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)
    assert history["trainable"] == sum(p.numel() for name, p in ldm.named_parameters() if name in trained)
    for name, p in ldm.named_parameters():
        if name in before:  # every weight of the base model is untouched
            assert torch.equal(p, before[name]), name
    assert fixed_loss(ldm, images, captions) < loss_before


def test_full_finetuning_trains_every_unet_weight_and_nothing_else():
    ldm = tiny_ldm()
    images, captions = images_and_captions()
    text_before = copy.deepcopy(ldm.text_encoder.state_dict())
    loss_before = fixed_loss(ldm, images, captions)
    finetune(ldm, images, captions, FinetuneConfig(method="full", steps=30, batch_size=6, lr=1e-3))
    assert all(p.requires_grad for p in ldm.unet.parameters())
    assert not any(p.requires_grad for p in ldm.text_encoder.parameters())
    assert not any(p.requires_grad for p in ldm.autoencoder.parameters())
    assert all(torch.equal(v, text_before[k]) for k, v in ldm.text_encoder.state_dict().items())
    assert not lora_layers(ldm.unet)
    assert fixed_loss(ldm, images, captions) < loss_before


def test_saved_adapter_reloads_to_identical_outputs(tmp_path):
    torch.manual_seed(0)
    ldm = tiny_ldm()
    base = copy.deepcopy(ldm)
    images, captions = images_and_captions()
    finetune(ldm, images, captions, FinetuneConfig(steps=5, batch_size=6, lr=1e-2))
    path = save_adapter(ldm, tmp_path / "pytorch_lora_weights.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    assert any(".transformer_blocks." in k and ".to_k." in k for k in keys)  # diffusers' module names
    loaded = load_adapter(base, path)
    assert sorted(loaded) == sorted(lora_layers(ldm.unet))
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([5, 60])
    with torch.no_grad():
        cond = ldm.encode_condition(captions[:2])
        torch.testing.assert_close(base.predict(z, t, cond), ldm.predict(z, t, cond), rtol=0, atol=0)


def test_a_time_budget_stops_the_run_and_bad_settings_are_refused():
    ldm = tiny_ldm()
    images, captions = images_and_captions()
    history = finetune(ldm, images, captions, FinetuneConfig(steps=10_000, seconds=1e-6, batch_size=2))
    assert history["steps"] == 1
    with pytest.raises(ValueError, match="already has LoRA"):
        prepare(ldm, FinetuneConfig())
    with pytest.raises(ValueError, match="method must be"):
        FinetuneConfig(method="dreambooth")
    with pytest.raises(ValueError, match="N captions"):
        finetune(tiny_ldm(), images, captions[:2], FinetuneConfig(steps=1))


def test_lora_run_does_not_depend_on_what_drew_random_numbers_before_it():
    images, captions = images_and_captions()
    base = tiny_ldm()
    results = []
    for earlier_draws in (0, 1000):
        torch.manual_seed(123)
        torch.rand(earlier_draws)  # e.g. a judge trained first on one run and loaded from a cache on another
        ldm = copy.deepcopy(base)
        finetune(ldm, images, captions, FinetuneConfig(steps=3, batch_size=6, seed=7))
        results.append({name: p.detach().clone() for name, p in ldm.named_parameters() if p.requires_grad})
        state = torch.random.get_rng_state()
    assert results[0].keys() == results[1].keys() and results[0]
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name
    # the global generator goes on as if LoRA had drawn nothing from it
    torch.manual_seed(123)
    torch.rand(1000)
    assert torch.equal(state, torch.random.get_rng_state())
    # another seed draws another adapter
    other = copy.deepcopy(base)
    finetune(other, images, captions, FinetuneConfig(steps=3, batch_size=6, seed=8))
    trained = {name: p for name, p in other.named_parameters() if p.requires_grad}
    assert any(not torch.equal(trained[name], results[0][name]) for name in results[0])
