"""What every sampler shares: one constructor, one step signature, one x0 prediction, one noise draw.

Every sampler is built as

    Sampler(schedule, num_inference_steps, prediction_type="eps", timestep_spacing="leading",
            steps_offset=0, clip_sample=False, <its own arguments>)

and used in one loop, the model evaluated once per entry of `timesteps` (B latents x_t):

    for t in sampler.timesteps:
        x_t = sampler.step(model(x_t, t), t, x_t, generator)

`previous_timestep(t)` is the timestep whose noise level the step at t returns (-1: x_0), so
that a pipeline can noise known content to it (inpainting). num_inference_steps=None means all
T training timesteps.

The network predicts eps, x0 or v (schedule.py); at a noise level alpha_bar every sampler reads
it as the pair (x0_hat, eps_hat) through `predict_x0_eps`, the only place where that happens:

    eps: x0_hat = (x_t - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar)     (DDPM eq. 4 for x_0)
    x0:  eps_hat = (x_t - sqrt(alpha_bar) x0_hat) / sqrt(1 - alpha_bar)
    v:   x0_hat = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v,  eps_hat = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v

with x0_hat clipped to [-1, 1] if clip_sample (DDPM's code clips pixel-space samples; the
scaled latents of an LDM are not bounded, so it is off by default).

On a zero-terminal-SNR schedule (Lin et al. 2023) alpha_bar_{T-1} = 0, and an eps-prediction
says nothing about x_0 there (x0_hat = x_t - eps_hat / 0): a sampler whose first timestep is
T - 1 refuses eps-prediction on such a schedule instead of returning NaN.
"""

import torch

from minildm.diffusion.schedule import NoiseSchedule, check_prediction_type
from minildm.diffusion.timesteps import inference_timesteps, truncate_for_strength


def draw_noise(x_t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) of x_t's shape and dtype, drawn on the generator's device (so a seed gives the
    same draws on any device) and moved to x_t's."""
    device = generator.device if generator is not None else x_t.device
    return torch.randn(x_t.shape, generator=generator, device=device, dtype=x_t.dtype).to(x_t.device)


def predict_x0_eps(
    prediction_type: str, model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, clip_sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) that model_output (B, ...) implies at x_t (B, ...) of noise level alpha_bar."""
    sqrt_alpha_bar, sqrt_one_minus_alpha_bar = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    if prediction_type == "eps":
        eps_hat = model_output
        # x0_hat = (x_t - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar)
        x0_hat = (x_t - sqrt_one_minus_alpha_bar * eps_hat) / sqrt_alpha_bar
    elif prediction_type == "x0":
        x0_hat = model_output
        # eps_hat = (x_t - sqrt(alpha_bar) x0_hat) / sqrt(1 - alpha_bar)
        eps_hat = (x_t - sqrt_alpha_bar * x0_hat) / sqrt_one_minus_alpha_bar
    else:
        # x0_hat = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v
        x0_hat = sqrt_alpha_bar * x_t - sqrt_one_minus_alpha_bar * model_output
        # eps_hat = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v
        eps_hat = sqrt_one_minus_alpha_bar * x_t + sqrt_alpha_bar * model_output
    if clip_sample:
        # eps_hat stays the unclipped one, as in DDIM's and diffusers' code
        x0_hat = x0_hat.clamp(-1, 1)
    return x0_hat, eps_hat


class Sampler:
    """The shared constructor and timestep grid; each subclass defines `step(model_output, t, x_t, generator)`."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        prediction_type: str = "eps",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        clip_sample: bool = False,
    ):
        check_prediction_type(prediction_type)
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        T = schedule.num_timesteps
        n = T if num_inference_steps is None else num_inference_steps
        self.grid = inference_timesteps(T, n, timestep_spacing, steps_offset)  # (n,) int64, descending
        self.timesteps = self.grid
        if prediction_type == "eps" and schedule.alphas_cumprod[int(self.grid[0])].item() == 0:
            raise ValueError(
                f"eps-prediction cannot start at t = {int(self.grid[0])}, where this zero-terminal-SNR schedule has "
                "alpha_bar = 0 (x0_hat would be NaN): use prediction_type 'v' or 'x0', or timestep_spacing 'leading'"
            )

    def alpha_bar(self, t: float | torch.Tensor) -> float:
        """alpha_bar_t, and 1 for t = -1 (x_0 itself)."""
        t = int(t)
        return 1.0 if t < 0 else self.schedule.alphas_cumprod[t].item()

    def previous_timestep(self, t: int | torch.Tensor) -> int:
        """The timestep after t in the descending grid, or -1 after the last one (meaning: x_0)."""
        t = int(t)
        positions = (self.grid == t).nonzero()
        if len(positions) == 0:
            grid = [str(step) for step in self.grid.tolist()]
            shown = ", ".join(grid if len(grid) <= 12 else [*grid[:3], "...", *grid[-3:]])
            raise ValueError(f"t must be one of the sampler's {len(grid)} timesteps ({shown}), got {t}")
        index = int(positions[0, 0])
        return int(self.grid[index + 1]) if index + 1 < len(self.grid) else -1

    def timesteps_for_strength(self, strength: float) -> torch.Tensor:
        """The timesteps that img2img visits for `strength` in [0, 1] (1: all, 0: none)."""
        return truncate_for_strength(self.timesteps, strength)

    def predict_x0_eps(
        self, model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the model's output at x_t, clipped if clip_sample."""
        return predict_x0_eps(self.prediction_type, model_output, x_t, alpha_bar, self.clip_sample)


class EvaluationPlan:
    """For samplers that evaluate the network more than once per interval or keep a history:
    which interval i (grid step i -> i+1) and stage each entry of `timesteps` belongs to, and
    where in that list the next step is. A step at t that is not the next entry starts a new
    run at the first evaluation of the interval that begins at t (img2img's truncated grid)."""

    def __init__(self, interval_timesteps: torch.Tensor, evaluations_per_interval: list[int]):
        self.interval_timesteps = interval_timesteps  # (n,)
        self.entries = [(i, stage) for i, count in enumerate(evaluations_per_interval) for stage in range(count)]
        # stage 0 evaluates at the start of its interval, stage 1 at its end
        self.timesteps = torch.stack([interval_timesteps[i + stage] for i, stage in self.entries])
        self.next = 0

    def locate(self, t: float | torch.Tensor) -> tuple[int, bool]:
        """(position of the step at t in `timesteps`, whether it starts a new run)."""
        t = float(t)
        if self.next < len(self.timesteps) and float(self.timesteps[self.next]) == t:
            return self.next, False
        for position, (i, stage) in enumerate(self.entries):
            if stage == 0 and float(self.timesteps[position]) == t:
                return position, True
        raise ValueError(f"t must be one of the sampler's timesteps {self.interval_timesteps.tolist()}, got {t}")

    def next_timestep(self, i: int) -> float:
        """The timestep at the end of interval i, -1 after the last (x_0)."""
        return float(self.interval_timesteps[i + 1]) if i + 1 < len(self.interval_timesteps) else -1.0

    def for_strength(self, strength: float) -> torch.Tensor:
        """The evaluations of the last int(n * strength) intervals."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        n = len(self.interval_timesteps)
        first_kept = n - int(n * strength)
        return self.timesteps[[position for position, (i, _) in enumerate(self.entries) if i >= first_kept]]
