"""Train minildm's own CLIP on the shapes captions (one CPU thread) and print what it learned.

    .venv/bin/python bench/clip_shapes.py [--steps 1000] [--seed 0]
    .venv/bin/python bench/clip_shapes.py --profile      # where one step's time goes, then stop

Trains on the training split's images and captions (one or two objects, templates and synonyms),
then measures on fresh images it never saw:
- zero-shot accuracy of shape, colour and position, on single-object images of the seen (shape,
  colour) combinations and of the held-out ones (minildm/datasets/attributes.py), with one
  "a photo of a ..." template per attribute and with prompt ensembling (minildm/clip/evaluate.py);
- text-to-image recall@1 on held-out pairs (their own captions), pools of 100 images (chance 1%);
- CLIP score (minildm/clip/score.py) of held-out images with their captions and with shuffled captions.
"""

import argparse
import time
from dataclasses import asdict

import torch

from minildm.clip.checkpoint import save_clip
from minildm.clip.evaluate import ZERO_SHOT_ATTRIBUTES, text_to_image_recall_at_1, zero_shot_accuracy
from minildm.clip.loss import clip_loss
from minildm.clip.score import clip_score
from minildm.clip.train import CLIPTrainConfig, build_clip, train_clip
from minildm.datasets import ShapesConfig, ShapesDataset


def cpu_seconds_per_call(function, repeats: int = 10) -> float:
    """This process's CPU seconds per call (its wall time on an idle core; robust to other jobs' load)."""
    function()  # warm-up
    start = time.process_time()
    for _ in range(repeats):
        function()
    return (time.process_time() - start) / repeats


def profile(config: CLIPTrainConfig, train: ShapesDataset) -> None:
    """Where one training step's time goes: each tower's forward and backward, the loss, AdamW."""
    start = time.process_time()
    model, tokenizer = build_clip(config, train.captions)
    print(f"BPE merges learned in {time.process_time() - start:.1f} s CPU")
    start = time.process_time()
    tokens = tokenizer(train.captions, context_length=model.text.config.context_length)
    print(f"{len(tokens)} captions tokenised in {time.process_time() - start:.1f} s CPU")
    images, batch_tokens = train.images[: config.batch_size], tokens[: config.batch_size]
    cut = batch_tokens[:, : int(model.text.pool_positions(batch_tokens).max()) + 1]
    optimizer = torch.optim.AdamW(model.parameters())

    def backward(embeds):
        embeds.sum().backward()

    parts = {
        "vision tower, forward + backward": lambda: backward(model.encode_image(images)),
        f"text tower, {batch_tokens.shape[1]} tokens, forward + backward": lambda: backward(
            model.encode_text(batch_tokens)
        ),
        f"text tower, cut to {cut.shape[1]} tokens, forward + backward": lambda: backward(model.encode_text(cut)),
        "the loss of both towers (cut), forward + backward": lambda: clip_loss(
            model.encode_image(images), model.encode_text(cut), model.logit_scale
        ).backward(),
        "AdamW step": optimizer.step,
    }
    print(f"\n| batch {config.batch_size}, one thread | CPU seconds |\n| --- | ---: |")
    for name, function in parts.items():
        print(f"| {name} | {cpu_seconds_per_call(function):.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=CLIPTrainConfig.lr)
    parser.add_argument("--warmup-steps", type=int, default=CLIPTrainConfig.warmup_steps)
    parser.add_argument("--profile", action="store_true", help="print where a step's time goes, and stop")
    parser.add_argument("--save", default="runs/clip/clip.pt", help="the trained CLIP, cached for the other benches")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = ShapesDataset(ShapesConfig(size=32, num_samples=args.num_train, seed=args.seed, split="train"))
    config = CLIPTrainConfig(steps=args.steps, seed=args.seed, lr=args.lr, warmup_steps=args.warmup_steps)
    if args.profile:
        profile(config, train)
        return
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
        f"{history['seconds'][0]:.0f} s wall, {history['cpu_seconds'][0]:.0f} s CPU "
        f"(1 thread, tokenizer included); final loss "
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
