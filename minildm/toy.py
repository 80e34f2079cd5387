"""A DDPM on 2-D points: the whole method at a size that trains on a CPU in seconds.

The data are points in the plane (two moons, or eight Gaussians on a circle). The network
eps_theta(x_t, t) is a small MLP on [x_t, timestep_embedding(t)] (DDPM sec. 3.3 and
App. B use a U-Net; for 2-D points an MLP is enough). Training is DDPM Algorithm 1:

    x_0 ~ data,  t ~ Uniform{0..T-1},  eps ~ N(0, I)
    minimize || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2   (eq. 14)

Notebooks 01 and 02 train it with `train_toy_ddpm` and sample it with the DDPM and DDIM samplers;
`sample_toy` runs any sampler of minildm.diffusion (the ODE samplers pass real-valued t).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from minildm.diffusion.loss import diffusion_loss
from minildm.diffusion.sampler import Sampler
from minildm.diffusion.schedule import NoiseSchedule, ScheduleConfig
from minildm.nn.embeddings import timestep_embedding

TOY_DATASETS = ("moons", "eight_gaussians")


def make_toy_points(num_points: int, dataset: str = "moons", generator: torch.Generator | None = None) -> torch.Tensor:
    """(num_points, 2) float32 points, scaled to roughly unit variance per coordinate."""
    if dataset == "moons":
        # two interleaved half circles with a little noise (as sklearn's make_moons)
        upper = torch.rand(num_points, generator=generator) < 0.5
        angle = torch.rand(num_points, generator=generator) * math.pi
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
        points = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.6  # (N, 2)
        return points + 0.06 * torch.randn(num_points, 2, generator=generator)
    if dataset == "eight_gaussians":
        centre = torch.randint(0, 8, (num_points,), generator=generator).float() * (2 * math.pi / 8)
        points = 1.4 * torch.stack([torch.cos(centre), torch.sin(centre)], dim=1)  # (N, 2)
        return points + 0.1 * torch.randn(num_points, 2, generator=generator)
    raise ValueError(f"dataset must be one of {TOY_DATASETS}, got {dataset!r}")


@dataclass
class ToyConfig:
    dataset: str = "moons"
    num_points: int = 20000  # size of the training set
    hidden_dim: int = 128
    num_hidden_layers: int = 3
    time_embed_dim: int = 32
    num_timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction_type: str = "eps"
    train_steps: int = 8000
    batch_size: int = 512
    learning_rate: float = 1e-2
    seed: int = 0


class ToyEpsModel(nn.Module):
    """eps_theta(x_t, t): an MLP on the concatenation [x_t (2), timestep_embedding(t) (E)]."""

    def __init__(self, config: "ToyConfig"):
        super().__init__()
        self.time_embed_dim = config.time_embed_dim
        layers = [nn.Linear(2 + config.time_embed_dim, config.hidden_dim), nn.SiLU()]
        for _ in range(config.num_hidden_layers - 1):
            layers += [nn.Linear(config.hidden_dim, config.hidden_dim), nn.SiLU()]
        layers.append(nn.Linear(config.hidden_dim, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """x_t (B, 2), t (B,) -> the prediction (B, 2)."""
        t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])  # (B,) also for a scalar t
        return self.net(torch.cat([x_t, timestep_embedding(t, self.time_embed_dim)], dim=1))


@dataclass
class ToyDDPM:
    config: ToyConfig
    model: ToyEpsModel
    schedule: NoiseSchedule
    data: torch.Tensor  # (N, 2) the training points
    losses: list[float]


def train_toy_ddpm(config: ToyConfig | None = None, progress: bool = True) -> "ToyDDPM":
    """Train a ToyEpsModel with DDPM Algorithm 1 (Adam, cosine learning-rate decay)."""
    config = config if config is not None else ToyConfig()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    data = make_toy_points(config.num_points, config.dataset, generator)
    schedule = NoiseSchedule(ScheduleConfig(num_timesteps=config.num_timesteps, beta_schedule=config.beta_schedule))
    model = ToyEpsModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    lr_decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train_steps)
    losses = []
    for _ in tqdm(range(config.train_steps), disable=not progress, desc="toy DDPM"):
        x0 = data[torch.randint(0, len(data), (config.batch_size,), generator=generator)]  # (B, 2)
        t = torch.randint(0, config.num_timesteps, (config.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = schedule.q_sample(x0, t, noise)
        loss = diffusion_loss(schedule, model(x_t, t), x0, noise, t, config.prediction_type)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_decay.step()
        losses.append(loss.item())
    model.eval()
    return ToyDDPM(config, model, schedule, data, losses)


@torch.no_grad()
def sample_toy(
    model: nn.Module,
    sampler: Sampler,
    x_T: torch.Tensor,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run `sampler` from x_T (B, 2) down to x_0; optionally also return [x_t at each timestep]."""
    x_t = x_T
    trajectory = [x_t]
    for t in sampler.timesteps:
        x_t = sampler.step(model(x_t, t), t, x_t, generator)
        trajectory.append(x_t)
    return (x_t, trajectory) if return_trajectory else x_t


def nearest_neighbour_distances(samples: torch.Tensor, data: torch.Tensor) -> tuple[float, float]:
    """How far samples (N, 2) lie from the data (M, 2) and the data from them, as two means of
    nearest-neighbour distances: (precision-like: off-manifold samples, coverage-like: missed modes)."""
    distances = torch.cdist(samples.double(), data.double())  # (N, M)
    return distances.min(dim=1).values.mean().item(), distances.min(dim=0).values.mean().item()
