"""Outpainting shapes that the border cuts, with the demo LDM's training-free inpainting, measured.

    .venv/bin/python bench/outpaint_border.py [--images 40] [--cuts 4 8]

Fresh single-object images whose object sits in the left column of the grid (top left, left,
bottom left) are seen through a camera moved `cut` pixels to the right: the object is cut by the
left border (pipelines/outpaint.py `outpaint_canvas` with shift (0, -cut)). Outpainting then moves
that view back by (0, +cut) and invents the missing left strip (`outpaint`, trained=False: the
demo model was not trained for inpainting; RePaint-style replacement of the known latent cells),
prompted with the image's own caption. Printed, per cut, the standard judge's accuracy against the
image's labels on

- the original, uncut image (what the judge reads when nothing is missing);
- the cut view, with the missing strip left mid grey (what there is before outpainting);
- the outpainted image;

the IoU, within the invented strip, between the object in the outpainted image and in the
original (object pixels read by colour: HSV saturation above 0.45, bench/controlnet_masks.py), and
the mean |x - original| over the known part (what outpainting should keep; the autoencoder's own
reconstruction error is printed beside it, since every output goes through the decoder).
Samples use the demo's sampler settings (DDIM, 25 steps, guidance 4, seed 0), one CPU thread.
"""

import argparse
from pathlib import Path

import torch

from minildm.config import preset
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.datasets.attributes import POSITIONS
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import caption_match_accuracy, load_or_train_shapes_classifier
from minildm.pipelines.inpaint import downsampling_factor
from minildm.pipelines.outpaint import outpaint, outpaint_canvas
from minildm.pipelines.sampling import make_sampler

REPO = Path(__file__).resolve().parents[1]
LEFT_COLUMN = [POSITIONS.index(p) for p in ("top left", "left", "bottom left")]
SATURATION_THRESHOLD = 0.45


def object_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H, W) bool: HSV saturation (max - min) / max above the threshold."""
    rgb = (images + 1) / 2
    high, low = rgb.amax(1, keepdim=True), rgb.amin(1, keepdim=True)
    return (high - low) / high.clamp(min=1e-6) > SATURATION_THRESHOLD


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images whose object is in the left column")
    parser.add_argument("--cuts", type=int, nargs="+", default=[4, 8], help="pixels cut off on the left")
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "demo" / "ldm.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = preset("laptop")
    ldm = load_ldm(args.model)
    judge = load_or_train_shapes_classifier(config.data.size)
    pool = ShapesDataset(ShapesConfig(size=config.data.size, num_samples=8 * args.images, seed=6, max_objects=1,
                                      cache=False))  # fmt: skip
    keep = torch.isin(pool.labels[:, 3], torch.tensor(LEFT_COLUMN)).nonzero().flatten()[: args.images]
    originals, labels = pool.images[keep], pool.labels[keep]
    prompts = canonical_prompts(labels)
    sampler = make_sampler(ldm, config.sample.sampler, config.sample.steps, eta=config.sample.eta)
    factor = downsampling_factor(ldm)
    print(f"{len(keep)} fresh images (train split, seed 6) with the object in the left column, "
          f"{args.model.relative_to(REPO)}, training-free outpainting, 1 CPU thread\n")  # fmt: skip

    heads = ("shape", "colour", "size", "position", "all")
    print("| cut (px) | image | " + " | ".join(heads) + " | IoU in the strip | mean abs error, known part |")
    print("|---" * (len(heads) + 4) + "|")
    original = caption_match_accuracy(judge, originals, labels)
    with torch.no_grad():
        reconstructions = ldm.decode_latents(ldm.encode_images(originals)).cpu()
    reconstruction_error = (reconstructions - originals).abs().mean().item()
    print(
        "| - | original, uncut | " + " | ".join(f"{100 * original[h]:.0f}%" for h in heads)
        + f" | - | {reconstruction_error:.3f} (D(E(x)) of the whole image) |"
    )  # fmt: skip
    for cut in args.cuts:
        view, _ = outpaint_canvas(originals, (0, -cut), factor)  # the camera moved right: the object is cut
        # the cut view moved back: its left strip unknown (mid grey until outpainted)
        before, _ = outpaint_canvas(view, (0, cut), factor)
        after = outpaint(
            ldm, sampler, view, (0, cut), prompts, guidance_scale=config.sample.guidance,
            generator=torch.Generator().manual_seed(config.seed),
        ).cpu()  # fmt: skip
        strip = (slice(None), slice(None), slice(None), slice(0, cut))
        made, real = object_pixels(after)[strip], object_pixels(originals)[strip]
        has_object = real.flatten(1).any(1)
        overlap = (made & real).flatten(1).sum(1) / (made | real).flatten(1).sum(1).clamp(min=1)
        known_error = (after - originals)[:, :, :, cut:].abs().mean().item()
        for name, images in (("cut, strip grey", before), ("outpainted", after)):
            accuracy = caption_match_accuracy(judge, images, labels)
            extra = f"{float(overlap[has_object].mean()):.2f} | {known_error:.3f}" if name == "outpainted" else "- | 0"
            print(f"| {cut} | {name} | " + " | ".join(f"{100 * accuracy[h]:.0f}%" for h in heads) + f" | {extra} |")


if __name__ == "__main__":
    main()
