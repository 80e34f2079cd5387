"""The applications of minildm.pipelines on tiny untrained models: identities that hold for any
weights (guidance w = 1 is the conditional model, strength 0 / 1 of SDEdit, the known region of
training-free inpainting), exact reproducibility under a fixed generator, shapes, and errors."""

import dataclasses

import pytest
import torch

from minildm.autoencoder import AutoencoderConfig, AutoencoderKL
from minildm.diffusion import ScheduleConfig, classifier_free_guidance, composed_guidance
from minildm.ldm import Condition, LatentDiffusion, LDMConfig
from minildm.nn import UNetConfig
from minildm.pipelines import (
    SAMPLERS,
    class_to_image,
    guided_model_output,
    image_to_image,
    make_sampler,
    text_to_image,
)
from minildm.text import CLIPTokenizer, TextEncoderConfig

SIZE = 16  # pixels; latents are 8x8 (f = 2)
PROMPTS = ["a red circle", "a blue square"]


def tiny_ldm(conditioning: str = "text", extra_in_channels: int = 0) -> LatentDiffusion:
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(
        AutoencoderConfig(
            base_channels=8, channel_mult=(1, 2), latent_channels=4, norm_groups=4, attention_in_middle=False
        )
    )
    tokenizer = CLIPTokenizer.from_merges([]) if conditioning == "text" else None
    text_encoder = (
        TextEncoderConfig(vocab_size=tokenizer.vocab_size, context_length=16, width=16, num_layers=1, num_heads=2)
        if conditioning == "text"
        else None
    )
    unet = UNetConfig(
        in_channels=4,
        extra_in_channels=extra_in_channels,
        base_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_heads=2,
        context_dim=16 if conditioning == "text" else None,
        num_classes=3 if conditioning == "class" else None,
        norm_groups=8,
    )
    config = LDMConfig(
        unet=unet,
        schedule=ScheduleConfig(num_timesteps=100),
        conditioning=conditioning,
        text_encoder=text_encoder,
        image_size=SIZE,
    )
    return LatentDiffusion(config, autoencoder, tokenizer).eval()


@pytest.fixture(scope="module")
def text_ldm():
    return tiny_ldm("text")


@pytest.fixture(scope="module")
def class_ldm():
    return tiny_ldm("class")


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=seeded(1)) * 2 - 1


def conditional_loop(ldm, sampler, cond, z, timesteps, generator):
    """The reverse process with the conditional model alone, written out once more."""
    for t in timesteps:
        t_batch = torch.full((z.shape[0],), float(t))
        z = sampler.step(ldm.predict(z, t_batch, cond).float(), t, z, generator=generator)
    return z


# ---- samplers, guidance, reproducibility ---------------------------------------------------


def test_unknown_sampler_and_negative_guidance_are_refused(text_ldm):
    with pytest.raises(ValueError, match="sampler name must be one of"):
        make_sampler(text_ldm, "lms", 4)
    with pytest.raises(ValueError, match="eta applies only to the ddim sampler, got eta=1.0 for 'euler_a'"):
        make_sampler(text_ldm, "euler_a", 4, eta=1.0)
    with pytest.raises(ValueError, match="karras applies only to the samplers"):
        make_sampler(text_ldm, "plms", 4, karras=True)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        text_to_image(text_ldm, make_sampler(text_ldm, "ddim", 2), PROMPTS, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="one negative prompt per sample"):
        text_to_image(text_ldm, make_sampler(text_ldm, "ddim", 2), PROMPTS, negative_prompts=["blurry"])


