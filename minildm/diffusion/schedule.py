"""The forward (noising) process of DDPM and the quantities every sampler needs.

Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020):

    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I),          alpha_t = 1 - beta_t   (eq. 2)
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), alpha_bar_t = prod_{s<=t} alpha_s (eq. 4)
    q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)                                      (eq. 6-7)

Timesteps are 0-based, as in the DDPM code and diffusers: t = 0 is the first noising step
(DDPM's t = 1) and t = T - 1 the last. alpha_bar is DDPM's \\bar\\alpha_t; the DDIM paper
calls the same number alpha_t; diffusers calls it alphas_cumprod.

Three things a network may predict, all linear in (x_t, x_0, eps) at a fixed t:
    eps                                         (DDPM eq. 11-12)
    x0                                          (DDPM eq. 15)
    v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0   (Salimans and Ho 2022, sec. 4)
The signal-to-noise ratio is SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021).

Beta schedules: `linear` (DDPM sec. 4), `scaled_linear` (linear in sqrt(beta), the schedule of
the LDM / Stable Diffusion configs, 0.00085 to 0.012), `cosine` (Nichol and Dhariwal 2021,
eq. 17, betas clipped at 0.999), and the zero-terminal-SNR rescale (Lin et al., "Common
Diffusion Noise Schedules and Sample Steps are Flawed", 2023, Algorithm 1).
"""

import math
from dataclasses import dataclass

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("eps", "x0", "v")


@dataclass
class ScheduleConfig:
    num_timesteps: int = 1000
    beta_schedule: str = "linear"  # "linear" | "scaled_linear" | "cosine"
    beta_start: float = 1e-4  # used by linear and scaled_linear
    beta_end: float = 0.02  # used by linear and scaled_linear
    zero_terminal_snr: bool = False  # rescale so that alpha_bar_{T-1} = 0 (Lin et al. 2023)
    cosine_offset: float = 0.008  # s in Nichol and Dhariwal eq. 17
    max_beta: float = 0.999  # cosine betas are clipped here (Nichol and Dhariwal sec. 3.2)


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """beta_t evenly spaced from beta_start to beta_end (DDPM sec. 4: 1e-4 to 0.02)."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """sqrt(beta_t) evenly spaced: the schedule of the LDM configs (CompVis calls it "linear")."""
    # beta_t = (sqrt(beta_start) + t / (T - 1) (sqrt(beta_end) - sqrt(beta_start)))^2
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def cosine_betas(num_timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol and Dhariwal 2021, eq. 17: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # (T + 1,)
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    # beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t), clipped so that beta_{T-1} < 1
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1: shift and scale sqrt(alpha_bar) so that its last value is 0
    (SNR(T-1) = 0, the model sees pure noise at the last step) and its first value is unchanged."""
    sqrt_alpha_bar = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = sqrt_alpha_bar[0].clone(), sqrt_alpha_bar[-1].clone()
    # sqrt(alpha_bar) <- (sqrt(alpha_bar) - last) * first / (first - last)
    sqrt_alpha_bar = (sqrt_alpha_bar - last) * first / (first - last)
    alpha_bar = sqrt_alpha_bar**2
    # alpha_t = alpha_bar_t / alpha_bar_{t-1}, alpha_0 = alpha_bar_0
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


def make_betas(config: ScheduleConfig) -> torch.Tensor:
    """The betas (T,) float64 that `config` describes."""
    if config.num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive integer, got {config.num_timesteps}")
    if config.beta_schedule == "linear":
        betas = linear_betas(config.num_timesteps, config.beta_start, config.beta_end)
    elif config.beta_schedule == "scaled_linear":
        betas = scaled_linear_betas(config.num_timesteps, config.beta_start, config.beta_end)
    elif config.beta_schedule == "cosine":
        betas = cosine_betas(config.num_timesteps, config.cosine_offset, config.max_beta)
    else:
        raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {config.beta_schedule!r}")
    if config.zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas


def check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be 'eps', 'x0' or 'v', got {prediction_type!r}")


