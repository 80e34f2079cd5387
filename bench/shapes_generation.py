"""Time the generation of the built-in shapes dataset on one CPU thread.

.venv/bin/python bench/shapes_generation.py
"""

import time

import torch

from minildm.datasets import ShapesConfig, ShapesDataset


def main():
    torch.set_num_threads(1)
    print("| images | size | seconds (1 thread, no cache) |")
    print("|---|---|---|")
    for size, n in ((32, 50000), (64, 10000)):
        start = time.perf_counter()
        ShapesDataset(ShapesConfig(size=size, num_samples=n, cache=False))
        print(f"| {n} | {size}x{size} | {time.perf_counter() - start:.1f} |")


if __name__ == "__main__":
    main()
