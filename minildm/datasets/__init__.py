"""Datasets: the built-in captioned shapes (generated offline) and loaders for real datasets.

Every dataset gives images (B, 3, H, W) float in [-1, 1]; the shapes dataset adds captions,
attribute labels, boxes and object masks.
"""

from minildm.datasets.attributes import (
    COLOURS,
    HELDOUT_COMBINATIONS,
    POSITIONS,
    SHAPES,
    SIZES,
)
from minildm.datasets.captions import caption_for, partial_captions, prompt_for, prompt_parts
from minildm.datasets.cifar import load_cifar10
from minildm.datasets.download import (
    DatasetCorruptError,
    DatasetUnavailableError,
    RemoteFile,
    ensure_file,
)
from minildm.datasets.folder import load_image_folder
from minildm.datasets.idx import FASHION_MNIST, MNIST, load_idx_dataset
from minildm.datasets.labelled import LabelledImages
from minildm.datasets.shapes import (
    ShapesConfig,
    ShapesDataset,
    data_root,
    generate_shapes,
)

__all__ = [
    "COLOURS",
    "FASHION_MNIST",
    "HELDOUT_COMBINATIONS",
    "MNIST",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "DatasetCorruptError",
    "DatasetUnavailableError",
    "LabelledImages",
    "RemoteFile",
    "ShapesConfig",
    "ShapesDataset",
    "caption_for",
    "partial_captions",
    "data_root",
    "ensure_file",
    "generate_shapes",
    "load_cifar10",
    "load_idx_dataset",
    "load_image_folder",
    "prompt_for",
    "prompt_parts",
]
