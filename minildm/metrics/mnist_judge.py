"""A judge for MNIST-style datasets: the same small CNN with one head, the digit (or garment) class.

Its penultimate features give a Frechet distance for class-conditional models trained on
MNIST or Fashion-MNIST, and its head reads back the class that was asked for. It is trained
only when the dataset files are present (see `minildm.datasets.idx`); offline without them
the loader's error says which files to place where.
"""

from pathlib import Path

from minildm.checkpoint import load_checkpoint
from minildm.datasets.idx import MNIST, IDXDatasetSpec, load_idx_dataset
from minildm.datasets.shapes import data_root
from minildm.metrics.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    head_accuracy,
    save_judge,
    train_attribute_classifier,
)


def load_or_train_mnist_classifier(
    spec: IDXDatasetSpec = MNIST,
    root: Path | None = None,
    device: str = "cpu",
    train_config: ClassifierTrainConfig | None = None,
) -> AttributeClassifier:
    """A one-head classifier ("label") for `spec` at 32x32, cached under data/judges/.
    `classifier.accuracy` holds its accuracy on the test split."""
    train_config = train_config or ClassifierTrainConfig()
    config = ClassifierConfig(heads=(("label", len(spec.class_names)),))
    path = data_root() / "judges" / f"{spec.name}_judge_steps{train_config.steps}.pt"
    classifier = AttributeClassifier(config)
    if path.is_file():
        checkpoint = load_checkpoint(path, required_keys=("model", "accuracy"))
        classifier.load_state_dict(checkpoint["model"])
        accuracy = checkpoint["accuracy"]
    else:
        train = load_idx_dataset(spec, "train", root=root)
        test = load_idx_dataset(spec, "test", root=root)
        train_attribute_classifier(classifier, train.images, train.labels.unsqueeze(1), train_config)
        accuracy = head_accuracy(classifier, test.images, test.labels.unsqueeze(1))
        save_judge(classifier, train_config, accuracy, path)
    classifier.accuracy = accuracy
    return classifier.to(device).eval()
