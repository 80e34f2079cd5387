"""Drawing coloured shapes with numpy/torch masks on a pixel grid, antialiased.

Each shape is a signed distance sd(x, y) in pixels (negative inside, positive outside). The
coverage of a pixel is clamp(0.5 - sd, 0, 1): 1 well inside, 0 well outside, and a linear
ramp one pixel wide across the edge, which is a cheap box-filter antialiasing. A whole batch
is drawn at once by broadcasting over (B, H, W), so 50,000 images take seconds, not minutes.

Sizes are radii r as a fraction of the image side, so the same dataset exists at 32x32,
64x64 or any other resolution. Each shape's extent is scaled so that the four shapes of one
size look about equally big (a square of half-side 0.85 r has about the area of a circle of
radius r).

Two more shapes, a five-pointed star and a heart (ids 4 and 5), are opt-in: the standard
dataset never draws them (shapes.py), and adding them changes no pixel of the four others.
They are the "new concept" that fine-tuning teaches the demo model (train/finetune.py). Their
signed distances are Inigo Quilez's exact 2D SDFs (sdStar5, sdHeart, iquilezles.org/articles/
distfunctions2d), with y pointing down the image.
"""

import math

import torch

# star: outer radius 1.3 r, inner radius 0.5 of it; heart: iq's unit heart scaled by 1.6 r
STAR_RADIUS, STAR_INNER = 1.3, 0.5
HEART_SCALE = 1.6
# iq's unit heart: lobes of radius sqrt(2) / 4 at (+-0.25, 0.75), tip at (0, 0) (y up)
HEART_HALF_WIDTH = 0.25 + math.sqrt(2) / 4
HEART_HALF_HEIGHT = (0.75 + math.sqrt(2) / 4) / 2

# half width and half height of each shape's bounding box, in units of the radius r
# (circle, square, triangle, diamond, star, heart); the triangle has circumradius 1.2 r, and
# it and the star (whose top point is higher than its lower points are low) are centred on their box
SHAPE_EXTENTS = torch.tensor(
    [
        [1.0, 1.0],
        [0.85, 0.85],
        [1.2 * math.sqrt(3) / 2, 0.9],
        [1.05, 1.05],
        [STAR_RADIUS * math.sin(math.radians(72)), STAR_RADIUS * (1 + math.cos(math.radians(36))) / 2],
        [HEART_SCALE * HEART_HALF_WIDTH, HEART_SCALE * HEART_HALF_HEIGHT],
    ]
)
TRIANGLE_CIRCUMRADIUS = 1.2


def signed_distance(shape_ids: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, size: int) -> torch.Tensor:
    """Signed distance in pixels to each image's shape: shape_ids (B,), centres (B, 2) as (x, y)
    in pixels, radii (B,) in pixels -> (B, H, W). Exact near the edges, which is all that
    antialiasing needs."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    dx = grid.view(1, 1, size) - centres[:, 0].view(-1, 1, 1)  # (B, 1, W)
    dy = grid.view(1, size, 1) - centres[:, 1].view(-1, 1, 1)  # (B, H, 1)
    r = radii.view(-1, 1, 1)
    # circle: |p - c| - r
    circle = torch.sqrt(dx**2 + dy**2) - r
    # axis-aligned square of half-side h: max(|dx|, |dy|) - h
    square = torch.maximum(dx.abs(), dy.abs()) - SHAPE_EXTENTS[1, 0] * r
    # diamond (a square turned 45 degrees) of half-diagonal d: (|dx| + |dy| - d) / sqrt(2)
    diamond = (dx.abs() + dy.abs() - SHAPE_EXTENTS[3, 0] * r) / math.sqrt(2)
    # upward triangle of circumradius R: intersection of three half-planes at distance R/2
    # (the inradius) from its centre, which sits R/4 below the centre of its bounding box
    big_r = TRIANGLE_CIRCUMRADIUS * r
    dy_tri = dy - big_r / 4
    edges = torch.maximum(
        dy_tri, torch.maximum(0.5 * math.sqrt(3) * dx - 0.5 * dy_tri, -0.5 * math.sqrt(3) * dx - 0.5 * dy_tri)
    )
    triangle = edges - big_r / 2
    star = star_distance(dx, dy, r)
    heart = heart_distance(dx, dy, r)
    all_shapes = torch.stack(torch.broadcast_tensors(circle, square, triangle, diamond, star, heart), dim=1)
    # (B, 6, H, W)
    index = shape_ids.view(-1, 1, 1, 1).expand(-1, 1, size, size)
    return all_shapes.gather(1, index).squeeze(1)  # (B, H, W)


def star_distance(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """A five-pointed star pointing up, outer radius R = STAR_RADIUS r, centred on its bounding
    box: dx (B, 1, W), dy (B, H, 1), r (B, 1, 1) in pixels -> (B, H, W). iq's sdStar5."""
    big_r = STAR_RADIUS * r
    # the box spans R above the star's centre and R cos 36 below it: move the centre to the box's
    px = dx.abs().expand(-1, dy.shape[1], -1)  # (B, H, W)
    py = (-(dy - big_r * (1 - math.cos(math.radians(36))) / 2)).expand_as(px)  # y up
    k1x, k1y = math.cos(math.radians(36)), -math.sin(math.radians(36))
    # fold the plane twice, p -= 2 max(k . p, 0) k, so that every point lands in one tenth of the star
    for kx, ky in ((k1x, k1y), (-k1x, k1y)):
        fold = 2 * (kx * px + ky * py).clamp(min=0.0)
        px, py = px - fold * kx, py - fold * ky
    px, py = px.abs(), py - big_r
    # the edge from the tip (0, R) towards the inner corner: ba = rf (-k1y, k1x) - (0, 1), scaled by R
    bax, bay = STAR_INNER * -k1y, STAR_INNER * k1x - 1
    # h = clamp(p . ba / |ba|^2, 0, R), the closest point on the edge; sd = |p - h ba| sign(p x ba)
    h = ((px * bax + py * bay) / (bax**2 + bay**2)).clamp(min=0.0)
    h = torch.minimum(h, big_r.expand_as(h))
    return torch.sqrt((px - h * bax) ** 2 + (py - h * bay) ** 2) * torch.sign(py * bax - px * bay)