@pytest.mark.parametrize("name", ["ddim", "ddpm", "euler_a"])
def test_a_fixed_generator_reproduces_text_to_image_exactly(text_ldm, name):
    sampler = make_sampler(text_ldm, name, 4, eta=1.0 if name == "ddim" else 0.0)
    first = text_to_image(text_ldm, sampler, PROMPTS, guidance_scale=3.0, generator=seeded(7))
    again = text_to_image(text_ldm, sampler, PROMPTS, guidance_scale=3.0, generator=seeded(7))
    other = text_to_image(text_ldm, sampler, PROMPTS, guidance_scale=3.0, generator=seeded(8))
    assert first.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("name,karras", [(name, False) for name in SAMPLERS] + [("heun", True), ("dpmpp_2m", True)])
def test_guidance_one_is_the_conditional_model(text_ldm, name, karras):
    sampler = make_sampler(text_ldm, name, 4, karras=karras)
    latents = text_to_image(text_ldm, sampler, PROMPTS, guidance_scale=1.0, generator=seeded(3), return_latents=True)
    generator = seeded(3)
    z_T = torch.randn((2, *text_ldm.latent_shape()), generator=generator)
    expected = conditional_loop(
        text_ldm, sampler, text_ldm.encode_condition(PROMPTS), z_T, sampler.timesteps, generator
    )
    assert torch.equal(latents, expected)


def test_batched_guidance_splits_into_its_two_branches(text_ldm):
    """One forward of 2B gives the unconditional half (w = 0), the conditional half (w = 1), and
    classifier_free_guidance of the two for any w."""
    z = torch.randn(2, *text_ldm.latent_shape())
    cond, uncond = text_ldm.encode_condition(PROMPTS), text_ldm.null_condition(2)
    t = torch.full((2,), 40, dtype=torch.long)
    out_cond, out_uncond = text_ldm.predict(z, t, cond), text_ldm.predict(z, t, uncond)
    torch.testing.assert_close(guided_model_output(text_ldm, z, 40, cond, uncond, 1.0), out_cond)
    torch.testing.assert_close(guided_model_output(text_ldm, z, 40, cond, uncond, 0.0), out_uncond)
    torch.testing.assert_close(
        guided_model_output(text_ldm, z, 40, cond, uncond, 5.0), classifier_free_guidance(out_uncond, out_cond, 5.0)
    )


def test_a_negative_prompt_replaces_the_unconditional_branch(text_ldm):
    sampler = make_sampler(text_ldm, "ddim", 3)

    def run(negative_prompts):
        return text_to_image(
            text_ldm,
            sampler,
            PROMPTS,
            negative_prompts=negative_prompts,
            guidance_scale=4.0,
            generator=seeded(5),
            return_latents=True,
        )

    # the null condition of a text model is the empty prompt
    assert torch.equal(run(None), run(["", ""]))
    assert not torch.allclose(run(None), run(["a green triangle", "a yellow diamond"]))


def test_composed_guidance_is_a_sum_of_guidance_directions():
    """Liu et al. 2022 eq. 10: uncond + sum_i w_i (part_i - uncond); one part is classifier-free
    guidance, zero weights the unconditional prediction, and it is linear in each weight."""
    generator = seeded(2)
    uncond, a, b = (torch.randn(2, 4, 8, 8, generator=generator) for _ in range(3))
    torch.testing.assert_close(composed_guidance(uncond, [a], [3.0]), classifier_free_guidance(uncond, a, 3.0))
    torch.testing.assert_close(composed_guidance(uncond, [a, b], [0.0, 0.0]), uncond)
    torch.testing.assert_close(composed_guidance(uncond, [a, a], [1.5, 2.5]), classifier_free_guidance(uncond, a, 4.0))
    torch.testing.assert_close(
        composed_guidance(uncond, [a, b], [2.0, 3.0]) - uncond,
        (classifier_free_guidance(uncond, a, 2.0) - uncond) + (classifier_free_guidance(uncond, b, 3.0) - uncond),
    )
    with pytest.raises(ValueError, match="need one scale per part"):
        composed_guidance(uncond, [a, b], [1.0])
    with pytest.raises(ValueError, match="every part must have"):
        composed_guidance(uncond, [a[:1]], [1.0])


