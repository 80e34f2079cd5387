"""Teach the demo LDM a shape it has never seen, with LoRA and with full fine-tuning, and measure it.

    .venv/bin/python bench/lora_new_shape.py [--shape heart] [--images 100] [--seconds 180] [--prompts 60]

The frozen demo model (runs/demo/ldm.pt, `make demo`) is fine-tuned on `--images` captioned images
of a new shape ("a small red heart at the top left", datasets/shapes.py `new_shape_data`) for
`--seconds` of wall time on one CPU thread: once with LoRA on the U-Net's attention projections
(only the adapter is saved), once with every U-Net weight trained, for the same time. For each model
(the base, LoRA, full) it prints one row of a table:

- new shape: the six-shape judge (metrics/new_shape_judge.py) on one sample per new-shape prompt
  (random colour, size and position): shape, colour and all-four accuracy;
- old held-out prompts: the standard judge on the demo's held-out prompts (datasets/shapes.py,
  heldout split, seed 1), shape, colour and all-four accuracy, and how many of them the six-shape
  judge reads as the new shape (what fine-tuning made the model forget);
- what has to be saved (bytes of the safetensors file) and the training seconds and steps.

A first row reads the autoencoder's reconstructions D(E(x)) of real new-shape images: a model that
samples in its latent space cannot draw the shape better than its first stage gives it back. The demo
autoencoder (f = 4, trained on the four standard shapes) returns hearts far better than stars, whose
thin points a 32x32 image blurs (measured: docs/EXPERIMENTS.md), so the heart is the default.

Samples use the demo's sampler settings (config.py laptop preset: DDIM, 25 steps, guidance 4, seed 0).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from minildm.config import preset
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.datasets.attributes import COLOURS, POSITIONS, SIZES
from minildm.datasets.shapes import ALL_SHAPES, NEW_SHAPES, new_shape_data, new_shape_prompt
from minildm.evaluate import canonical_prompts, sample_prompts
from minildm.ldm import load_ldm
from minildm.metrics import caption_match_accuracy, load_or_train_shapes_classifier
from minildm.metrics.new_shape_judge import load_or_train_new_shape_classifier
from minildm.train.finetune import FinetuneConfig, finetune, save_adapter

REPO = Path(__file__).resolve().parents[1]


def new_shape_prompts(shape: str, n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """n canonical prompts for the new shape in random colours, sizes and positions, and their labels (n, 4)."""
    rng = np.random.default_rng(seed)
    labels = torch.tensor(
        [
            [
                ALL_SHAPES.index(shape),
                rng.integers(len(COLOURS)),
                rng.integers(len(SIZES)),
                rng.integers(len(POSITIONS)),
            ]
            for _ in range(n)
        ]
    )
    prompts = [new_shape_prompt(shape, COLOURS[c], SIZES[z], POSITIONS[p]) for _, c, z, p in labels.tolist()]
    return prompts, labels


def measure(ldm, judges, prompts, config) -> dict[str, float]:
    """The judges' accuracies on one sample per prompt (see the module docstring)."""
    new_judge, old_judge = judges
    (new_prompts, new_labels), (old_prompts, old_labels) = prompts
    new_samples = sample_prompts(ldm, new_prompts, config, "cpu")
    old_samples = sample_prompts(ldm, old_prompts, config, "cpu")
    new = caption_match_accuracy(new_judge, new_samples, new_labels)
    old = caption_match_accuracy(old_judge, old_samples, old_labels)
    read_as_new = new_judge.predict(old_samples)[:, 0] >= len(ALL_SHAPES) - len(NEW_SHAPES)
    return {
        "new shape": new["shape"], "new colour": new["colour"], "new all": new["all"],
        "old shape": old["shape"], "old colour": old["colour"], "old all": old["all"],
        "old drawn as a new shape": float(read_as_new.float().mean()),
    }  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=NEW_SHAPES, default="heart")
    parser.add_argument("--images", type=int, default=100, help="training images of the new shape")
    parser.add_argument("--seconds", type=float, default=180.0, help="wall time of each fine-tuning run")
    parser.add_argument("--prompts", type=int, default=60, help="prompts per measurement (new shape, old held-out)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--lora-lr", type=float, default=3e-3)
    parser.add_argument("--full-lr", type=float, default=1e-4)
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "demo" / "ldm.pt")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "lora_new_shape")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    config = preset("laptop")
    judges = (load_or_train_new_shape_classifier(config.data.size), load_or_train_shapes_classifier(config.data.size))
    heldout = ShapesDataset(
        ShapesConfig(size=config.data.size, num_samples=600, seed=1, split="heldout", max_objects=1)
    )
    old_labels = heldout.labels[: args.prompts]
    prompts = (new_shape_prompts(args.shape, args.prompts, seed=1), (canonical_prompts(old_labels), old_labels))
    data = new_shape_data(args.shape, args.images, config.data.size, seed=0)
    model = args.model.relative_to(REPO)
    print(f"fine-tuning {model} on {args.images} images of a {args.shape}, {args.seconds:.0f} s each")
    print(f'e.g. "{data["captions"][0]}"; {args.prompts} prompts per column; 1 CPU thread\n')

    rows = {}
    base = load_ldm(args.model)
    real = new_shape_data(args.shape, args.prompts, config.data.size, seed=1)
    with torch.no_grad():
        reconstructions = base.decode_latents(base.encode_images(real["images"]))
    ceiling = caption_match_accuracy(judges[0], reconstructions, real["labels"])
    print(
        f"the autoencoder's reconstructions of {args.prompts} real {args.shape}s, read by the six-shape judge: "
        f"shape {100 * ceiling['shape']:.0f}%, colour {100 * ceiling['colour']:.0f}%, all {100 * ceiling['all']:.0f}%\n"
    )
    rows["base (demo model)"] = {**measure(base, judges, prompts, config), "bytes": 0, "seconds": 0.0, "steps": 0}
    budget = {"steps": 100000, "seconds": args.seconds}
    methods = {
        "lora": FinetuneConfig(method="lora", rank=args.rank, lr=args.lora_lr, **budget),
        "full": FinetuneConfig(method="full", lr=args.full_lr, **budget),
    }
    for method, finetune_config in methods.items():
        ldm = load_ldm(args.model)
        start = time.perf_counter()
        history = finetune(ldm, data["images"], data["captions"], finetune_config)
        if method == "lora":
            saved = save_adapter(ldm, args.out / "pytorch_lora_weights.safetensors")
            name = f"LoRA r={args.rank} (U-Net attention)"
        else:
            saved = args.out / "unet.safetensors"
            save_file({k: v.contiguous() for k, v in ldm.unet.state_dict().items()}, str(saved))
            name = "full fine-tuning (U-Net)"
        seconds = time.perf_counter() - start
        print(f"{name}: {history['steps']} steps, loss {np.mean(history['loss'][:20]):.4f} -> "
              f"{np.mean(history['loss'][-20:]):.4f}, {history['trainable']} trained numbers")  # fmt: skip
        rows[name] = {**measure(ldm, judges, prompts, config), "bytes": saved.stat().st_size,
                      "seconds": seconds, "steps": history["steps"]}  # fmt: skip

    columns = [key for key in next(iter(rows.values())) if key not in ("bytes", "seconds", "steps")]
    print("\n| model | " + " | ".join(columns) + " | saved bytes | seconds | steps |")
    print("|---" * (len(columns) + 4) + "|")
    for name, row in rows.items():
        cells = " | ".join(f"{100 * row[key]:.0f}%" for key in columns)
        print(f"| {name} | {cells} | {row['bytes']:,} | {row['seconds']:.0f} | {row['steps']} |")


if __name__ == "__main__":
    main()
