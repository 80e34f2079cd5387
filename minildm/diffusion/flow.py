"""Flow matching with the straight (rectified-flow) path: Lipman et al., "Flow Matching for
Generative Modeling", ICLR 2023 (eq. 20-23, the conditional OT path with sigma_min = 0); Liu,
Gong and Liu, "Flow Straight and Fast: ... Rectified Flow", ICLR 2023; as trained in Stable
Diffusion 3 (Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image
Synthesis", ICML 2024, sec. 2-3).

Notation: t in [0, 1] is flow time (0: data, 1: noise), x0 the data, eps ~ N(0, I).

    x_t = (1 - t) x0 + t eps                          the path (a straight line per pair)
    u   = dx_t / dt = eps - x0                        the velocity the network v_theta(x_t, t) learns
    L   = E_{t, x0, eps} || v_theta(x_t, t) - (eps - x0) ||^2          (Lipman et al. eq. 23)

t is drawn logit-normal, t = sigmoid(n), n ~ N(m, s^2) (SD3 sec. 3.1, eq. 19: m = 0, s = 1),
which puts more training on the middle of the path. Sampling integrates dx/dt = v_theta(x, t)
from t = 1 (x_1 = eps) to t = 0 with Euler steps, x_{t'} = x_t + (t' - t) v_theta(x_t, t), on
t_i = 1 - i / n, optionally shifted to more noise, t <- shift t / (1 + (shift - 1) t) (SD3 eq. 23).
The network reads the time as t * TIME_SCALE, the range of the DDPM timesteps its sin/cos
embedding was built for (as diffusers' FlowMatchEulerDiscreteScheduler does).

A diffusion model is a flow in disguise. With sigma = t / (1 - t) (sigmas.py), the flow point x
at time t is the DDPM point x_t / (sqrt(alpha_bar) + sqrt(1 - alpha_bar)), and an eps, x0 or v
prediction there gives a velocity u = eps_hat - x0_hat (`velocity_from_model_output`). An
Euler step of the flow from t to t' then lands on (1 - t') x0_hat + t' eps_hat: exactly DDIM's
eta = 0 step, rescaled (tests/test_flow.py).
"""

import torch

from minildm.diffusion.sampler import predict_x0_eps

TIME_SCALE = 1000.0


def flow_interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps for x0, eps (B, ...) and t (B,) in [0, 1]."""
    t = t.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, ..., 1)
    # x_t = (1 - t) x0 + t eps
    return (1 - t) * x0 + t * eps


def flow_velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u = dx_t/dt = eps - x0."""
    # u = eps - x0
    return eps - x0


