"""The demo: a text-to-image latent diffusion model trained from scratch in minutes on a CPU.

It composes the stages of minildm/train/stages.py and minildm/evaluate.py, times each, and
writes pictures and a report:

1. data: the built-in captioned shapes (one object per image, the held-out (shape, colour)
   pairs never shown) and a BPE vocabulary learned from the training captions;
2. autoencoder (LDM sec. 3.1): f = 4, 32x32x3 -> 8x8x4 (or a given autoencoder.pt);
3. latents: every training image encoded once, scaled by s = 1 / std(z), cached;
4. LDM training (sec. 3.3): a small U-Net with cross-attention and a text transformer trained
   jointly, v-prediction on a zero-terminal-SNR schedule, condition dropout for guidance, EMA;
5. sampling: DDIM with classifier-free guidance for the held-out prompts ("a large purple
   triangle at the top left": purple and triangle were seen, never together);
6. evaluation: the attribute classifier reads each sample back (caption-match accuracy), and
   the Frechet distance in its feature space, next to the real-vs-real floor.

The settings are the `laptop` preset of minildm/config.py; docs/EXPERIMENTS.md records the
runs behind each choice, with the commands that repeat them.
"""

import dataclasses
import json
from pathlib import Path

import torch

from minildm.autoencoder import load_autoencoder
from minildm.config import Config
from minildm.evaluate import TARGETS, accuracy_table, composition_tables, evaluate_text_ldm
from minildm.ldm import load_ldm
from minildm.train.stages import StageTimer, load_shapes, train_first_stage, train_text_ldm
from minildm.viz import save_image_grid, save_loss_curves


def run_demo(
    config: Config, out_dir: Path, device: str, autoencoder_path: str | None = None, overwrite: bool = False
) -> dict:
    """All stages; writes checkpoints, pictures, loss curves and report.md / report.json to out_dir."""
    timer = StageTimer()
    n = config.eval.num_prompts
    with timer("data"):
        # 2n real held-out images: the first n give the prompts, the two halves the Frechet floor;
        # n prompts of pairs that training did show: the gap is what composing unseen pairs costs
        heldout = load_shapes(config, "heldout", 2 * n, config.seed + 1)
        seen = load_shapes(config, "train", n, config.seed + 2)
    with timer("autoencoder"):
        if autoencoder_path:
            autoencoder = load_autoencoder(autoencoder_path)
        else:
            autoencoder = train_first_stage(config, device, out_dir, overwrite)
    _, history = train_text_ldm(config, autoencoder, device, out_dir, timer, overwrite)
    ldm = load_ldm(out_dir / "ldm.pt", device=device)  # the EMA weights, as `sample` sees them
    with timer("sampling and evaluation"):
        results = evaluate_text_ldm(ldm, heldout, seen, config, device)
    samples = results.pop("samples")
    show = min(32, n)
    sampled_by = f"{config.sample.sampler}, {config.sample.steps} steps, guidance {config.sample.guidance:g}"
    title = f"held-out prompts (EMA, {sampled_by})"
    save_image_grid(samples[:show], out_dir / "samples_heldout.png", nrow=8, title=title)
    save_image_grid(heldout.images[:show], out_dir / "real_heldout.png", nrow=8, title="real held-out images")
    save_loss_curves({"LDM loss": history["loss"]}, out_dir / "loss_ldm.png", title="latent diffusion training loss")
    last = history["loss"][-100:]
    report = {
        **results,
        "config": dataclasses.asdict(config),
        "device": device,
        "seconds": timer.seconds,
        "targets": TARGETS,
        "final_loss": sum(last) / max(1, len(last)),
        "threads": torch.get_num_threads(),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(report_markdown(report, timer))
    print(timer.table())
    print(accuracy_table(report["accuracy"], report["autoencoder_reconstruction_accuracy"]))
    print(composition_tables(report["accuracy"], report["accuracy_seen_pairs"], report["drawn_shapes_heldout"]))
    print(
        f"Frechet distance {report['frechet_distance']:.2f} (real vs real floor {report['frechet_distance_floor']:.2f})"
    )
    return report


def report_markdown(report: dict, timer: StageTimer) -> str:
    c = report["config"]
    data, train, sample = c["data"], c["train"], c["sample"]
    return f"""# minildm demo report

Text-to-image latent diffusion trained from scratch on {data["num_train"]} captioned
{data["size"]}x{data["size"]} shapes ({train["steps"]} LDM steps, batch {train["batch_size"]},
device {report["device"]}, {report["threads"]} threads), sampled with {sample["sampler"]}
({sample["steps"]} steps, guidance {sample["guidance"]}) for {c["eval"]["num_prompts"]} prompts whose
(shape, colour) pair never appears in training.

## Caption-match accuracy (attribute classifier on the generated images)

The last column is the judge on the autoencoder's reconstructions of the real held-out images:
how much of each attribute survives the first stage (a guide, not a strict bound).

{accuracy_table(report["accuracy"], report["autoencoder_reconstruction_accuracy"])}

## Composition: held-out pairs against seen pairs

The same number of prompts again, for (shape, colour) pairs that training did show. Below,
what the judge read on the samples for each held-out pair: a model that learnt the words
apart draws the shape it was asked for; one that learnt them together draws the shape it
saw in that colour.

{composition_tables(report["accuracy"], report["accuracy_seen_pairs"], report["drawn_shapes_heldout"])}

## Frechet distance (classifier features, {c["eval"]["num_prompts"]} images)

| samples vs real held-out | real vs real (floor) |
| ---: | ---: |
| {report["frechet_distance"]:.2f} | {report["frechet_distance_floor"]:.2f} |

## Where the time went

{timer.table()}

Autoencoder reconstruction MSE on held-out images: {report["autoencoder_reconstruction_mse"]:.4f}.
Final LDM loss (mean of the last 100 steps): {report["final_loss"]:.4f}.

Files: samples_heldout.png, real_heldout.png, loss_ldm.png, autoencoder.pt, ldm.pt
(`python -m minildm sample --checkpoint ldm.pt --prompt "a large red circle at the top left" --out grid.png`).
"""
