"""The demo: a text-to-image latent diffusion model trained from scratch in minutes on a CPU.

Stages, in the paper's order (each timed; the table is printed and written to the report):

1. data: the built-in captioned shapes (one object per image, the held-out (shape, colour)
   pairs never shown), and a BPE vocabulary learned from the training captions;
2. autoencoder (LDM sec. 3.1): a small KL autoencoder, f = 4, 32x32x3 -> 8x8x4;
3. latents: every training image encoded once, scaled by s = 1 / std(z) and cached;
4. LDM training (sec. 3.3): a lean U-Net with cross-attention at 8x8 and 4x4 and a small
   text transformer trained jointly, condition dropout for classifier-free guidance, EMA;
5. sampling: DDIM with guidance, one image per prompt for the held-out combinations
   ("a large purple triangle at the top left": purple and triangle were seen, never together);
6. evaluation: caption-match accuracy by the attribute classifier (a judge trained on real
   images) and the Frechet distance in its feature space, next to the real-vs-real floor.

Why these settings (accuracy on the 300 held-out prompts; one run each, 2,200 LDM steps; the
README's "The demo" lists the flags that repeat every run):

- eps-prediction with min-SNR-5 weighting (the first settings) learned colour (94%) and size
  (90%) but ignored position entirely (11%; chance is 1/9). Where an object goes is decided at
  the highest noise levels, and in x0 units min-SNR weights the loss there by min(SNR, 5) ~ 0:
  no gradient ever asked the U-Net to read "on the left". Coordinate channels alone: 11.7%.
- v-prediction with the plain v loss weights the x0 error by SNR + 1 >= 1 everywhere: position
  93% (colour fell to 18% in that run). Plus the zero-terminal-SNR schedule (Lin et al. 2023:
  training's last step is pure noise, as sampling's first is) and coordinate channels (the U-Net
  is told where each latent pixel is): position 100%, size 100%, colour 89%, shape 18%.
- cross-attention at 8x8 as well as 4x4 (attention_levels=(0, 1)): shape 49%, colour 100%,
  position 100%, Frechet distance 359 (was 582). It costs ~30% more per step, so 1,800 steps.
- shape is what is left, and the autoencoder limits it: the report's last column is the judge
  on its reconstructions of the real held-out images (shape 62% in the final run). Small
  objects are about 6 pixels across, 1.5 latent pixels at f = 4. 2,000 autoencoder steps kept
  the whole demo under 10 minutes on the AMD build machine (not on a slower Xeon: README).
  8 latent channels kept more shape through the autoencoder (70%) but the LDM, in the same
  1,800 steps, learned less from them (shape 28%, colour 70%): 4 it is. So did 3,000
  autoencoder steps (74% of shape through it, 46% in the samples, 10.4 minutes of stages).
- the pooled caption (SDXL's trick, `UNetConfig.pooled_dim`): the text transformer's state at
  the end token, which has read the whole caption, is added to the time embedding and so
  reaches every ResBlock, not only the attention layers. Same autoencoder, 1,800 steps: shape
  43% -> 61% (colour 100%, size 96%, position 100%, Frechet distance 531 -> 396), which is
  what the f = 4 autoencoder lets through (62%).
- f = 2 (16x16x4 latents; `--ae.channel_mult 1,2 --unet.base_channels 16 --unet.channel_mult
  1,2,4 --unet.attention_levels 1,2 --unet.head_dim 16`) keeps shape through the autoencoder
  (92%), but a step costs ~1.3x more (bench/demo_step_speed.py) and the LDM learns shape
  slower: with the pooled caption, shape 59% at 1,800 steps, 72% at 2,400 (colour 99%, Frechet
  distance 173) and 75% at 2,700 (colour fell to 76% in that run); 2,400 steps take the demo
  to about 13 minutes on one core. Without the pooled caption, 1,800 steps: shape 43%, colour
  67%, position 65%. Tried and dropped at f = 2: the cosine schedule (position fell to chance),
  lr 3e-3 (position 20%), batch 32 for twice the steps (shape 52%), cross-attention at 4x4 only
  for 2,300 steps (54%).
- what is left is composition: the report also samples prompts for (shape, colour) pairs that
  training showed, and a table of which shape each held-out pair was drawn as. On a second
  machine (Intel Xeon, same seeds: shape 55%, not 61%; runs drift apart across CPUs) seen
  pairs reached 64% shape, held-out 55%, nearly all of the loss in green squares drawn round
  and yellow diamonds drawn as circles. A text encoder of one layer (`--text.num_layers 1`)
  reached 74% with a 3,000-step autoencoder (one run; with the default one, 53%).

Why it is fast enough: the U-Net runs on 64 latent positions instead of 1,024 pixels (the
paper's argument, sec. 1 and 4.1), latents are cached, and the model is small.
One thread by default: on a shared 2-core CPU whose other core was busy, two threads made an
LDM step (batch 64) about 6x slower than one (1.0 s vs 0.16 s); try --demo.threads 2 on an idle one.
"""

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from minildm.autoencoder import (
    AutoencoderConfig,
    AutoencoderKL,
    fast_cpu_train_config,
    load_autoencoder,
    train_autoencoder,
)
from minildm.datasets import ShapesConfig, ShapesDataset, prompt_for
from minildm.diffusion import ScheduleConfig
from minildm.ldm import LatentDiffusion, LDMConfig, load_ldm
from minildm.metrics import (
    ClassifierTrainConfig,
    caption_match_accuracy,
    drawn_shapes,
    frechet_with_floor,
    load_or_train_shapes_classifier,
)
from minildm.nn import UNetConfig
from minildm.pipelines.sampling import make_sampler
from minildm.pipelines.text_to_image import text_to_image
from minildm.text import CLIPTokenizer, TextEncoderConfig, train_bpe
from minildm.train.trainer import TensorBatches, TrainConfig, train_ldm
from minildm.viz import save_image_grid, save_loss_curves