def flow_matching_loss(model_output: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """|| v_theta(x_t, t) - (eps - x0) ||^2, the mean over every element and the batch."""
    target = flow_velocity_target(x0, eps)
    if model_output.shape != target.shape:
        raise ValueError(
            f"model_output must have the target's shape {tuple(target.shape)}, got {tuple(model_output.shape)}"
        )
    return ((model_output - target) ** 2).mean()


FLOW_TIMES = ("logit_normal", "uniform", "mixed")


def flow_training_times(
    kind: str,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    mean: float = 0.0,
    noise_end: float = 0.0,
    noise_end_from: float = 0.9,
) -> torch.Tensor:
    """Training times t (B,) in (0, 1): "logit_normal" (SD3's, most weight mid-path; `mean` is its
    location m: m > 0 moves training towards the noise end), "uniform" (Lipman et al. and Liu et
    al.'s t ~ U(0, 1)), or "mixed": each t from one or the other with probability 1/2.

    `noise_end` is a share of the times redrawn from U(noise_end_from, 1), the end of the path
    where sampling starts (noise_end_from = 1: exactly t = 1, x_1 = eps, the flow's zero terminal
    SNR). The first sampling step, v_theta(eps, 1), decides the layout of the image
    (`bench/flow_handoff.py`), and SD3's logit-normal t almost never trains near it."""
    if not 0.0 <= noise_end < 1.0 or not 0.0 <= noise_end_from <= 1.0:
        raise ValueError(
            f"noise_end must be a share in [0, 1) and noise_end_from in [0, 1], got {noise_end}, {noise_end_from}"
        )
    times = _training_times(kind, batch_size, generator, device, mean)
    if noise_end:
        noise_device = generator.device if generator is not None else device
        r = torch.rand(batch_size, generator=generator, device=noise_device).to(device)
        # r < noise_end picks the noise end; given that, r / noise_end ~ U(0, 1) places t in the band
        band = noise_end_from + (1 - noise_end_from) * (r / noise_end)
        times = torch.where(r < noise_end, band.to(times.dtype), times)
    return times


def _training_times(
    kind: str, batch_size: int, generator: torch.Generator | None, device: torch.device | str, mean: float
) -> torch.Tensor:
    noise_device = generator.device if generator is not None else device
    if kind == "logit_normal":
        return logit_normal_times(batch_size, generator, mean=mean, device=device)
    if kind == "uniform":
        return torch.rand(batch_size, generator=generator, device=noise_device).to(device)
    if kind == "mixed":
        logit_normal = logit_normal_times(batch_size, generator, mean=mean, device=device)
        uniform = torch.rand(batch_size, generator=generator, device=noise_device).to(device)
        pick_uniform = torch.rand(batch_size, generator=generator, device=noise_device).to(device) < 0.5
        return torch.where(pick_uniform, uniform, logit_normal)
    raise ValueError(f"flow training times must be one of {FLOW_TIMES}, got {kind!r}")


def logit_normal_times(
    batch_size: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """t = sigmoid(n), n ~ N(mean, std^2), (B,) in (0, 1) (SD3 sec. 3.1)."""
    if std <= 0:
        raise ValueError(f"std of the logit-normal must be positive, got {std}")
    noise_device = generator.device if generator is not None else device
    n = mean + std * torch.randn(batch_size, generator=generator, device=noise_device)
    # t = 1 / (1 + exp(-n))
    return torch.sigmoid(n).to(device)


def shift_times(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t <- shift t / (1 + (shift - 1) t): more of the steps at high noise for shift > 1 (SD3 eq. 23)."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    # t' = shift t / (1 + (shift - 1) t)
    return shift * t / (1 + (shift - 1) * t)


def flow_time_of_sigma(sigma: float) -> float:
    """t = sigma / (1 + sigma): the flow time at which x_t = (1 - t) x0 + t eps has a diffusion
    model's noise-to-signal ratio sigma = sqrt((1 - alpha_bar) / alpha_bar) (sigmas.py)."""
    # t = sigma / (1 + sigma)
    return 1.0 if sigma == float("inf") else sigma / (1 + sigma)


def timesteps_of_flow_times(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The discrete timesteps (B,) whose flow times are nearest to t (B,) in [0, 1]: a diffusion
    model trained on times drawn in flow time. Timestep k sits at flow time sigma_k / (1 + sigma_k)
    = sqrt(1 - alpha_bar_k) / (sqrt(alpha_bar_k) + sqrt(1 - alpha_bar_k)), increasing in k, and 1
    at a zero-terminal-SNR schedule's last step."""
    root_ab, root_1m = alphas_cumprod.sqrt(), (1 - alphas_cumprod).sqrt()
    times = (root_1m / (root_ab + root_1m)).to(t.device)  # (T,) increasing
    # the first index whose time is >= t, so that times[above - 1] < t <= times[above]
    above = torch.searchsorted(times, t.to(times.dtype)).clamp(1, len(times) - 1)
    nearer_below = (t - times[above - 1]) < (times[above] - t)
    return torch.where(nearer_below, above - 1, above)


def velocity_from_model_output(
    prediction_type: str, model_output: torch.Tensor, x_vp: torch.Tensor, alpha_bar: float
) -> torch.Tensor:
    """u = eps_hat - x0_hat for a diffusion model's output (eps, x0 or v) at the DDPM point x_vp
    of noise level alpha_bar; the flow point is x_vp / (sqrt(alpha_bar) + sqrt(1 - alpha_bar))."""
    x0_hat, eps_hat = predict_x0_eps(prediction_type, model_output, x_vp, alpha_bar)
    # u = eps_hat - x0_hat
    return eps_hat - x0_hat


def flow_euler_step(x: torch.Tensor, velocity: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """x_{t_next} = x_t + (t_next - t) v, one Euler step of dx/dt = v."""
    # x_next = x + (t_next - t) v
    return x + (t_next - t) * velocity


class FlowEulerSampler:
    """Euler steps of dx/dt = v_theta(x, t) from t = 1 to 0. Loop over `.timesteps` (flow time
    times TIME_SCALE, what the network reads), calling `x = sampler.step(v_theta(x, t), t, x)`."""

    def __init__(self, num_inference_steps: int, shift: float = 1.0):
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps}")
        # t_i = 1 - i / n, i = 0 ... n (t_n = 0: the data)
        times = shift_times(torch.linspace(1, 0, num_inference_steps + 1, dtype=torch.float64), shift)
        self.times = times  # (n + 1,)
        self.timesteps = times[:-1] * TIME_SCALE  # (n,)

    def previous_timestep(self, t: float | torch.Tensor) -> float:
        """The network time of the x that the step at t returns, -1 for the data (t = 0)."""
        i = self.index_of(t)
        return float(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1.0

    def index_of(self, t: float | torch.Tensor) -> int:
        positions = (self.timesteps == float(t)).nonzero()
        if len(positions) == 0:
            raise ValueError(f"t must be one of the sampler's timesteps {self.timesteps.tolist()}, got {float(t)}")
        return int(positions[0, 0])

    def step(
        self, model_output: torch.Tensor, t: float | torch.Tensor, x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x at the next time from x_t (B, ...) and the velocity the network predicts there."""
        i = self.index_of(t)
        return flow_euler_step(x_t, model_output, self.times[i].item(), self.times[i + 1].item())
