"""Where along the path is layout decided, and where shape? Two flow-matching demo models on the
same autoencoder share one sampling run: model A integrates dx/dt = v from t = 1 down to the
handoff time s, model B from s to 0 (the "expert denoisers" of eDiff-I, Balaji et al. 2022, used
here as a probe).

    python bench/flow_handoff.py --noise-end runs/exp/flow_uniform/seed_0 --rest runs/exp/flow/seed_0

With A a uniform-t model (trained as much at the noise end as anywhere; it places objects) and B
a logit-normal-t model (trained mostly mid-path; it draws shapes but places objects at random),
the handoff time at which position comes back tells where layout is decided, and the one at
which the shape gain goes tells where shape is. s = 1 is model B alone, s = 0 model A alone.
Each RUN is a folder of `python -m minildm demo` (ldm.pt, report.json); both must come from the
same seed (the same autoencoder and held-out prompts). One image per held-out prompt, Euler
steps of flow_euler, the runs' guidance and noise draws (so s = 1 and s = 0 give B's and A's own
report numbers); the judge's accuracy in %.
"""

import argparse
import json
from pathlib import Path

import torch

from minildm.config import Config, resolve
from minildm.diffusion.flow import FlowEulerSampler
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import caption_match_accuracy, load_or_train_shapes_classifier
from minildm.pipelines.sampling import conditions, guided_model_output, initial_noise
from minildm.train.stages import load_shapes

ATTRIBUTES = ("shape", "colour", "size", "position")


@torch.no_grad()
def handoff_sample(noise_end, rest, prompts, handoff, steps, guidance, seed, batch_size):
    """Images for `prompts`: `noise_end`'s velocity for t > handoff, `rest`'s for t <= handoff."""
    sampler = FlowEulerSampler(steps)
    images = []
    generator = torch.Generator().manual_seed(seed)
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i : i + batch_size]
        both = {id(m): conditions(m, len(batch), batch, None, None, guidance) for m in (noise_end, rest)}
        z = initial_noise((len(batch), *rest.latent_shape()), generator, rest.device)
        for t, time in zip(sampler.timesteps, sampler.times[:-1]):
            model = noise_end if time.item() > handoff else rest
            cond, uncond = both[id(model)]
            z = sampler.step(guided_model_output(model, z, t, cond, uncond, guidance), t, z)
        images.append(rest.decode_latents(z).cpu())
    return torch.cat(images)


def run_config(run: Path) -> Config:
    saved = json.loads((run / "report.json").read_text())["config"]
    return resolve(Config(), {"seed": saved["seed"], "eval.num_prompts": saved["eval"]["num_prompts"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise-end", type=Path, required=True, help="demo folder of model A (t > s)")
    parser.add_argument("--rest", type=Path, required=True, help="demo folder of model B (t <= s)")
    parser.add_argument("--handoffs", type=float, nargs="+", default=[1.0, 0.95, 0.9, 0.8, 0.6, 0.4, 0.0])
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = run_config(args.rest)
    if run_config(args.noise_end).seed != config.seed:
        raise SystemExit("both runs must come from the same seed (the same autoencoder and prompts)")
    noise_end, rest = load_ldm(args.noise_end / "ldm.pt"), load_ldm(args.rest / "ldm.pt")
    for model, run in ((noise_end, args.noise_end), (rest, args.rest)):
        if model.config.objective != "flow":
            raise SystemExit(f"{run} holds a {model.config.objective} model; this probe takes two flow models")
    first, second = noise_end.autoencoder.state_dict(), rest.autoencoder.state_dict()
    if first.keys() != second.keys() or any(not torch.equal(first[k], second[k]) for k in first):
        raise SystemExit("the two models have different autoencoders: their latents are not the same space")
    labels = load_shapes(config, "heldout", 2 * config.eval.num_prompts, config.seed + 1).labels
    labels = labels[: config.eval.num_prompts]
    prompts = canonical_prompts(labels)
    judge = load_or_train_shapes_classifier(size=config.data.size, device="cpu")
    print(f"A (t > s): {args.noise_end}   B (t <= s): {args.rest}   {len(prompts)} held-out prompts")
    print("| handoff s | " + " | ".join(ATTRIBUTES) + " |")
    print("| ---: |" + " ---: |" * len(ATTRIBUTES))
    for handoff in args.handoffs:
        images = handoff_sample(
            noise_end, rest, prompts, handoff, args.steps, config.sample.guidance, config.seed, config.sample.batch_size
        )
        accuracy = caption_match_accuracy(judge, images, labels)
        print(f"| {handoff:.2f} | " + " | ".join(f"{100 * accuracy[n]:.1f}" for n in ATTRIBUTES) + " |", flush=True)


if __name__ == "__main__":
    main()
