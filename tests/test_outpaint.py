"""Outpainting as inpainting of a shifted canvas, on tiny untrained models (see test_pipelines.py)."""

import pytest
import torch
from test_pipelines import PROMPTS, SIZE, images, seeded, tiny_ldm

from minildm.pipelines import inpaint, latent_mask, make_sampler, outpaint, outpaint_canvas

LATENT_CHANNELS = 4


@pytest.fixture(scope="module")
def text_ldm():
    return tiny_ldm("text")


@pytest.mark.parametrize("shift", [(0, 4), (0, -6), (2, 0), (-4, 8), (10, -2)])
def test_the_canvas_holds_the_moved_image_and_the_mask_is_the_rest(shift):
    x = images()
    dy, dx = shift
    canvas, mask = outpaint_canvas(x, shift, factor=2)
    assert canvas.shape == (2, 3, SIZE, SIZE) and mask.shape == (2, 1, SIZE, SIZE)
    # canvas[y + dy, x + dx] = x[y, x]: every pixel kept is the image's, read pixel by pixel
    for row in range(SIZE):
        for col in range(SIZE):
            inside = 0 <= row - dy < SIZE and 0 <= col - dx < SIZE
            assert mask[0, 0, row, col].item() == float(not inside)
            expected = x[:, :, row - dy, col - dx] if inside else torch.zeros(2, 3)
            assert torch.equal(canvas[:, :, row, col], expected)
    # the known region is (H - |dy|) x (W - |dx|) pixels, the mask exactly its complement
    assert (1 - mask).sum().item() == 2 * (SIZE - abs(dy)) * (SIZE - abs(dx))
    assert torch.equal(canvas * mask, torch.zeros_like(canvas))


def test_no_shift_keeps_everything():
    x = images()
    canvas, mask = outpaint_canvas(x, (0, 0), factor=2)
    assert torch.equal(canvas, x) and torch.equal(mask, torch.zeros(2, 1, SIZE, SIZE))


def test_bad_shifts_are_refused(text_ldm):
    sampler = make_sampler(text_ldm, "ddim", 2)
    with pytest.raises(ValueError, match="multiple of the autoencoder's downsampling factor 2"):
        outpaint(text_ldm, sampler, images(), (0, 3), PROMPTS)
    with pytest.raises(ValueError, match="multiple of the autoencoder's downsampling factor 4"):
        outpaint_canvas(images(), (2, 0), factor=4)
    with pytest.raises(ValueError, match=r"\|dx\| < 16"):
        outpaint_canvas(images(), (0, -16), factor=2)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        outpaint_canvas(images()[:, :1], (0, 2), factor=2)
    with pytest.raises(TypeError, match="two integers"):
        outpaint_canvas(images(), (0, 2.0), factor=2)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_training_free_outpainting_keeps_the_moved_latent_exactly(text_ldm, name):
    x, shift = images(), (0, -6)
    sampler = make_sampler(text_ldm, name, 4)
    latents = outpaint(
        text_ldm, sampler, x, shift, PROMPTS, guidance_scale=2.0, generator=seeded(0), return_latents=True
    )
    canvas, mask = outpaint_canvas(x, shift, factor=2)
    known = 1 - latent_mask(mask, 2)
    # the known cells are the last 5 latent columns (16 - 6 = 10 pixels), the first 3 to invent
    assert torch.equal(known[0, 0, 0], torch.tensor([1.0] * 5 + [0.0] * 3))
    z0 = text_ldm.encode_images(canvas)
    assert torch.equal(latents * known, z0 * known)
    assert not torch.allclose(latents * (1 - known), z0 * (1 - known))
    out = outpaint(text_ldm, sampler, x, shift, PROMPTS, guidance_scale=2.0, generator=seeded(0))
    assert out.shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(out, text_ldm.decode_latents(latents))


def test_trained_outpainting_is_inpainting_the_canvas():
    concat_ldm = tiny_ldm("none", extra_in_channels=LATENT_CHANNELS + 1)
    sampler = make_sampler(concat_ldm, "ddpm", 3)
    x, shift = images(), (4, 2)
    out = outpaint(concat_ldm, sampler, x, shift, trained=True, generator=seeded(4))
    assert out.shape == (2, 3, SIZE, SIZE)
    canvas, mask = outpaint_canvas(x, shift, factor=2)
    assert torch.equal(out, inpaint(concat_ldm, sampler, canvas, mask, generator=seeded(4)))
    with pytest.raises(ValueError, match="unet.extra_in_channels must be 5, got 0"):
        outpaint(tiny_ldm("none"), sampler, x, shift, trained=True)
