"""Quality against network evaluations (NFE) for every sampler, on the demo's trained model.

    .venv/bin/python bench/samplers.py --checkpoint runs/demo/ldm.pt [--nfe 4 8 16 32 64]
        [--samplers ddim euler heun ...] [--karras] [--num-eval 300] [--guidance 4.0]

`make demo` writes runs/demo/ldm.pt. Each sampler draws one image per held-out prompt (the
demo's held-out split, the demo's seed) with at most NFE network evaluations, as many steps n as
that allows: n = NFE for DDIM, DDPM, Euler, Euler ancestral and DPM-Solver++(2M), about NFE / 2
for Heun (2n - 1 evaluations; 2n - 2 from sigma = inf), NFE - 1 for PLMS (n + 1). With guidance
each evaluation is one batched forward pass of 2B. The judge (minildm.metrics) gives caption-match accuracy (all four
attributes right, and shape alone) and the Frechet distance of its features to real held-out
images, beside the real-vs-real floor. A sampler that cannot run on the model (PLMS on a
zero-terminal-SNR schedule) gets a row saying why.
"""

import argparse
import time
from pathlib import Path

import torch

from minildm.datasets.shapes import ShapesConfig, ShapesDataset
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import (
    ClassifierTrainConfig,
    caption_match_accuracy,
    frechet_with_floor,
    load_or_train_shapes_classifier,
)
from minildm.pipelines import SAMPLERS, make_sampler, text_to_image
from minildm.pipelines.sampling import SIGMA_SAMPLERS


def sampler_for_nfe(ldm, name: str, nfe: int, karras: bool):
    """The sampler `name` with the most steps n whose network evaluations do not exceed nfe."""
    for steps in range(nfe, 0, -1):
        sampler = make_sampler(ldm, name, steps, karras=karras)
        if len(sampler.timesteps) <= nfe:
            return sampler, steps
    raise ValueError(f"{name} needs more than {nfe} evaluations for one step")


@torch.no_grad()
def sample(ldm, sampler, prompts: list[str], guidance: float, seed: int, batch_size: int) -> torch.Tensor:
    generator = torch.Generator(ldm.device).manual_seed(seed)
    images = [
        text_to_image(ldm, sampler, prompts[i : i + batch_size], guidance_scale=guidance, generator=generator).cpu()
        for i in range(0, len(prompts), batch_size)
    ]
    return torch.cat(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/demo/ldm.pt", help="ldm.pt from `make demo` (text-conditional)")
    parser.add_argument("--nfe", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--karras", action="store_true", help="Karras et al. noise levels for the sigma-view samplers")
    parser.add_argument("--num-eval", type=int, default=300, help="held-out prompts, one image each")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0, help="the demo's seed: held-out images use seed + 1")
    parser.add_argument(
        "--judge-steps", type=int, default=0, help="0: the standard judge; > 0: a quick one (smoke tests)"
    )
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        # `make bench` runs every script: say why this one has nothing to measure, and go on
        print(f"not run: no checkpoint at {args.checkpoint} (run `make demo` first, or pass --checkpoint)")
        return
    torch.set_num_threads(args.threads)

    ldm = load_ldm(args.checkpoint, device=args.device)
    if ldm.config.conditioning != "text":
        raise SystemExit(f"{args.checkpoint} is {ldm.config.conditioning!r}-conditioned; this bench needs a text model")
    size = ldm.config.image_size
    heldout = ShapesDataset(
        ShapesConfig(size=size, num_samples=2 * args.num_eval, seed=args.seed + 1, split="heldout", max_objects=1)
    )
    labels = heldout.labels[: args.num_eval]
    prompts = canonical_prompts(labels)
    judge_config = ClassifierTrainConfig(steps=args.judge_steps) if args.judge_steps else None
    judge = load_or_train_shapes_classifier(size=size, device=args.device, train_config=judge_config)
    real_features = judge.extract_features(heldout.images)

    schedule = ldm.schedule.config
    print(
        f"{args.checkpoint}: {ldm.prediction_type}-prediction, {schedule.beta_schedule} schedule"
        f"{' (zero terminal SNR)' if schedule.zero_terminal_snr else ''}; {args.num_eval} held-out prompts, "
        f"guidance {args.guidance}, seed {args.seed}, {args.threads} thread(s), Karras sigmas: {args.karras}\n"
    )
    print("| sampler | NFE | steps | caption match (all) | shape | Frechet (floor) | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.samplers:
        for nfe in args.nfe:
            try:
                sampler, steps = sampler_for_nfe(ldm, name, nfe, args.karras and name in SIGMA_SAMPLERS)
            except ValueError as error:
                print(f"| {name} | {nfe} | | not run: {str(error).split(':')[0]} | | | |")
                continue
            start = time.perf_counter()
            images = sample(ldm, sampler, prompts, args.guidance, args.seed, args.batch_size)
            seconds = time.perf_counter() - start
            accuracy = caption_match_accuracy(judge, images, labels)
            frechet = frechet_with_floor(real_features, judge.extract_features(images))
            print(
                f"| {name} | {len(sampler.timesteps)} | {steps} | {100 * accuracy['all']:.1f}% | "
                f"{100 * accuracy['shape']:.1f}% | {frechet['frechet']:.2f} ({frechet['floor']:.2f}) | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
