"""A judge that also knows the opt-in shapes (star, heart): caption-match accuracy after fine-tuning.

The standard judge (caption_match.py) has a 4-way shape head, so it cannot say that a sample is a
star. This one is the same AttributeClassifier with a 6-way shape head (ALL_SHAPES), trained the
same way on the standard judge's single-object images of every (shape, colour) pair plus as many
images of each new shape (datasets/shapes.py `new_shape_data`, seeds of their own). It is cached
under a name of its own, so the standard judge and every number measured with it stay as they are.
"""

import torch

from minildm.datasets.shapes import ALL_SHAPES, GENERATOR_VERSION, NEW_SHAPES, data_root, new_shape_data
from minildm.metrics.caption_match import (
    JUDGE_EVAL_SAMPLES,
    JUDGE_TRAIN_SAMPLES,
    judge_datasets,
    load_or_train_judge,
)
from minildm.metrics.classifier import (
    SHAPES_HEADS,
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
)

# the shape head reads six shapes; colour, size and position as the standard judge
NEW_SHAPES_HEADS = (("shape", len(ALL_SHAPES)),) + SHAPES_HEADS[1:]
FIT_SEED, EVAL_SEED = 3000, 3001  # new-shape images for fitting and for measuring the judge


def new_shape_judge_data(
    size: int, train_samples: int, eval_samples: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) to fit the judge on (the standard fit set + train_samples / 4 of each new
    shape, the standard set's count per shape) and to measure it: "new-shapes" (fresh stars and
    hearts), "heldout-style" (the standard held-out evaluation images)."""
    standard = judge_datasets(size, train_samples, eval_samples)
    per_shape = train_samples // 4
    fit = [new_shape_data(shape, per_shape, size, FIT_SEED) for shape in NEW_SHAPES]
    evaluate = [new_shape_data(shape, eval_samples // 2, size, EVAL_SEED) for shape in NEW_SHAPES]
    return {
        "fit": (
            torch.cat([standard["fit"].images] + [d["images"] for d in fit]),
            torch.cat([standard["fit"].labels] + [d["labels"] for d in fit]),
        ),
        "new-shapes": (torch.cat([d["images"] for d in evaluate]), torch.cat([d["labels"] for d in evaluate])),
        "heldout-style": (standard["heldout-style"].images, standard["heldout-style"].labels),
    }


def load_or_train_new_shape_classifier(
    size: int = 32, device: str = "cpu", train_config: ClassifierTrainConfig | None = None
) -> AttributeClassifier:
    """The six-shape judge for images of `size`, from data/judges/ (..._newshapes.pt) or trained and
    saved there. Its accuracy on fresh images is in `classifier.accuracy` {"new-shapes", "heldout-style"}."""
    train_config = train_config or ClassifierTrainConfig()
    name = f"shapes_judge_v{GENERATOR_VERSION}_{size}px_steps{train_config.steps}_newshapes.pt"
    return load_or_train_judge(
        data_root() / "judges" / name,
        ClassifierConfig(heads=NEW_SHAPES_HEADS),
        lambda: new_shape_judge_data(size, JUDGE_TRAIN_SAMPLES, JUDGE_EVAL_SAMPLES),
        train_config,
        device,
    )
