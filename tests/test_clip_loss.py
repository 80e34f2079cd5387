"""CLIP's contrastive loss: parity with open_clip's ClipLoss (values and gradients), identities, the clamp at 100."""

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from minildm.clip.loss import INIT_LOGIT_SCALE, MAX_LOGIT_SCALE, clip_logits, clip_loss


@pytest.mark.parametrize("t", [INIT_LOGIT_SCALE, 0.0, math.log(MAX_LOGIT_SCALE) - 0.01])
def test_matches_open_clip_clip_loss_values_and_gradients(t):
    torch.manual_seed(0)
    images = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    texts = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    ours = clip_loss(images, texts, scale)
    ours_grads = torch.autograd.grad(ours, (images, texts, scale))
    # open_clip expects normalised features and exp(t)
    theirs = ClipLoss()(F.normalize(images, dim=-1), F.normalize(texts, dim=-1), scale.exp())
    theirs_grads = torch.autograd.grad(theirs, (images, texts, scale))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    for mine, reference in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(mine, reference, atol=1e-6, rtol=0)


def test_identities():
    """Identical embeddings in every row: each row is a uniform guess, loss = log B. Orthonormal
    matching pairs at scale 100: the loss is log(1 + (B-1) e^-100), about 0."""
    same = torch.ones(5, 4, dtype=torch.float64)
    torch.testing.assert_close(clip_loss(same, same, torch.tensor(2.0)), torch.tensor(math.log(5), dtype=torch.float64))
    eye = torch.eye(4, dtype=torch.float64)
    assert clip_loss(3 * eye, eye, torch.tensor(math.log(100.0))).item() < 1e-40


def test_logits_are_scaled_cosines_and_the_scale_is_clamped_at_100():
    images, texts = torch.randn(3, 5), torch.randn(4, 5)
    cosines = F.cosine_similarity(images[:, None], texts[None], dim=-1)  # (3, 4)
    torch.testing.assert_close(clip_logits(images, texts, torch.tensor(0.5)), math.exp(0.5) * cosines)
    torch.testing.assert_close(clip_logits(images, texts, torch.tensor(math.log(1000.0))), 100 * cosines)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="same D"):
        clip_logits(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor(0.0))
    with pytest.raises(ValueError, match="as many texts as images"):
        clip_loss(torch.zeros(2, 3), torch.zeros(3, 3), torch.tensor(0.0))
    with pytest.raises(ValueError, match="one number"):
        clip_logits(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2))
