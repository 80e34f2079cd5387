"""A Stable Diffusion folder in the diffusers layout, loaded by minildm without diffusers or
transformers: the same image as diffusers' StableDiffusionPipeline from the same latents; the
tokenizer rebuilt from merges.txt equals transformers' CLIPTokenizer; clear errors for missing parts."""

import json
import shutil
from dataclasses import asdict

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel
from transformers import CLIPTokenizer as HFCLIPTokenizer

from minildm import DDIMSampler, NoiseSchedule
from minildm.convert.diffusers_scheduler import schedule_from_diffusers
from minildm.convert.hf_tokenizer import HF_SPECIAL_TOKENS, load_hf_clip_tokenizer
from minildm.convert.sd_folder import load_stable_diffusion_folder
from minildm.diffusion import classifier_free_guidance
from minildm.text import CLIPTokenizer, train_bpe

CORPUS = [
    "a small red circle at the top left", "a big blue square in the middle of the picture",
    "two green triangles next to a yellow star", "an oil painting of a lighthouse at night, stormy sea",
]  # fmt: skip
# what both tokenizers must agree on: case, punctuation, digits, contractions, accents, emoji, CJK, odd spacing
VARIED = [
    "a small red circle", "A BIG Blue SQUARE, at 12:30!", "it's the lighthouse's light; don't you'd've?",
    "naïve café — crème brûlée", "emoji 🎨🖌️ and 日本語のテキスト", "tabs\tand\nnewlines   and  spaces",
    "x" * 90, "symbols #@$%^&*()[]{}<>/\\|~`", "3.14159 is pi, 1e-4 is small", "",
]  # fmt: skip


def write_tokenizer_folder(folder) -> None:
    """vocab.json + merges.txt + tokenizer_config.json of a tiny CLIP tokenizer, as SD 1.x lays them out."""
    merges = train_bpe(CORPUS, 80)
    tokenizer = CLIPTokenizer.from_merges(merges)
    assert len(set(tokenizer.vocab)) == len(tokenizer.vocab)  # no symbol spelled by two merges
    folder.mkdir(parents=True)
    vocab = {HF_SPECIAL_TOKENS.get(symbol, symbol): i for i, symbol in enumerate(tokenizer.vocab)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    config = {"model_max_length": 77, "pad_token": "<|endoftext|>", "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A tiny random StableDiffusionPipeline saved with save_pretrained (safetensors)."""
    root = tmp_path_factory.mktemp("sd")
    write_tokenizer_folder(root / "tok")
    tokenizer = HFCLIPTokenizer.from_pretrained(root / "tok")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, eos_token_id=2, bos_token_id=len(tokenizer) - 2, pad_token_id=1,
    ))  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16,
    )  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.save_pretrained(root / "pipe", safe_serialization=True)
    # transformers 5 writes tokenizer.json; SD 1.x folders hold vocab.json and merges.txt instead
    (root / "pipe" / "tokenizer" / "tokenizer.json").unlink()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(root / "tok" / name, root / "pipe" / "tokenizer" / name)
    return root / "pipe"


def test_same_image_as_diffusers_stable_diffusion_pipeline(sd_folder):
    prompts, negative = ["a small red circle at the top left", "an oil painting of a lighthouse"], ["", "blurry"]
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    steps, guidance = 4, 7.5
    ref = StableDiffusionPipeline.from_pretrained(sd_folder, safety_checker=None, requires_safety_checker=False)
    with torch.no_grad():
        expected = ref(prompt=prompts, negative_prompt=negative, height=16, width=16, num_inference_steps=steps,
                       guidance_scale=guidance, latents=latents, output_type="pt").images  # fmt: skip

    sd = load_stable_diffusion_folder(sd_folder)
    sampler = DDIMSampler(NoiseSchedule(sd.schedule), steps, **asdict(sd.sampler_settings))
    cond, uncond = sd.encode_prompts(prompts), sd.encode_prompts(negative)  # (B, 77, 32)
    z = latents.clone()
    with torch.no_grad():
        for t in sampler.timesteps:
            # one batch of 2B, unconditional half first (pipelines/sampling.py)
            eps_uncond, eps_cond = sd.unet(
                torch.cat([z, z]), torch.full((4,), int(t)), torch.cat([uncond, cond])
            ).chunk(2)
            z = sampler.step(classifier_free_guidance(eps_uncond, eps_cond, guidance), t, z)
        images = (sd.vae.decode_latents(z) / 2 + 0.5).clamp(0, 1)  # [-1, 1] -> [0, 1], as output_type="pt"
        # the library's own loop is the one written out above
        library = sd.text_to_image(prompts, steps, guidance, negative_prompts=negative, latents=latents)
        torch.testing.assert_close((library / 2 + 0.5).clamp(0, 1), images)
    assert images.shape == expected.shape == (2, 3, 16, 16)
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-4)
    assert sampler.timesteps.tolist() == ref.scheduler.timesteps.tolist() == [751, 501, 251, 1]


