"""LPIPS, the perceptual distance of the autoencoder loss (LDM sec. 3.1; Zhang et al. 2018),
loaded honestly.

LPIPS(x, y) = sum_l mean_{h,w} || w_l * (phi_l(x) - phi_l(y)) ||^2 over unit-normalised
features phi_l of an ImageNet-trained AlexNet (or VGG), with per-channel weights w_l learned
to match human judgements. The `lpips` package ships the w_l, but the backbone phi comes
from torchvision, which downloads it into torch's hub cache on first use. A randomly
initialised backbone gives a number with the same shape and none of the meaning, so:

- `lpips_backbone_path(net)` says where torchvision looks for the backbone;
- `load_lpips(net, allow_missing)` returns the real LPIPS when that file is present;
  when it is not, it raises `LPIPSUnavailable` with the path, or, if the caller allows it,
  warns once with the same message and returns None: the caller then goes on without the
  perceptual term and never reports an LPIPS value.
"""

import warnings
from pathlib import Path

import torch
from torch import nn


class LPIPSUnavailable(RuntimeError):
    """LPIPS's pretrained backbone is not on this machine."""


class LPIPSUnavailableWarning(UserWarning):
    """Training goes on without the perceptual term because LPIPS's backbone is missing."""


def lpips_backbone_path(net: str = "alex") -> Path:
    """The file torchvision's hub cache must hold for LPIPS(net): alexnet-owt-7be5be79.pth or vgg16-397923af.pth."""
    # torchvision is imported here, not at module level: it is slow to import and only LPIPS needs it
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    urls = {"alex": AlexNet_Weights.IMAGENET1K_V1.url, "vgg": VGG16_Weights.IMAGENET1K_V1.url}
    if net not in urls:
        raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / urls[net].rsplit("/", 1)[-1]


def missing_lpips_message(net: str) -> str:
    path = lpips_backbone_path(net)
    return (
        f"LPIPS is unavailable: it needs torchvision's ImageNet-pretrained {net} backbone at {path}, "
        f"and that file is missing (torchvision downloads it on first use; this machine cannot). "
        f"To use LPIPS, copy the file there from a machine with internet access "
        f"(torchvision.models.{'alexnet' if net == 'alex' else 'vgg16'}(weights='IMAGENET1K_V1') downloads it)."
    )


def load_lpips(net: str = "alex", allow_missing: bool = False) -> nn.Module | None:
    """The pretrained LPIPS(net) in eval mode with frozen weights, or None (after one warning)
    when its backbone is missing and `allow_missing` is True."""
    path = lpips_backbone_path(net)
    if not path.is_file():
        message = missing_lpips_message(net)
        if not allow_missing:
            raise LPIPSUnavailable(message + " Set allow_missing_lpips=True to train without the perceptual term.")
        warnings.warn(
            message + " Going on WITHOUT LPIPS: no perceptual loss term, no LPIPS value reported.",
            LPIPSUnavailableWarning,
            stacklevel=2,
        )
        return None
    import lpips  # imports torchvision; see above

    model = lpips.LPIPS(pretrained=True, net=net, verbose=False).eval()
    model.requires_grad_(False)
    return model
