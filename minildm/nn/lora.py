"""LoRA: low-rank adaptation of a frozen network (Hu et al., "LoRA: Low-Rank Adaptation of Large
Language Models", ICLR 2022, sec. 4.1, eq. 3).

A frozen weight W (out, in) is fine-tuned by adding a product of two thin matrices:

    h = W x + (alpha / r) B A x,      A: (r, in),  B: (out, r),  r << min(in, out)

A starts random (Kaiming-uniform, as peft) and B at zero, so training starts from the
pre-trained model exactly; only A and B (r (in + out) numbers per layer) are trained and saved.
alpha / r is the scale: with alpha fixed, changing r does not change the update's size much
(Hu et al. sec. 4.1).

Merging folds the update into the weight for inference at no extra cost:
    merge:   W <- W + (alpha / r) B A
    unmerge: W <- the weight before merging (kept, so that unmerging gives it back bit for bit)

minildm applies it, as diffusers' and peft's Stable Diffusion LoRAs do, to the projections of every
attention in the U-Net (W_Q, W_K, W_V, W_O of self- and cross-attention). `LoRALinear` is an
nn.Linear, so the base weights keep their names (`q_proj.weight`) and a U-Net checkpoint still
loads; the adapter adds `q_proj.lora_A.weight` and `q_proj.lora_B.weight` (peft's names).
Files in diffusers' and peft's format: minildm/convert/diffusers_lora.py.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from minildm.nn.attention import MultiHeadAttention

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoRALinear(nn.Linear):
    """y = W x + b + (alpha / rank) B A x; W and b frozen, A (rank, in) and B (out, rank) trained."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        nn.Module.__init__(self)  # not nn.Linear's: it would make (and draw) weights of its own
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias  # the very same (frozen) parameters
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, **factory)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the adapted layer starts as the base layer
        self.weight_before_merge: torch.Tensor | None = None

    @property
    def merged(self) -> bool:
        return self.weight_before_merge is not None

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, shape (out, in): the update LoRA adds to W."""
        return self.scale * (self.lora_B.weight @ self.lora_A.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)  # W already holds W + (alpha / r) B A
        # h = W x + b + (alpha / r) B (A x)
        return F.linear(x, self.weight, self.bias) + self.scale * self.lora_B(self.lora_A(x))

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A: the same function, one matrix product fewer."""
        if self.merged:
            raise ValueError("this LoRA layer is already merged")
        self.weight_before_merge = self.weight.detach().clone()
        self.weight += self.delta_weight()

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- the weight before merge(), exactly."""
        if not self.merged:
            raise ValueError("this LoRA layer is not merged")
        self.weight.copy_(self.weight_before_merge)
        self.weight_before_merge = None


def add_lora_to(model: nn.Module, name: str, rank: int, alpha: float) -> LoRALinear:
    """Replace the nn.Linear `name` (a dotted path in `model`) by a LoRALinear around it."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    base = getattr(parent, child)
    if type(base) is not nn.Linear:
        raise TypeError(f"LoRA adapts an nn.Linear, {name} is a {type(base).__name__}")
    lora = LoRALinear(base, rank, alpha)
    setattr(parent, child, lora)
    return lora


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, projections=PROJECTIONS) -> list[str]:
    """Adapt the given projections of every attention in `model` (default: W_Q, W_K, W_V, W_O) with
    rank-`rank` LoRA, alpha = rank unless given (scale 1), and freeze every other parameter, as peft does.
    Returns the names of the adapted layers."""
    for projection in projections:
        if projection not in PROJECTIONS:
            raise ValueError(f"projections must be among {PROJECTIONS}, got {projection!r}")
    names = [
        f"{name}.{projection}"
        for name, module in model.named_modules()
        if isinstance(module, MultiHeadAttention)
        for projection in projections
    ]
    if not names:
        raise ValueError(f"{type(model).__name__} has no attention to adapt")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in names:
        add_lora_to(model, name, rank, rank if alpha is None else alpha)
    return names


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter: {layer}.lora_A.weight (r, in) and {layer}.lora_B.weight (out, r) of every LoRA layer."""
    return {name: tensor for name, tensor in model.state_dict().items() if ".lora_A." in name or ".lora_B." in name}


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its weight (W <- W + (alpha / r) B A)."""
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Give every merged LoRA layer its weight back, exactly."""
    for layer in lora_layers(model).values():
        layer.unmerge()