ATTRIBUTES = ("shape", "colour", "size", "position")
TARGETS = {"colour": 0.90, "shape": 0.80, "position": 0.80}


def default_unet() -> UNetConfig:
    return UNetConfig(
        in_channels=4,
        base_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(0, 1),  # cross-attention at 8x8 too: shape 18% -> 49% (see above)
        num_heads=4,
        head_dim=32,
        context_dim=64,
        norm_groups=8,
        coordinate_channels=True,  # see "Why these settings" above
        pooled_dim=64,  # the caption's end-token state added to the time embedding: shape 43% -> 61%
    )


def default_text_encoder() -> TextEncoderConfig:
    return TextEncoderConfig(vocab_size=1024, context_length=16, width=64, num_layers=2, num_heads=4)


@dataclass
class DemoConfig:
    size: int = 32  # image side in pixels
    num_train: int = 10000  # training images
    num_eval: int = 300  # held-out prompts sampled and judged
    max_objects: int = 1  # the judge reads the main object; 1 keeps captions and images aligned
    num_merges: int = 200  # BPE merges learned from the captions
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # see the module docstring
    ae_steps: int = 2000
    ae_batch_size: int = 8
    ae_lr: float = 4e-3
    steps: int = 1800  # LDM training steps
    batch_size: int = 64
    lr: float = 2e-3
    sampler_steps: int = 25
    guidance: float = 4.0
    autoencoder_checkpoint: str = ""  # "": train one; a path: reuse that autoencoder.pt (iterate on the LDM)
    judge_steps: int = 0  # 0: the metrics' standard judge (cached under data/judges/); > 0: a quick one
    autoencoder: AutoencoderConfig = field(
        default_factory=lambda: AutoencoderConfig(
            base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=4, attention_in_middle=False,
            norm_groups=8,
        )
    )
    ldm: LDMConfig = field(
        default_factory=lambda: LDMConfig(
            unet=default_unet(), text_encoder=default_text_encoder(), schedule=ScheduleConfig(zero_terminal_snr=True),
            prediction_type="v", min_snr_gamma=None,
        )
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(warmup_steps=100, ema_decay=0.995))

    def __post_init__(self):
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but torch sees no GPU here: use --device cpu")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        f = self.autoencoder.downsampling_factor
        if self.size < 16 or self.size & (self.size - 1) or self.size % f:
            raise ValueError(
                f"size {self.size} is not a size this autoencoder takes: use a power of two >= 16 "
                f"divisible by its downsampling factor f={f} (e.g. 32)"
            )

    @classmethod
    def quick(cls) -> "DemoConfig":
        """A few seconds end to end: checks the plumbing, not the pictures."""
        return cls(
            num_train=256, num_eval=16, judge_steps=5, ae_steps=3, ae_batch_size=16, steps=3, batch_size=16, sampler_steps=2,
            autoencoder=AutoencoderConfig(
                base_channels=8, channel_mult=(1, 2, 2), latent_channels=4, attention_in_middle=False, norm_groups=4
            ),
            ldm=LDMConfig(
                unet=dataclasses.replace(
                    default_unet(), base_channels=16, head_dim=8, context_dim=32, pooled_dim=32, norm_groups=8
                ),
                text_encoder=TextEncoderConfig(vocab_size=1024, context_length=16, width=32, num_layers=1, num_heads=2),
                schedule=ScheduleConfig(zero_terminal_snr=True), prediction_type="v",
            ),
        )  # fmt: skip