def test_a_prompt_composed_with_itself_is_plain_guidance(text_ldm):
    """The prompt at w = 2 AND the same prompt again at 2 is the prompt at w = 4; the prompt at
    w = 0 AND itself at 4 too. Other parts change the result."""
    sampler = make_sampler(text_ldm, "ddim", 3)

    def run(**kwargs):
        return text_to_image(text_ldm, sampler, PROMPTS, generator=seeded(4), return_latents=True, **kwargs)

    plain = run(guidance_scale=4.0)
    torch.testing.assert_close(run(guidance_scale=2.0, prompt_parts=[PROMPTS], part_scales=[2.0]), plain)
    torch.testing.assert_close(run(guidance_scale=0.0, prompt_parts=[PROMPTS], part_scales=[4.0]), plain)
    other = run(guidance_scale=2.0, prompt_parts=[["a square", "a circle"]], part_scales=[2.0])
    assert not torch.allclose(other, plain)
    with pytest.raises(ValueError, match=r"need one scale per entry of prompt_parts \(1\), got 2"):
        run(guidance_scale=2.0, prompt_parts=[PROMPTS], part_scales=[2.0, 1.0])
    with pytest.raises(ValueError, match=r"one prompt per sample \(2\), got \[1\]"):
        run(guidance_scale=2.0, prompt_parts=[["a square"]], part_scales=[2.0])
    with pytest.raises(ValueError, match="no class_labels and no guidance_rescale"):
        run(guidance_scale=2.0, prompt_parts=[PROMPTS], part_scales=[2.0], guidance_rescale=0.7)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        run(guidance_scale=-1.0, prompt_parts=[PROMPTS], part_scales=[2.0])


def test_class_guidance_zero_samples_the_null_class(class_ldm):
    sampler = make_sampler(class_ldm, "ddim", 3)
    labels = torch.tensor([0, 2])
    latents = class_to_image(class_ldm, sampler, labels, guidance_scale=0.0, generator=seeded(2), return_latents=True)
    generator = seeded(2)
    z_T = torch.randn((2, *class_ldm.latent_shape()), generator=generator)
    null = Condition(class_labels=torch.full((2,), class_ldm.num_classes))
    expected = conditional_loop(class_ldm, sampler, null, z_T, sampler.timesteps, generator)
    torch.testing.assert_close(latents, expected)
    with pytest.raises(ValueError, match="class-conditioned model"):
        class_to_image(tiny_ldm("none"), sampler, labels)


# ---- image-to-image (SDEdit) ---------------------------------------------------------------


def test_strength_zero_returns_the_input_latent(text_ldm):
    x = images()
    latents = image_to_image(
        text_ldm, make_sampler(text_ldm, "ddim", 4), x, 0.0, PROMPTS, generator=seeded(0), return_latents=True
    )
    assert torch.equal(latents, text_ldm.encode_images(x))


def test_strength_one_starts_from_pure_noise(text_ldm):
    """At strength 1 the input is forgotten: the result is text-to-image's with the same seed."""
    sampler = make_sampler(text_ldm, "ddim", 4)
    edited = image_to_image(text_ldm, sampler, images(), 1.0, PROMPTS, guidance_scale=2.0, generator=seeded(4))
    generated = text_to_image(text_ldm, sampler, PROMPTS, guidance_scale=2.0, generator=seeded(4))
    assert torch.equal(edited, generated)


def test_intermediate_strength_noises_to_the_first_kept_step(text_ldm):
    sampler = make_sampler(text_ldm, "ddim", 5)
    x = images()
    latents = image_to_image(text_ldm, sampler, x, 0.6, PROMPTS, generator=seeded(6), return_latents=True)
    kept = sampler.timesteps[-3:]  # int(5 * 0.6) = 3 steps
    generator = seeded(6)
    noise = torch.randn((2, *text_ldm.latent_shape()), generator=generator)
    z_start = text_ldm.schedule.q_sample(text_ldm.encode_images(x), torch.full((2,), int(kept[0])), noise)
    expected = conditional_loop(text_ldm, sampler, text_ldm.encode_condition(PROMPTS), z_start, kept, generator)
    assert torch.equal(latents, expected)


