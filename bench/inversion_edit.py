"""Editing real images by DDIM inversion against SDEdit, judged on held-out images (issue 17 item 5).

    .venv/bin/python bench/inversion_edit.py --checkpoint runs/demo/ldm.pt [--num-eval 100]
        [--steps 25] [--edit-guidance 1 2 3] [--strengths 0.6 0.8] [--sdedit-guidance 4.0]

`make demo` writes runs/demo/ldm.pt. The held-out images (the demo's held-out split: (shape,
colour) pairs its LDM never saw, seed + 1) are encoded by the demo's first stage. Each is asked
to change its colour only: the prompt is its own caption with the colour moved `--colour-shift`
places along COLOURS. Two ways to edit (minildm/pipelines/):

- inversion (inversion_edit.py): DDIM inversion (eta = 0, `--steps` steps) under the image's
  own caption with guidance 1, then DDIM on the same grid under the new caption, guidance w;
- SDEdit (image_to_image.py): the latent noised to `strength` with fresh noise, then the same
  DDIM steps from there under the new caption (the demo's guidance, 4, by default).

The judge (minildm.metrics) reads the four attributes back: "colour asked" is the new colour,
"shape / size / position kept" the source image's own, "all four" every one of them at once
(the edit that was asked for). PSNR to the input, over the whole image and over the background
(away from the object, which a new colour must change), says how much of the particular image is
left. Three reference rows, judged against the source's own colour: the held-out images
themselves (what the judge can read), the autoencoder's reconstruction D(E(x)) (the best any
latent edit can keep), and the inversion sampled back under the image's own caption.
"""

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minildm.datasets import COLOURS
from minildm.datasets.shapes import ShapesConfig, ShapesDataset
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import ClassifierTrainConfig, caption_match_accuracy, load_or_train_shapes_classifier, psnr
from minildm.pipelines import image_to_image, make_sampler
from minildm.pipelines.inversion_edit import invert_images, regenerate


def recoloured(labels: torch.Tensor, shift: int) -> torch.Tensor:
    """(N, 4) labels -> the same shape, size and position in the colour `shift` places further along COLOURS."""
    labels = labels.clone()
    labels[:, 1] = (labels[:, 1] + shift) % len(COLOURS)
    return labels


def background_psnr(images: torch.Tensor, reference: torch.Tensor, masks: torch.Tensor) -> float:
    """PSNR in dB over the pixels away from the object (its mask (N, 1, H, W) dilated by 2 px), all images pooled:
    how much of the rest of the particular image an edit keeps."""
    background = 1 - F.max_pool2d(masks, kernel_size=5, stride=1, padding=2)
    # PSNR = 10 log10(2^2 / MSE), the MSE over the background pixels
    mse = ((images - reference) ** 2 * background).sum() / (background.sum() * images.shape[1])
    return float(10 * torch.log10(4 / mse))


