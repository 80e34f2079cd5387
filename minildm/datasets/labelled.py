"""A plain labelled (and optionally captioned) image dataset, what the real-data loaders return."""

import torch
from torch.utils.data import Dataset


class LabelledImages(Dataset):
    """images (N, 3, H, W) float in [-1, 1]; labels (N,) long (class conditioning);
    class_names; captions list[str] or None. Items are {"image", "label"} (+ "caption")."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: tuple[str, ...],
        captions: list[str] | None = None,
    ):
        if images.ndim != 4 or images.shape[1] != 3 or len(labels) != len(images):
            raise ValueError(
                f"expected images (N, 3, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if captions is not None and len(captions) != len(images):
            raise ValueError(f"expected {len(images)} captions, got {len(captions)}")
        self.images, self.labels, self.class_names, self.captions = images, labels, class_names, captions

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.images[index], "label": self.labels[index]}
        if self.captions is not None:
            item["caption"] = self.captions[index]
        return item