class StageTimer:
    """Wall-clock seconds per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class Stage:
            def __enter__(self):
                self.start = time.perf_counter()
                print(f"== {name}", flush=True)

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.start

        return Stage()

    def table(self) -> str:
        total = sum(self.seconds.values())
        lines = ["| stage | seconds | share |", "| --- | ---: | ---: |"]
        lines += [f"| {name} | {s:.1f} | {100 * s / total:.0f}% |" for name, s in self.seconds.items()]
        lines.append(f"| total | {total:.1f} | 100% |")
        return "\n".join(lines)


def load_shapes(config: DemoConfig, split: str, num_samples: int, seed: int) -> ShapesDataset:
    return ShapesDataset(
        ShapesConfig(size=config.size, num_samples=num_samples, seed=seed, split=split, max_objects=config.max_objects)
    )


def train_autoencoder_stage(config: DemoConfig, out_dir: Path) -> AutoencoderKL:
    """Train the KL autoencoder on the training images; writes out_dir/autoencoder.pt."""
    data = load_shapes(config, "train", config.num_train, config.seed)
    torch.manual_seed(config.seed)
    autoencoder = AutoencoderKL(config.autoencoder)
    # the short-run preset (squared error + KL, warmup + cosine lr, batch 8): LPIPS's pretrained
    # backbone cannot be downloaded here, and the GAN term matters for texture detail at high
    # resolution, not for flat shapes at 32x32
    train_config = dataclasses.replace(
        fast_cpu_train_config(config.ae_steps),
        batch_size=config.ae_batch_size,
        lr=config.ae_lr,
        seed=config.seed,
        out_dir=str(out_dir),
        image_every=max(1, config.ae_steps),
        checkpoint_every=max(1, config.ae_steps),
        resume=False,
    )
    model, _ = train_autoencoder(autoencoder, data.images, train_config, device=config.device)
    return model.eval()


def build_text_ldm(config: DemoConfig, autoencoder: AutoencoderKL, captions: list[str]) -> LatentDiffusion:
    """A BPE vocabulary learned from `captions`, and a text-conditional LDM sized to it."""
    tokenizer = CLIPTokenizer.from_merges(train_bpe(captions, config.num_merges))
    text_config = dataclasses.replace(config.ldm.text_encoder, vocab_size=tokenizer.vocab_size)
    unet_config = dataclasses.replace(
        config.ldm.unet,
        in_channels=autoencoder.config.latent_channels,
        out_channels=autoencoder.config.latent_channels,  # the U-Net predicts a latent-shaped target
        context_dim=text_config.width,
        pooled_dim=None if config.ldm.unet.pooled_dim is None else text_config.width,
    )
    ldm_config = dataclasses.replace(config.ldm, unet=unet_config, text_encoder=text_config, image_size=config.size)
    torch.manual_seed(config.seed)
    return LatentDiffusion(ldm_config, autoencoder, tokenizer)


@torch.no_grad()
def cache_latents(ldm: LatentDiffusion, images: torch.Tensor, device: str, batch_size: int = 500) -> torch.Tensor:
    """z0 = s * E(x) for every image, computed once (the autoencoder is frozen)."""
    ldm.autoencoder.to(device)
    chunks = [ldm.encode_images(images[i : i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)  # (N, c, h, w)


def train_ldm_stage(config: DemoConfig, autoencoder: AutoencoderKL, out_dir: Path, timer: StageTimer | None = None):
    """Cache latents, then train the text-conditional LDM; writes out_dir/ldm.pt."""
    timer = timer if timer is not None else StageTimer()
    with timer("data"):
        data = load_shapes(config, "train", config.num_train, config.seed)
    ldm = build_text_ldm(config, autoencoder, data.captions)
    with timer("latents"):
        latents = cache_latents(ldm, data.images, config.device)
        tokens = ldm.tokenize(data.captions)
    train_config = dataclasses.replace(
        config.train,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        device=config.device,
        out_dir=str(out_dir),
        seed=config.seed,
    )
    with timer("LDM training"):
        history = train_ldm(ldm, TensorBatches(latents, tokens=tokens), train_config)
    return ldm, history


def canonical_prompts(labels: torch.Tensor) -> list[str]:
    """The canonical prompt for each (shape, colour, size, position) row of `labels` (N, 4)."""
    return [prompt_for(*row) for row in labels.tolist()]


@torch.no_grad()
def sample_prompts(ldm: LatentDiffusion, prompts: list[str], config: DemoConfig, batch_size: int = 200) -> torch.Tensor:
    generator = torch.Generator(config.device).manual_seed(config.seed)
    sampler = make_sampler(ldm, "ddim", config.sampler_steps)
    images = [
        text_to_image(ldm, sampler, prompts[i : i + batch_size], guidance_scale=config.guidance, generator=generator).cpu()
        for i in range(0, len(prompts), batch_size)
    ]
    return torch.cat(images)


def run_demo(config: DemoConfig, out_dir: Path) -> dict:
    """All stages; writes checkpoints, pictures, loss curves and report.md / report.json to out_dir."""
    timer = StageTimer()
    with timer("data"):
        # twice num_eval real held-out images: the first num_eval give the prompts, and the
        # Frechet floor compares two disjoint halves of them
        heldout = load_shapes(config, "heldout", 2 * config.num_eval, config.seed + 1)
        # prompts whose (shape, colour) pair training did show: the gap between the two
        # accuracies is what composing unseen pairs costs
        seen = load_shapes(config, "train", config.num_eval, config.seed + 2)
    with timer("autoencoder"):
        if config.autoencoder_checkpoint:
            autoencoder = load_autoencoder(config.autoencoder_checkpoint)
        else:
            autoencoder = train_autoencoder_stage(config, out_dir)
    ldm, history = train_ldm_stage(config, autoencoder, out_dir, timer)
    ldm = load_ldm(out_dir / "ldm.pt", device=config.device)  # the EMA weights, as `sample` sees them
    del autoencoder  # the LDM checkpoint carries its own copy
    labels = heldout.labels[: config.num_eval]
    prompts = canonical_prompts(labels)
    with timer("sampling"):
        samples = sample_prompts(ldm, prompts, config)
        seen_samples = sample_prompts(ldm, canonical_prompts(seen.labels), config)
    with timer("evaluation"):
        judge_config = ClassifierTrainConfig(steps=config.judge_steps) if config.judge_steps else None
        judge = load_or_train_shapes_classifier(size=config.size, device=config.device, train_config=judge_config)
        accuracy = caption_match_accuracy(judge, samples, labels)
        seen_accuracy = caption_match_accuracy(judge, seen_samples, seen.labels)
        drawn = drawn_shapes(judge, samples, labels)
        frechet = frechet_with_floor(judge.extract_features(heldout.images), judge.extract_features(samples))
        fd, fd_floor = frechet["frechet"], frechet["floor"]
        # the judge on the autoencoder's reconstructions of the real held-out images: how much of
        # each attribute survives this first stage (a guide, not a strict bound: the LDM may
        # generate cleaner objects than the textured real images it was trained on)
        real = heldout.images[: config.num_eval]
        with torch.no_grad():
            recon = ldm.decode_latents(ldm.encode_images(real.to(config.device))).cpu()
        recon_mse = float(((recon - real) ** 2).mean())
        reconstructed = caption_match_accuracy(judge, recon, labels)
    show = min(32, len(prompts))
    save_image_grid(samples[:show], out_dir / "samples_heldout.png", nrow=8, title="held-out prompts (EMA, DDIM)")
    save_image_grid(heldout.images[:show], out_dir / "real_heldout.png", nrow=8, title="real held-out images")
    save_loss_curves({"LDM loss": history["loss"]}, out_dir / "loss_ldm.png", title="latent diffusion training loss")
    report = {
        "config": asdict(config),
        "seconds": timer.seconds,
        "accuracy": accuracy,
        "autoencoder_reconstruction_accuracy": reconstructed,
        "accuracy_seen_pairs": seen_accuracy,
        "drawn_shapes_heldout": drawn,
        "targets": TARGETS,
        "frechet_distance": fd,
        "frechet_distance_floor": fd_floor,
        "autoencoder_reconstruction_mse": recon_mse,
        "final_loss": sum(history["loss"][-100:]) / max(1, len(history["loss"][-100:])),
        "prompts": prompts[:show],
        "threads": torch.get_num_threads(),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(report_markdown(report, timer))
    print(timer.table())
    print(accuracy_table(accuracy, reconstructed))
    print(composition_tables(accuracy, seen_accuracy, drawn))
    print(f"Frechet distance {fd:.2f} (real vs real floor {fd_floor:.2f})")
    return report


def accuracy_table(accuracy: dict, reconstructed: dict) -> str:
    """Samples' accuracy per attribute, the target, and the judge on the autoencoder's reconstructions."""
    lines = ["| attribute | samples | target | real images through the autoencoder |", "| --- | ---: | ---: | ---: |"]
    for name, value in accuracy.items():
        target = TARGETS.get(name)
        target_text = "" if target is None else f">= {100 * target:.0f}%"
        lines.append(f"| {name} | {100 * value:.1f}% | {target_text} | {100 * reconstructed[name]:.1f}% |")
    return "\n".join(lines)


def composition_tables(accuracy: dict, seen_accuracy: dict, drawn: dict) -> str:
    """Held-out pairs against seen pairs per attribute, and which shape each held-out pair got."""
    lines = ["| attribute | held-out (shape, colour) pairs | pairs seen in training |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {100 * accuracy[name]:.1f}% | {100 * seen_accuracy[name]:.1f}% |" for name in accuracy]
    shapes = list(next(iter(drawn.values()))) if drawn else []
    lines += ["", "| prompt asked for | " + " | ".join(f"drawn as {s}" for s in shapes) + " |"]
    lines += ["| --- |" + " ---: |" * len(shapes)]
    lines += [f"| {pair} | " + " | ".join(str(counts[s]) for s in shapes) + " |" for pair, counts in drawn.items()]
    return "\n".join(lines)


def report_markdown(report: dict, timer: StageTimer) -> str:
    c = report["config"]
    return f"""# minildm demo report

