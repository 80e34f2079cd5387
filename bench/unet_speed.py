"""Training-step speed of minildm.UNet against diffusers' UNet2DConditionModel, side by side.

One training step = forward, MSE loss against random noise, backward, AdamW step. Both U-Nets
have the same configuration, the same parameter count (asserted) and the same weights (loaded
through minildm's converter). Each speed lever is measured alone, for both implementations:

    attention written out   minildm use_sdpa=False  | diffusers AttnProcessor (baddbmm + softmax)
    SDPA                    minildm use_sdpa=True   | diffusers default (AttnProcessor2_0)
    SDPA + bf16 autocast    torch.autocast(bfloat16) on top of SDPA
    SDPA + channels_last    model and input in channels_last memory format
    SDPA + torch.compile    torch.compile(model), only with --compile (slow to compile on CPU)

Steps of the two models are interleaved and the median step time is reported, so that load from
other processes on a shared machine hits both alike. Warm-up steps are not timed.

    python bench/unet_speed.py                      # CPU: batch 16, 1 thread
    python bench/unet_speed.py --device cuda        # GPU: batch 128, also peak memory
    python bench/unet_speed.py --compile --only compile   # just the torch.compile row
"""

import argparse
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from minildm.convert.diffusers_unet import convert_state_dict, diffusers_config
from minildm.nn import UNet, UNetConfig

# The reference configuration: 16x16x4 latents, cross-attention at the two lower levels.
REFERENCE = {
    "in_channels": 4,
    "base_channels": 64,
    "channel_mult": (1, 2, 4),
    "num_res_blocks": 2,
    "attention_levels": (1, 2),
    "num_heads": 8,
    "context_dim": 256,
}


@dataclass
class Variant:
    name: str
    use_sdpa: bool = True
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False


VARIANTS = [
    Variant("attention written out", use_sdpa=False),
    Variant("SDPA"),
    Variant("SDPA + bf16 autocast", bf16=True),
    Variant("SDPA + channels_last", channels_last=True),
    Variant("SDPA + torch.compile", compile=True),
]


def build(variant: Variant, device: torch.device):
    """The diffusers U-Net and the minildm U-Net with the same weights, each with its AdamW."""
    cfg = UNetConfig(**REFERENCE, use_sdpa=variant.use_sdpa)
    torch.manual_seed(0)
    ref = UNet2DConditionModel(**diffusers_config(cfg))
    ref.set_attn_processor(AttnProcessor2_0() if variant.use_sdpa else AttnProcessor())
    ours = UNet(cfg)
    ours.load_state_dict(convert_state_dict(ref.state_dict()))
    models = {}
    for name, model in (("minildm", ours), ("diffusers", ref)):
        model = model.to(device).train()
        if variant.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        forward = torch.compile(model) if variant.compile else model
        models[name] = (model, forward, optimizer)
    return models


def make_step(name, forward, optimizer, variant, batch, device):
    x = torch.randn(batch, 4, 16, 16, device=device)
    if variant.channels_last:
        x = x.to(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (batch,), device=device)
    context = torch.randn(batch, 77, REFERENCE["context_dim"], device=device)
    noise = torch.randn_like(x)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant.bf16 else nullcontext()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = forward(x, t, context) if name == "minildm" else forward(x, t, context).sample
            loss = F.mse_loss(out.float(), noise)
        loss.backward()
        optimizer.step()

    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(variant: Variant, device, batch, steps, warmup):
    models = build(variant, device)
    counts = {name: sum(p.numel() for p in model.parameters()) for name, (model, _, _) in models.items()}
    assert counts["minildm"] == counts["diffusers"], counts
    stepfns = {name: make_step(name, fwd, opt, variant, batch, device) for name, (_, fwd, opt) in models.items()}
    times = {name: [] for name in models}
    peak = {}
    for name, step in stepfns.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            resident = torch.cuda.memory_allocated()  # the weights of both models
        for _ in range(warmup):
            step()
        sync(device)
        if device.type == "cuda":  # activations, gradients and AdamW state of this model
            peak[name] = (torch.cuda.max_memory_allocated() - resident) / 2**20
    for _ in range(steps):  # interleaved: the two models see the same machine load
        for name, step in stepfns.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    speed = {name: batch / statistics.median(ts) for name, ts in times.items()}
    return speed, peak, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default 128 on GPU, 16 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 20 GPU, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5 GPU, 1 CPU)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--only", default="", help="measure only variants whose name contains this, e.g. compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (128 if gpu else 16)
    steps = args.steps or (20 if gpu else 5)
    warmup = args.warmup or (5 if gpu else 1)
    torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows really are fp32, for both
        torch.backends.cudnn.allow_tf32 = False

    where = torch.cuda.get_device_name(device) if gpu else f"CPU, {args.threads} thread(s)"
    print(f"training step (forward + backward + AdamW), batch {batch}, 16x16x4 latents, context (77, 256)")
    print(f"device: {where}; median of {steps} interleaved steps after {warmup} warm-up\n")
    header = f"{'variant':<24} {'minildm img/s':>14} {'diffusers img/s':>16} {'ratio':>7}"
    if gpu:
        header += f" {'minildm MiB':>12} {'diffusers MiB':>14}"
    print(header)
    print("-" * len(header))
    for variant in VARIANTS:
        if (variant.compile and not args.compile) or args.only not in variant.name:
            continue
        speed, peak, counts = measure(variant, device, batch, steps, warmup)
        row = (
            f"{variant.name:<24} {speed['minildm']:>14.1f} {speed['diffusers']:>16.1f}"
            f" {speed['minildm'] / speed['diffusers']:>7.2f}"
        )
        if gpu:
            row += f" {peak['minildm']:>12.0f} {peak['diffusers']:>14.0f}"
        print(row, flush=True)
    print(f"\nparameters: minildm {counts['minildm']:,} = diffusers {counts['diffusers']:,}")
    print("ratio = minildm / diffusers images per second (> 1: minildm faster)")
    if gpu:
        print("MiB = peak GPU memory of one training step above the resident weights (activations, grads, AdamW)")


if __name__ == "__main__":
    main()
