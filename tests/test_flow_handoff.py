"""bench/flow_handoff.py: one Euler run shared by two flow models. Handing over at s = 1 is model B
alone and at s = 0 model A alone, exactly as text_to_image samples each (so the probe's end rows
reproduce the models' own reports); in between, A takes the steps above s."""

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from flow_handoff import handoff_sample  # noqa: E402
from test_ldm import tiny_ldm  # noqa: E402

from minildm.diffusion.flow import FlowEulerSampler
from minildm.ldm import LatentDiffusion
from minildm.pipelines.sampling import conditions, guided_model_output
from minildm.pipelines.text_to_image import text_to_image

PROMPTS = ["a large red circle at the top left", "a small blue square in the centre", "a green triangle"]


def flow_pair() -> tuple[LatentDiffusion, LatentDiffusion]:
    """Two flow models with different U-Nets on one autoencoder."""
    torch.manual_seed(0)
    base = tiny_ldm(prediction_type="v")
    config = dataclasses.replace(base.config, objective="flow")
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(LatentDiffusion(config, base.autoencoder, base.tokenizer).eval())
    return models[0], models[1]


def test_handoff_at_the_ends_is_each_model_alone():
    a, b = flow_pair()
    for handoff, alone in ((1.0, b), (0.0, a)):
        probe = handoff_sample(a, b, PROMPTS, handoff, steps=4, guidance=3.0, seed=5, batch_size=len(PROMPTS))
        with torch.no_grad():
            own = text_to_image(alone, FlowEulerSampler(4), PROMPTS, guidance_scale=3.0,
                                generator=torch.Generator().manual_seed(5))  # fmt: skip
        torch.testing.assert_close(probe, own, rtol=0, atol=0)
    # and the two models do differ, so the check above can fail
    assert not torch.equal(
        handoff_sample(a, b, PROMPTS, 1.0, 4, 3.0, 5, 3), handoff_sample(a, b, PROMPTS, 0.0, 4, 3.0, 5, 3)
    )


@torch.no_grad()
def test_model_a_takes_exactly_the_steps_above_the_handoff():
    a, b = flow_pair()
    sampler = FlowEulerSampler(4)  # times 1, 0.75, 0.5, 0.25 -> 0
    z = torch.randn((3, *b.latent_shape()), generator=torch.Generator().manual_seed(5))
    for t, time in zip(sampler.timesteps, sampler.times[:-1]):
        model = a if time.item() > 0.6 else b  # A at t = 1 and 0.75, B at 0.5 and 0.25
        cond, uncond = conditions(model, 3, PROMPTS, None, None, 3.0)
        z = sampler.step(guided_model_output(model, z, t, cond, uncond, 3.0), t, z)
    expected = b.decode_latents(z)
    torch.testing.assert_close(handoff_sample(a, b, PROMPTS, 0.6, 4, 3.0, 5, 3), expected, rtol=0, atol=0)
