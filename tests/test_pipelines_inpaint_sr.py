"""Inpainting (trained concat model and training-free), its training masks and batches, and
super-resolution, on tiny untrained models (see test_pipelines.py)."""

import pytest
import torch
import torch.nn.functional as F
from test_pipelines import PROMPTS, SIZE, images, seeded, tiny_ldm

from minildm.ldm import LDMBatch
from minildm.pipelines import (
    SAMPLERS,
    InpaintingBatches,
    MaskConfig,
    SuperResolutionBatches,
    downsample,
    init_from_base_model,
    inpaint,
    inpaint_training_free,
    inpainting_concat,
    latent_mask,
    make_sampler,
    random_masks,
    super_resolve,
    text_to_image,
    upsample,
)
from minildm.pipelines.super_resolution import augment
from minildm.train.trainer import TrainConfig, train_ldm

LATENT_CHANNELS = 4


@pytest.fixture(scope="module")
def text_ldm():
    return tiny_ldm("text")


@pytest.fixture(scope="module")
def concat_ldm():
    """An unconditional model reading 1 + c concatenated channels: inpainting or super-resolution."""
    return tiny_ldm("none", extra_in_channels=LATENT_CHANNELS + 1)


def hole(batch: int = 2) -> torch.Tensor:
    """A mask (B, 1, H, W) with a 6x6 hole at pixels [4, 10), not aligned to the 2x2 latent cells."""
    mask = torch.zeros(batch, 1, SIZE, SIZE)
    mask[:, :, 5:11, 5:11] = 1
    return mask


# ---- masks ---------------------------------------------------------------------------------


def test_each_mask_kind_draws_what_it_says():
    objects = (torch.rand(8, 1, SIZE, SIZE, generator=seeded(0)) > 0.7).float()

    def only(kind):
        probs = {name: float(name == kind) for name in ("box_prob", "strokes_prob", "object_prob", "full_prob")}
        return random_masks(8, SIZE, MaskConfig(**probs), seeded(1), objects)

    boxes = only("box_prob")
    rows, cols = boxes.amax(dim=3), boxes.amax(dim=2)  # (B, 1, H), (B, 1, W)
    # a box is the product of its row and column extents, and covers 1/4 to 0.6 of each side
    assert torch.equal(boxes, rows.unsqueeze(3) * cols.unsqueeze(2))
    assert bool((rows.sum(-1) >= 3).all()) and bool((rows.sum(-1) <= 0.6 * SIZE + 1).all())
    strokes = only("strokes_prob")
    assert bool((strokes.sum((1, 2, 3)) > 0).all()) and not bool((strokes == 1).all())
    # objects grow by object_dilation = 2 pixels: a (2 * 2 + 1)^2 max filter
    assert torch.equal(only("object_prob"), F.max_pool2d(objects, kernel_size=5, stride=1, padding=2))
    assert torch.equal(only("full_prob"), torch.ones(8, 1, SIZE, SIZE))
    mixed = random_masks(64, SIZE, MaskConfig(), seeded(2))
    assert set(mixed.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mixed, random_masks(64, SIZE, MaskConfig(), seeded(2)))


def test_mask_config_and_object_masks_are_checked():
    with pytest.raises(ValueError, match="probabilities must be >= 0"):
        MaskConfig(box_prob=-1.0)
    with pytest.raises(ValueError, match="box_size must be"):
        MaskConfig(box_size=(0.5, 0.2))
    with pytest.raises(ValueError, match="object_masks must have shape"):
        random_masks(4, SIZE, MaskConfig(), seeded(0), torch.ones(4, SIZE, SIZE))


