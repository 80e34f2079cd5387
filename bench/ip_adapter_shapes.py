"""Image prompts on the demo's frozen LDM: an IP-Adapter trained on our CLIP's image embeddings,
measured by the judge; and image variations (the image embedding alone).

    .venv/bin/python bench/ip_adapter_shapes.py [--ldm runs/demo/ldm.pt] [--steps 600]
        [--drop-text-prob 0.5] [--num-refs 100] [--out runs/bench/ip_adapter]

1. Train (or load from --adapter) the IP-Adapter: the demo's training images and captions, the
   CLIP of bench/clip_shapes.py's defaults (cached at --clip), only the image projection and the
   new W'_K, W'_V of every cross-attention train (minildm/train/ip_adapter.py).
2. Image prompt + text: for fresh single-object reference images (of (shape, colour) pairs seen in
   training, and of held-out pairs the text-to-image model never saw), the text names only a new
   position ("at the top left", a cell other than the reference's). For lambda = 0, 0.5, 1 the
   judge reads colour, shape and size against the reference and position against the text (and
   how often the sample copies the reference's own position instead).
3. Variations: the empty text and the image tokens alone, K per reference: the judge against the
   reference (colour, shape, size, position), and the mean pairwise RMS pixel distance of the K
   variations of one reference (diversity), beside that of K text-to-image samples of the
   reference's canonical caption with the same seeds.
"""

import argparse
import time
from pathlib import Path

import torch

from minildm.clip.checkpoint import load_or_train_shapes_clip
from minildm.clip.image_prompt import image_prompt_to_image, image_variations, mean_pairwise_distance
from minildm.clip.train import CLIPTrainConfig
from minildm.config import preset
from minildm.datasets.attributes import POSITIONS
from minildm.datasets.captions import POSITION_WORDS
from minildm.evaluate import canonical_prompts
from minildm.ldm import load_ldm
from minildm.metrics import caption_match_accuracy, load_or_train_shapes_classifier
from minildm.pipelines import make_sampler
from minildm.train.ip_adapter import (
    IPAdapterTrainConfig,
    embed_images,
    load_ip_adapter,
    save_ip_adapter,
    train_ip_adapter,
)
from minildm.train.stages import load_shapes
from minildm.viz import save_image_grid

POSITION = 3  # the position column of the labels (shape, colour, size, position)


