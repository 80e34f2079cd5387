"""minildm/why_latent.py and bench/why_latent.py: pixel space is latent diffusion with the identity
as first stage, the memory proxy (minildm/measure.py) counts exactly what autograd saves, and every
table row and ratio is computed from the measured numbers (no timing is asserted)."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import why_latent as bench  # the speed levers: bench/why_latent.py, over bench/unet_speed.py

from minildm import why_latent
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.measure import saved_activation_bytes
from minildm.why_latent import SPACES, WhyLatentConfig

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the budget of these tests is one core
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return ShapesDataset(ShapesConfig(size=16, num_samples=64, split="train", max_objects=1))


def test_pixel_space_ldm_is_pixel_diffusion():
    cfg = WhyLatentConfig.quick()
    ldm = why_latent.make_ldm(SPACES[0], cfg, why_latent.PixelSpace())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert ldm.latent_shape() == (3, 16, 16)
    # E(x) = x and D(z) = z: the LDM's latents are the pixels
    torch.testing.assert_close(ldm.encode_images(x), x)
    torch.testing.assert_close(ldm.decode_latents(x), x)


def test_same_unet_in_every_space_only_input_channels_differ():
    cfg = WhyLatentConfig.quick()
    configs = [why_latent.make_ldm(s, cfg, why_latent.make_autoencoder(s, cfg)).config.unet for s in SPACES]
    assert [c.in_channels for c in configs] == [3, 3, 4]
    assert len({(c.base_channels, c.channel_mult, c.num_res_blocks, c.attention_levels) for c in configs}) == 1
    assert [why_latent.make_autoencoder(s, cfg).config.downsampling_factor for s in SPACES] == [1, 4, 8]


def test_saved_activation_bytes_counts_what_autograd_saves():
    linear = torch.nn.Linear(16, 32)
    x = torch.randn(8, 16)
    # linear saves its input (8, 16) (the weight is a parameter: left out); silu saves its input (8, 32)
    expected = (8 * 16 + 8 * 32) * 4
    assert saved_activation_bytes(lambda: F.silu(linear(x)).sum().backward(), linear.parameters()) == expected
    # checkpointed, only the block's input is kept for the recomputation
    kept = saved_activation_bytes(
        lambda: checkpoint(lambda v: F.silu(linear(v)), x.requires_grad_(), use_reentrant=False).sum().backward(),
        linear.parameters(),
    )
    assert kept == 8 * 16 * 4


def test_spaces_table_rows_and_ratios_from_measurements(data):
    cfg = WhyLatentConfig.quick()
    results = {s.name: why_latent.measure_space(s, cfg, data, CPU) for s in SPACES}
    assert [r["latent"] for r in results.values()] == ["16x16x3", "4x4x3", "2x2x4"]
    pixel, f4 = results["pixel f=1"], results["latent f=4"]
    assert f4["memory"] < pixel["memory"]  # bytes, not time: 16x fewer positions per activation
    lines = why_latent.spaces_table(results, cfg, CPU)
    ratios = why_latent.ratios_vs_pixel(f4, pixel)
    assert ratios["train"] == pytest.approx(f4["cached"] / pixel["cached"])
    row = next(line for line in lines if line.startswith("latent f=4") and line.rstrip().endswith("x"))
    assert row.split() == ["latent", "f=4"] + [
        f"{ratios[k]:.{p}f}x" for k, p in (("train", 2), ("train on the fly", 2), ("memory", 1), ("sample", 2))
    ]
    targets = why_latent.target_lines(results, CPU)
    assert len(targets) == 3 and all("not measured" in line for line in targets)


def test_quality_at_equal_time_runs_the_trainer(data, tmp_path):
    cfg = WhyLatentConfig.quick()
    ldm, report = why_latent.quality_at_equal_time(
        SPACES[1], cfg, step_seconds=0.25, train_data=data, device=CPU, out_dir=tmp_path
    )
    assert report["steps"] == 4  # train_seconds / step_seconds
    assert (tmp_path / "autoencoder_f4_16px_8ch_2steps.pt").is_file()
    labels = data.labels[:4]
    samples = why_latent.sample(ldm, why_latent.class_labels(labels), 2, cfg.guidance, CPU)
    assert samples.shape == (4, 3, 16, 16)


def test_levers_table_ratios_from_measurements(monkeypatch):
    # a small U-Net in unet_speed's configuration (16x16x4 latents), so the test takes seconds
    for key, value in {
        "base_channels": 32,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attention_levels": (1,),
        "num_heads": 4,
        "context_dim": 32,
    }.items():
        monkeypatch.setitem(bench.REFERENCE, key, value)
    cfg = dataclasses.replace(WhyLatentConfig.quick(), warmup=0)
    chosen = [
        lever for lever in bench.levers(compile_full_stack=False) if lever.name in ("plain fp32 eager", "full stack")
    ]
    results = {lever.name: bench.measure_lever(lever, cfg, batch=1, device=CPU) for lever in chosen}
    lines = bench.levers_table(results, 1, CPU)
    ours, ref = results["full stack"]["minildm"], results["full stack"]["diffusers"]
    assert lines[3].split()[:5] == [
        "full",
        "stack",
        f"{ours['img/s']:.1f}",
        f"{ref['img/s']:.1f}",
        f"{ours['img/s'] / ref['img/s']:.2f}",
    ]
    speedup = ours["img/s"] / results["plain fp32 eager"]["minildm"]["img/s"]
    assert any(line.startswith(f"\nfull stack / plain fp32 eager: minildm {speedup:.2f}x") for line in lines)