def test_a_two_stage_sampler_with_karras_sigmas_starts_img2img_at_the_first_kept_step(text_ldm):
    # Heun's kept evaluations begin with the first stage of step n - 3, at Karras sigma_{n-3}
    sampler = make_sampler(text_ldm, "heun", 5, karras=True)
    x = images()
    latents = image_to_image(text_ldm, sampler, x, 0.6, PROMPTS, generator=seeded(6), return_latents=True)
    kept = sampler.timesteps_for_strength(0.6)
    assert kept.tolist() == sampler.timesteps[4:].tolist() and len(kept) == 5
    generator = seeded(6)
    noise = torch.randn((2, *text_ldm.latent_shape()), generator=generator)
    # x_t = (x_0 + sigma eps) / sqrt(1 + sigma^2)
    sigma = sampler.sigmas[2].item()
    z_start = (text_ldm.encode_images(x) + sigma * noise) / (1 + sigma**2) ** 0.5
    expected = conditional_loop(text_ldm, sampler, text_ldm.encode_condition(PROMPTS), z_start, kept, generator)
    torch.testing.assert_close(latents, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_outside_zero_one_is_refused(text_ldm, strength):
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]"):
        image_to_image(text_ldm, make_sampler(text_ldm, "ddim", 2), images(), strength, PROMPTS)


def test_one_prompt_per_image_is_required(text_ldm):
    with pytest.raises(ValueError, match=r"need one entry of prompts per sample \(2\), got 1"):
        image_to_image(text_ldm, make_sampler(text_ldm, "ddim", 2), images(), 0.5, ["a red circle"])


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name != "plms"])
def test_a_zero_terminal_snr_model_samples_from_the_pure_noise_step(text_ldm, name):
    """Leading spacing (SD's) never visits t = T - 1; on a zero-terminal-SNR schedule the sampler
    starts there, where the model was trained on pure noise (Lin et al. 2023, sec. 3.3)."""
    T = text_ldm.schedule.num_timesteps
    assert make_sampler(text_ldm, name, 4).timesteps[0] < T - 1
    config = dataclasses.replace(
        text_ldm.config,
        schedule=dataclasses.replace(text_ldm.config.schedule, zero_terminal_snr=True),
        prediction_type="v",
    )
    zero_snr = LatentDiffusion(config, text_ldm.autoencoder, text_ldm.tokenizer)
    sampler = make_sampler(zero_snr, name, 4)
    assert sampler.timesteps[0] == T - 1 and float(zero_snr.schedule.snr(torch.tensor([T - 1]))) == 0.0
    images = text_to_image(zero_snr, sampler, PROMPTS, guidance_scale=2.0, generator=seeded())
    assert torch.isfinite(images).all()
    with pytest.raises(ValueError, match=f"PLMS cannot start at t = {T - 1},"):
        make_sampler(zero_snr, "plms", 4)


def test_guidance_rescale_against_diffusers_and_its_limits():
    """Lin et al. sec. 3.4: phi = 0 is plain guidance, phi = 1 gives the conditional output's std
    per sample; equal to diffusers' rescale_noise_cfg."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    from minildm.diffusion import rescale_guidance

    generator = torch.Generator().manual_seed(0)
    uncond, cond = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    guided = classifier_free_guidance(uncond, cond, 7.5)
    for phi in (0.0, 0.3, 0.7, 1.0):
        torch.testing.assert_close(rescale_guidance(guided, cond, phi), rescale_noise_cfg(guided, cond, phi))
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)
    torch.testing.assert_close(rescale_guidance(guided, cond, 1.0).std(dim=(1, 2, 3)), cond.std(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="rescale phi must be in"):
        rescale_guidance(guided, cond, 1.5)