def percent(accuracy: dict, names: tuple[str, ...]) -> str:
    return " | ".join(f"{100 * accuracy[name]:.0f}%" for name in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ldm", default="runs/demo/ldm.pt")
    parser.add_argument("--clip", default="runs/clip/clip.pt", help="cached CLIP (trained here if missing)")
    parser.add_argument(
        "--adapter", default="runs/ip_adapter/ip_adapter.pt", help="cached adapter (trained if missing)"
    )
    parser.add_argument("--steps", type=int, default=IPAdapterTrainConfig.steps)
    parser.add_argument("--drop-text-prob", type=float, default=IPAdapterTrainConfig.drop_text_prob)
    parser.add_argument("--num-refs", type=int, default=100)
    parser.add_argument("--variations", type=int, default=4, help="K variations of each of num_refs / 4 references")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench/ip_adapter")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    config = preset("laptop")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip, _, _ = load_or_train_shapes_clip(args.clip, CLIPTrainConfig())
    ldm = load_ldm(args.ldm)
    adapter_config = IPAdapterTrainConfig(steps=args.steps, seed=args.seed, drop_text_prob=args.drop_text_prob)
    adapter_path = Path(args.adapter)
    if adapter_path.is_file():
        image_proj, loaded_config = load_ip_adapter(ldm, adapter_path)
        print(f"IP-Adapter loaded from {adapter_path} ({loaded_config.steps} steps)")
    else:
        train = load_shapes(config, "train", config.data.num_train, args.seed)
        image_proj, history = train_ip_adapter(ldm, clip, train.images, train.captions, adapter_config)
        adapter_path.parent.mkdir(parents=True, exist_ok=True)
        save_ip_adapter(ldm, image_proj, adapter_config, adapter_path, history)
        last = history["loss"][-50:]
        trained = sum(p.numel() for p in image_proj.parameters()) + sum(
            p.numel() for name, p in ldm.unet.named_parameters() if name.endswith(("k_ip.weight", "v_ip.weight"))
        )
        print(
            f"IP-Adapter trained: {adapter_config.steps} steps of batch {adapter_config.batch_size} on "
            f"{len(train.images)} images in {history['seconds'][0]:.0f} s (1 thread, frozen parts cached first); "
            f"{trained / 1e3:.1f} k trained parameters; loss {sum(last) / len(last):.4f} (mean of the last 50 steps)"
        )
    judge = load_or_train_shapes_classifier(size=config.data.size, device="cpu")
    sampler = make_sampler(ldm, config.sample.sampler, config.sample.steps)
    guidance = config.sample.guidance
    n = args.num_refs
    references = {
        "seen pairs": load_shapes(config, "train", n, args.seed + 2),
        "held-out pairs": load_shapes(config, "heldout", n, args.seed + 1),
    }
    print(
        f"\nimage prompt + text naming only a new position; {n} references each, {config.sample.sampler} "
        f"{config.sample.steps} steps, guidance {guidance:g}; judge: colour, shape, size vs the reference, "
        f"position vs the text\n"
    )
    attributes = ("colour", "shape", "size")
    print("| references | lambda | colour | shape | size | position (text) | position (reference's) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, refs in references.items():
        embeds = embed_images(clip, refs.images)  # (n, D)
        # a new position for every reference: the next cells over, never its own
        shift = 1 + torch.arange(n) % (len(POSITIONS) - 1)
        targets = (refs.labels[:, POSITION] + shift) % len(POSITIONS)  # (n,)
        prompts = [POSITION_WORDS[POSITIONS[p]][0] for p in targets.tolist()]
        moved = refs.labels.clone()
        moved[:, POSITION] = targets
        for ip_scale in (0.0, 0.5, 1.0):
            generator = torch.Generator().manual_seed(args.seed)
            samples = image_prompt_to_image(ldm, image_proj, sampler, prompts, embeds, guidance, ip_scale, generator)
            accuracy = caption_match_accuracy(judge, samples, refs.labels)
            moved_accuracy = caption_match_accuracy(judge, samples, moved)
            print(
                f"| {name} | {ip_scale:g} | {percent(accuracy, attributes)} | "
                f"{100 * moved_accuracy['position']:.0f}% | {100 * accuracy['position']:.0f}% |"
            )
            if ip_scale == 1.0:
                rows = torch.stack([refs.images[:8], samples[:8]], dim=1).flatten(0, 1)  # reference, sample
                save_image_grid(rows, out / f"image_prompt_{name.replace(' ', '_')}.png", nrow=8,
                                title=f"{name}: reference (odd) and sample at the text's position (even)")  # fmt: skip
    k = args.variations
    refs = references["seen pairs"]
    count = max(1, n // k)
    embeds = embed_images(clip, refs.images[:count]).repeat_interleave(k, dim=0)  # (count * k, D): k per reference
    labels = refs.labels[:count].repeat_interleave(k, dim=0)
    variations = image_variations(ldm, image_proj, sampler, embeds, guidance, torch.Generator().manual_seed(args.seed))
    captions = canonical_prompts(labels)
    # text alone: the adapter at lambda = 0 is exactly the text-only model (the U-Net now expects image tokens)
    text_samples = image_prompt_to_image(ldm, image_proj, sampler, captions, embeds, guidance, 0.0,
                                         torch.Generator().manual_seed(args.seed))  # fmt: skip
    accuracy = caption_match_accuracy(judge, variations, labels)
    text_accuracy = caption_match_accuracy(judge, text_samples, labels)
    diversity = sum(mean_pairwise_distance(v) for v in variations.view(count, k, *variations.shape[1:])) / count
    text_diversity = sum(mean_pairwise_distance(v) for v in text_samples.view(count, k, *text_samples.shape[1:]))
    to_reference = (variations - refs.images[:count].repeat_interleave(k, dim=0)).pow(2).flatten(1).mean(1).sqrt()
    print(f"\nimage variations: {count} references (seen pairs) x {k} variations, empty text, lambda 1\n")
    print("| samples | colour | shape | size | position | mean pairwise RMS distance (K per condition) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| variations (image embedding) | {percent(accuracy, attributes + ('position',))} | {diversity:.3f} |")
    print(
        f"| text-to-image, the reference's caption | {percent(text_accuracy, attributes + ('position',))} | "
        f"{text_diversity / count:.3f} |"
    )
    print(f"RMS distance of a variation to its reference: {to_reference.mean().item():.3f} (pixels in [-1, 1])")
    grid = torch.cat([refs.images[:count][:, None], variations.view(count, k, *variations.shape[1:])], dim=1)
    save_image_grid(grid[:8].flatten(0, 1), out / "variations.png", nrow=k + 1,
                    title="reference (first column) and its variations")  # fmt: skip
    print(f"\npictures in {out}; {time.perf_counter() - start:.0f} s in all (1 thread)")


if __name__ == "__main__":
    main()
