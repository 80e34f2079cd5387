"""The guidance trade-off curve of the demo's model: Frechet distance against CLIP score, one
point per classifier-free guidance scale (as Stable Diffusion and Imagen report it).

    .venv/bin/python bench/guidance_tradeoff.py [--ldm runs/demo/ldm.pt] [--num-prompts 200]
        [--scales 1 1.5 2 3 4 6 8] [--out runs/bench/guidance_tradeoff.png]

The prompts are the canonical captions of real held-out images (their (shape, colour) pairs never
seen in training, drawn as the demo draws them: seed + 1); the same images (and as many more) are
the real side of the Frechet distance. The CLIP is minildm's own, trained on the shapes captions
with bench/clip_shapes.py's defaults and cached at --clip. Every scale samples from the same
starting noise (DDIM, the laptop preset's steps). Prints the table and writes the curve.
"""

import argparse
import time
from pathlib import Path

import torch

from minildm.clip.checkpoint import load_or_train_shapes_clip
from minildm.clip.tradeoff import guidance_sweep, plot_tradeoff, real_clip_score
from minildm.clip.train import CLIPTrainConfig
from minildm.config import preset
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import load_or_train_shapes_classifier
from minildm.train.stages import load_shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ldm", default="runs/demo/ldm.pt")
    parser.add_argument("--clip", default="runs/clip/clip.pt", help="cached CLIP (trained here if missing)")
    parser.add_argument("--num-prompts", type=int, default=200)
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 1.5, 2, 3, 4, 6, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench/guidance_tradeoff.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    config = preset("laptop")
    config.seed = args.seed
    clip, clip_tokenizer, _ = load_or_train_shapes_clip(args.clip, CLIPTrainConfig())
    ldm = load_ldm(args.ldm)
    judge = load_or_train_shapes_classifier(size=config.data.size, device="cpu")
    n = args.num_prompts
    heldout = load_shapes(config, "heldout", 2 * n, args.seed + 1)
    prompts = canonical_prompts(heldout.labels[:n])
    rows = guidance_sweep(ldm, clip, clip_tokenizer, judge, prompts, heldout.images, args.scales, config, "cpu")
    real_score = real_clip_score(clip, clip_tokenizer, heldout.images[:n], prompts)
    print(
        f"{n} held-out prompts, {config.sample.sampler} {config.sample.steps} steps, seed {args.seed}; "
        f"Frechet distance in the judge's features (floor real vs real {rows[0]['floor']:.2f}); "
        f"CLIP score by our CLIP (real images with their prompts: {real_score:.1f})\n"
    )
    print("| guidance w | Frechet distance | CLIP score |")
    print("| ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['guidance']:g} | {row['frechet']:.2f} | {row['clip_score']:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ax = plot_tradeoff(rows, real_score)
    ax.figure.savefig(out, dpi=100, bbox_inches="tight")
    print(f"\ncurve written to {out}; {time.perf_counter() - start:.0f} s in all (1 thread)")


if __name__ == "__main__":
    main()
