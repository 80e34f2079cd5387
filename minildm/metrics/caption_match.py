"""Caption-match accuracy: does a generated image show what its prompt asked for?

For a single-object prompt built by `minildm.datasets.prompt_for(shape, colour, size,
position)`, the attribute classifier reads the image back; the accuracy of each head against
the requested labels, and of all four at once, measures how well text conditioning
(LDM sec. 3.3, the cross-attention to tau_theta(y)) steers the sample. The judge is trained
on single-object images of every (shape, colour) pair, held-out ones included: it is a
judge, not the model under test, and it must read held-out combinations correctly to score a
model on them. `load_or_train_shapes_classifier` trains it once and caches it under data/.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from minildm.checkpoint import load_checkpoint
from minildm.datasets.attributes import COLOURS, SHAPES
from minildm.datasets.shapes import (
    GENERATOR_VERSION,
    ShapesConfig,
    ShapesDataset,
    data_root,
)
from minildm.metrics.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    head_accuracy,
    save_judge,
    train_attribute_classifier,
)

JUDGE_TRAIN_SAMPLES = 15000
JUDGE_EVAL_SAMPLES = 2000


def caption_match_accuracy(
    classifier: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """images (N, 3, H, W) in [-1, 1], labels (N, 4) = (shape, colour, size, position) that
    the prompts asked for -> {"shape", "colour", "size", "position", "all"} accuracies."""
    if labels.ndim != 2 or labels.shape[1] != len(classifier.config.heads) or len(labels) != len(images):
        raise ValueError(
            f"labels must be (N, {len(classifier.config.heads)}) for N={len(images)} images, got {tuple(labels.shape)}"
        )
    return head_accuracy(classifier, images, labels)


def drawn_shapes(
    classifier: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, int]]:
    """For each (colour, shape) pair the prompts asked for, how often the judge read each shape:
    {"orange circle": {"circle": 14, "square": 56, "triangle": 0, "diamond": 0}, ...}.

    A confusion table by pair shows what a low shape accuracy is made of: a model that draws a
    held-out "orange circle" as the square it saw in orange has learnt the colour and the
    shape words together instead of apart.
    """
    heads = [name for name, _ in classifier.config.heads]
    if labels.ndim != 2 or labels.shape[1] != len(heads) or len(labels) != len(images):
        raise ValueError(f"labels must be (N, {len(heads)}) for N={len(images)} images, got {tuple(labels.shape)}")
    s, c = heads.index("shape"), heads.index("colour")
    drawn = classifier.predict(images)[:, s]
    table = {}
    for shape, colour in sorted(set(map(tuple, labels[:, [s, c]].tolist())), key=lambda pair: (pair[1], pair[0])):
        asked = (labels[:, s] == shape) & (labels[:, c] == colour)
        counts = torch.bincount(drawn[asked], minlength=len(SHAPES)).tolist()
        table[f"{COLOURS[colour]} {SHAPES[shape]}"] = dict(zip(SHAPES, counts))
    return table


def drawn_colours(
    classifier: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, int]]:
    """For each colour the prompts asked for, how often the judge read each colour:
    {"orange": {"red": 57, "orange": 13, ...}, ...}. A hue that drifts (orange read as red, yellow
    as orange) shows here as mass off the diagonal in one direction."""
    heads = [name for name, _ in classifier.config.heads]
    if labels.ndim != 2 or labels.shape[1] != len(heads) or len(labels) != len(images):
        raise ValueError(f"labels must be (N, {len(heads)}) for N={len(images)} images, got {tuple(labels.shape)}")
    c = heads.index("colour")
    drawn = classifier.predict(images)[:, c]
    table = {}
    for colour in sorted(set(labels[:, c].tolist())):
        counts = torch.bincount(drawn[labels[:, c] == colour], minlength=len(COLOURS)).tolist()
        table[COLOURS[colour]] = dict(zip(COLOURS, counts))
    return table


def judge_datasets(size: int, train_samples: int, eval_samples: int) -> dict[str, ShapesDataset]:
    """Single-object images: "train" for the judge (every pair, seed 1000), and fresh
    evaluation sets in the style of the model's train split (seed 2000) and held-out split (seed 2001)."""
    return {
        "fit": ShapesDataset(
            ShapesConfig(size=size, num_samples=train_samples, seed=1000, split="all", max_objects=1, cache=False)
        ),
        "train-style": ShapesDataset(
            ShapesConfig(size=size, num_samples=eval_samples, seed=2000, split="train", max_objects=1, cache=False)
        ),
        "heldout-style": ShapesDataset(
            ShapesConfig(size=size, num_samples=eval_samples, seed=2001, split="heldout", max_objects=1, cache=False)
        ),
    }


def load_or_train_judge(
    path: Path,
    config: ClassifierConfig,
    make_data: Callable[[], dict[str, tuple[torch.Tensor, torch.Tensor]]],
    train_config: ClassifierTrainConfig,
    device: str,
) -> AttributeClassifier:
    """A judge from `path`, or trained on make_data()["fit"] (images, labels) and saved there
    atomically, its accuracy measured on every other split of make_data(). The accuracy per split
    is in `classifier.accuracy`."""
    if path.is_file():
        classifier = AttributeClassifier(config)
        checkpoint = load_checkpoint(path, required_keys=("model", "accuracy"))
        classifier.load_state_dict(checkpoint["model"])
        accuracy = checkpoint["accuracy"]
    else:
        torch.manual_seed(train_config.seed)
        classifier = AttributeClassifier(config)
        data = make_data()
        train_attribute_classifier(classifier, *data["fit"], train_config)
        accuracy = {name: head_accuracy(classifier, *split) for name, split in data.items() if name != "fit"}
        save_judge(classifier, train_config, accuracy, path)
    classifier.accuracy = accuracy
    return classifier.to(device).eval()


def load_or_train_shapes_classifier(
    size: int = 32, device: str = "cpu", train_config: ClassifierTrainConfig | None = None
) -> AttributeClassifier:
    """The shapes judge for images of `size`, loaded from data/judges/ or trained (about a
    minute or two on one CPU core at 32x32) and saved there atomically. Its measured accuracy
    on fresh images is in `classifier.accuracy` {"train-style": {...}, "heldout-style": {...}}."""
    train_config = train_config or ClassifierTrainConfig()
    path = data_root() / "judges" / f"shapes_judge_v{GENERATOR_VERSION}_{size}px_steps{train_config.steps}.pt"

    def make_data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        data = judge_datasets(size, JUDGE_TRAIN_SAMPLES, JUDGE_EVAL_SAMPLES)
        return {name: (data[name].images, data[name].labels) for name in ("fit", "train-style", "heldout-style")}

    return load_or_train_judge(path, ClassifierConfig(), make_data, train_config, device)