class NoiseSchedule:
    """betas, alphas, alpha_bar and the coefficients of DDPM eq. 4, 6-7 as float64 tensors (T,),
    each computed once here; every method takes t as a LongTensor (B,) and broadcasts the
    per-timestep scalars over x of shape (B, ...). Results have x's dtype."""

    def __init__(self, config: ScheduleConfig | None = None):
        self.config = config if config is not None else ScheduleConfig()
        betas = make_betas(self.config)
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError(
                f"betas must lie in (0, 1], got values from {betas.min().item():.3g} to {betas.max().item():.3g}: "
                f"check beta_start={self.config.beta_start} and beta_end={self.config.beta_end}"
            )
        self.betas = betas
        self.num_timesteps = len(betas)
        self.alphas = 1 - betas
        # alpha_bar_t = prod_{s <= t} alpha_s (DDPM eq. 4)
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        # alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (no noise before the first step)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # the scales of q(x_t | x_0) (eq. 4) and of its inverse
        # x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1 - self.alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = 1 / self.sqrt_alphas_cumprod  # inf where alpha_bar = 0 (zero terminal SNR)
        # beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (DDPM eq. 7)
        self.posterior_variance = (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod) * betas
        # beta_tilde_0 = 0, so log(beta_tilde_0) = -inf; the DDPM code uses beta_tilde_1 there instead
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        # mu_tilde_t = coef1 x_0 + coef2 x_t (DDPM eq. 7), with
        # coef1 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t),
        # coef2 = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
        self.posterior_mean_coef1 = self.alphas_cumprod_prev.sqrt() * betas / (1 - self.alphas_cumprod)
        self.posterior_mean_coef2 = self.alphas.sqrt() * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)

    def _check_t(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.dtype not in (torch.int64, torch.int32) or t.ndim != 1:
            raise ValueError(f"t must be an integer tensor of shape (B,), got dtype {t.dtype}, shape {tuple(t.shape)}")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(
                f"t must lie in [0, {self.num_timesteps - 1}], got values from {int(t.min())} to {int(t.max())}"
            )
        return t

    def _gather(self, values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """values[t] (B,) reshaped to (B, 1, ..., 1) to broadcast over x (B, ...), in x's dtype."""
        t = self._check_t(t).to(values.device)
        return values[t].to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) (DDPM eq. 4), reparameterized with the given noise."""
        sqrt_alpha_bar = self._gather(self.sqrt_alphas_cumprod, t, x0)
        sqrt_one_minus_alpha_bar = self._gather(self.sqrt_one_minus_alphas_cumprod, t, x0)
        # x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
        return sqrt_alpha_bar * x0 + sqrt_one_minus_alpha_bar * noise

    def q_posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
        coef1 = self._gather(self.posterior_mean_coef1, t, x0)
        coef2 = self._gather(self.posterior_mean_coef2, t, xt)
        # mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
        #            + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        mean = coef1 * x0 + coef2 * xt
        variance = self._gather(self.posterior_variance, t, x0)
        log_variance_clipped = self._gather(self.posterior_log_variance_clipped, t, x0)
        return mean, variance, log_variance_clipped

    def _scales(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), each (B, 1, ..., 1) to broadcast over x."""
        return self._gather(self.sqrt_alphas_cumprod, t, x), self._gather(self.sqrt_one_minus_alphas_cumprod, t, x)

    def x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, xt)
        # x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)      (DDPM eq. 4 solved for x_0)
        return (xt - sqrt_one_minus_alpha_bar * eps) / sqrt_alpha_bar

    def eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, xt)
        # eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)
        return (xt - sqrt_alpha_bar * x0) / sqrt_one_minus_alpha_bar

    def v_from_x0_eps(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, x0)
        # v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0            (Salimans and Ho 2022, sec. 4)
        return sqrt_alpha_bar * eps - sqrt_one_minus_alpha_bar * x0

    def x0_from_v(self, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, xt)
        # x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v
        return sqrt_alpha_bar * xt - sqrt_one_minus_alpha_bar * v

    def eps_from_v(self, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, xt)
        # eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v
        return sqrt_one_minus_alpha_bar * xt + sqrt_alpha_bar * v

    def v_from_xt_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, xt)
        # v = (eps - sqrt(1 - alpha_bar_t) x_t) / sqrt(alpha_bar_t)
        return (eps - sqrt_one_minus_alpha_bar * xt) / sqrt_alpha_bar

    def v_from_xt_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self._scales(t, xt)
        # v = (sqrt(alpha_bar_t) x_t - x_0) / sqrt(1 - alpha_bar_t)
        return (sqrt_alpha_bar * xt - x0) / sqrt_one_minus_alpha_bar

    def x0_and_eps_from_model_output(
        self, prediction_type: str, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whatever the network predicts, the (x_0, eps) pair it implies at x_t."""
        check_prediction_type(prediction_type)
        if prediction_type == "eps":
            return self.x0_from_eps(xt, t, model_output), model_output
        if prediction_type == "x0":
            return model_output, self.eps_from_x0(xt, t, model_output)
        return self.x0_from_v(xt, t, model_output), self.eps_from_v(xt, t, model_output)

    def target(self, prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for a network that predicts `prediction_type`."""
        check_prediction_type(prediction_type)
        if prediction_type == "eps":
            return eps
        if prediction_type == "x0":
            return x0
        return self.v_from_x0_eps(x0, eps, t)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """SNR(t) = alpha_bar_t / (1 - alpha_bar_t), float64 (B,)."""
        t = self._check_t(t).to(self.alphas_cumprod.device)
        alpha_bar = self.alphas_cumprod[t]
        return alpha_bar / (1 - alpha_bar)