def heart_distance(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """A heart, iq's unit heart scaled by s = HEART_SCALE r and centred on its bounding box:
    dx (B, 1, W), dy (B, H, 1), r (B, 1, 1) in pixels -> (B, H, W). sd = s sdHeart(p / s)."""
    s = HEART_SCALE * r
    px = (dx.abs() / s).expand(-1, dy.shape[1], -1)  # (B, H, W), mirrored: the heart is symmetric
    py = (-dy / s + HEART_HALF_HEIGHT).expand_as(px)  # y up, the tip at y = 0
    # above the line x + y = 1: the distance to the lobe, a circle at (0.25, 0.75) of radius sqrt(2) / 4
    lobe = torch.sqrt((px - 0.25) ** 2 + (py - 0.75) ** 2) - math.sqrt(2) / 4
    # below it: the nearer of the point (0, 1) and the segment from the tip along x = y
    along = 0.5 * (px + py).clamp(min=0.0)
    point = (px**2 + (py - 1.0) ** 2).minimum((px - along) ** 2 + (py - along) ** 2)
    body = torch.sqrt(point) * torch.sign(px - py)
    return s * torch.where(px + py > 1.0, lobe, body)


def coverage(shape_ids: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased coverage in [0, 1], (B, H, W): clamp(0.5 - sd, 0, 1)."""
    return (0.5 - signed_distance(shape_ids, centres, radii, size)).clamp(0.0, 1.0)


def hsv_to_rgb(hue_degrees: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB in [0, 1], (B,) each -> (B, 3).
    f(n) = v - v s max(0, min(k, 4 - k, 1)), k = (n + h / 60) mod 6, with n = 5, 3, 1 for R, G, B."""
    n = torch.tensor([5.0, 3.0, 1.0])
    k = (n.view(1, 3) + hue_degrees.view(-1, 1) / 60.0) % 6.0  # (B, 3)
    ramp = torch.minimum(torch.minimum(k, 4.0 - k), torch.ones_like(k)).clamp(min=0.0)
    return value.view(-1, 1) - value.view(-1, 1) * saturation.view(-1, 1) * ramp


def textured_background(
    colours: torch.Tensor,
    low_amplitude: torch.Tensor,
    grain_amplitude: torch.Tensor,
    noise: tuple[torch.Tensor, torch.Tensor],
    size: int,
) -> torch.Tensor:
    """A plain background with mild texture, (B, 3, H, W) in [0, 1]: colour + low-frequency
    blotches (a 4x4 noise grid upsampled bilinearly) + fine grain, each with its own amplitude.
    `noise` = (low (B, 1, 4, 4), grain (B, 1, H, W)), standard normal."""
    low, grain = noise
    blotches = torch.nn.functional.interpolate(
        low, size=(size, size), mode="bilinear", align_corners=False
    )  # (B, 1, H, W)
    texture = low_amplitude.view(-1, 1, 1, 1) * blotches + grain_amplitude.view(-1, 1, 1, 1) * grain
    return (colours.view(-1, 3, 1, 1) + texture).clamp(0.0, 1.0)
