"""Sampling settings on several trained demo models: what guidance scale, guidance rescale, sampler
and step count do to the held-out judge numbers, with no retraining.

    python bench/sample_settings.py --runs runs/seeds/seed_0 runs/seeds/seed_1 runs/seeds/seed_2 \
        --settings ddim,25,4 ddim,25,6 ddpm,50,4 dpmpp_2m,25,4

Each RUN is a folder written by `python -m minildm demo` (ldm.pt and report.json, whose config
gives the seed and so the same held-out prompts the demo judged). A setting is
SAMPLER,STEPS,GUIDANCE[,RESCALE]. For every setting the table gives the mean +- standard deviation
over the runs of the judge's held-out accuracy (shape, colour, size, position), one image per
prompt, the demo's sampling seed. With `--draw 0` (the default) the first setting, the demo's
own (ddim, 25, 4), reproduces each run's report.

`--draw K` (K > 0) judges another draw of held-out prompts instead (the same held-out
(shape, colour) pairs, other sizes, positions and noise: labels from seed + 1 + 1000 K, noise from
seed + 1000 K), so that a setting can be chosen on one draw and then judged on the demo's own.
`--colours` also prints, per run and setting, the colour the judge read for each colour asked.
"""

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

from minildm.config import Config, resolve
from minildm.evaluate import canonical_prompts, sample_prompts
from minildm.ldm import load_ldm
from minildm.metrics import caption_match_accuracy, drawn_colours, load_or_train_shapes_classifier
from minildm.train.stages import load_shapes

ATTRIBUTES = ("shape", "colour", "size", "position")


def parse_setting(text: str) -> dict[str, object]:
    parts = text.split(",")
    if len(parts) not in (3, 4):
        raise SystemExit(f"a setting is SAMPLER,STEPS,GUIDANCE[,RESCALE], got {text!r}")
    setting = {"sample.sampler": parts[0], "sample.steps": int(parts[1]), "sample.guidance": float(parts[2])}
    setting["sample.guidance_rescale"] = float(parts[3]) if len(parts) == 4 else 0.0
    return setting


def run_config(run: Path) -> Config:
    """The config the demo in `run` used (the keys this script needs from report.json)."""
    saved = json.loads((run / "report.json").read_text())["config"]
    return resolve(Config(), {"seed": saved["seed"], "eval.num_prompts": saved["eval"]["num_prompts"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["runs/demo"], help="demo output folders (runs/demo: `make demo`)")
    parser.add_argument("--settings", nargs="+", default=["ddim,25,4"], help="SAMPLER,STEPS,GUIDANCE[,RESCALE]")
    parser.add_argument("--draw", type=int, default=0, help="0: the demo's own prompts; K > 0: another draw of them")
    parser.add_argument("--colours", action="store_true", help="print which colour was read for each colour asked")
    args = parser.parse_args()
    if args.draw < 0:
        parser.error(f"--draw must be 0 (the demo's prompts) or a positive draw number, got {args.draw}")
    torch.set_num_threads(1)
    judge = load_or_train_shapes_classifier(size=32, device="cpu")
    results: dict[str, list[dict[str, float]]] = {}
    for run in map(Path, args.runs):
        base = run_config(run)
        base = dataclasses.replace(base, seed=base.seed + 1000 * args.draw)
        ldm = load_ldm(run / "ldm.pt", device="cpu")
        labels = load_shapes(base, "heldout", 2 * base.eval.num_prompts, base.seed + 1).labels[: base.eval.num_prompts]
        prompts = canonical_prompts(labels)
        for text in args.settings:
            config = resolve(dataclasses.replace(base, progress=False), parse_setting(text))
            samples = sample_prompts(ldm, prompts, config, "cpu")
            accuracy = caption_match_accuracy(judge, samples, labels)
            results.setdefault(text, []).append({name: 100 * accuracy[name] for name in ATTRIBUTES})
            print(f"{run} {text}: " + ", ".join(f"{n} {100 * accuracy[n]:.1f}" for n in ATTRIBUTES), flush=True)
            if args.colours:
                for asked, read in drawn_colours(judge, samples, labels).items():
                    misread = ", ".join(f"{n} {k}" for k, n in sorted(read.items(), key=lambda kv: -kv[1]) if n)
                    print(f"    {asked} asked, read as: {misread}", flush=True)
    print(f"\nheld-out accuracy (%), mean +- sd over {len(args.runs)} runs: {', '.join(args.runs)}")
    print("| sampler, steps, guidance[, rescale] | " + " | ".join(ATTRIBUTES) + " |")
    print("| --- |" + " ---: |" * len(ATTRIBUTES))
    for text, rows in results.items():
        cells = []
        for name in ATTRIBUTES:
            values = [row[name] for row in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} +- {spread:.1f}")
        print(f"| {text} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
