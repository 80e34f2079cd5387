"""Why latent: the cost of diffusion in pixel space and in latent space, measured on minildm.

The measurements are minildm/why_latent.py's (LDM sec. 1 and 4.1, fig. 6, table 6: the same
U-Net in pixel space f = 1 and latent spaces f = 4 and f = 8); this command prints them as tables:
1. training images per second (latents cached and encoded on the fly), memory of a training step;
2. sampling time per image: DDIM, 50 steps, classifier-free guidance, decoding included;
3. quality at equal training time, judged by the attribute classifier;
4. the speed levers this benchmark adds to bench/unet_speed.py (whose functions it reuses):
   cached latents vs encoding on the fly, fused AdamW, gradient checkpointing, and the full
   stack against the plain fp32 eager step, minildm against diffusers at the same configuration.

    python bench/why_latent.py                       # CPU: 32x32, a lighter U-Net, 60 s of training per model
    python bench/why_latent.py --device cuda --compile   # GPU: 64x64, 10 minutes per model
    python bench/why_latent.py --quick               # seconds: checks the plumbing only
"""

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine_lines
from unet_speed import REFERENCE, Variant, build, make_step

from minildm.autoencoder import AutoencoderKL
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.measure import median_seconds, memory_kind, peak_step_bytes
from minildm.metrics import ClassifierTrainConfig, load_or_train_shapes_classifier
from minildm.viz import save_image_grid
from minildm.why_latent import (
    SPACES,
    Space,
    WhyLatentConfig,
    class_labels,
    judge_samples,
    make_autoencoder,
    measure_space,
    quality_at_equal_time,
    quality_table,
    sample,
    spaces_table,
    target_lines,
)


@dataclass
class Lever:
    name: str
    variant: Variant  # bench/unet_speed.py: SDPA, bf16 autocast, channels_last, torch.compile
    fused_adamw: bool = False
    checkpointing: bool = False
    encode_on_the_fly: bool = False  # run an f = 4 encoder on 64x64 images before every step


def levers(compile_full_stack: bool) -> list[Lever]:
    sdpa = Variant("SDPA")
    full = Variant("full stack", bf16=True, channels_last=True, compile=compile_full_stack)
    return [
        Lever("plain fp32 eager", Variant("attention written out", use_sdpa=False)),
        Lever("SDPA (cached latents)", sdpa),
        Lever("SDPA, encoded on the fly", sdpa, encode_on_the_fly=True),
        Lever("SDPA + fused AdamW", sdpa, fused_adamw=True),
        Lever("SDPA + grad checkpointing", sdpa, checkpointing=True),
        Lever("full stack", full, fused_adamw=True),
    ]


def measure_lever(lever: Lever, cfg: WhyLatentConfig, batch: int, device: torch.device) -> dict:
    """img/s and memory of minildm's and diffusers' training steps at bench/unet_speed.py's configuration."""
    models = build(lever.variant, device)
    encoder = None
    if lever.encode_on_the_fly:  # an f = 4, c = 4 first stage: 64x64 images -> unet_speed's 16x16x4 latents
        encoder = make_autoencoder(Space("f=4", 4, REFERENCE["in_channels"]), cfg).to(device).eval()
        images = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    steps, parameters = {}, {}
    for name, (model, forward, optimizer) in models.items():
        if lever.fused_adamw:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        if lever.checkpointing:
            if name == "minildm":
                model.config.gradient_checkpointing = True
            else:
                model.enable_gradient_checkpointing()
        unet_step = make_step(name, forward, optimizer, lever.variant, batch, device)
        steps[name] = unet_step if encoder is None else encoded_step(encoder, images, unet_step)
        parameters[name] = list(model.parameters())
    seconds = median_seconds(steps, cfg.repeats, cfg.warmup, device)
    return {name: {"img/s": batch / seconds[name], "memory": peak_step_bytes(steps[name], parameters[name], device)}
            for name in steps}  # fmt: skip


def encoded_step(encoder: AutoencoderKL, images: torch.Tensor, unet_step):
    """E(x) at every step before the U-Net's step; the U-Net's cost does not depend on the latents' values."""

    def step():
        with torch.no_grad():
            encoder.encode_latents(images)  # (B, 4, 16, 16)
        unet_step()

    return step


