"""Composed guidance on held-out prompts: each prompt also given as two parts, its shape without
the colour and its colour without the shape (Liu et al. 2022's AND; diffusion/guidance.py).

    .venv/bin/python bench/composed_prompts.py --ldm runs/demo/ldm.pt --seed 0 \\
        [--settings 4,0,0 3,2,0 2,2,2] [--num-prompts 300]

Each setting is w_prompt,w_shape,w_colour:

    out = out_uncond + w_prompt (out(prompt) - out_uncond)
                     + w_shape (out("a large square on the right") - out_uncond)
                     + w_colour (out("a large green shape on the right") - out_uncond)

4,0,0 is plain classifier-free guidance at 4, what the demo reports. The prompts are the demo's
held-out ones for --seed (the canonical captions of real held-out images drawn with seed + 1);
every setting starts from the same noise (DDIM, the laptop preset's steps, batches of 100), and
the judge reads shape, colour, size and position back. The parts are worded as partial captions
(`--data.partial_captions`), so the model should have been trained with them.
"""

import argparse
import time

import torch

from minildm.config import preset, resolve
from minildm.datasets import prompt_parts
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import caption_match_accuracy, load_or_train_shapes_classifier
from minildm.pipelines.sampling import make_sampler
from minildm.pipelines.text_to_image import text_to_image
from minildm.train.stages import load_shapes


def setting(text: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"a setting is w_prompt,w_shape,w_colour, got {text!r}")
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ldm", default="runs/demo/ldm.pt")
    parser.add_argument("--seed", type=int, default=0, help="the demo's --seed: which held-out prompts")
    parser.add_argument("--settings", type=setting, nargs="+", default=[(4, 0, 0), (3, 2, 0), (2, 2, 2)])
    parser.add_argument("--num-prompts", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    config = resolve(preset("laptop"), {"seed": args.seed})
    ldm = load_ldm(args.ldm)
    labels = load_shapes(config, "heldout", 2 * args.num_prompts, args.seed + 1).labels[: args.num_prompts]
    prompts = canonical_prompts(labels)
    shape_parts, colour_parts = zip(*(prompt_parts(*row) for row in labels.tolist()))
    judge = load_or_train_shapes_classifier(size=config.data.size)
    sampler = make_sampler(ldm, config.sample.sampler, config.sample.steps)
    print(f"{args.ldm}: {len(prompts)} held-out prompts, e.g. {prompts[0]!r}")
    print(f"  = {shape_parts[0]!r} AND {colour_parts[0]!r}")
    header = ("w_prompt", "w_shape", "w_colour", "shape", "colour", "size", "position", "all")
    print(" ".join(f"{name:>8}" for name in header))
    for w_prompt, w_shape, w_colour in args.settings:
        generator = torch.Generator().manual_seed(args.seed)
        images = []
        for i in range(0, len(prompts), 100):
            batch = slice(i, i + 100)
            images.append(
                text_to_image(
                    ldm,
                    sampler,
                    prompts[batch],
                    guidance_scale=w_prompt,
                    generator=generator,
                    prompt_parts=[list(shape_parts[batch]), list(colour_parts[batch])],
                    part_scales=[w_shape, w_colour],
                )  # fmt: skip
            )
        acc = caption_match_accuracy(judge, torch.cat(images), labels)
        percents = [f"{100 * acc[name]:7.1f}%" for name in ("shape", "colour", "size", "position", "all")]
        print(f"{w_prompt:8.1f} {w_shape:8.1f} {w_colour:8.1f} " + " ".join(percents), flush=True)
    print(f"DDIM {config.sample.steps} steps; judge: the attribute classifier; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
