"""Train (or load) the shapes judge and print its accuracy on fresh single-object images.

    .venv/bin/python bench/judge_accuracy.py [--size 32]

The judge is the attribute classifier behind caption-match accuracy and the Frechet features
(minildm.metrics). It must read >= 99% of every attribute on real images before its verdict
on generated images means anything. Evaluation images use seeds the judge never saw.
"""

import argparse
import time

import torch

from minildm.datasets.shapes import data_root
from minildm.metrics.caption_match import (
    JUDGE_EVAL_SAMPLES,
    JUDGE_TRAIN_SAMPLES,
    load_or_train_shapes_classifier,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cached = any((data_root() / "judges").glob(f"*_{args.size}px_*.pt")) if (data_root() / "judges").is_dir() else False
    start = time.perf_counter()
    judge = load_or_train_shapes_classifier(size=args.size)
    seconds = time.perf_counter() - start
    print(
        f"judge at {args.size}x{args.size}: "
        f"{'loaded from cache' if cached else f'trained on {JUDGE_TRAIN_SAMPLES} images'} in {seconds:.1f} s (1 thread)"
    )
    print(f"evaluated on {JUDGE_EVAL_SAMPLES} fresh single-object images per split\n")
    heads = ("shape", "colour", "size", "position", "all")
    print("| images | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for split, accuracy in judge.accuracy.items():
        print(f"| {split} | " + " | ".join(f"{100 * accuracy[h]:.2f}%" for h in heads) + " |")


if __name__ == "__main__":
    main()
