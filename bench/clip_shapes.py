"""Train minildm's own CLIP on the shapes captions (one CPU thread) and print what it learned.

    .venv/bin/python bench/clip_shapes.py [--steps 1000] [--seed 0]

Trains on the training split's images and captions (one or two objects, templates and synonyms),
then measures on fresh images it never saw:
- zero-shot accuracy of shape, colour and position, on single-object images of the seen (shape,
  colour) combinations and of the held-out ones (minildm/datasets/attributes.py), with one
  "a photo of a ..." template per attribute and with prompt ensembling (minildm/clip/evaluate.py);
- text-to-image recall@1 on held-out pairs (their own captions), pools of 100 images (chance 1%);
- CLIP score (minildm/clip/score.py) of held-out images with their captions and with shuffled captions.
"""

import argparse
from dataclasses import asdict

import torch

from minildm.clip.checkpoint import save_clip
from minildm.clip.evaluate import ZERO_SHOT_ATTRIBUTES, text_to_image_recall_at_1, zero_shot_accuracy
from minildm.clip.score import clip_score
from minildm.clip.train import CLIPTrainConfig, train_clip
from minildm.datasets import ShapesConfig, ShapesDataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=CLIPTrainConfig.lr)
    parser.add_argument("--warmup-steps", type=int, default=CLIPTrainConfig.warmup_steps)
    parser.add_argument("--save", default="runs/clip/clip.pt", help="the trained CLIP, cached for the other benches")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = ShapesDataset(ShapesConfig(size=32, num_samples=args.num_train, seed=args.seed, split="train"))
    config = CLIPTrainConfig(steps=args.steps, seed=args.seed, lr=args.lr, warmup_steps=args.warmup_steps)
    model, tokenizer, history = train_clip(config, train.images, train.captions)
    save_clip(model, tokenizer, args.save, {**history, "train_config": asdict(config), "num_train": args.num_train})
    cfg, last = model.config, min(50, config.steps)
    print(
        f"CLIP: ViT {cfg.vision.width}w x {cfg.vision.num_layers} layers, patch {cfg.vision.patch_size}; "
        f"text {cfg.text.width}w x {cfg.text.num_layers} layers; embed {cfg.embed_dim}; "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
    )
    print(
        f"trained {config.steps} steps of batch {config.batch_size}, lr {config.lr:g}, warmup "
        f"{config.warmup_steps}, on {args.num_train} pairs in "
        f"{history['seconds'][0]:.0f} s wall, {history['cpu_seconds'][0]:.0f} s CPU (1 thread, tokenizer included); final loss "
        f"{sum(history['loss'][-last:]) / last:.3f} (mean of the last {last} steps), "
        f"exp(t) {history['logit_scale'][-1]:.1f}\n"
    )
    evaluation = {
        "seen combinations": ShapesDataset(
            ShapesConfig(size=32, num_samples=1000, seed=args.seed + 101, split="train", max_objects=1)
        ),
        "held-out combinations": ShapesDataset(
            ShapesConfig(size=32, num_samples=1000, seed=args.seed + 102, split="heldout", max_objects=1)
        ),
    }
    print("zero-shot accuracy, 1000 single-object images each (chance: shape 25%, colour 16.7%, position 11.1%)\n")
    print("| images | prompts | " + " | ".join(ZERO_SHOT_ATTRIBUTES) + " |")
    print("|---|---|" + "---|" * len(ZERO_SHOT_ATTRIBUTES))
    for name, data in evaluation.items():
        for ensemble in (False, True):
            accuracies = [
                zero_shot_accuracy(model, tokenizer, data.images, data.labels, attribute, ensemble)
                for attribute in ZERO_SHOT_ATTRIBUTES
            ]
            prompts = "ensemble of captions" if ensemble else "one template"
            print(f"| {name} | {prompts} | " + " | ".join(f"{100 * a:.1f}%" for a in accuracies) + " |")
    heldout = ShapesDataset(ShapesConfig(size=32, num_samples=1000, seed=args.seed + 103, split="heldout"))
    recall = text_to_image_recall_at_1(model, tokenizer, heldout.images, heldout.captions, pool_size=100)
    print(
        f"\ntext-to-image recall@1, held-out pairs (one or two objects), 10 pools of 100: "
        f"{100 * recall:.1f}% (chance 1%)"
    )
    shuffled = heldout.captions[1:] + heldout.captions[:1]
    matched = clip_score(model, tokenizer, heldout.images, heldout.captions).mean().item()
    mismatched = clip_score(model, tokenizer, heldout.images, shuffled).mean().item()
    print(
        f"CLIP score of held-out images: with their captions {matched:.1f}, "
        f"with another image's caption {mismatched:.1f}"
    )


if __name__ == "__main__":
    main()
