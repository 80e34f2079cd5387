"""Exponential moving average (EMA) of model weights (LDM appendix, as in DDPM and ADM).

Diffusion models are sampled with a running average of the weights seen during training,
not with the last weights:

    theta_ema <- d * theta_ema + (1 - d) * theta

The average smooths out the noise of the last few hundred steps and gives visibly cleaner
samples. With short runs a fixed d = 0.999 would still remember the random initial weights
after 1,000 steps (0.999^1000 = 0.37), so the decay warms up as in TensorFlow's
ExponentialMovingAverage with num_updates:

    d_n = min(decay, (1 + n) / (10 + n))

which averages roughly the last n/10 + 10 steps early on and the last 1/(1 - decay) later.
"""

import torch
from torch import nn


class EMA:
    """A shadow copy of the trainable parameters of `model`, updated after each optimizer step.

    Only parameters with requires_grad are averaged (a frozen autoencoder never changes).
    Call `update(model)` after every step, `copy_to(model)` to load the averaged weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {
            name: param.detach().clone().float() for name, param in model.named_parameters() if param.requires_grad
        }

    def current_decay(self) -> float:
        # d_n = min(decay, (1 + n) / (10 + n))
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for name, param in model.named_parameters():
            if name in self.shadow:
                # theta_ema <- d * theta_ema + (1 - d) * theta
                self.shadow[name].lerp_(param.detach().float(), 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's trainable parameters with the averaged ones."""
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name].to(param.dtype))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)[:5]} (of {len(missing)} parameters)")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            if name in self.shadow:
                self.shadow[name].copy_(value)

    def to(self, device: torch.device | str) -> "EMA":
        self.shadow = {name: value.to(device) for name, value in self.shadow.items()}
        return self
