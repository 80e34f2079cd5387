"""Metrics: Frechet distance vs scipy, SSIM vs scikit-image and identities, PSNR, the judge."""

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import structural_similarity

from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.metrics import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    caption_match_accuracy,
    frechet_distance,
    frechet_with_floor,
    psnr,
    psnr_per_image,
    sqrtm_psd,
    ssim,
    ssim_per_image,
    train_attribute_classifier,
)  # fmt: skip
from minildm.metrics.caption_match import drawn_colours, drawn_shapes, load_or_train_shapes_classifier


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The usual pytorch-fid computation with scipy.linalg.sqrtm (independent reference)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("dim", [4, 32])
def test_frechet_matches_scipy(dim):
    rng = np.random.default_rng(dim)
    mixing = rng.standard_normal((dim, dim))
    a = rng.standard_normal((500, dim)) @ mixing
    b = rng.standard_normal((400, dim)) @ (mixing + 0.3 * rng.standard_normal((dim, dim))) + 0.5
    ours = frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-6)


def test_frechet_identities():
    x = torch.randn(300, 8, dtype=torch.float64)
    assert abs(frechet_distance(x, x)) < 1e-8
    # a pure shift of the mean adds |delta|^2
    assert frechet_distance(x, x + 2.0) == pytest.approx(4.0 * 8, rel=1e-9)
    s = torch.randn(6, 6, dtype=torch.float64)
    psd = s @ s.T
    root = sqrtm_psd(psd)
    assert torch.allclose(root @ root, psd, atol=1e-9) and torch.allclose(root, root.T)
    with pytest.raises(ValueError):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))


def test_frechet_floor_is_below_a_shifted_set():
    real = torch.randn(1000, 5)
    report = frechet_with_floor(real, torch.randn(400, 5) + 1.0)
    assert report["n"] == 400 and 0 <= report["floor"] < 0.2 < report["frechet"]


def test_psnr_of_known_mse():
    x = torch.zeros(2, 3, 8, 8)
    y = x + 0.1  # MSE = 0.01, L = 2: PSNR = 10 log10(4 / 0.01)
    assert psnr(x, y) == pytest.approx(10 * np.log10(400), rel=1e-6)
    assert torch.isinf(psnr_per_image(x, x)).all()


def test_ssim_matches_scikit_image_and_identities():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    ours = ssim_per_image(x, y)
    for i in range(3):
        reference = structural_similarity(
            x[i].double().numpy(), y[i].double().numpy(), data_range=2.0, channel_axis=0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )  # fmt: skip
        assert ours[i].item() == pytest.approx(reference, rel=1e-5)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-7)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-7)
    with pytest.raises(ValueError):
        ssim(x, y[:, :, :8, :8])


def test_classifier_trains_beyond_chance_and_caption_match_reports_every_head():
    data = ShapesDataset(ShapesConfig(num_samples=400, seed=5, split="all", max_objects=1, cache=False))
    classifier = AttributeClassifier(ClassifierConfig(width=8, feature_dim=32))
    losses = train_attribute_classifier(
        classifier, data.images, data.labels, ClassifierTrainConfig(steps=40, batch_size=64, lr=5e-3)
    )
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    accuracy = caption_match_accuracy(classifier, data.images, data.labels)
    assert set(accuracy) == {"shape", "colour", "size", "position", "all"}
    assert accuracy["size"] > 0.7 and accuracy["colour"] > 1 / 6 + 0.2
    assert classifier.extract_features(data.images[:10]).shape == (10, 32)
    with pytest.raises(ValueError):
        caption_match_accuracy(classifier, data.images, data.labels[:, :3])


def test_judge_is_cached_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILDM_DATA", str(tmp_path))
    monkeypatch.setattr("minildm.metrics.caption_match.JUDGE_TRAIN_SAMPLES", 200)
    monkeypatch.setattr("minildm.metrics.caption_match.JUDGE_EVAL_SAMPLES", 50)
    tiny = ClassifierTrainConfig(steps=3, batch_size=16)
    first = load_or_train_shapes_classifier(size=16, train_config=tiny)
    assert len(list((tmp_path / "judges").glob("*.pt"))) == 1
    second = load_or_train_shapes_classifier(size=16, train_config=tiny)
    assert second.accuracy == first.accuracy
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    assert torch.equal(first(images)["shape"], second(images)["shape"])


class FixedJudge:
    """A judge that reads back the answers it is given (only `predict` and the heads are used)."""

    config = ClassifierConfig()

    def __init__(self, predictions: torch.Tensor):
        self.predictions = predictions

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictions


def test_drawn_shapes_counts_the_shape_read_for_each_asked_pair():
    # columns (shape, colour, size, position); circle=0 square=1, orange=1 green=3
    asked = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 4], [0, 1, 0, 2], [1, 3, 1, 1], [1, 3, 0, 0]])
    read = asked.clone()
    read[:2, 0] = 1  # two of the three orange circles read as squares
    table = drawn_shapes(FixedJudge(read), torch.zeros(5, 3, 8, 8), asked)
    assert table == {
        "orange circle": {"circle": 1, "square": 2, "triangle": 0, "diamond": 0},
        "green square": {"circle": 0, "square": 2, "triangle": 0, "diamond": 0},
    }
    with pytest.raises(ValueError, match="labels must be"):
        drawn_shapes(FixedJudge(read), torch.zeros(5, 3, 8, 8), asked[:, :2])


def test_drawn_colours_counts_the_colour_read_for_each_asked_colour():
    # columns (shape, colour, size, position); colours: red=0 orange=1 yellow=2 green=3
    asked = torch.tensor([[0, 1, 0, 0], [1, 1, 1, 4], [2, 1, 0, 2], [1, 3, 1, 1]])
    read = asked.clone()
    read[:2, 1] = 0  # two of the three orange objects read as red
    table = drawn_colours(FixedJudge(read), torch.zeros(4, 3, 8, 8), asked)
    assert table["orange"]["red"] == 2 and table["orange"]["orange"] == 1 and sum(table["orange"].values()) == 3
    assert table["green"]["green"] == 1 and set(table) == {"orange", "green"}
    with pytest.raises(ValueError, match="labels must be"):
        drawn_colours(FixedJudge(read), torch.zeros(4, 3, 8, 8), asked[:, :2])
