"""Training a ControlNet on a frozen LDM (train/controlnet.py): at initialisation and at scale 0 the
controlled model is the base model; a short run lowers the loss and moves only the ControlNet."""

import copy

import pytest
import torch
from test_ldm import CAPTIONS, tiny_ldm

from minildm.diffusion import DDIMSampler
from minildm.nn.controlnet import ControlNet, ControlNetConfig
from minildm.pipelines.text_to_image import text_to_image
from minildm.train.controlnet import (
    ControlTrainConfig,
    controlled_prediction,
    controlled_text_to_image,
    controlnet_loss,
    train_controlnet,
)

HINT_WIDTHS = (8, 16)  # one stride-2 step: tiny_ldm's 16x16 images meet 8x8 latents (f = 2)


def data(n: int = 8) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Images whose content is their mask: a bright square where the mask is 1."""
    generator = torch.Generator().manual_seed(4)
    masks = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        row, col = torch.randint(0, 10, (2,), generator=generator).tolist()
        masks[i, :, row : row + 6, col : col + 6] = 1
    return masks.expand(-1, 3, -1, -1) * 1.6 - 0.8, [CAPTIONS[i % 3] for i in range(n)], masks


def test_at_initialisation_the_controlled_prediction_is_the_base_prediction():
    ldm = tiny_ldm().eval()
    controlnet = ControlNet.from_unet(ldm.unet, ControlNetConfig(1, HINT_WIDTHS)).eval()
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([4, 80])
    with torch.no_grad():
        cond = ldm.encode_condition(CAPTIONS[:2])
        base = ldm.predict(z, t, cond)
        assert torch.equal(controlled_prediction(ldm, controlnet, z, t, cond, torch.rand(2, 1, 16, 16)), base)


def test_training_lowers_the_loss_and_leaves_the_ldm_frozen():
    ldm = tiny_ldm()
    frozen = copy.deepcopy(ldm.state_dict())
    images, captions, masks = data()
    config = ControlTrainConfig(hint_widths=HINT_WIDTHS, steps=40, batch_size=8, lr=3e-3)

    def loss_of(controlnet: ControlNet) -> float:
        latents, tokens = ldm.encode_images(images), ldm.tokenize(captions)
        with torch.no_grad():
            losses = [
                controlnet_loss(ldm, controlnet, latents, tokens, masks, 0.0, torch.Generator().manual_seed(seed))
                for seed in range(8)
            ]
        return float(torch.stack(losses).mean())

    initial = loss_of(ControlNet.from_unet(ldm.unet, ControlNetConfig(1, HINT_WIDTHS)).eval())
    controlnet, history = train_controlnet(ldm, images, captions, masks, config)
    assert history["steps"] == 40
    assert loss_of(controlnet) < initial
    assert all(torch.equal(value, frozen[key]) for key, value in ldm.state_dict().items())
    assert not any(p.requires_grad for p in ldm.parameters())
    assert controlnet.zero_conv_mid.weight.abs().sum() > 0  # the zero convolutions have moved

    # at conditioning scale 0 sampling is the base model's, bit for bit
    sampler = DDIMSampler(ldm.schedule, num_inference_steps=4)
    ldm.eval()
    with torch.no_grad():
        controlled = controlled_text_to_image(
            ldm, controlnet, sampler, captions[:2], masks[:2], conditioning_scale=0.0,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        base = text_to_image(ldm, sampler, captions[:2], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(controlled, base, rtol=0, atol=0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="cond_drop_prob"):
        ControlTrainConfig(cond_drop_prob=1.0)
    images, captions, masks = data(4)
    with pytest.raises(ValueError, match="as many images"):
        train_controlnet(tiny_ldm(), images, captions[:3], masks, ControlTrainConfig(hint_widths=HINT_WIDTHS))
