"""Exponential moving average (EMA) of model weights (as in DDPM, Ho et al. 2020, sec. 4, and ADM).

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

from minildm.checkpoint import CheckpointError


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
        """Restore from `state_dict()`; strict: the shadows must have exactly the model's trainable
        parameter names and shapes (a wrong shape would otherwise broadcast silently). An EMA state
        comes from a checkpoint, so every mismatch is a one-line CheckpointError."""
        if not isinstance(state, dict) or not {"decay", "num_updates", "shadow"} <= set(state):
            got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"an EMA state is a dict with 'decay', 'num_updates' and 'shadow', got {got}")
        decay, num_updates, shadow = state["decay"], state["num_updates"], state["shadow"]
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise CheckpointError(f"EMA state: decay must be a number in [0, 1), got {decay!r}")
        if isinstance(num_updates, bool) or not isinstance(num_updates, int) or num_updates < 0:
            raise CheckpointError(f"EMA state: num_updates must be an int >= 0, got {num_updates!r}")
        if not isinstance(shadow, dict) or not all(isinstance(v, torch.Tensor) for v in shadow.values()):
            raise CheckpointError(
                f"EMA state: shadow must be a dict of parameter name -> tensor, got {type(shadow).__name__}"
            )
        problems = [f"missing {name}" for name in self.shadow if name not in shadow]
        problems += [f"unexpected {name}" for name in shadow if name not in self.shadow]
        problems += [
            f"{name} is {tuple(value.shape)}, the model's is {tuple(self.shadow[name].shape)}"
            for name, value in shadow.items()
            if name in self.shadow and value.shape != self.shadow[name].shape
        ]
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise CheckpointError(f"EMA state does not match the model: {'; '.join(problems[:3])}{more}")
        self.decay, self.num_updates = float(decay), num_updates
        for name, value in shadow.items():
            self.shadow[name].copy_(value)

    def to(self, device: torch.device | str) -> "EMA":
        self.shadow = {name: value.to(device) for name, value in self.shadow.items()}
        return self
