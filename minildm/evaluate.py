"""Sampling a trained text-to-image LDM and judging what it draws (the demo's last two stages).

- `sample_prompts`: guided samples for a list of prompts, in batches, with one seed.
- `evaluate_text_ldm`: caption-match accuracy by the attribute classifier (a judge trained on
  real images, minildm/metrics/caption_match.py) on held-out prompts, whose (shape, colour)
  pair training never showed, and on as many prompts of pairs it did show; which shape each
  held-out pair was drawn as; the Frechet distance in the judge's feature space next to the
  real-vs-real floor; and the judge on the autoencoder's reconstructions of the real held-out
  images, how much of each attribute survives the first stage (a guide, not a strict bound).
"""

import torch
from tqdm.auto import tqdm

from minildm.config import Config
from minildm.datasets import ShapesDataset, prompt_for
from minildm.ldm import LatentDiffusion
from minildm.metrics import (
    ClassifierTrainConfig,
    caption_match_accuracy,
    drawn_shapes,
    frechet_with_floor,
    load_or_train_shapes_classifier,
)
from minildm.pipelines.sampling import make_sampler
from minildm.pipelines.text_to_image import text_to_image
from minildm.train.runs import show_progress

TARGETS = {"colour": 0.90, "shape": 0.80, "position": 0.80}


def canonical_prompts(labels: torch.Tensor) -> list[str]:
    """The canonical prompt for each (shape, colour, size, position) row of `labels` (N, 4)."""
    return [prompt_for(*row) for row in labels.tolist()]


@torch.no_grad()
def sample_prompts(ldm: LatentDiffusion, prompts: list[str], config: Config, device: str) -> torch.Tensor:
    """One image (N, 3, H, W) per prompt, with the sampler, steps and guidance of `config.sample`."""
    generator = torch.Generator(device).manual_seed(config.seed)
    sample = config.sample
    sampler = make_sampler(ldm, sample.sampler, sample.steps, eta=sample.eta, karras=sample.karras)
    progress = show_progress(config.progress)
    starts = tqdm(range(0, len(prompts), sample.batch_size), desc="sampling", disable=not progress)
    images = []
    for i in starts:
        batch = prompts[i : i + sample.batch_size]
        guided = text_to_image(
            ldm, sampler, batch, guidance_scale=sample.guidance, generator=generator,
            guidance_rescale=sample.guidance_rescale, progress=progress,
        )  # fmt: skip
        images.append(guided.cpu())
    return torch.cat(images)


def evaluate_text_ldm(
    ldm: LatentDiffusion, heldout: ShapesDataset, seen: ShapesDataset, config: Config, device: str
) -> dict:
    """The judge's numbers for `ldm` (see the module docstring). `heldout` holds 2 * num_prompts
    real held-out images (the first half gives the prompts, the two halves the Frechet floor)."""
    n = config.eval.num_prompts
    labels = heldout.labels[:n]
    prompts = canonical_prompts(labels)
    samples = sample_prompts(ldm, prompts, config, device)
    seen_samples = sample_prompts(ldm, canonical_prompts(seen.labels), config, device)
    judge_config = ClassifierTrainConfig(steps=config.eval.judge_steps) if config.eval.judge_steps else None
    judge = load_or_train_shapes_classifier(size=config.data.size, device=device, train_config=judge_config)
    frechet = frechet_with_floor(judge.extract_features(heldout.images), judge.extract_features(samples))
    real = heldout.images[:n]
    with torch.no_grad():
        recon = ldm.decode_latents(ldm.encode_images(real.to(device))).cpu()
    return {
        "samples": samples,
        "prompts": prompts,
        "accuracy": caption_match_accuracy(judge, samples, labels),
        "accuracy_seen_pairs": caption_match_accuracy(judge, seen_samples, seen.labels),
        "drawn_shapes_heldout": drawn_shapes(judge, samples, labels),
        "frechet_distance": frechet["frechet"],
        "frechet_distance_floor": frechet["floor"],
        "autoencoder_reconstruction_accuracy": caption_match_accuracy(judge, recon, labels),
        "autoencoder_reconstruction_mse": float(((recon - real) ** 2).mean()),
    }


def accuracy_table(accuracy: dict, reconstructed: dict) -> str:
    """Samples' accuracy per attribute, the target, and the judge on the autoencoder's reconstructions."""
    lines = ["| attribute | samples | target | real images through the autoencoder |", "| --- | ---: | ---: | ---: |"]
    for name, value in accuracy.items():
        target = f">= {100 * TARGETS[name]:.0f}%" if name in TARGETS else ""
        lines.append(f"| {name} | {100 * value:.1f}% | {target} | {100 * reconstructed[name]:.1f}% |")
    return "\n".join(lines)


def composition_tables(accuracy: dict, seen_accuracy: dict, drawn: dict) -> str:
    """Held-out pairs against seen pairs per attribute, and which shape each held-out pair got."""
    lines = ["| attribute | held-out (shape, colour) pairs | pairs seen in training |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {100 * accuracy[name]:.1f}% | {100 * seen_accuracy[name]:.1f}% |" for name in accuracy]
    shapes = list(next(iter(drawn.values()))) if drawn else []
    lines += ["", "| prompt asked for | " + " | ".join(f"drawn as {s}" for s in shapes) + " |"]
    lines += ["| --- |" + " ---: |" * len(shapes)]
    lines += [f"| {pair} | " + " | ".join(str(counts[s]) for s in shapes) + " |" for pair, counts in drawn.items()]
    return "\n".join(lines)
