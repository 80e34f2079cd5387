"""Inpainting masks: random training masks, checks, and the mask at latent resolution.

Convention (as in Stable Diffusion's inpainting pipeline): a mask is (B, 1, H, W) with values
in {0, 1}, 1 where the image is to be filled in (the hole), 0 where it is known and kept.

Training masks follow the spirit of Stable Diffusion's inpainting models (SD 2 draws LaMa's
"wide" boxes and brush strokes, Suvorov et al. 2022; SD 1.5 masks the whole image 25% of the
time): a mix of random boxes, thick brush strokes, the objects of the image (so the model learns
to fill in whole objects), and with a small probability the whole image (so the same model can
also generate from scratch).
Object masks are grown by a couple of pixels, so that no antialiased edge of the object is left
for the model to copy its colour from.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASK_KINDS = ("box", "strokes", "object", "full")


@dataclass
class MaskConfig:
    box_prob: float = 0.35
    strokes_prob: float = 0.35
    object_prob: float = 0.2  # needs object masks; without them its share goes to boxes and strokes
    full_prob: float = 0.1
    object_dilation: int = 2  # grow object masks by this many pixels, so no antialiased edge is left to copy
    box_size: tuple[float, float] = (0.25, 0.6)  # box sides, as fractions of the image side
    num_strokes: int = 2  # brush strokes per mask, each a polyline of `stroke_vertices` points
    stroke_vertices: int = 4
    stroke_width: tuple[float, float] = (0.08, 0.2)  # as fractions of the image side

    def __post_init__(self) -> None:
        probs = (self.box_prob, self.strokes_prob, self.object_prob, self.full_prob)
        if min(probs) < 0 or sum(probs) <= 0:
            raise ValueError(f"mask kind probabilities must be >= 0 and not all 0, got {probs}")
        for name in ("box_size", "stroke_width"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, got {(low, high)}")
        if self.object_dilation < 0:
            raise ValueError(f"object_dilation must be >= 0 pixels, got {self.object_dilation}")
        if self.num_strokes < 1 or self.stroke_vertices < 2:
            raise ValueError(
                f"need num_strokes >= 1 and stroke_vertices >= 2, got {self.num_strokes} and {self.stroke_vertices}"
            )


def check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The mask as float (B, 1, H, W) after checking it fits images (B, 3, H, W) and is binary."""
    B, _, H, W = images.shape
    if mask.shape != (B, 1, H, W):
        raise ValueError(f"mask must have shape ({B}, 1, {H}, {W}) to match the images, got {tuple(mask.shape)}")
    mask = mask.float()
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask values must be 0 (keep) or 1 (fill in)")
    return mask


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, H/f, W/f): a latent cell is to be filled in if any of its f x f
    pixels is, so the cells marked known hold only known pixels."""
    return F.max_pool2d(mask, kernel_size=factor)


def _boxes(B: int, size: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """Axis-aligned boxes (B, H, W) of random sides in [low, high] * size at random places."""
    device = generator.device
    sides = (low + (high - low) * torch.rand(B, 2, generator=generator, device=device)) * size  # (B, 2) as (h, w)
    corners = torch.rand(B, 2, generator=generator, device=device) * (size - sides)  # (B, 2) as (top, left)
    grid = torch.arange(size, device=device, dtype=torch.float32) + 0.5  # pixel centres
    rows = (grid >= corners[:, :1]) & (grid < corners[:, :1] + sides[:, :1])  # (B, H)
    cols = (grid >= corners[:, 1:]) & (grid < corners[:, 1:] + sides[:, 1:])  # (B, W)
    return (rows[:, :, None] & cols[:, None, :]).float()


def _strokes(B: int, size: int, config: MaskConfig, generator: torch.Generator) -> torch.Tensor:
    """Thick polylines through random points (B, H, W): pixels within width/2 of a segment."""
    device = generator.device
    S, V = config.num_strokes, config.stroke_vertices
    points = torch.rand(B, S, V, 2, generator=generator, device=device) * size  # (B, S, V, 2) as (x, y)
    low, high = config.stroke_width
    half_width = (low + (high - low) * torch.rand(B, S, 1, generator=generator, device=device)) * size / 2
    start, end = points[:, :, :-1], points[:, :, 1:]  # (B, S, V-1, 2)
    grid = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    pixels = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), dim=-1).view(1, 1, 1, size * size, 2)
    direction = (end - start).unsqueeze(3)  # (B, S, V-1, 1, 2)
    offset = pixels - start.unsqueeze(3)  # (B, S, V-1, H*W, 2)
    # the closest point of segment a + u (b - a), u = clamp(<p - a, b - a> / |b - a|^2, 0, 1)
    u = ((offset * direction).sum(-1) / (direction**2).sum(-1).clamp(min=1e-6)).clamp(0, 1)  # (B, S, V-1, H*W)
    distance = (offset - u.unsqueeze(-1) * direction).norm(dim=-1)
    inside = (distance <= half_width.unsqueeze(-1)).any(dim=2).any(dim=1)  # (B, H*W)
    return inside.view(B, size, size).float()


def random_masks(
    batch_size: int,
    size: int,
    config: MaskConfig,
    generator: torch.Generator,
    object_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Training masks (B, 1, size, size) in {0, 1}, on generator.device; each sample's kind is
    drawn with the config's probabilities. object_masks (B, 1, size, size): the images' objects."""
    device = generator.device
    probs = torch.tensor([config.box_prob, config.strokes_prob, config.object_prob, config.full_prob])
    if object_masks is None:
        probs[2] = 0.0
        object_masks = torch.zeros(batch_size, 1, size, size, device=device)
    elif object_masks.shape != (batch_size, 1, size, size):
        raise ValueError(
            f"object_masks must have shape ({batch_size}, 1, {size}, {size}), got {tuple(object_masks.shape)}"
        )
    else:
        d = config.object_dilation
        # grow by d pixels: a (2d + 1) x (2d + 1) max filter
        object_masks = F.max_pool2d((object_masks > 0.5).float(), kernel_size=2 * d + 1, stride=1, padding=d)
    kind = torch.multinomial(probs.to(device), batch_size, replacement=True, generator=generator)  # (B,)
    masks = torch.stack(
        [
            _boxes(batch_size, size, *config.box_size, generator),
            _strokes(batch_size, size, config, generator),
            object_masks[:, 0],
            torch.ones(batch_size, size, size, device=device),
        ],
        dim=1,
    )  # (B, 4, H, W): every kind for every sample, then pick one per sample
    return masks[torch.arange(batch_size, device=device), kind].unsqueeze(1)
