"""The demo end to end at its smallest size (`demo --quick`), then `sample` on its checkpoint:
what `make demo` does on a fresh clone, with every stage exercised and every file checked."""

import dataclasses
import json

import matplotlib.image as mpimg
import torch

from minildm.autoencoder import AutoencoderKL, VQAutoencoder
from minildm.cli import main
from minildm.config import preset, resolve
from minildm.datasets import partial_captions
from minildm.datasets.attributes import HELDOUT_COMBINATIONS
from minildm.ldm import LDMBatch, load_ldm
from minildm.train.stages import build_text_ldm, load_shapes, training_captions

STAGES = ("data", "autoencoder", "latents", "LDM training", "sampling and evaluation")


def test_quick_demo_writes_a_usable_checkpoint_pictures_and_a_measured_report(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0

    for name in ("ldm.pt", "autoencoder.pt", "samples_heldout.png", "real_heldout.png", "loss_ldm.png", "report.md"):
        assert (out / name).is_file(), f"demo did not write {name}"
    report = json.loads((out / "report.json").read_text())
    assert set(STAGES) <= set(report["seconds"]), report["seconds"]
    assert all(seconds >= 0 for seconds in report["seconds"].values())
    for attribute in ("shape", "colour", "size", "position", "all"):
        assert 0.0 <= report["accuracy"][attribute] <= 1.0
        assert 0.0 <= report["autoencoder_reconstruction_accuracy"][attribute] <= 1.0
    assert "real images through the autoencoder" in (out / "report.md").read_text()
    assert all(0.0 <= value <= 1.0 for value in report["accuracy_seen_pairs"].values())
    assert set(report["accuracy_seen_pairs"]) == set(report["accuracy"])
    # the confusion table covers held-out pairs only, one count per held-out prompt
    heldout_pairs = {f"{colour} {shape}" for shape, colour in HELDOUT_COMBINATIONS}
    assert set(report["drawn_shapes_heldout"]) <= heldout_pairs
    assert (
        sum(sum(counts.values()) for counts in report["drawn_shapes_heldout"].values())
        == report["config"]["eval"]["num_prompts"]
    )
    assert "pairs seen in training" in (out / "report.md").read_text()
    assert report["frechet_distance"] >= 0 and report["frechet_distance_floor"] >= 0
    assert len(report["prompts"]) == report["config"]["eval"]["num_prompts"]
    # every held-out prompt names a (shape, colour) pair that training never saw
    assert any("purple triangle" in p or "green square" in p or "orange circle" in p for p in report["prompts"])

    grid = out / "grid.png"
    args = ["sample", "--checkpoint", str(out / "ldm.pt"), "--prompt", "a small red circle on the left",
            "--prompt", "a large blue square at the top", "--steps", "2", "--seed", "3",
            "--out", str(grid)]  # fmt: skip
    assert main(args) == 0
    first = mpimg.imread(grid)
    assert main(args) == 0
    assert (mpimg.imread(grid) == first).all(), "the same seed must give the same grid"


def test_the_ldm_takes_and_predicts_as_many_channels_as_the_autoencoder_gives():
    config = preset("quick")
    autoencoder = AutoencoderKL(dataclasses.replace(config.autoencoder, latent_channels=8))
    captions = ["a small red circle on the left", "a large blue square at the top"]
    ldm = build_text_ldm(config, autoencoder, captions)
    loss = ldm.training_loss(LDMBatch(torch.randn(2, 8, 8, 8), tokens=ldm.tokenize(captions)))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_the_demo_runs_on_a_vq_first_stage_and_refuses_to_overwrite_it(tmp_path, capsys):
    out = tmp_path / "vq"
    assert main(["demo", "--quick", "--autoencoder.kind=vq", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["autoencoder"]["kind"] == "vq" and 0.0 <= report["accuracy"]["shape"] <= 1.0
    assert type(load_ldm(out / "ldm.pt").autoencoder) is VQAutoencoder
    before = (out / "ldm.pt").read_bytes()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "already holds a trained model" in capsys.readouterr().err
    assert (out / "ldm.pt").read_bytes() == before
    # the trained autoencoder can be reused, and --overwrite replaces the LDM
    args = [
        "demo",
        "--quick",
        "--out",
        str(out),
        "--autoencoder",
        str(out / "autoencoder.pt"),
        "--overwrite",
        "--seed",
        "1",
    ]
    assert main(args) == 0
    assert (out / "ldm.pt").read_bytes() != before
    # the report records the first stage it used (the file's VQ), not the flags' default (KL)
    assert json.loads((out / "report.json").read_text())["config"]["autoencoder"]["kind"] == "vq"


def test_the_demo_trains_and_samples_a_flow_matching_ldm(tmp_path, capsys):
    out = tmp_path / "flow"
    assert main(["demo", "--quick", "--ldm.objective=flow", "--out", str(out)]) == 2
    assert "--sample.sampler=flow_euler" in capsys.readouterr().err
    assert main(["demo", "--quick", "--ldm.objective=flow", "--sample.sampler=flow_euler", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["ldm"]["objective"] == "flow" and 0.0 <= report["accuracy"]["colour"] <= 1.0
    assert load_ldm(out / "ldm.pt").config.objective == "flow"


def test_the_ldm_trains_on_partial_captions_when_asked():
    config = resolve(preset("quick"), {"data.num_train": 64})
    data = load_shapes(config, "train", 64, config.seed)
    assert training_captions(config, data) == data.captions
    partial = resolve(config, {"data.partial_captions": 0.5})
    captions = training_captions(partial, data)
    assert captions == partial_captions(data.objects, 0.5, config.seed) and captions != data.captions
