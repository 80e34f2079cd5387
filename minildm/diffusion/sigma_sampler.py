"""What the ODE samplers (Euler, Heun, Euler ancestral, DPM-Solver++) share: a grid of noise
levels sigma_0 > sigma_1 > ... > sigma_{n-1} > sigma_n = 0 (sigmas.py), and the conversion
between the pipelines' x_t and the sigma view x = x_t sqrt(1 + sigma^2).

The grid is the shared timestep grid's sigmas (timestep_spacing as for DDIM), or with
karras=True Karras et al.'s eq. 5 between the first and the last of them (so linspace spacing
gives k-diffusion's full range sigma(T-1) ... sigma(0)). The network is evaluated at the
real-valued timestep of each sigma (sigmas.timestep_of_sigma).

The interface is the one of every sampler: `for t in sampler.timesteps: x_t = sampler.step(
model(x_t, t), t, x_t, generator)`. A sampler that evaluates the network twice per interval
(Heun) lists the timesteps of both evaluations; the sampler keeps its position in `timesteps`
(sampler.EvaluationPlan) and, for multistep methods, the earlier outputs it needs.
"""

import torch

from minildm.diffusion.sampler import EvaluationPlan, Sampler
from minildm.diffusion.schedule import NoiseSchedule
from minildm.diffusion.sigmas import (
    alpha_bar_of_sigma,
    from_sigma_view,
    karras_sigmas,
    schedule_sigmas,
    sigma_of_timestep,
    timestep_of_sigma,
    to_sigma_view,
)


class SigmaSampler(Sampler):
    """Base class: subclasses define `sigma_step(i, stage, x, denoised, eps_hat, generator) -> x_next`
    for interval i (sigma_i -> sigma_{i+1}) in the sigma view, and may evaluate twice per interval."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        prediction_type: str = "eps",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        clip_sample: bool = False,
        karras: bool = False,
    ):
        super().__init__(schedule, num_inference_steps, prediction_type, timestep_spacing, steps_offset, clip_sample)
        self.karras = karras
        self.train_sigmas = schedule_sigmas(schedule)  # (T,)
        grid_sigmas = self.train_sigmas[self.grid]  # (n,)
        if karras:
            if torch.isinf(grid_sigmas[0]):
                raise ValueError(
                    "karras=True needs a finite sigma_max, but this zero-terminal-SNR grid starts at sigma = inf "
                    "(t = T-1): use timestep_spacing 'leading' or karras=False"
                )
            grid_sigmas = karras_sigmas(grid_sigmas[-1].item(), grid_sigmas[0].item(), len(self.grid))
            interval_timesteps = timestep_of_sigma(grid_sigmas, self.train_sigmas)
        else:
            interval_timesteps = self.grid.to(torch.float64)
        # sigma_0 > ... > sigma_{n-1} > sigma_n = 0, and the timestep of each but the last
        self.sigmas = torch.cat([grid_sigmas, torch.zeros(1, dtype=torch.float64)])  # (n + 1,)
        self.plan = EvaluationPlan(interval_timesteps, [self.num_evaluations(i) for i in range(len(grid_sigmas))])
        self.timesteps = self.plan.timesteps
        self.reset()

    def num_evaluations(self, i: int) -> int:
        """How many network evaluations interval i (sigma_i -> sigma_{i+1}) takes."""
        return 1

    def reset(self) -> None:
        """Forget what earlier steps left behind (multistep history, a first Heun stage)."""

    def previous_timestep(self, t: float | torch.Tensor) -> float:
        """The timestep of the noise level that the step at t returns, -1 for x_0."""
        position, _ = self.plan.locate(t)
        return self.plan.next_timestep(self.plan.entries[position][0])

    def alpha_bar(self, t: float | torch.Tensor) -> float:
        """alpha_bar at a real-valued timestep t (1 for t = -1, x_0 itself)."""
        t = float(t)
        return 1.0 if t < 0 else alpha_bar_of_sigma(sigma_of_timestep(t, self.train_sigmas))

    def timesteps_for_strength(self, strength: float) -> torch.Tensor:
        """The evaluations of the last int(n * strength) steps, where img2img starts."""
        return self.plan.for_strength(strength)

    def step(
        self, model_output: torch.Tensor, t: float | torch.Tensor, x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x_t at the next noise level from x_t (B, ...) and the model's output at (x_t, t)."""
        position, new_run = self.plan.locate(t)
        if new_run:
            self.reset()
        i, stage = self.plan.entries[position]
        # the noise level this evaluation was made at: sigma_i, or sigma_{i+1} for Heun's second stage
        sigma = self.sigmas[i + stage].item()
        x0_hat, eps_hat = self.predict_x0_eps(model_output, x_t, alpha_bar_of_sigma(sigma))
        # x = x_t sqrt(1 + sigma^2) (inf at sigma = inf: sigma_step must not need it there)
        x = to_sigma_view(x_t, sigma)
        x_next = self.sigma_step(i, stage, x, x0_hat, eps_hat, generator)
        self.plan.next = position + 1
        return from_sigma_view(x_next, self.sigmas[i + 1].item())

    def sigma_step(
        self, i: int, stage: int, x: torch.Tensor, denoised: torch.Tensor, eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        """x at sigma_{i+1} in the sigma view, from x, D(x; sigma) and dx/dsigma = eps_hat."""
        raise NotImplementedError(f"{type(self).__name__} must define sigma_step")
