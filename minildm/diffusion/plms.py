"""PLMS, pseudo linear multistep sampling (Liu, Ren, Lin and Zhao, "Pseudo Numerical Methods for
Diffusion Models on Manifolds", ICLR 2022, eq. 11-12 and sec. 3.3): the default sampler of the
LDM and Stable Diffusion v1 scripts; diffusers `PNDMScheduler(skip_prk_steps=True)`.

Notation (minildm -> Liu et al. -> diffusers):
    eps_hat_i   -> e_t (the network's noise estimate at step i) -> ets[-1]
    eps_prime   -> e'_t (the combined estimate)                 -> model_output after combining
    transfer    -> phi(x_t, e'_t, t, t - delta) (eq. 9)         -> _get_prev_sample

Each step is DDIM's eta = 0 step (the "transfer" phi, which eq. 9 writes out and which equals
DDIM eq. 12 with sigma = 0) applied with an Adams-Bashforth combination of the last noise
estimates instead of the current one (eq. 12):

    e'_i = (55 e_i - 59 e_{i-1} + 37 e_{i-2} - 9 e_{i-3}) / 24
    x_{i+1} = sqrt(alpha_bar_{i+1}) x0(e'_i) + sqrt(1 - alpha_bar_{i+1}) e'_i,
    x0(e') = (x_i - sqrt(1 - alpha_bar_i) e') / sqrt(alpha_bar_i)

Before four estimates exist, the lower orders: (3 e_i - e_{i-1}) / 2, then (23 e_i - 16 e_{i-1}
+ 5 e_{i-2}) / 12. The very first step (where Liu et al. run four Runge-Kutta steps, and
diffusers' skip_prk_steps instead) is a pseudo improved-Euler step with two evaluations: e_0 at
x_0, a transfer to x_1 with it, e_1 at that point, and the transfer again from x_0 with (e_0 +
e_1) / 2. So n steps take n + 1 evaluations; `timesteps` lists them (t_1 twice).

Differences from diffusers on purpose: the next timestep is the next point of the grid (diffusers
steps to t - T // n, as its DDIM does, the same for leading spacing; see ddim.py), and an x0 or
v output is read as the eps it implies at its own (x_t, t) before it enters the combination
(diffusers combines raw v outputs of earlier steps and converts the result at the current x_t,
tests/test_ode_parity.py). On a zero-terminal-SNR grid that
starts at alpha_bar = 0, x0(e') is undefined for any combined e', so PLMS refuses it.
"""

import torch

from minildm.diffusion.sampler import EvaluationPlan, Sampler, predict_x0_eps
from minildm.diffusion.schedule import NoiseSchedule

# Adams-Bashforth coefficients for 1 to 4 past estimates (newest first), eq. 12 and sec. 3.3
ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


class PLMSSampler(Sampler):
    """Loop over `.timesteps` (n + 1 of them), calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        prediction_type: str = "eps",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        clip_sample: bool = False,
        final_alpha_bar_is_one: bool = True,
    ):
        super().__init__(schedule, num_inference_steps, prediction_type, timestep_spacing, steps_offset, clip_sample)
        if self.alpha_bar(self.grid[0]) == 0:
            raise ValueError(
                f"PLMS cannot start at t = {int(self.grid[0])}, "
                "where this zero-terminal-SNR schedule has alpha_bar = 0 "
                "(x0 of a combined eps is undefined there): use timestep_spacing 'leading', or ddim, euler or dpmpp_2m"
            )
        # alpha_bar after the last step, as in DDIM
        self.final_alpha_bar = 1.0 if final_alpha_bar_is_one else schedule.alphas_cumprod[0].item()
        n = len(self.grid)
        # the first step takes two evaluations (if there is a next point to evaluate at)
        self.plan = EvaluationPlan(self.grid.to(torch.float64), [2 if n > 1 else 1] + [1] * (n - 1))
        self.timesteps = self.plan.timesteps.long()
        self.reset()

    def reset(self) -> None:
        self.noise_estimates = []  # e_i, e_{i-1}, ... newest last, at most 4
        self.first_stage = None  # (x at t_0, e_0) between the two evaluations of the first step

    def previous_timestep(self, t: int | torch.Tensor) -> int:
        """The timestep of the noise level that the step at t returns, -1 for x_0."""
        position, _ = self.plan.locate(t)
        return int(self.plan.next_timestep(self.plan.entries[position][0]))

    def timesteps_for_strength(self, strength: float) -> torch.Tensor:
        """The evaluations of the last int(n * strength) steps, where img2img starts."""
        return self.plan.for_strength(strength).long()

    def transfer(self, x_t: torch.Tensor, eps: torch.Tensor, i: int) -> torch.Tensor:
        """phi(x_t, e', t_i, t_{i+1}): DDIM's eta = 0 step from grid point i with noise estimate eps."""
        t_prev = int(self.plan.next_timestep(i))
        alpha_bar_t = self.alpha_bar(self.grid[i])
        alpha_bar_prev = self.alpha_bar(t_prev) if t_prev >= 0 else self.final_alpha_bar
        x0_hat, _ = predict_x0_eps("eps", eps, x_t, alpha_bar_t, self.clip_sample)
        # x_prev = sqrt(alpha_bar_prev) x0(e') + sqrt(1 - alpha_bar_prev) e'
        return alpha_bar_prev**0.5 * x0_hat + (1 - alpha_bar_prev) ** 0.5 * eps

    def step(
        self, model_output: torch.Tensor, t: int | torch.Tensor, x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x at the next grid point from x_t (B, ...) and the model's output at (x_t, t)."""
        position, new_run = self.plan.locate(t)
        if new_run:
            self.reset()
        i, stage = self.plan.entries[position]
        self.plan.next = position + 1
        _, eps_hat = predict_x0_eps(self.prediction_type, model_output, x_t, self.alpha_bar(t))
        if stage == 1:
            # the first step's second evaluation: e' = (e_0 + e_1) / 2, transferred again from x at t_0
            x_first, eps_first = self.first_stage
            self.first_stage = None
            return self.transfer(x_first, (eps_first + eps_hat) / 2, i)
        self.noise_estimates = [*self.noise_estimates[-3:], eps_hat]
        if (i, 1) in self.plan.entries:
            # a second evaluation of this step follows
            self.first_stage = (x_t, eps_hat)
        coefficients = ADAMS_BASHFORTH[len(self.noise_estimates)]
        # e' = sum_k c_k e_{i-k}   (eq. 12 and its lower orders)
        eps_prime = sum(c * e for c, e in zip(coefficients, reversed(self.noise_estimates)))
        return self.transfer(x_t, eps_prime, i)