def test_tokenizer_from_vocab_and_merges_equals_transformers(sd_folder, tmp_path):
    hf = HFCLIPTokenizer.from_pretrained(sd_folder / "tokenizer")
    hf.save_pretrained(tmp_path)  # transformers 5 writes one tokenizer.json
    assert not (tmp_path / "merges.txt").exists()
    expected = hf(VARIED, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    for folder in (sd_folder / "tokenizer", tmp_path):
        ours = load_hf_clip_tokenizer(folder)
        assert (ours.context_length, ours.pad_token_id) == (77, hf.pad_token_id)
        torch.testing.assert_close(ours(VARIED), expected, rtol=0, atol=0)
    # a documented difference: minildm cleans as OpenAI's CLIP (HTML unescaping), transformers does not
    assert ours.tokenizer.encode("&amp;") == ours.tokenizer.encode("&")
    assert hf("&amp;", add_special_tokens=False).input_ids != hf("&", add_special_tokens=False).input_ids


def test_a_vocab_json_that_disagrees_with_merges_txt_is_refused(sd_folder, tmp_path):
    folder = tmp_path / "tokenizer"
    shutil.copytree(sd_folder / "tokenizer", folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    first, second = list(vocab)[300:302]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.json does not match merges.txt"):
        load_hf_clip_tokenizer(folder)


@pytest.mark.parametrize(
    "remove, message",
    [
        ("model_index.json", "missing .*model_index.json"),
        ("unet/diffusion_pytorch_model.safetensors", "missing .*unet/diffusion_pytorch_model.safetensors"),
        ("vae/config.json", "missing .*vae/config.json"),
        ("text_encoder/model.safetensors", "missing .*text_encoder/model.safetensors"),
        ("tokenizer/merges.txt", "tokenizer has no merges.txt and vocab.json"),
        ("scheduler/scheduler_config.json", "missing .*scheduler/scheduler_config.json"),
    ],
)
def test_a_folder_missing_a_part_says_which(sd_folder, tmp_path, remove, message):
    broken = tmp_path / "sd"
    shutil.copytree(sd_folder, broken)
    (broken / remove).unlink()
    with pytest.raises(FileNotFoundError, match=message):
        load_stable_diffusion_folder(broken)


def test_scheduler_config_maps_to_schedule_and_ddim_settings():
    sd15 = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
            "steps_offset": 1, "trained_betas": None}  # fmt: skip
    schedule, settings = schedule_from_diffusers(sd15)
    torch.testing.assert_close(
        NoiseSchedule(schedule).alphas_cumprod.float(), DDIMScheduler.from_config(sd15).alphas_cumprod
    )
    assert (settings.prediction_type, settings.steps_offset, settings.final_alpha_bar_is_one) == ("eps", 1, False)
    _, settings = schedule_from_diffusers({"prediction_type": "v_prediction", "timestep_spacing": "trailing"})
    assert (settings.prediction_type, settings.timestep_spacing, settings.clip_sample) == ("v", "trailing", True)
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        schedule_from_diffusers({"beta_schedule": "sigmoid"})
    with pytest.raises(ValueError, match="trained_betas"):
        schedule_from_diffusers({"trained_betas": [0.1, 0.2]})


def test_half_precision_weights_load_and_run(sd_folder, tmp_path):
    """fp16 weight files (variant "fp16", as SD repositories ship them) run in bfloat16 without autocast."""
    half = tmp_path / "sd"
    shutil.copytree(sd_folder, half)
    for weights in half.glob("*/*.safetensors"):
        stem = weights.name.removesuffix(".safetensors")
        save_file({k: v.half() for k, v in load_file(weights).items()}, weights.with_name(f"{stem}.fp16.safetensors"))
        weights.unlink()
    sd = load_stable_diffusion_folder(half, dtype=torch.bfloat16, variant="fp16")
    full = load_stable_diffusion_folder(sd_folder)
    assert {p.dtype for p in sd.unet.parameters()} == {torch.bfloat16}
    z, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([500])
    with torch.no_grad():
        eps = sd.unet(z.bfloat16(), t, sd.encode_prompts(["a red circle"]))
        image = sd.vae.decode_latents(eps)
        expected = full.vae.decode_latents(full.unet(z, t, full.encode_prompts(["a red circle"])))
    assert image.dtype == torch.bfloat16
    torch.testing.assert_close(image.float(), expected, rtol=0, atol=0.06)  # bfloat16 keeps 8 bits: ~0.4% a step