def test_a_latent_cell_is_known_only_if_all_its_pixels_are():
    m = latent_mask(hole(), 2)
    assert m.shape == (2, 1, SIZE // 2, SIZE // 2)
    # pixels 5..10 touch the cells 2..5
    expected = torch.zeros(2, 1, 8, 8)
    expected[:, :, 2:6, 2:6] = 1
    assert torch.equal(m, expected)


# ---- training-free inpainting --------------------------------------------------------------


@pytest.mark.parametrize("name,karras", [(name, False) for name in SAMPLERS] + [("dpmpp_2m", True)])
def test_training_free_inpainting_keeps_the_known_latent_exactly(text_ldm, name, karras):
    x, mask = images(), hole()
    sampler = make_sampler(text_ldm, name, 4, karras=karras)
    latents = inpaint_training_free(
        text_ldm, sampler, x, mask, PROMPTS, guidance_scale=2.0, generator=seeded(0), return_latents=True
    )
    known = 1 - latent_mask(mask, 2)
    z0 = text_ldm.encode_images(x)
    assert torch.equal(latents * known, z0 * known)
    assert not torch.allclose(latents * (1 - known), z0 * (1 - known))
    again = inpaint_training_free(
        text_ldm, sampler, x, mask, PROMPTS, guidance_scale=2.0, generator=seeded(0), return_latents=True
    )
    assert torch.equal(latents, again)


def test_a_full_mask_is_plain_generation(text_ldm):
    """With nothing known the replacement is a no-op: deterministic DDIM then draws only z_T."""
    sampler = make_sampler(text_ldm, "ddim", 4)
    full = torch.ones(2, 1, SIZE, SIZE)
    filled = inpaint_training_free(text_ldm, sampler, images(), full, PROMPTS, guidance_scale=3.0, generator=seeded(9))
    generated = text_to_image(text_ldm, sampler, PROMPTS, guidance_scale=3.0, generator=seeded(9))
    assert torch.equal(filled, generated)


def test_bad_masks_are_refused(text_ldm):
    sampler = make_sampler(text_ldm, "ddim", 2)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 1, 16, 16\)"):
        inpaint_training_free(text_ldm, sampler, images(), torch.ones(2, 16, 16), PROMPTS)
    with pytest.raises(ValueError, match="mask values must be 0"):
        inpaint_training_free(text_ldm, sampler, images(), hole() * 0.5, PROMPTS)


# ---- the trained inpainting model ----------------------------------------------------------


def test_inpainting_concat_is_the_mask_and_the_masked_latent(concat_ldm):
    x, mask = images(), hole()
    x_concat = inpainting_concat(concat_ldm, x, mask)
    assert x_concat.shape == (2, 1 + LATENT_CHANNELS, SIZE // 2, SIZE // 2)
    assert torch.equal(x_concat[:, :1], latent_mask(mask, 2))
    # the hole's pixels are replaced by 0 before encoding, so they do not reach the latent
    scribbled = torch.where(mask.bool(), torch.rand_like(x), x)
    assert torch.equal(inpainting_concat(concat_ldm, scribbled, mask), x_concat)


def test_inpaint_with_a_concat_model(concat_ldm, text_ldm):
    sampler = make_sampler(concat_ldm, "ddpm", 3)
    out = inpaint(concat_ldm, sampler, images(), hole(), generator=seeded(4))
    assert out.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(out, inpaint(concat_ldm, sampler, images(), hole(), generator=seeded(4)))
    with pytest.raises(ValueError, match="unet.extra_in_channels must be 5, got 0"):
        inpaint(text_ldm, sampler, images(), hole(), PROMPTS)


def test_inpainting_and_sr_batches_train(concat_ldm):
    objects = (torch.rand(6, 1, SIZE, SIZE, generator=seeded(0)) > 0.5).float()
    x = torch.rand(6, 3, SIZE, SIZE, generator=seeded(1)) * 2 - 1
    inpainting = InpaintingBatches(concat_ldm, x, MaskConfig(), object_masks=objects)
    batch = inpainting(seeded(2), 4)
    assert isinstance(batch, LDMBatch)
    assert batch.latents.shape == (4, LATENT_CHANNELS, 8, 8) and batch.concat.shape == (4, 1 + LATENT_CHANNELS, 8, 8)
    sr = SuperResolutionBatches(concat_ldm, x, factor=4, max_noise_level=0.3)
    batch = sr(seeded(2), 4)
    assert batch.concat.shape == (4, LATENT_CHANNELS + 1, 8, 8)
    levels = batch.concat[:, -1]
    assert bool((levels >= 0).all()) and bool((levels <= 0.3).all())
    config = TrainConfig(steps=2, batch_size=2, warmup_steps=1, ema_decay=0.0, cond_drop_prob=0.0)
    for batches in (inpainting, sr):
        history = train_ldm(tiny_ldm("none", extra_in_channels=LATENT_CHANNELS + 1), batches, config, progress=False)
        assert len(history["loss"]) == 2 and all(loss > 0 for loss in history["loss"])


# ---- super-resolution ----------------------------------------------------------------------


def test_degradation_and_bilinear_upsampling():
    x = images()
    low = downsample(x, 4)
    assert low.shape == (2, 3, SIZE // 4, SIZE // 4)
    torch.testing.assert_close(low, F.interpolate(x, scale_factor=0.25, mode="area"))
    # each low-res pixel is the mean of its 4x4 block; bilinear upsampling keeps constant images
    torch.testing.assert_close(low[:, :, 1, 2], x[:, :, 4:8, 8:12].mean((-1, -2)))
    flat = torch.full((1, 3, 4, 4), 0.3)
    torch.testing.assert_close(upsample(flat, 4), torch.full((1, 3, 16, 16), 0.3))
    with pytest.raises(ValueError, match="positive divisor"):
        downsample(x, 3)


def test_noise_augmentation_is_variance_preserving():
    z = torch.randn(4, LATENT_CHANNELS, 8, 8)
    noise = torch.randn(4, LATENT_CHANNELS, 8, 8)
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9])
    x_concat = augment(z, levels, noise)
    assert torch.equal(x_concat[0, :LATENT_CHANNELS], z[0])
    for i, sigma in enumerate(levels.tolist()):
        # z_aug = sqrt(1 - sigma^2) z + sigma eps, the level in the last channel
        torch.testing.assert_close(x_concat[i, :LATENT_CHANNELS], (1 - sigma**2) ** 0.5 * z[i] + sigma * noise[i])
        assert bool((x_concat[i, -1] == sigma).all())


