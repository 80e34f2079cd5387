"""Training an IP-Adapter on a frozen text-to-image LDM (Ye et al. 2023, sec. 3.2-3.3).

The image prompt is a reference image's CLIP embedding c_i = W_i ViT(x) (minildm/clip/), kept
frozen. It becomes N tokens by `ImageProjection`, and every cross-attention of the frozen U-Net
reads them through its own new W'_K, W'_V (`DecoupledCrossAttention`, minildm/nn/ip_adapter.py).
Only those train, on the LDM's own loss (LDM eq. 3) with both conditions:

    L = E_{z0, c_t, c_i, eps, t} || target - f_theta(z_t, t, [c_t; c_i'(c_i)]) ||^2

where target is eps, x0 or v as the LDM predicts. The reference image is the training image
itself, so the adapter learns to put into the sample what the CLIP embedding says about it.
For classifier-free guidance (sec. 3.3) the text, the image, or both are dropped (the paper: each
with probability 0.05; here the text alone with 0.5, see IPAdapterTrainConfig): a dropped text is
the empty prompt, a dropped image a zero embedding c_i = 0, which is also the unconditional image
prompt at sampling time (minildm/clip/image_prompt.py).

Everything the frozen parts compute is computed once: the latents z0 = s E(x), the CLIP image
embeddings, and the text encoder's context for every caption (and for the empty prompt).
"""

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minildm.checkpoint import CheckpointError, error_summary, load_checkpoint, save_checkpoint
from minildm.clip.model import CLIP
from minildm.diffusion import diffusion_loss
from minildm.flags import tree_from_dict
from minildm.ldm import Condition, LatentDiffusion
from minildm.nn.ip_adapter import ImageProjection, add_ip_adapter
from minildm.train.lr import learning_rate
from minildm.train.runs import show_progress
from minildm.train.stages import cache_latents

KIND = "minildm.IPAdapter"


@dataclass
class IPAdapterTrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    num_tokens: int = 4  # N image tokens
    # the text alone dropped: 0.05 in the paper (sec. 3.3), whose captions say far less than its images;
    # a shapes caption says everything the image shows, so with the text present the image tokens have
    # nothing to add and learn little (measured: docs/EXPERIMENTS.md); half the steps go without it
    drop_text_prob: float = 0.5
    drop_image_prob: float = 0.05  # the image alone dropped (sec. 3.3)
    drop_both_prob: float = 0.05  # both dropped (sec. 3.3)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "num_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0 and warmup_steps >= 0, "
                f"got {self.lr}, {self.weight_decay}, {self.warmup_steps}"
            )
        probs = (self.drop_text_prob, self.drop_image_prob, self.drop_both_prob)
        if min(probs) < 0 or sum(probs) > 1:
            raise ValueError(f"the drop probabilities must be >= 0 and sum to <= 1, got {probs}")


