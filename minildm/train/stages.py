"""The stages of training a text-to-image LDM, in the paper's order, as functions of the config tree:

1. data: the built-in captioned shapes (`load_shapes`);
2. the first stage (LDM sec. 3.1): an autoencoder, KL or VQ, trained on the images (`train_first_stage`);
3. the tokenizer and the model: a BPE vocabulary learned from the captions, and an LDM sized to
   it and to the autoencoder (`build_text_ldm`);
4. latents: every training image encoded once, z0 = s * E(x), and cached (`cache_latents`);
5. LDM training (sec. 3.2-3.3) on the cached latents (`train_text_ldm`).

Sampling and evaluation are minildm/evaluate.py; `python -m minildm demo` composes all of them,
and the commands train-autoencoder and train-ldm run stages 1-2 and 1, 3-5.
"""

import dataclasses
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minildm.autoencoder import FirstStage, build_autoencoder, train_autoencoder
from minildm.config import Config, derive
from minildm.datasets import ShapesConfig, ShapesDataset, partial_captions
from minildm.ldm import LatentDiffusion
from minildm.text import CLIPTokenizer, train_bpe
from minildm.train.runs import show_progress
from minildm.train.trainer import TensorBatches, train_ldm


class StageTimer:
    """Wall-clock seconds per named stage: `with timer("latents"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def table(self) -> str:
        total = sum(self.seconds.values())
        lines = ["| stage | seconds | share |", "| --- | ---: | ---: |"]
        lines += [f"| {name} | {s:.1f} | {100 * s / max(total, 1e-9):.0f}% |" for name, s in self.seconds.items()]
        lines.append(f"| total | {total:.1f} | 100% |")
        return "\n".join(lines)


def load_shapes(config: Config, split: str, num_samples: int, seed: int) -> ShapesDataset:
    """The built-in captioned shapes: the "train" split, or "heldout" (pairs training never shows)."""
    data = config.data
    return ShapesDataset(
        ShapesConfig(size=data.size, num_samples=num_samples, seed=seed, split=split, max_objects=data.max_objects)
    )


def training_captions(config: Config, data: ShapesDataset) -> list[str]:
    """The captions the LDM trains on: the dataset's own, or with `config.data.partial_captions`
    of them naming only the colour or only the shape (datasets/captions.py)."""
    if config.data.partial_captions == 0:
        return data.captions
    return partial_captions(data.objects, config.data.partial_captions, config.seed)


def train_first_stage(config: Config, device: str, out_dir: Path | None = None, overwrite: bool = False) -> FirstStage:
    """Train the autoencoder that `config.autoencoder` describes on the training images;
    writes out_dir/autoencoder.pt. Returns it in eval mode, its scale factor set."""
    images = load_shapes(config, "train", config.data.num_train, config.seed).images
    torch.manual_seed(config.seed)
    autoencoder = build_autoencoder(config.autoencoder)
    train_autoencoder(
        autoencoder, images, config.autoencoder_train,
        device=device, out_dir=out_dir, seed=config.seed, progress=config.progress, overwrite=overwrite,
    )  # fmt: skip
    return autoencoder


def build_text_ldm(config: Config, autoencoder: FirstStage, captions: list[str]) -> LatentDiffusion:
    """A BPE vocabulary learned from `captions`, and the text-conditional LDM of `config.ldm` sized to it."""
    # the derived widths follow the autoencoder actually given (it may come from a checkpoint)
    config = derive(dataclasses.replace(config, autoencoder=autoencoder.config))
    tokenizer = CLIPTokenizer.from_merges(train_bpe(captions, config.ldm.tokenizer_merges))
    # the text encoder's vocabulary is the learned one (train_bpe may stop early on a small corpus)
    text_config = dataclasses.replace(config.ldm.text_encoder, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(config.seed)
    return LatentDiffusion(dataclasses.replace(config.ldm, text_encoder=text_config), autoencoder, tokenizer)


@torch.no_grad()
def cache_latents(
    ldm: LatentDiffusion, images: torch.Tensor, device: str, batch_size: int = 500, progress: bool | None = None
) -> torch.Tensor:
    """z0 = s * E(x) (N, c, h, w) for every image (N, 3, H, W), computed once: the autoencoder is frozen."""
    ldm.autoencoder.to(device)
    starts = tqdm(range(0, len(images), batch_size), desc="latents", disable=not show_progress(progress))
    return torch.cat([ldm.encode_images(images[i : i + batch_size].to(device)) for i in starts])


def train_text_ldm(
    config: Config, autoencoder: FirstStage, device: str, out_dir: Path | None = None,
    timer: StageTimer | None = None, overwrite: bool = False,
    build: Callable[[list[str]], LatentDiffusion] | None = None,
) -> tuple[LatentDiffusion, dict[str, list[float]]]:  # fmt: skip
    """Stages 1 and 3-5: data, tokenizer and model, cached latents, then LDM training; writes
    out_dir/ldm.pt. Returns the LDM (holding its EMA weights) and the loss history. `build` makes
    the model from the training captions (default `build_text_ldm`: a tokenizer learnt from them)."""
    timer = timer if timer is not None else StageTimer()
    with timer("data"):
        data = load_shapes(config, "train", config.data.num_train, config.seed)
        captions = training_captions(config, data)
        ldm = build(captions) if build is not None else build_text_ldm(config, autoencoder, captions)
    with timer("latents"):
        latents = cache_latents(ldm, data.images, device, progress=config.progress)
        tokens = ldm.tokenize(captions)
    with timer("LDM training"):
        history = train_ldm(
            ldm, TensorBatches(latents, tokens=tokens), config.train,
            device=device, out_dir=out_dir, seed=config.seed, progress=config.progress, overwrite=overwrite,
        )  # fmt: skip
    return ldm, history
