"""A small CNN that reads attributes from images: the offline judge behind the metrics.

FID uses Inception-v3 features trained on ImageNet; those weights cannot be downloaded here,
and they know nothing of our shapes anyway. So the judge is a small CNN trained on the data
itself. Its penultimate layer (`features`, (N, D)) feeds the Frechet distance; its heads
(one linear classifier per attribute) read back what a generated image shows, for
caption-match accuracy.

Architecture, for a 32x32 input (any size works: the last pooling is adaptive):
    conv3x3(3 -> w) -> conv3x3 stride 2 (w -> w)        32 -> 16
    conv3x3(w -> 2w) -> conv3x3 stride 2 (2w -> 2w)     16 -> 8
    conv3x3 stride 2 (2w -> 4w)                          8 -> 4
    adaptive average pool to 4x4, flatten, linear -> D features, one linear head per attribute
Each conv is followed by BatchNorm and ReLU. The map is not pooled to 1x1 before the linear
layer, so the features keep where things are (the position head needs that).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from minildm.checkpoint import save_checkpoint
from minildm.datasets.attributes import COLOURS, POSITIONS, SHAPES, SIZES

SHAPES_HEADS = (("shape", len(SHAPES)), ("colour", len(COLOURS)), ("size", len(SIZES)), ("position", len(POSITIONS)))


@dataclass
class ClassifierConfig:
    in_channels: int = 3
    heads: tuple[tuple[str, int], ...] = SHAPES_HEADS  # (name, number of classes), in label-column order
    width: int = 16
    feature_dim: int = 256


def conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class AttributeClassifier(nn.Module):
    """forward(images (B, C, H, W) in [-1, 1]) -> {head name: logits (B, classes)};
    features(images) -> (B, feature_dim), the penultimate activations."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            conv_block(config.in_channels, w, 1),
            conv_block(w, w, 2),
            conv_block(w, 2 * w, 1),
            conv_block(2 * w, 2 * w, 2),
            conv_block(2 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.to_features = nn.Linear(4 * w * 4 * 4, config.feature_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(config.feature_dim, classes) for name, classes in config.heads})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}")
        body = self.body(images).flatten(1)  # (B, 4w * 4 * 4)
        return F.relu(self.to_features(body))  # (B, D)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(images)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted class of every head, (N, number of heads) long, in label-column order."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        predictions = []
        for start in range(0, len(images), batch_size):
            logits = self(images[start : start + batch_size].to(device))
            predictions.append(torch.stack([logits[name].argmax(1) for name, _ in self.config.heads], dim=1).cpu())
        self.train(was_training)
        return torch.cat(predictions)

    @torch.no_grad()
    def extract_features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """features() over a large set in batches, in eval mode, (N, D) on the CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        features = [
            self.features(images[start : start + batch_size].to(device)).cpu()
            for start in range(0, len(images), batch_size)
        ]
        self.train(was_training)
        return torch.cat(features)


@dataclass
class ClassifierTrainConfig:
    steps: int = 400
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def train_attribute_classifier(
    classifier: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor, config: ClassifierTrainConfig
) -> list[float]:
    """Train every head with the sum of cross-entropies on (images (N, C, H, W), labels (N, heads)).
    AdamW with a one-cycle learning rate. Returns the loss of every step."""
    if labels.ndim != 2 or labels.shape != (len(images), len(classifier.config.heads)):
        raise ValueError(
            f"labels must be (N, {len(classifier.config.heads)}) for {len(images)} images, got {tuple(labels.shape)}"
        )
    device = next(classifier.parameters()).device
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    classifier.train()
    losses = []
    for _ in tqdm(range(config.steps), desc="training the attribute classifier", leave=False):
        batch = torch.randint(len(images), (config.batch_size,), generator=generator)
        logits = classifier(images[batch].to(device))
        targets = labels[batch].to(device)
        # L = sum over heads of cross-entropy(logits_head, label_head)
        loss = sum(
            F.cross_entropy(logits[name], targets[:, column])
            for column, (name, _) in enumerate(classifier.config.heads)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    classifier.eval()
    return losses


def head_accuracy(classifier: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of each head and of all heads at once ("all") on labelled images."""
    predictions = classifier.predict(images)
    correct = predictions == labels
    accuracy = {
        name: float(correct[:, column].float().mean()) for column, (name, _) in enumerate(classifier.config.heads)
    }
    accuracy["all"] = float(correct.all(1).float().mean())
    return accuracy


def save_judge(
    classifier: AttributeClassifier, train_config: ClassifierTrainConfig, accuracy: dict, path: Path
) -> None:
    """Cache a trained judge with its configs and measured accuracy (read back by the judges' loaders)."""
    state = {
        "model": classifier.state_dict(),
        "config": asdict(classifier.config),
        "train_config": asdict(train_config),
    }
    save_checkpoint({**state, "accuracy": accuracy}, path)
