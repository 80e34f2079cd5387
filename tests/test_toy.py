"""The 2-D toy DDPM that notebooks 01 and 02 train (minildm/toy.py)."""

import pytest
import torch

from minildm.diffusion import DDIMSampler, DPMSolverPlusPlus2MSampler, HeunSampler
from minildm.toy import (
    ToyConfig,
    make_toy_points,
    nearest_neighbour_distances,
    sample_toy,
    train_toy_ddpm,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # these tests run many tiny matrix products, which more threads only slow down on a shared CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_toy_points_have_the_documented_shape_and_scale():
    for dataset in ("moons", "eight_gaussians"):
        points = make_toy_points(4000, dataset, torch.Generator().manual_seed(0))
        assert points.shape == (4000, 2) and points.dtype == torch.float32
        assert 0.5 < points.std(dim=0).min() and points.std(dim=0).max() < 1.5
    with pytest.raises(ValueError, match="dataset must be one of"):
        make_toy_points(10, "spiral")


def test_a_short_training_learns_the_noise_and_samples_near_the_data():
    toy = train_toy_ddpm(ToyConfig(train_steps=800, batch_size=256, num_points=2000, hidden_dim=64), progress=False)
    # an eps-model that outputs 0 has loss E[eps_i^2] = 1; learning brings it well below
    assert sum(toy.losses[-50:]) / 50 < 0.6 < sum(toy.losses[:5]) / 5
    noise_distance, _ = nearest_neighbour_distances(torch.randn(500, 2), toy.data)
    # the ODE samplers evaluate the model at real-valued timesteps (Karras sigmas)
    for sampler in (
        DDIMSampler(toy.schedule, 20, timestep_spacing="trailing"),
        HeunSampler(toy.schedule, 10, timestep_spacing="trailing", karras=True),
        DPMSolverPlusPlus2MSampler(toy.schedule, 10, timestep_spacing="trailing", karras=True),
    ):
        samples = sample_toy(toy.model, sampler, torch.randn(500, 2, generator=torch.Generator().manual_seed(0)))
        sample_distance, _ = nearest_neighbour_distances(samples, toy.data)
        assert sample_distance < noise_distance / 2, type(sampler).__name__
