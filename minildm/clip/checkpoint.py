"""Saving and loading a trained CLIP with its tokenizer, and a cache so that the benchmarks and
notebook 10 share one CLIP instead of each training its own.

A checkpoint holds plain data only (minildm/checkpoint.py): the config as `dataclasses.asdict`,
the tokenizer's BPE merges, the weights, and the training history.
"""

import os
from dataclasses import asdict
from pathlib import Path

from minildm.checkpoint import CheckpointError, error_summary, load_checkpoint, save_checkpoint
from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.train import CLIPTrainConfig, train_clip
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.flags import tree_from_dict
from minildm.text.tokenizer import CLIPTokenizer

KIND = "minildm.CLIP"


def save_clip(model: CLIP, tokenizer: CLIPTokenizer, path: str | os.PathLike, history: dict | None = None) -> Path:
    """Write the model, its tokenizer's merges and (optionally) its training history to `path`."""
    return save_checkpoint(
        {
            "kind": KIND,
            "config": asdict(model.config),
            "tokenizer": {"merges": [list(m) for m in tokenizer.merges]},
            "model": model.state_dict(),
            "history": history or {},
        },
        path,
    )


def load_clip(path: str | os.PathLike) -> tuple[CLIP, CLIPTokenizer, dict]:
    """The CLIP (eval mode), its tokenizer and its training history saved by `save_clip`."""
    state = load_checkpoint(path, required_keys=("kind", "config", "tokenizer", "model"))
    if state["kind"] != KIND:
        raise CheckpointError(f"{path} holds a {state['kind']!r}, expected a CLIP ({KIND!r})")
    try:
        model = CLIP(tree_from_dict(CLIPConfig, state["config"]))
        model.load_state_dict(state["model"])
        tokenizer = CLIPTokenizer.from_merges(state["tokenizer"]["merges"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not match this version of minildm: {error_summary(err)}") from err
    return model.eval(), tokenizer, state.get("history", {})


def load_or_train_shapes_clip(
    path: str | os.PathLike, config: CLIPTrainConfig, num_train: int = 20000
) -> tuple[CLIP, CLIPTokenizer, dict]:
    """The CLIP cached at `path` if it was trained with `config` on `num_train` pairs; else one trained
    on the shapes training split (`num_train` pairs drawn with config.seed, one or two objects) and saved."""
    path = Path(path)
    settings = {"train_config": asdict(config), "num_train": num_train}
    if path.is_file():
        model, tokenizer, history = load_clip(path)
        if all(history.get(key) == value for key, value in settings.items()):
            print(f"CLIP loaded from {path}")
            return model, tokenizer, history
        print(f"{path} holds a CLIP trained with other settings: training a new one")
    size = config.clip.vision.image_size
    data = ShapesDataset(ShapesConfig(size=size, num_samples=num_train, seed=config.seed, split="train"))
    model, tokenizer, history = train_clip(config, data.images, data.captions)
    print(f"CLIP trained in {history['seconds'][0]:.0f} s")
    history = {**history, **settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_clip(model, tokenizer, path, history)
    return model, tokenizer, history
