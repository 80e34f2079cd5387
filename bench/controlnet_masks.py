"""Train a ControlNet on the frozen demo LDM with object masks as control, and measure the control.

    .venv/bin/python bench/controlnet_masks.py [--images 2000] [--seconds 240] [--prompts 40]

The ControlNet (nn/controlnet.py, trained by train/controlnet.py) reads the object mask of each
training image (datasets/shapes.py). It is then given the masks of fresh images with their own
captions ("matching") and with the masks of other images ("swapped": the mask says one place and
shape, the caption another), at conditioning scales 0 (the base model), 0.5, 1 and 1.5. Printed:

- IoU between the control mask and the generated object, the object read by colour: the shapes
  are saturated (HSV saturation >= 0.75) and the backgrounds pale (<= 0.15), so a pixel belongs to
  the object when its saturation is above 0.45;
- colour accuracy of the standard judge against the caption's colour (does the text still set it?);
- shape and position accuracy of the judge against the caption, and for swapped masks how often
  they follow the mask's image instead.

Samples use the demo's sampler settings (DDIM, 25 steps, guidance 4, seed 0), one CPU thread.
"""

import argparse
import statistics
from pathlib import Path

import torch

from minildm.config import preset
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import load_or_train_shapes_classifier
from minildm.pipelines.sampling import make_sampler
from minildm.train.controlnet import ControlTrainConfig, controlled_text_to_image, train_controlnet

REPO = Path(__file__).resolve().parents[1]
SCALES = (0.0, 0.5, 1.0, 1.5)
SATURATION_THRESHOLD = 0.45


def object_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H, W) bool: HSV saturation (max - min) / max above the threshold."""
    rgb = (images + 1) / 2
    high, low = rgb.amax(1, keepdim=True), rgb.amin(1, keepdim=True)
    return (high - low) / high.clamp(min=1e-6) > SATURATION_THRESHOLD


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of two (B, 1, H, W) bool masks, per image (B,)."""
    return (a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1).clamp(min=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="training images (train split, one object)")
    parser.add_argument("--seconds", type=float, default=240.0, help="wall time of the ControlNet training")
    parser.add_argument("--prompts", type=int, default=40, help="prompts per measurement")
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "demo" / "ldm.pt")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "controlnet_masks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = preset("laptop")
    size = config.data.size
    ldm = load_ldm(args.model)
    judge = load_or_train_shapes_classifier(size)
    train = ShapesDataset(ShapesConfig(size=size, num_samples=args.images, seed=0, max_objects=1, cache=False))
    test = ShapesDataset(ShapesConfig(size=size, num_samples=args.prompts, seed=5, max_objects=1, cache=False))
    controlnet, history = train_controlnet(
        ldm, train.images, train.captions, train.masks,
        ControlTrainConfig(steps=100000, seconds=args.seconds, seed=config.seed),
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(controlnet.state_dict(), args.out / "controlnet.pt")
    first, last = statistics.mean(history["loss"][:20]), statistics.mean(history["loss"][-20:])
    print(f"ControlNet on {args.model.relative_to(REPO)}: {args.images} images with their masks, "
          f"{history['steps']} steps in {history['seconds']:.0f} s (1 CPU thread), "
          f"loss {first:.4f} -> {last:.4f} (mean of first / last 20 steps)")  # fmt: skip
    print(
        f"{args.prompts} seen-pair prompts of fresh images (train split, seed 5); masks their own or the next image's\n"
    )

    prompts, labels = canonical_prompts(test.labels), test.labels
    masks = test.masks > 0.5  # (N, 1, H, W)
    swap = torch.roll(torch.arange(len(labels)), 1)  # image i gets the mask of image i - 1
    sampler = make_sampler(ldm, config.sample.sampler, config.sample.steps, eta=config.sample.eta)
    heads = ("shape", "colour", "size", "position")
    print("| masks | scale | IoU(mask, object) | colour (caption) | shape (caption) | position (caption) "
          "| shape (mask's image) | position (mask's image) |")  # fmt: skip
    print("|---" * 8 + "|")
    for name, order in (("matching", torch.arange(len(labels))), ("swapped", swap)):
        for scale in SCALES:
            images = controlled_text_to_image(
                ldm, controlnet, sampler, prompts, masks[order].float(), config.sample.guidance, scale,
                generator=torch.Generator().manual_seed(config.seed),
            )  # fmt: skip
            read = judge.predict(images)
            caption = {head: float((read[:, i] == labels[:, i]).float().mean()) for i, head in enumerate(heads)}
            mask_image = {head: float((read[:, i] == labels[order, i]).float().mean()) for i, head in enumerate(heads)}
            overlap = float(iou(masks[order], object_pixels(images)).mean())
            cells = [
                caption["colour"],
                caption["shape"],
                caption["position"],
                mask_image["shape"],
                mask_image["position"],
            ]
            print(f"| {name} | {scale} | {overlap:.2f} | " + " | ".join(f"{100 * c:.0f}%" for c in cells) + " |")


if __name__ == "__main__":
    main()