def levers_table(results: dict[str, dict], batch: int, device: torch.device) -> list[str]:
    header = (f"{'lever':<26} {'minildm img/s':>13} {'diffusers img/s':>15} {'ratio':>6} {'minildm MiB':>11} "
              f"{'diffusers MiB':>13}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        ours, ref = r["minildm"], r["diffusers"]
        lines.append(f"{name:<26} {ours['img/s']:>13.1f} {ref['img/s']:>15.1f} {ours['img/s'] / ref['img/s']:>6.2f} "
                     f"{ours['memory'] / 2**20:>11.1f} {ref['memory'] / 2**20:>13.1f}")  # fmt: skip
    first, last = next(iter(results)), list(results)[-1]
    speedup = {name: results[last][name]["img/s"] / results[first][name]["img/s"] for name in ("minildm", "diffusers")}
    lines.append(
        f"\nfull stack / plain fp32 eager: minildm {speedup['minildm']:.2f}x, diffusers {speedup['diffusers']:.2f}x"
        " (target on GPU: >= 1.5x; minildm / diffusers >= 1 at the same configuration)"
    )
    lines.append(f"configuration: bench/unet_speed.py REFERENCE, 16x16x4 latents, context (77, 256), batch {batch}")
    lines.append("full stack: SDPA + bf16 autocast + channels_last + fused AdamW (+ torch.compile with --compile)")
    lines.append(f"ratio = minildm / diffusers images per second; memory: {memory_kind(device)}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", type=int, default=None, help="image side (default 64 on GPU, 32 on CPU)")
    parser.add_argument("--train-seconds", type=float, default=None, help="training time per model, quality section")
    parser.add_argument("--quick", action="store_true", help="tiny models, seconds end to end")
    parser.add_argument("--compile", action="store_true", help="torch.compile in the full-stack lever")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-levers", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--out", default="runs/why_latent", help="trained autoencoders and sample grids go here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda asked for, but torch sees no GPU here: GPU column not measured (run with --device cpu)")
    torch.set_num_threads(args.threads)
    cfg = (
        WhyLatentConfig.quick() if args.quick else WhyLatentConfig() if device.type == "cuda" else WhyLatentConfig.cpu()
    )
    cfg = dataclasses.replace(cfg, size=args.size or cfg.size, train_seconds=args.train_seconds or cfg.train_seconds)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for line in machine_lines(device):
        print(line)
    if device.type != "cuda":
        print("GPU column: not measured (no GPU in this run; rerun with --device cuda on a GPU)")

    data = ShapesDataset(ShapesConfig(size=cfg.size, num_samples=cfg.num_train, split="train", max_objects=1))
    print(f"\n== 1-2. cost per training step and per sample, the same U-Net in three spaces ({device.type})")
    results = {space.name: measure_space(space, cfg, data, device) for space in SPACES}
    print("\n".join(spaces_table(results, cfg, device) + target_lines(results, device)), flush=True)

    if not args.skip_quality:
        print(f"\n== 3. quality at equal training time ({device.type})")
        evaluation = ShapesDataset(ShapesConfig(size=cfg.size, num_samples=2 * cfg.num_eval, seed=1, max_objects=1))
        judge = load_or_train_shapes_classifier(cfg.size, str(device), ClassifierTrainConfig(steps=cfg.judge_steps))
        eval_labels = evaluation.labels[: cfg.num_eval]
        quality = {}
        for space in SPACES:
            ldm, quality[space.name] = quality_at_equal_time(space, cfg, results[space.name]["step_seconds"], data,
                                                             device, out_dir)  # fmt: skip
            samples = sample(
                ldm, class_labels(eval_labels).to(device), cfg.quality_sample_steps, cfg.guidance, device
            ).cpu()
            quality[space.name].update(judge_samples(judge, samples, eval_labels, evaluation.images[cfg.num_eval :]))
            save_image_grid(
                samples[:32],
                out_dir / f"samples_{space.name.replace(' ', '_').replace('=', '')}.png",
                nrow=8,
                title=f"{space.name} after {quality[space.name]['train_seconds']:.0f} s",
            )
        print("\n".join(quality_table(quality, cfg)), flush=True)

    if not args.skip_levers:
        print(f"\n== 4. speed levers, minildm vs diffusers ({device.type})")
        batch = cfg.levers_batch if device.type == "cpu" else 128
        lever_results = {lever.name: measure_lever(lever, cfg, batch, device)
                         for lever in levers(args.compile)}  # fmt: skip
        print("\n".join(levers_table(lever_results, batch, device)), flush=True)


if __name__ == "__main__":
    main()
