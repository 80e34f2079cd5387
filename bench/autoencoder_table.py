"""Reconstruction quality of the first stage against its downsampling factor f (LDM Table 8).

Trains a KL and a VQ autoencoder for f = 2, 4, 8 on the built-in shapes dataset (32x32) with
the same budget each, L1 + PatchGAN (LPIPS too where its pretrained backbone exists), and
prints PSNR, SSIM and reconstruction Frechet distance on held-out images, with the training
time. As in the paper, quality falls as f grows: fewer latent numbers per pixel.

    .venv/bin/python bench/autoencoder_table.py                       # ~1 h on a shared 2-core CPU
    .venv/bin/python bench/autoencoder_table.py --steps 300 --lr 4e-3  # ~15 min, undertrained: the trend only
    .venv/bin/python bench/autoencoder_table.py --device cuda
"""

import argparse
import platform
import time

import torch

from minildm.autoencoder import (
    AutoencoderConfig,
    AutoencoderTrainConfig,
    build_autoencoder,
    train_autoencoder,
)
from minildm.autoencoder.evaluate import evaluate_reconstructions
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.metrics import load_or_train_shapes_classifier

CHANNEL_MULT = {2: (1, 2), 4: (1, 2, 2), 8: (1, 2, 2, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--disc-start-fraction", type=float, default=0.5, help="GAN terms on after this fraction of the steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--latent-channels", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = ShapesDataset(ShapesConfig(size=32, num_samples=4000, seed=0, split="train")).images
    heldout = ShapesDataset(ShapesConfig(size=32, num_samples=512, seed=1, split="heldout")).images.to(args.device)
    judge = load_or_train_shapes_classifier(32, device=args.device)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, device {args.device}, "
          f"{torch.get_num_threads()} thread(s); {args.steps} steps of batch {args.batch_size}, lr {args.lr}, GAN from step "
          f"{int(args.steps * args.disc_start_fraction)}, base_channels "
          f"{args.base_channels}, c = {args.latent_channels}, LPIPS: see warning above if missing")
    print("| f | kind | latent | PSNR (dB) | SSIM | rFD | train time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f, channel_mult in CHANNEL_MULT.items():
        for kind in ("kl", "vq"):
            torch.manual_seed(0)
            cfg = AutoencoderConfig(base_channels=args.base_channels, channel_mult=channel_mult, num_res_blocks=1,
                                    latent_channels=args.latent_channels, attention_in_middle=False, norm_groups=8,
                                    codebook_size=256)
            train_cfg = AutoencoderTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                               disc_start=int(args.steps * args.disc_start_fraction), progress=False)
            start = time.perf_counter()
            model, _ = train_autoencoder(build_autoencoder(kind, cfg), train, train_cfg, device=args.device)
            seconds = time.perf_counter() - start
            result = evaluate_reconstructions(model, heldout, judge)
            side = 32 // f
            print(f"| {f} | {kind.upper()} | {side}x{side}x{args.latent_channels} | {result['psnr']:.2f} | "
                  f"{result['ssim']:.3f} | {result['rfd']:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
