"""The latent diffusion model: a frozen autoencoder, a U-Net in its latent space, a noise
schedule and a conditioning encoder (Rombach et al., CVPR 2022, sec. 3.2-3.3).

Diffusion runs on latents z = s * E(x), not on pixels; the scale factor s = 1 / std(z)
brings them to unit variance (LDM sec. 4.3.2, App. D.1), or each channel is standardised,
(z[c] - m_c) / std(z[c]) (latent_norm="channel", EDM2; autoencoder/scale_factor.py).
The first stage is any autoencoder of the FirstStage interface (autoencoder/first_stage.py:
KL or VQ, the paper's LDM-KL and LDM-VQ), so this file never asks which one it has. The
U-Net eps_theta is trained with the loss of LDM eq. 2 (unconditional) or eq. 3 (conditional):

    L_LDM = E_{E(x), y, eps ~ N(0, I), t} || eps - eps_theta(z_t, t, tau_theta(y)) ||^2

where tau_theta maps the condition y to what the U-Net reads:
- text: tokens -> a transformer -> context (B, L, d), read by cross-attention (LDM sec. 3.3);
  trained jointly with the U-Net, as the paper's text-to-image model is;
- class labels: an embedding added to the timestep embedding; label `num_classes` is the null class;
- concatenation: a spatial condition (a mask and a masked image, a low-resolution image)
  concatenated to z_t along channels (sec. 4.4-4.5: inpainting, super-resolution).

Classifier-free guidance (Ho & Salimans 2022): during training the condition is replaced
by the null condition (the empty prompt, the null class) with probability p, so the same
network also learns the unconditional model; at sampling time

    eps_hat = eps_theta(z_t, t, null) + w * (eps_theta(z_t, t, y) - eps_theta(z_t, t, null)).

The model can predict eps, x0 or v (Salimans & Ho 2022); the loss and the samplers take
the same `prediction_type`. The autoencoder never trains here; latents are encoded once and
cached (train/trainer.py). Sampling loops live in minildm/pipelines/.
"""

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from minildm.autoencoder import AutoencoderConfig, FirstStage, build_autoencoder
from minildm.checkpoint import CheckpointError, error_summary, load_checkpoint
from minildm.diffusion import NoiseSchedule, ScheduleConfig, diffusion_loss
from minildm.diffusion.flow import (
    FLOW_TIMES,
    TIME_SCALE,
    flow_interpolate,
    flow_matching_loss,
    flow_training_times,
    timesteps_of_flow_times,
)
from minildm.flags import tree_from_dict
from minildm.nn import UNet, UNetConfig
from minildm.text import CLIPTokenizer, TextEncoder, TextEncoderConfig
from minildm.train.ema import EMA

CONDITIONINGS = ("text", "class", "none")