def test_super_resolve_shapes_determinism_and_errors(concat_ldm, text_ldm):
    sampler = make_sampler(concat_ldm, "ddim", 3, eta=1.0)
    low = downsample(images(), 4)
    out = super_resolve(concat_ldm, sampler, low, factor=4, noise_level=0.2, generator=seeded(1))
    assert out.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(out, super_resolve(concat_ldm, sampler, low, factor=4, noise_level=0.2, generator=seeded(1)))
    assert not torch.allclose(
        out, super_resolve(concat_ldm, sampler, low, factor=4, noise_level=0.5, generator=seeded(1))
    )
    with pytest.raises(ValueError, match="noise_level"):
        super_resolve(concat_ldm, sampler, low, factor=4, noise_level=1.0)
    with pytest.raises(ValueError, match="multiple of the autoencoder's downsampling factor 2"):
        super_resolve(concat_ldm, sampler, downsample(images(), 4)[:, :, :3, :3], factor=3)
    with pytest.raises(ValueError, match=r"low_res must be \(B, 3, h, w\)"):
        super_resolve(concat_ldm, sampler, low[:, :1], factor=4)
    with pytest.raises(ValueError, match="unet.extra_in_channels must be 5"):
        super_resolve(text_ldm, sampler, low, factor=4)


def test_a_concat_model_started_from_a_base_model_computes_the_same(text_ldm):
    """Zero weights for the extra input channels: the same prediction, whatever x_concat holds."""
    inpainting = tiny_ldm("text", extra_in_channels=1 + LATENT_CHANNELS)
    init_from_base_model(inpainting, text_ldm)
    z, t = torch.randn(2, LATENT_CHANNELS, 8, 8), torch.tensor([10, 70])
    cond = text_ldm.encode_condition(PROMPTS)
    x_concat = torch.randn(2, 1 + LATENT_CHANNELS, 8, 8)
    torch.testing.assert_close(inpainting.predict(z, t, cond, x_concat), text_ldm.predict(z, t, cond))
    with pytest.raises(ValueError, match="must have the same parts"):
        init_from_base_model(inpainting, tiny_ldm("none"))
