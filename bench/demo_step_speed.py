"""One LDM training step of the demo, at f = 4 (today's default) and f = 2, with 1 and 2 threads.

The step is what `train_ldm` does per batch: the text encoder and the U-Net forward on cached
latents (random here: speed does not depend on their values), the v loss, backward, AdamW.
The models are the demo's own, built by `minildm.train.stages.build_text_ldm` from the config tree; the
f = 2 one is the README's `F2` flags. Steps of all four rows are interleaved and the median
reported, so load from other processes on a shared machine hits them alike.

    python bench/demo_step_speed.py               # batch 64, 12 timed steps per row
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine_lines, median_seconds

from minildm.autoencoder import build_autoencoder
from minildm.config import Config, preset, resolve
from minildm.ldm import LDMBatch
from minildm.train.stages import build_text_ldm, load_shapes


def f2_config() -> Config:
    """docs/EXPERIMENTS.md's F2: an f = 2 autoencoder and a U-Net sized for 16x16 latents."""
    return resolve(preset("laptop"), {
        "autoencoder.channel_mult": (1, 2), "ldm.unet.base_channels": 16, "ldm.unet.channel_mult": (1, 2, 4),
        "ldm.unet.attention_levels": (1, 2), "ldm.unet.head_dim": 16,
    })  # fmt: skip


def make_step(config: Config, captions: list[str], batch_size: int):
    autoencoder = build_autoencoder(config.autoencoder)
    ldm = build_text_ldm(config, autoencoder, captions)
    optimizer = torch.optim.AdamW([p for p in ldm.parameters() if p.requires_grad], lr=1e-4)
    c, h, w = ldm.latent_shape()
    latents = torch.randn(batch_size, c, h, w)
    tokens = ldm.tokenize(captions[:batch_size])
    batch = LDMBatch(latents=latents, tokens=tokens)

    def step():
        loss = ldm.training_loss(batch, cond_drop_prob=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    unet_params = sum(p.numel() for p in ldm.unet.parameters())
    return step, (c, h, w), unet_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    captions = load_shapes(preset("laptop"), "train", max(256, args.batch), 0).captions
    rows, shapes = {}, {}
    for name, config in (("f = 4 (default)", preset("laptop")), ("f = 2 (F2)", f2_config())):
        step, latent, params = make_step(config, captions, args.batch)
        shapes[name] = (latent, params)
        for threads in (1, 2):

            def timed(step=step, threads=threads):
                torch.set_num_threads(threads)
                step()

            rows[(name, threads)] = timed
    seconds = median_seconds(
        {f"{n} {t}": s for (n, t), s in rows.items()},
        repeats=args.steps,
        warmup=args.warmup,
        device=torch.device("cpu"),
    )
    torch.set_num_threads(1)
    print("\n".join(machine_lines(torch.device("cpu"))))
    print(f"batch {args.batch}, median of {args.steps} interleaved steps\n")
    print("| model | latents | U-Net parameters | ms/step, 1 thread | ms/step, 2 threads | 2 threads vs 1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    base = seconds["f = 4 (default) 1"]
    for name, ((c, h, w), params) in shapes.items():
        one, two = seconds[f"{name} 1"], seconds[f"{name} 2"]
        print(f"| {name} | {h}x{w}x{c} | {params:,} | {1000 * one:.0f} | {1000 * two:.0f} | {one / two:.2f}x |")
    print(f"\nf = 2 step / f = 4 step, 1 thread: {seconds['f = 2 (F2) 1'] / base:.2f}x")


if __name__ == "__main__":
    main()
