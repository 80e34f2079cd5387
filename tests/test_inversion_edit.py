"""Editing by DDIM inversion (minildm/pipelines/inversion_edit.py) on tiny untrained models, in
float64: with the source prompt the edit gives back the source latents up to the inversion's
error, which falls as the steps grow; a new prompt moves them far more; the edit is DDIM from
the inverted noise; only the deterministic DDIM sampler is accepted."""

import dataclasses
import itertools

import pytest
import torch
from test_pipelines import PROMPTS, images, tiny_ldm

from minildm.ldm import Condition, LatentDiffusion
from minildm.pipelines import make_sampler
from minildm.pipelines.inversion_edit import edit_by_inversion, invert_images, regenerate


def rms(difference: torch.Tensor) -> float:
    return difference.pow(2).mean().sqrt().item()


def eps_ldm() -> LatentDiffusion:
    return tiny_ldm("text").double()


def zero_snr_v_ldm() -> LatentDiffusion:
    """The demo's kind: v-prediction on a zero-terminal-SNR schedule, sampled on the trailing grid
    from t = T - 1, where alpha_bar = 0."""
    base = tiny_ldm("text")
    config = dataclasses.replace(
        base.config,
        schedule=dataclasses.replace(base.config.schedule, zero_terminal_snr=True),
        prediction_type="v",
    )
    return LatentDiffusion(config, base.autoencoder, base.tokenizer).eval().double()


@pytest.mark.parametrize("build", [eps_ldm, zero_snr_v_ldm], ids=["eps", "v_zero_terminal_snr"])
def test_the_source_prompt_gives_back_the_source_latents(build):
    ldm = build()
    x = images().double()
    z0 = ldm.encode_images(x)
    errors = []
    for n in (10, 25, 50):
        same = edit_by_inversion(ldm, make_sampler(ldm, "ddim", n), x, PROMPTS, PROMPTS, return_latents=True)
        errors.append(rms(same - z0))
    # the inversion's error falls with the step size (first order for eps, tests/test_ode_inversion.py)
    assert all(coarse > fine for coarse, fine in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.15 * z0.std().item(), errors
    # another prompt (the two prompts swapped) moves the latents far more than the inversion's error
    other = edit_by_inversion(ldm, make_sampler(ldm, "ddim", 50), x, PROMPTS, PROMPTS[::-1], return_latents=True)
    assert rms(other - z0) > 2 * errors[-1], (rms(other - z0), errors)


def test_the_inverted_noise_is_what_ddim_samples_back_from():
    ldm = eps_ldm()
    sampler = make_sampler(ldm, "ddim", 10)
    x = images().double()
    z_T = invert_images(ldm, sampler, x, PROMPTS, guidance_scale=2.0)
    assert z_T.shape == (2, *ldm.latent_shape())
    edited = edit_by_inversion(
        ldm, sampler, x, PROMPTS, PROMPTS[::-1], guidance_scale=3.0, inversion_guidance_scale=2.0, return_latents=True
    )
    both_conditions = Condition.cat([ldm.null_condition(2), ldm.encode_condition(PROMPTS[::-1])])
    z = z_T
    for t in sampler.timesteps:
        both = ldm.predict(torch.cat([z, z]), torch.full((4,), int(t)), both_conditions)
        out_uncond, out_cond = both.float().chunk(2)  # the pipelines guide in float32
        # the guided prediction: out_uncond + w (out_cond - out_uncond), w = 3
        z = sampler.step(out_uncond + 3.0 * (out_cond - out_uncond), t, z)
    torch.testing.assert_close(edited, z, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "name, eta",
    [("euler", 0.0), ("ddpm", 0.0), ("ddim", 0.5)],
)
def test_only_the_deterministic_ddim_sampler_is_inverted(name, eta):
    ldm = tiny_ldm("text")
    with pytest.raises(ValueError, match="editing by inversion needs a DDIMSampler with eta = 0"):
        edit_by_inversion(ldm, make_sampler(ldm, name, 4, eta=eta), images(), PROMPTS, PROMPTS)


def test_regenerate_asks_for_noise_of_the_latent_shape():
    ldm = tiny_ldm("text")
    with pytest.raises(ValueError, match=r"noise must be \(B, 4, 8, 8\), got \(2, 4, 16, 16\)"):
        regenerate(ldm, make_sampler(ldm, "ddim", 4), torch.zeros(2, 4, 16, 16), PROMPTS)
