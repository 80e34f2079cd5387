"""Reconstruction quality of the first stage against its downsampling factor f (LDM Table 8).

Trains a KL and a VQ autoencoder for f = 2, 4, 8 on the built-in shapes dataset (32x32) with
the same budget each and prints PSNR, SSIM and reconstruction Frechet distance on held-out
images, with the training time. As in the paper, quality falls as f grows: fewer latent
numbers per pixel.

The defaults are minildm.autoencoder.AutoencoderTrainConfig.fast_cpu, the short-run preset:
squared error, lr 4e-3 with 50 warmup steps and cosine decay, batch 8, GAN and LPIPS off, a small model
(base_channels 16, no middle attention). `--l1 --disc-start-fraction 0.5` gives LDM's
L1 + PatchGAN recipe instead (LPIPS too where its pretrained backbone exists); it needs many
more steps than a CPU run affords to beat the squared error on PSNR.

    .venv/bin/python bench/autoencoder_table.py                  # 1500 steps per row, 12 min on a shared 2-core CPU
    .venv/bin/python bench/autoencoder_table.py --only f4-kl     # the f = 4 KL row alone (>= 25 dB target)
    .venv/bin/python bench/autoencoder_table.py --device cuda --steps 5000
"""

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import time

import torch

from minildm.autoencoder import AutoencoderConfig, AutoencoderTrainConfig, build_autoencoder, train_autoencoder
from minildm.autoencoder.evaluate import evaluate_reconstructions
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.metrics import load_or_train_shapes_classifier

CHANNEL_MULT = {2: (1, 2), 4: (1, 2, 2), 8: (1, 2, 2, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--l1", action="store_true", help="LDM's L1 reconstruction loss instead of the squared error")
    parser.add_argument("--constant-lr", action="store_true", help="no warmup, no cosine decay (LDM)")
    parser.add_argument(
        "--disc-start-fraction", type=float, default=1.0, help="GAN terms on after this fraction of the steps (1: off)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--latent-channels", type=int, default=4)
    parser.add_argument("--heldout", type=int, default=512, help="number of held-out images evaluated")
    parser.add_argument("--only", default=None, help="one row, e.g. f4-kl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = ShapesDataset(ShapesConfig(size=32, num_samples=4000, seed=0, split="train")).images
    heldout = ShapesDataset(ShapesConfig(size=32, num_samples=args.heldout, seed=1, split="heldout")).images.to(
        args.device
    )
    judge = load_or_train_shapes_classifier(32, device=args.device)
    preset = AutoencoderTrainConfig.fast_cpu(args.steps)
    train_cfg = dataclasses.replace(
        preset,
        lr=args.lr,
        batch_size=args.batch_size,
        pixel_loss="l1" if args.l1 else preset.pixel_loss,
        lr_schedule="constant" if args.constant_lr else preset.lr_schedule,
        warmup_steps=0 if args.constant_lr else preset.warmup_steps,
        disc_start=int(args.steps * args.disc_start_fraction),
        perceptual_weight=1.0 if args.l1 else 0.0,
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at start, torch {torch.__version__}, device {args.device}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(
        f"training: {args.steps} steps of batch {args.batch_size}, {train_cfg.pixel_loss} loss, lr {args.lr} "
        f"({train_cfg.lr_schedule}, {train_cfg.warmup_steps} warmup steps), "
        f"GAN {'off' if train_cfg.disc_start >= args.steps else f'from step {train_cfg.disc_start}'}, base_channels "
        f"{args.base_channels}, c = {args.latent_channels}, 4000 training images; {args.heldout} held-out images; "
        "LPIPS term "
        f"{'on where its backbone exists (see any warning above)' if train_cfg.perceptual_weight > 0 else 'off'}"
    )
    print("| f | kind | latent | PSNR (dB) | SSIM | rFD | train time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f, channel_mult in CHANNEL_MULT.items():
        for kind in ("kl", "vq"):
            if args.only is not None and args.only != f"f{f}-{kind}":
                continue
            torch.manual_seed(0)
            cfg = AutoencoderConfig(
                kind=kind,
                base_channels=args.base_channels,
                channel_mult=channel_mult,
                num_res_blocks=1,
                latent_channels=args.latent_channels,
                attention_in_middle=False,
                norm_groups=8,
                codebook_size=256,
            )
            start = time.perf_counter()
            model = build_autoencoder(cfg)
            train_autoencoder(model, train, train_cfg, device=args.device, progress=False)
            seconds = time.perf_counter() - start
            result = evaluate_reconstructions(model, heldout, judge)
            side = 32 // f
            print(
                f"| {f} | {kind.upper()} | {side}x{side}x{args.latent_channels} | {result['psnr']:.2f} | "
                f"{result['ssim']:.3f} | {result['rfd']:.2f} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