Text-to-image latent diffusion trained from scratch on {c['num_train']} captioned {c['size']}x{c['size']}
shapes ({c['steps']} LDM steps, batch {c['batch_size']}, device {c['device']}, {report['threads']} threads),
sampled with DDIM ({c['sampler_steps']} steps, guidance {c['guidance']}) for {c['num_eval']} prompts whose
(shape, colour) pair never appears in training.

## Caption-match accuracy (attribute classifier on the generated images)

The last column is the judge on the autoencoder's reconstructions of the real held-out images:
how much of each attribute survives the first stage (a guide, not a strict bound).

{accuracy_table(report['accuracy'], report['autoencoder_reconstruction_accuracy'])}

## Composition: held-out pairs against seen pairs

The same number of prompts again, for (shape, colour) pairs that training did show. Below,
what the judge read on the samples for each held-out pair: a model that learnt the words
apart draws the shape it was asked for; one that learnt them together draws the shape it
saw in that colour.

{composition_tables(report['accuracy'], report['accuracy_seen_pairs'], report['drawn_shapes_heldout'])}

## Frechet distance (classifier features, {c['num_eval']} images)

| samples vs real held-out | real vs real (floor) |
| ---: | ---: |
| {report['frechet_distance']:.2f} | {report['frechet_distance_floor']:.2f} |

## Where the time went

{timer.table()}

Autoencoder reconstruction MSE on held-out images: {report['autoencoder_reconstruction_mse']:.4f}.
Final LDM loss (mean of the last 100 steps): {report['final_loss']:.4f}.

Files: samples_heldout.png, real_heldout.png, loss_ldm.png, autoencoder.pt, ldm.pt
(`python -m minildm sample --checkpoint ldm.pt --prompt "a large red circle at the top left" --out grid.png`).
"""
