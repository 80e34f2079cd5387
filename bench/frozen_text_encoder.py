"""The demo with a frozen text encoder: our CLIP's text tower as tau_theta (as Stable Diffusion
freezes CLIP's), only the U-Net trained, judged as the demo judges (held-out accuracy table).

    .venv/bin/python bench/frozen_text_encoder.py --seed 0 [--autoencoder runs/demo/autoencoder.pt]
        [--clip runs/clip/clip.pt] [--out runs/frozen_text/seed_0] [--reuse]

The same stages and settings as `python -m minildm demo --seed S` (the laptop preset: data,
latents, LDM training, sampling and the judge, minildm/train/stages.py and minildm/evaluate.py),
except tau_theta (minildm/clip/frozen_text.py). Give --autoencoder to reuse the first stage of
the joint-encoder run of the same seed (then both runs share it and its seconds are not counted);
without it the autoencoder is trained here as the demo trains it. The CLIP is bench/clip_shapes.py's
(its defaults, trained on seed 0's CLIP data and cached at --clip).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from minildm.autoencoder import load_autoencoder
from minildm.checkpoint import load_checkpoint
from minildm.clip.checkpoint import load_or_train_shapes_clip
from minildm.clip.frozen_text import train_frozen_text_ldm
from minildm.clip.train import CLIPTrainConfig
from minildm.config import preset
from minildm.evaluate import accuracy_table, composition_tables, evaluate_text_ldm
from minildm.ldm import load_ldm
from minildm.train.stages import StageTimer, load_shapes, train_first_stage


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--autoencoder", default=None, help="a trained first stage to reuse (else trained here)")
    parser.add_argument("--clip", default="runs/clip/clip.pt", help="cached CLIP (trained here if missing)")
    parser.add_argument("--out", default=None, help="default runs/frozen_text/seed_<seed>")
    parser.add_argument("--reuse", action="store_true", help="evaluate OUT/ldm.pt from an earlier run, no training")
    args = parser.parse_args()
    out = Path(args.out or f"runs/frozen_text/seed_{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    config = preset("laptop")
    config.seed = args.seed
    torch.set_num_threads(config.threads)
    timer = StageTimer()
    clip, tokenizer, clip_history = load_or_train_shapes_clip(args.clip, CLIPTrainConfig())
    n = config.eval.num_prompts
    with timer("data"):
        heldout = load_shapes(config, "heldout", 2 * n, config.seed + 1)
        seen = load_shapes(config, "train", n, config.seed + 2)
    if args.reuse:
        ldm = load_ldm(out / "ldm.pt")
        history = load_checkpoint(out / "ldm.pt")["training"]["history"]
    else:
        with timer("autoencoder"):
            if args.autoencoder:
                autoencoder = load_autoencoder(args.autoencoder)
            else:
                autoencoder = train_first_stage(config, "cpu", out, overwrite=True)
        ldm, history = train_frozen_text_ldm(config, autoencoder, clip, tokenizer, "cpu", out, timer, overwrite=True)
        ldm = load_ldm(out / "ldm.pt")  # the EMA weights, as the demo samples with
    trained = sum(p.numel() for p in ldm.unet.parameters())
    frozen = sum(p.numel() for p in ldm.text_encoder.parameters())
    with timer("sampling and evaluation"):
        results = evaluate_text_ldm(ldm, heldout, seen, config, "cpu")
    results.pop("samples")
    print(
        f"\nseed {args.seed}: the frozen CLIP text tower ({frozen / 1e6:.2f} M parameters, width "
        f"{ldm.config.text_encoder.width}, {ldm.config.text_encoder.num_layers} layers) as tau_theta; "
        f"{trained / 1e6:.2f} M trained parameters (the U-Net); the CLIP itself trained in "
        f"{clip_history['seconds'][0]:.0f} s wall, {clip_history['cpu_seconds'][0]:.0f} s CPU"
    )
    source = "trained here" if not args.autoencoder else f"reused from {args.autoencoder}"
    print(f"autoencoder {source}; {'the LDM of an earlier run evaluated (--reuse)' if args.reuse else ''}\n")
    print(accuracy_table(results["accuracy"], results["autoencoder_reconstruction_accuracy"]))
    print()
    print(composition_tables(results["accuracy"], results["accuracy_seen_pairs"], results["drawn_shapes_heldout"]))
    print(
        f"\nFrechet distance (judge features) {results['frechet_distance']:.2f}, "
        f"floor {results['frechet_distance_floor']:.2f}; final loss "
        f"{sum(history['loss'][-100:]) / len(history['loss'][-100:]):.4f}\n"
    )
    print(timer.table())
    (out / "report.json").write_text(json.dumps({**results, "seconds": timer.seconds}, indent=1))
    print(f"\nreport in {out / 'report.json'}; {time.strftime('%H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