def in_batches(function, batch_size: int, *inputs) -> torch.Tensor:
    """function applied to slices of batch_size of every input (tensors or lists), results concatenated on the CPU."""
    count = len(inputs[0])
    return torch.cat([function(*(x[i : i + batch_size] for x in inputs)).cpu() for i in range(0, count, batch_size)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/demo/ldm.pt", help="ldm.pt from `make demo` (text-conditional)")
    parser.add_argument("--num-eval", type=int, default=100, help="held-out images, one edit each")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (the demo's); inversion uses the same grid")
    parser.add_argument("--edit-guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.4, 0.6, 0.8], help="SDEdit strengths")
    parser.add_argument("--sdedit-guidance", type=float, default=4.0)
    parser.add_argument("--colour-shift", type=int, default=3, help="the new colour: this many places along COLOURS")
    parser.add_argument("--seed", type=int, default=0, help="the demo's seed: held-out images use seed + 1")
    parser.add_argument(
        "--judge-steps", type=int, default=0, help="0: the standard judge; > 0: a quick one (smoke tests)"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        # `make bench` runs every script: say why this one has nothing to measure, and go on
        print(f"not run: no checkpoint at {args.checkpoint} (run `make demo` first, or pass --checkpoint)")
        return
    if args.colour_shift % len(COLOURS) == 0:
        raise SystemExit(f"--colour-shift must not be a multiple of {len(COLOURS)}: that asks for the same colour")
    torch.set_num_threads(args.threads)

    ldm = load_ldm(args.checkpoint, device=args.device)
    if ldm.config.conditioning != "text":
        raise SystemExit(f"{args.checkpoint} is {ldm.config.conditioning!r}-conditioned; this bench needs a text model")
    size = ldm.config.image_size
    heldout = ShapesDataset(
        ShapesConfig(size=size, num_samples=args.num_eval, seed=args.seed + 1, split="heldout", max_objects=1)
    )
    x, source = heldout.images, heldout.labels
    target = recoloured(source, args.colour_shift)
    source_prompts, prompts = canonical_prompts(source), canonical_prompts(target)
    judge_config = ClassifierTrainConfig(steps=args.judge_steps) if args.judge_steps else None
    judge = load_or_train_shapes_classifier(size=size, device=args.device, train_config=judge_config)
    sampler = make_sampler(ldm, "ddim", args.steps)
    print(
        f"{args.checkpoint}: {ldm.prediction_type}-prediction; {args.num_eval} held-out images, DDIM {args.steps} "
        f"steps ({'trailing' if ldm.schedule.config.zero_terminal_snr else 'leading'} grid), colour shift "
        f"{args.colour_shift}, seed {args.seed}, {args.threads} thread(s)"
    )
    print(f"e.g. {source_prompts[0]!r} -> {prompts[0]!r}\n")

    rows = [("the held-out images themselves (reference)", x, source, 0.0)]  # (method, images, judged against, s)
    start = time.perf_counter()
    reconstruction = in_batches(lambda images: ldm.decode_latents(ldm.encode_images(images)), args.batch_size, x)
    rows.append(("autoencoder D(E(x)) (reference)", reconstruction, source, time.perf_counter() - start))
    start = time.perf_counter()
    noise = in_batches(lambda images, p: invert_images(ldm, sampler, images, p), args.batch_size, x, source_prompts)
    inversion_seconds = time.perf_counter() - start
    start = time.perf_counter()
    same = in_batches(lambda z, p: regenerate(ldm, sampler, z, p), args.batch_size, noise, source_prompts)
    rows.append(
        ("inversion, own caption, w 1 (reference)", same, source, inversion_seconds + time.perf_counter() - start)
    )
    for w in args.edit_guidance:
        start = time.perf_counter()
        edited = in_batches(
            lambda z, p: regenerate(ldm, sampler, z, p, guidance_scale=w), args.batch_size, noise, prompts
        )
        rows.append(
            (f"inversion, new caption, w {w:g}", edited, target, inversion_seconds + time.perf_counter() - start)
        )
    for strength in args.strengths:
        generator = torch.Generator(args.device).manual_seed(args.seed)
        start = time.perf_counter()
        edited = in_batches(
            lambda images, p: image_to_image(
                ldm, sampler, images, strength, p, guidance_scale=args.sdedit_guidance, generator=generator
            ),
            args.batch_size,
            x,
            prompts,
        )
        rows.append(
            (f"SDEdit, strength {strength:g}, w {args.sdedit_guidance:g}", edited, target, time.perf_counter() - start)
        )

    print(
        "| method | colour asked | shape kept | size kept | position kept | all four | PSNR to input | "
        "background PSNR | seconds |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, images, labels, seconds in rows:
        accuracy = caption_match_accuracy(judge, images, labels)
        print(
            f"| {method} | {100 * accuracy['colour']:.0f}% | {100 * accuracy['shape']:.0f}% | "
            f"{100 * accuracy['size']:.0f}% | {100 * accuracy['position']:.0f}% | {100 * accuracy['all']:.0f}% | "
            f"{psnr(images, x):.1f} dB | {background_psnr(images, x, heldout.masks):.1f} dB | {seconds:.0f} |"
        )
    print(
        "\nreference rows: judged against the source image's own colour; seconds of inversion rows include the "
        f"inversion ({inversion_seconds:.0f} s, shared by them)"
    )


if __name__ == "__main__":
    main()