@dataclass
class LDMConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    conditioning: str = "text"  # "text" (cross-attention), "class" (label embedding) or "none"
    text_encoder: TextEncoderConfig | None = field(default_factory=TextEncoderConfig)  # for "text"
    prediction_type: str = "eps"  # what the U-Net predicts: "eps", "x0" or "v" (objective "diffusion")
    objective: str = (
        "diffusion"  # "diffusion" (DDPM's noising) or "flow" (rectified flow: the U-Net predicts a velocity)
    )
    flow_times: str = "logit_normal"  # objective "flow": t ~ "logit_normal" (SD3), "uniform" (Lipman et al.), "mixed"
    # objective "diffusion": "uniform" (t ~ U{0, ..., T-1}) or "flow_times" (t drawn in flow time as the
    # flow_* settings say, then the nearest timestep: training moved to where the flow model learns shape)
    timesteps: str = "uniform"
    flow_time_mean: float = 0.0  # SD3's m: t = sigmoid(n), n ~ N(m, 1); m > 0 trains nearer the noise end
    flow_noise_end: float = 0.0  # the share of training times redrawn from U(flow_noise_end_from, 1)
    flow_noise_end_from: float = 0.9  # that band's start (1: exactly t = 1, pure noise, where sampling starts)
    min_snr_gamma: float | None = None  # Min-SNR loss weighting (Hang et al. 2023); None = plain MSE
    pooled_text: bool = False  # text: the caption's end-token state joins the time embedding (SDXL)
    tokenizer_merges: int = 200  # text: BPE merges learned from the training captions
    image_size: int = 32  # pixels; the latents are image_size / f on a side

    def __post_init__(self):
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.objective not in ("diffusion", "flow"):
            raise ValueError(f"objective must be 'diffusion' or 'flow', got {self.objective!r}")
        if self.flow_times not in FLOW_TIMES:
            raise ValueError(f"flow_times must be one of {FLOW_TIMES}, got {self.flow_times!r}")
        if self.timesteps not in ("uniform", "flow_times"):
            raise ValueError(f"timesteps must be 'uniform' or 'flow_times', got {self.timesteps!r}")
        if not -5.0 <= self.flow_time_mean <= 5.0:
            raise ValueError(f"flow_time_mean must be in [-5, 5] (the logit of t), got {self.flow_time_mean}")
        if not 0.0 <= self.flow_noise_end < 1.0 or not 0.0 <= self.flow_noise_end_from <= 1.0:
            raise ValueError(
                f"flow_noise_end must be a share in [0, 1) and flow_noise_end_from in [0, 1], "
                f"got {self.flow_noise_end} and {self.flow_noise_end_from}"
            )
        if self.prediction_type not in ("eps", "x0", "v"):
            raise ValueError(f"prediction_type must be 'eps', 'x0' or 'v', got {self.prediction_type!r}")
        if self.conditioning == "text":
            if self.text_encoder is None:
                raise ValueError("conditioning='text' needs a text_encoder config, got None")
            if self.unet.context_dim != self.text_encoder.width:
                raise ValueError(
                    f"the U-Net's context_dim must equal the text encoder's width, "
                    f"got {self.unet.context_dim} and {self.text_encoder.width}"
                )
            pooled_dim = self.text_encoder.width if self.pooled_text else None
            if self.unet.pooled_dim != pooled_dim:
                raise ValueError(
                    f"with pooled_text={self.pooled_text} the U-Net's pooled_dim must be {pooled_dim} "
                    f"(the text encoder's width, or None), got {self.unet.pooled_dim}"
                )
        elif self.unet.pooled_dim is not None or self.pooled_text:
            raise ValueError(
                f"pooled_text and unet.pooled_dim are for text models, got conditioning={self.conditioning!r}"
            )
        if self.min_snr_gamma is not None and not (math.isfinite(self.min_snr_gamma) and self.min_snr_gamma > 0):
            raise ValueError(f"min_snr_gamma must be None or a finite number > 0, got {self.min_snr_gamma}")
        if self.tokenizer_merges < 0 or self.image_size < 1:
            raise ValueError(
                f"need tokenizer_merges >= 0 and image_size >= 1, got {self.tokenizer_merges}, {self.image_size}"
            )
        if self.objective == "diffusion" and self.schedule.zero_terminal_snr and self.prediction_type == "eps":
            raise ValueError(
                "a zero-terminal-SNR schedule needs prediction_type 'v' or 'x0': at SNR = 0 an eps "
                "prediction says nothing about x0 (Lin et al. 2023, sec. 3.2)"
            )
        if self.conditioning == "class" and not self.unet.num_classes:
            raise ValueError("conditioning='class' needs unet.num_classes >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> "LDMConfig":
        """Rebuild from dataclasses.asdict(config) (what checkpoints store)."""
        return tree_from_dict(cls, d)


@dataclass
class LDMBatch:
    """One training minibatch: scaled latents z0 (B, c, h, w) and their condition."""

    latents: torch.Tensor
    tokens: torch.Tensor | None = None  # (B, L) token ids, for text conditioning
    class_labels: torch.Tensor | None = None  # (B,) class ids, for class conditioning
    concat: torch.Tensor | None = None  # (B, c_concat, h, w), concatenated to z_t


@dataclass
class Condition:
    """What the U-Net reads from the condition: a context (B, L, d) or class labels (B,)."""

    context: torch.Tensor | None = None
    class_labels: torch.Tensor | None = None
    pooled: torch.Tensor | None = None  # (B, d), the text at its end token, when the U-Net takes it

    @staticmethod
    def cat(conditions: list["Condition"]) -> "Condition":
        def join(values):
            return None if values[0] is None else torch.cat(values)

        return Condition(
            join([c.context for c in conditions]),
            join([c.class_labels for c in conditions]),
            join([c.pooled for c in conditions]),
        )


class LatentDiffusion(nn.Module):
    """autoencoder (frozen) + unet + schedule + conditioning (text encoder or class labels)."""

    def __init__(self, config: LDMConfig, autoencoder: FirstStage, tokenizer: CLIPTokenizer | None = None):
        super().__init__()
        if config.unet.in_channels != autoencoder.config.latent_channels:
            raise ValueError(
                f"the U-Net's in_channels must equal the autoencoder's latent_channels, "
                f"got {config.unet.in_channels} and {autoencoder.config.latent_channels}"
            )
        if config.unet.out_channels != autoencoder.config.latent_channels:
            raise ValueError(
                f"the U-Net's out_channels must equal the autoencoder's latent_channels (it predicts a latent), "
                f"got {config.unet.out_channels} and {autoencoder.config.latent_channels}"
            )
        if config.conditioning == "text" and tokenizer is None:
            raise ValueError("conditioning='text' needs a tokenizer, got None")
        self.config = config
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.unet = UNet(config.unet)
        self.schedule = NoiseSchedule(config.schedule)
        self.prediction_type = config.prediction_type
        self.num_classes = config.unet.num_classes
        self.tokenizer = tokenizer if config.conditioning == "text" else None
        self.text_encoder = TextEncoder(config.text_encoder) if config.conditioning == "text" else None

    def train(self, mode: bool = True) -> "LatentDiffusion":
        super().train(mode)
        self.autoencoder.eval()  # frozen: no dropout, no statistics updates
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def context_length(self) -> int:
        return self.config.text_encoder.context_length

    # ---- the autoencoder: pixels <-> scaled latents --------------------------------------

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [-1, 1] -> z0 = s * E(x) (B, c, H/f, W/f), deterministic (KL: the posterior mean)."""
        return self.autoencoder.encode_latents(images)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """z0 (B, c, h, w) -> x = D(z0 / s) (B, 3, H, W), clamped to [-1, 1]."""
        return self.autoencoder.decode_latents(latents).clamp(-1, 1)

    # ---- conditioning: tau_theta(y) ------------------------------------------------------

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> token ids (B, L) on the model's device; a ValueError if one is too long."""
        if self.tokenizer is None:
            raise ValueError(f"this model is conditioned on {self.config.conditioning!r}, not text: give class labels")
        return self.tokenizer(prompts, context_length=self.context_length, truncate=False).to(self.device)

    def encode_tokens(self, tokens: torch.Tensor) -> Condition:
        """Token ids (B, L) -> Condition(context = tau_theta(y) (B, L, d), and the pooled
        vector (B, d) if the U-Net takes one)."""
        hidden, pooled = self.text_encoder(tokens)  # (B, L, d), (B, d)
        return Condition(context=hidden, pooled=pooled if self.config.unet.pooled_dim is not None else None)

    def encode_condition(self, prompts: list[str] | None = None, class_labels: torch.Tensor | None = None) -> Condition:
        """Prompts (text models) or class labels (class models) -> what the U-Net reads."""
        if self.config.conditioning == "text":
            if prompts is None:
                raise ValueError("this model is text-conditioned: give prompts (a list of strings)")
            return self.encode_tokens(self.tokenize(list(prompts)))
        if self.config.conditioning == "class":
            if class_labels is None:
                raise ValueError(f"this model is class-conditioned: give class_labels in [0, {self.num_classes})")
            return Condition(class_labels=torch.as_tensor(class_labels, device=self.device).long())
        return Condition()

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        """Token ids (B, L) of the empty prompt "", the null condition of a text model."""
        return self.tokenize([""]).expand(batch_size, -1)

    def null_condition(self, batch_size: int) -> Condition:
        """The condition that stands for "no condition" (CFG's unconditional branch)."""
        if self.config.conditioning == "text":
            return self.encode_tokens(self.null_tokens(batch_size))
        if self.config.conditioning == "class":
            return Condition(class_labels=torch.full((batch_size,), self.num_classes, device=self.device))
        return Condition()

    # ---- the denoiser and its loss -------------------------------------------------------

    def predict(
        self, z_t: torch.Tensor, t: torch.Tensor, cond: Condition, x_concat: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The U-Net's prediction (eps, x0 or v, see prediction_type) for z_t (B, c, h, w)."""
        return self.unet(
            z_t, t, context=cond.context, class_labels=cond.class_labels, x_concat=x_concat, pooled=cond.pooled
        )

    def flow_times(self, batch_size: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """Training times (B,) in flow time, as the flow_* settings say (diffusion/flow.py)."""
        config = self.config
        return flow_training_times(
            config.flow_times, batch_size, generator, device=device, mean=config.flow_time_mean,
            noise_end=config.flow_noise_end, noise_end_from=config.flow_noise_end_from,
        )  # fmt: skip

    def training_loss(
        self, batch: LDMBatch, cond_drop_prob: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The loss of LDM eq. 3 (eq. 2 without a condition) on one minibatch of cached latents.

        The condition is dropped with probability cond_drop_prob, for classifier-free guidance.
        """
        z0 = batch.latents
        B = z0.shape[0]
        device = z0.device
        if self.config.objective == "flow":
            # t ~ logit-normal or uniform on (0, 1), eps ~ N(0, I); z_t = (1 - t) z0 + t eps (diffusion/flow.py)
            t_flow = self.flow_times(B, generator, device)
            noise = torch.randn(z0.shape, generator=generator, device=device, dtype=z0.dtype)
            z_t, t = flow_interpolate(z0, noise, t_flow), t_flow * TIME_SCALE
        else:
            if self.config.timesteps == "flow_times":  # t drawn in flow time, rounded to the nearest timestep
                t = timesteps_of_flow_times(self.flow_times(B, generator, device), self.schedule.alphas_cumprod)
            else:  # t ~ U{0, ..., T-1}
                t = torch.randint(0, self.schedule.num_timesteps, (B,), generator=generator, device=device)
            # eps ~ N(0, I)
            noise = torch.randn(z0.shape, generator=generator, device=device, dtype=z0.dtype)
            # z_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps
            z_t = self.schedule.q_sample(z0, t, noise)
        # drop the condition with probability p: the same network learns p(z) for CFG
        drop = torch.rand(B, generator=generator, device=device) < cond_drop_prob
        if self.config.conditioning == "text":
            tokens = torch.where(drop[:, None], self.null_tokens(B), batch.tokens)
            cond = self.encode_tokens(tokens)
        elif self.config.conditioning == "class":
            labels = torch.where(drop, torch.full_like(batch.class_labels, self.num_classes), batch.class_labels)
            cond = Condition(class_labels=labels)
        else:
            cond = Condition()
        model_output = self.predict(z_t, t, cond, x_concat=batch.concat)
        if self.config.objective == "flow":
            return flow_matching_loss(model_output.float(), z0, noise)  # || v_theta - (eps - z0) ||^2
        return diffusion_loss(
            self.schedule, model_output.float(), z0, noise, t, self.prediction_type, self.config.min_snr_gamma
        )

    def forward(
        self, batch: LDMBatch, cond_drop_prob: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The training loss (what DistributedDataParallel calls)."""
        return self.training_loss(batch, cond_drop_prob, generator)

    # ---- shapes and checkpoints ------------------------------------------------------------

    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of the latents for the autoencoder's training image size."""
        ae = self.autoencoder.config
        side = self.config.image_size // ae.downsampling_factor
        return (ae.latent_channels, side, side)

    def checkpoint_state(self) -> dict:
        """Everything needed to rebuild this model (configs, weights, tokenizer), as plain data."""
        return {
            "kind": "minildm.LatentDiffusion",
            "config": asdict(self.config),
            "autoencoder_config": asdict(self.autoencoder.config),
            "tokenizer": None if self.tokenizer is None else {"merges": [list(m) for m in self.tokenizer.merges]},
            "model": self.state_dict(),
        }


def load_ldm(path, use_ema: bool = True, device: str = "cpu") -> LatentDiffusion:
    """Rebuild a LatentDiffusion from a checkpoint written by train_ldm (EMA weights by default)."""
    state = load_checkpoint(path, required_keys=("kind", "config", "autoencoder_config", "model"))
    if state["kind"] != "minildm.LatentDiffusion":
        raise CheckpointError(f"{path} holds a {state['kind']!r}, expected a latent diffusion model (train-ldm)")
    try:
        config = LDMConfig.from_dict(state["config"])
        autoencoder = build_autoencoder(tree_from_dict(AutoencoderConfig, state["autoencoder_config"]))
        tokenizer = None if state["tokenizer"] is None else CLIPTokenizer.from_merges(state["tokenizer"]["merges"])
        ldm = LatentDiffusion(config, autoencoder, tokenizer)
        ldm.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not match this version of minildm: {error_summary(err)}") from err
    if use_ema and "ema" in state:
        shadow = state["ema"].get("shadow") if isinstance(state["ema"], dict) else None
        if isinstance(shadow, dict):  # what training froze (a pretrained text encoder) has no shadow: freeze it again
            for name, param in ldm.named_parameters():
                param.requires_grad_(name in shadow)
        ema = EMA(ldm)
        try:
            ema.load_state_dict(state["ema"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: {error_summary(err)}") from err
        ema.copy_to(ldm)
    return ldm.to(device).eval()
