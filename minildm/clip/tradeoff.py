"""The guidance trade-off curve: Frechet distance against CLIP score, one point per guidance scale.

Classifier-free guidance (Ho & Salimans 2022) trades diversity for agreement with the prompt:

    eps_hat = eps_theta(z_t, t, null) + w * (eps_theta(z_t, t, y) - eps_theta(z_t, t, null))

As w grows the samples follow the text more closely (the CLIP score rises) and leave the spread
of the real images (the Frechet distance to real images rises after a minimum). Stable Diffusion
(LDM Fig. 14, SD v1 model card) and Imagen (Saharia et al. 2022, Fig. A.11) draw this as one
curve: FID against CLIP score, a point per w. Here both are measured with minildm's own tools:

- Frechet distance (minildm/metrics/frechet.py) in the judge's feature space between the samples
  and real held-out images, beside the real-vs-real floor;
- CLIP score (minildm/clip/score.py, Hessel et al. 2021) of each sample with its prompt, by the
  CLIP trained on the shapes captions (minildm/clip/train.py).
"""

import dataclasses

import matplotlib.pyplot as plt
import torch

from minildm.clip.model import CLIP
from minildm.clip.score import clip_score
from minildm.config import Config
from minildm.evaluate import sample_prompts
from minildm.ldm import LatentDiffusion
from minildm.metrics import AttributeClassifier, frechet_with_floor
from minildm.text.tokenizer import CLIPTokenizer


def guidance_sweep(
    ldm: LatentDiffusion,
    clip: CLIP,
    clip_tokenizer: CLIPTokenizer,
    judge: AttributeClassifier,
    prompts: list[str],
    real_images: torch.Tensor,
    scales: list[float],
    config: Config,
    device: str,
) -> list[dict]:
    """For each guidance scale w: samples of `prompts` (config.sample's sampler and steps, seed
    config.seed, the same starting noise for every w), their Frechet distance to `real_images`
    (N_real, 3, H, W) with the floor, and their mean CLIP score. One dict per scale."""
    if not scales:
        raise ValueError("scales must name at least one guidance scale, got none")
    if len(real_images) < 2 * len(prompts):
        raise ValueError(
            f"need at least 2 * len(prompts) = {2 * len(prompts)} real images (two halves for the floor), "
            f"got {len(real_images)}"
        )
    real_features = judge.extract_features(real_images)
    rows = []
    for scale in scales:
        swept = dataclasses.replace(config, sample=dataclasses.replace(config.sample, guidance=scale))
        samples = sample_prompts(ldm, prompts, swept, device)  # (N, 3, H, W)
        frechet = frechet_with_floor(real_features, judge.extract_features(samples))
        score = clip_score(clip, clip_tokenizer, samples, prompts)  # (N,)
        rows.append(
            {
                "guidance": scale,
                "frechet": frechet["frechet"],
                "floor": frechet["floor"],
                "clip_score": score.mean().item(),
                "samples": samples,
            }
        )
    return rows


def real_clip_score(clip: CLIP, clip_tokenizer: CLIPTokenizer, images: torch.Tensor, prompts: list[str]) -> float:
    """The mean CLIP score of real images with their own prompts: where a perfect model would sit."""
    return clip_score(clip, clip_tokenizer, images, prompts).mean().item()


def plot_tradeoff(rows: list[dict], real_score: float | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """FD (y) against CLIP score (x), one labelled point per guidance scale; the real images'
    CLIP score and the real-vs-real Frechet floor as dashed lines."""
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4))[1]
    scores = [row["clip_score"] for row in rows]
    distances = [row["frechet"] for row in rows]
    ax.plot(scores, distances, "o-")
    for row in rows:
        ax.annotate(f"w={row['guidance']:g}", (row["clip_score"], row["frechet"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)  # fmt: skip
    ax.axhline(rows[0]["floor"], color="gray", linestyle="--", linewidth=1, label="FD floor (real vs real)")
    if real_score is not None:
        ax.axvline(real_score, color="green", linestyle="--", linewidth=1, label="CLIP score of real images")
    ax.set_xlabel("CLIP score (our CLIP), higher = closer to the prompt")
    ax.set_ylabel("Frechet distance (judge features), lower = closer to real")
    ax.set_title("classifier-free guidance: the trade-off")
    ax.legend(fontsize=8)
    return ax
