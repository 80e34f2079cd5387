"""Load a Stable Diffusion 1.x folder in the diffusers layout into minildm's own modules
(LDM, Rombach et al. 2022: the first stage of sec. 3.1, the U-Net of sec. 3.3 conditioned on
CLIP's text encoder tau_theta, the noise schedule of DDPM eq. 4), without diffusers or transformers.

    model_index.json
    unet/config.json          unet/diffusion_pytorch_model.safetensors   -> minildm.UNet
    vae/config.json           vae/diffusion_pytorch_model.safetensors    -> minildm.AutoencoderKL
    text_encoder/config.json  text_encoder/model.safetensors             -> minildm.TextEncoder
    tokenizer/vocab.json      tokenizer/merges.txt                       -> minildm.CLIPTokenizer
    scheduler/scheduler_config.json                                      -> ScheduleConfig + DDIM settings

Each part goes through its converter (diffusers_unet.py, diffusers_vae.py, hf_clip.py,
hf_tokenizer.py, diffusers_scheduler.py). Weights are read with `safetensors`, which maps the
tensors from the file and, unlike a pickled `.bin`, cannot run code while loading.

    sd = load_stable_diffusion_folder("stable-diffusion-v1-5")
    context = sd.encode_prompts(["a red circle"])     # (B, 77, 768), padded as diffusers pads
    images = sd.text_to_image(["a red circle"], steps=50, guidance_scale=7.5)   # (B, 3, H, W) in [-1, 1]

`text_to_image` is the guided DDIM loop of pipelines/sampling.py written out on the folder's own
U-Net, with the folder's scheduler settings; tests/test_sd_folder.py checks it against diffusers'
StableDiffusionPipeline from the same starting latents.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from minildm.autoencoder.kl import AutoencoderKL
from minildm.convert.diffusers_scheduler import SamplerSettings, schedule_from_diffusers
from minildm.convert.diffusers_unet import load_diffusers_unet
from minildm.convert.diffusers_vae import load_diffusers_vae
from minildm.convert.hf_clip import config_from_hf, convert_hf_clip_text_state_dict
from minildm.convert.hf_tokenizer import FolderTokenizer, load_hf_clip_tokenizer
from minildm.diffusion.ddim import DDIMSampler
from minildm.diffusion.guidance import classifier_free_guidance
from minildm.diffusion.schedule import NoiseSchedule, ScheduleConfig
from minildm.nn.unet import UNet
from minildm.text.text_encoder import TextEncoder

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
TEXT_ENCODERS = ("CLIPTextModel", "CLIPTextModelWithProjection")


@dataclass
class StableDiffusionFolder:
    """The parts of a Stable Diffusion folder as minildm modules, in eval mode."""

    unet: UNet
    vae: AutoencoderKL  # its scale_factor is the folder's scaling_factor (0.18215 in SD 1.x)
    text_encoder: TextEncoder
    tokenizer: FolderTokenizer
    schedule: ScheduleConfig
    sampler_settings: SamplerSettings
    sample_size: int = 64  # the latent side the U-Net was trained at (unet/config.json's sample_size)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """tau_theta(y): the text encoder's last hidden states (B, context_length, width), the U-Net's context."""
        tokens = self.tokenizer(prompts).to(self.text_encoder.token_embedding.weight.device)
        hidden, _ = self.text_encoder(tokens)
        return hidden

    @torch.no_grad()
    def text_to_image(
        self,
        prompts: list[str],
        steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompts: list[str] | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1]: DDIM with classifier-free guidance (Ho and Salimans eq. 6)
        from z_T = `latents` (B, 4, h, w), or N(0, I) drawn from `generator` at the U-Net's sample size."""
        sampler = DDIMSampler(NoiseSchedule(self.schedule), steps, **asdict(self.sampler_settings))
        cond = self.encode_prompts(prompts)  # (B, 77, d)
        uncond = self.encode_prompts(negative_prompts or [""] * len(prompts))
        B, device = len(prompts), cond.device
        if latents is None:
            side = self.sample_size
            latents = torch.randn(B, self.unet.config.in_channels, side, side, generator=generator)
        z = latents.to(device=device, dtype=cond.dtype)
        for t in sampler.timesteps:
            # one batch of 2B, unconditional half first (pipelines/sampling.py)
            t_batch = torch.full((2 * B,), int(t), device=device)
            eps_uncond, eps_cond = self.unet(torch.cat([z, z]), t_batch, torch.cat([uncond, cond])).chunk(2)
            # eps = eps_uncond + w (eps_cond - eps_uncond)
            z = sampler.step(classifier_free_guidance(eps_uncond, eps_cond, guidance_scale), t, z)
        return self.vae.decode_latents(z).clamp(-1, 1)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Stable Diffusion folder is missing {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def read_weights(folder: Path, name: str, variant: str | None) -> dict[str, torch.Tensor]:
    """The tensors of folder/name.safetensors (name.variant.safetensors for a variant such as "fp16")."""
    stem = name if variant is None else f"{name}.{variant}"
    path = folder / f"{stem}.safetensors"
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []
        raise FileNotFoundError(f"Stable Diffusion folder is missing {path} (safetensors only; found {found})")
    return load_file(path)


def load_text_encoder(folder: Path, variant: str | None) -> TextEncoder:
    """A transformers CLIPTextModel (or ...WithProjection) folder as a minildm TextEncoder."""
    config = read_json(folder / "config.json")
    architecture = (config.get("architectures") or ["CLIPTextModel"])[0]
    if architecture not in TEXT_ENCODERS:
        raise ValueError(f"{folder}/config.json: text encoder must be one of {TEXT_ENCODERS}, got {architecture!r}")
    projection = architecture == "CLIPTextModelWithProjection"
    encoder = TextEncoder(config_from_hf(config, projection))
    state = convert_hf_clip_text_state_dict(
        read_weights(folder, "model", variant), encoder.config.num_layers, projection
    )
    encoder.load_state_dict(state, strict=True)
    return encoder


def load_stable_diffusion_folder(
    path: str | Path, dtype: torch.dtype = torch.float32, variant: str | None = None
) -> StableDiffusionFolder:
    """Every part of a diffusers Stable Diffusion folder, as minildm modules in `dtype`, in eval mode.

    variant: read weights named `*.{variant}.safetensors` (e.g. "fp16"); they load into `dtype`.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no Stable Diffusion folder at {root}")
    index = read_json(root / "model_index.json")
    missing = [part for part in PARTS if part not in index]
    if missing:
        raise ValueError(f"{root}/model_index.json lists no {missing}: a Stable Diffusion folder has {list(PARTS)}")

    unet_config = read_json(root / "unet" / "config.json")
    unet = load_diffusers_unet(unet_config, read_weights(root / "unet", "diffusion_pytorch_model", variant))
    if unet.config.context_dim is None:
        raise ValueError(
            f"{root}/unet/config.json describes a U-Net without cross-attention: not a text-to-image model"
        )
    vae = load_diffusers_vae(
        read_json(root / "vae" / "config.json"), read_weights(root / "vae", "diffusion_pytorch_model", variant)
    )
    text_encoder = load_text_encoder(root / "text_encoder", variant)
    if text_encoder.config.width != unet.config.context_dim:
        raise ValueError(
            f"the text encoder's width {text_encoder.config.width} must equal the U-Net's cross_attention_dim "
            f"{unet.config.context_dim}"
        )
    tokenizer = load_hf_clip_tokenizer(root / "tokenizer")
    if tokenizer.tokenizer.vocab_size != text_encoder.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.tokenizer.vocab_size} tokens, "
            f"the text encoder {text_encoder.config.vocab_size}"
        )
    if tokenizer.context_length > text_encoder.config.context_length:
        raise ValueError(
            f"the tokenizer's model_max_length {tokenizer.context_length} exceeds the text encoder's "
            f"{text_encoder.config.context_length} positions"
        )
    schedule, settings = schedule_from_diffusers(read_json(root / "scheduler" / "scheduler_config.json"))
    for module in (unet, vae, text_encoder):
        module.to(dtype).eval()
    sample_size = unet_config.get("sample_size", 64)
    return StableDiffusionFolder(unet, vae, text_encoder, tokenizer, schedule, settings, sample_size)