@torch.no_grad()
def embed_images(clip: CLIP, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """c_i (N, embed_dim) = W_i ViT(x) for images (N, 3, H, W) in [-1, 1], by the frozen CLIP (not normalised)."""
    return torch.cat([clip.encode_image(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def text_conditions(ldm: LatentDiffusion, prompts: list[str], batch_size: int = 500) -> Condition:
    """The frozen text encoder's Condition (context (N, L, d), pooled (N, d) or None) for each prompt."""
    return Condition.cat(
        [ldm.encode_condition(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
    )


def adapter_parameters(ldm: LatentDiffusion) -> dict[str, torch.nn.Parameter]:
    """The W'_K, W'_V of every DecoupledCrossAttention in the U-Net, by name."""
    return {name: p for name, p in ldm.unet.named_parameters() if name.endswith(("k_ip.weight", "v_ip.weight"))}


def condition_drops(r: torch.Tensor, config: IPAdapterTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop_text, drop_image), bool (B,), from one draw r ~ U[0, 1) (B,) per sample: r in [0, p_t)
    drops the text, [p_t, p_t + p_i) the image, [p_t + p_i, p_t + p_i + p_b) both."""
    text_only = r < config.drop_text_prob
    image_only = (r >= config.drop_text_prob) & (r < config.drop_text_prob + config.drop_image_prob)
    both = (r >= config.drop_text_prob + config.drop_image_prob) & (
        r < config.drop_text_prob + config.drop_image_prob + config.drop_both_prob
    )
    return text_only | both, image_only | both


def train_ip_adapter(
    ldm: LatentDiffusion,
    clip: CLIP,
    images: torch.Tensor,
    captions: list[str],
    config: IPAdapterTrainConfig,
    progress: bool | None = None,
) -> tuple[ImageProjection, dict[str, list[float]]]:
    """Freeze `ldm`, add an IP-Adapter to its U-Net (in place), and train it on images (N, 3, H, W)
    with their N captions. Returns the image projection and the history (loss per step, seconds)."""
    if ldm.config.conditioning != "text" or ldm.config.objective != "diffusion":
        raise ValueError(
            f"an IP-Adapter goes on a text-conditioned diffusion LDM, got conditioning={ldm.config.conditioning!r} "
            f"and objective={ldm.config.objective!r}"
        )
    if len(images) != len(captions) or len(images) < config.batch_size:
        raise ValueError(
            f"need N >= batch_size={config.batch_size} images and N captions, got {len(images)} and {len(captions)}"
        )
    start = time.perf_counter()
    device = ldm.device
    ldm.eval().requires_grad_(False)
    clip.eval().requires_grad_(False)
    latents = cache_latents(ldm, images, device, progress=False)  # (N, c, h, w)
    clip_device = next(clip.parameters()).device
    image_embeds = embed_images(clip, images.to(clip_device)).to(device)  # (N, D_img)
    text = text_conditions(ldm, captions)  # context (N, L, d)
    null = text_conditions(ldm, [""])  # context (1, L, d)
    torch.manual_seed(config.seed)
    add_ip_adapter(ldm.unet, config.num_tokens)  # new W'_K, W'_V: created after the freeze, so they train
    image_proj = ImageProjection(image_embeds.shape[1], ldm.config.text_encoder.width, config.num_tokens).to(device)
    params = list(image_proj.parameters()) + list(adapter_parameters(ldm).values())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)  # on the CPU: the same draws on every device
    history: dict[str, list[float]] = {"loss": []}
    for step in tqdm(range(config.steps), desc="IP-Adapter", disable=not show_progress(progress)):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.lr, config.steps, config.warmup_steps, "cosine")
        batch = torch.randint(0, len(latents), (config.batch_size,), generator=generator).to(device)
        z0 = latents[batch]
        B = len(batch)
        # t ~ U{0, ..., T-1}, eps ~ N(0, I); z_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps
        t = torch.randint(0, ldm.schedule.num_timesteps, (B,), generator=generator).to(device)
        noise = torch.randn(z0.shape, generator=generator).to(device)
        z_t = ldm.schedule.q_sample(z0, t, noise)
        drop_text, drop_image = condition_drops(torch.rand(B, generator=generator).to(device), config)  # (B,) each
        context = torch.where(drop_text[:, None, None], null.context, text.context[batch])  # (B, L, d)
        pooled = None if text.pooled is None else torch.where(drop_text[:, None], null.pooled, text.pooled[batch])
        c_i = torch.where(drop_image[:, None], torch.zeros_like(image_embeds[batch]), image_embeds[batch])
        # the U-Net reads [c_t; c_i'] (B, L + N, d)
        cond = Condition(context=torch.cat([context, image_proj(c_i)], dim=1), pooled=pooled)
        model_output = ldm.predict(z_t, t, cond)
        loss = diffusion_loss(
            ldm.schedule, model_output.float(), z0, noise, t, ldm.prediction_type, ldm.config.min_snr_gamma
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())
    history["seconds"] = [time.perf_counter() - start]
    return image_proj.eval(), history


def base_fingerprint(ldm: LatentDiffusion) -> str:
    """Which frozen LDM an adapter belongs to: a SHA-256 of its weights, in the order the model holds
    them, the adapter's own W'_K, W'_V left out (wrapping attn2 renames the weights, not their order)."""
    digest = hashlib.sha256()
    for name, tensor in ldm.state_dict().items():
        if not name.endswith(("k_ip.weight", "v_ip.weight")):
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def adapter_fits(ldm: LatentDiffusion, path: str | os.PathLike) -> bool:
    """Whether the adapter at `path` was trained on this very LDM (same weights; an adapter saved
    without its base's fingerprint cannot say, and does not fit)."""
    return load_checkpoint(path).get("base") == base_fingerprint(ldm)


def save_ip_adapter(
    ldm: LatentDiffusion, image_proj: ImageProjection, config: IPAdapterTrainConfig, path: str | os.PathLike,
    history: dict | None = None,
) -> Path:  # fmt: skip
    """Write the adapter alone (the image projection and every W'_K, W'_V), not the frozen LDM."""
    return save_checkpoint(
        {
            "kind": KIND,
            "config": asdict(config),
            "image_proj": image_proj.state_dict(),
            "image_embed_dim": image_proj.proj.in_features,
            "attention": {name: p.detach().clone() for name, p in adapter_parameters(ldm).items()},
            "history": history or {},
            "base": base_fingerprint(ldm),
        },
        path,
    )


def load_ip_adapter(ldm: LatentDiffusion, path: str | os.PathLike) -> tuple[ImageProjection, IPAdapterTrainConfig]:
    """Add the adapter saved at `path` to `ldm`'s U-Net (in place); returns its image projection and config."""
    state = load_checkpoint(path, required_keys=("kind", "config", "image_proj", "image_embed_dim", "attention"))
    if state["kind"] != KIND:
        raise CheckpointError(f"{path} holds a {state['kind']!r}, expected an IP-Adapter ({KIND!r})")
    if "base" in state and state["base"] != base_fingerprint(ldm):
        raise CheckpointError(
            f"{path} was trained on another LDM than this one (other weights): train it again for this one"
        )
    try:
        config = tree_from_dict(IPAdapterTrainConfig, state["config"])
        add_ip_adapter(ldm.unet, config.num_tokens)
        image_proj = ImageProjection(state["image_embed_dim"], ldm.config.text_encoder.width, config.num_tokens)
        image_proj.load_state_dict(state["image_proj"])
        params = adapter_parameters(ldm)
        if set(params) != set(state["attention"]):
            raise ValueError(
                f"the adapter has weights for {len(state['attention'])} projections, the U-Net {len(params)}"
            )
        with torch.no_grad():
            for name, value in state["attention"].items():
                params[name].copy_(value)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not fit this LDM: {error_summary(err)}") from err
    return image_proj.eval(), config
