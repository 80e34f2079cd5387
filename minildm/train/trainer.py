"""The training loop of the latent diffusion model (LDM sec. 3.2-3.3, eq. 2 and eq. 3).

Each step draws cached latents z0 = s * E(x) (the autoencoder runs once, before training,
not at every step), noises them to z_t, and minimises the diffusion loss of the U-Net
(and of the text encoder tau_theta, trained jointly as in the paper's text-to-image model):

    L_LDM = E_{z0, y, eps ~ N(0, I), t} || target - eps_theta(z_t, t, tau_theta(y)) ||^2

with the condition y replaced by the null condition with probability `cond_drop_prob`, so
one network learns both p(z|y) and p(z) for classifier-free guidance (Ho & Salimans 2022).

Around it: AdamW with a linear learning-rate warmup, gradient-norm clipping, an EMA of the
weights (train/ema.py), bf16 autocast on GPU, DistributedDataParallel under torchrun
(train/distributed.py), and atomic checkpoints that hold everything needed to resume to the
same bits: model, EMA, optimizer, step, the loss history and every random number generator.
"""

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from minildm.ldm import LatentDiffusion, LDMBatch
from minildm.checkpoint import load_checkpoint, save_checkpoint
from minildm.train.distributed import barrier, init_distributed, rank_device
from minildm.train.ema import EMA


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64  # per rank
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    cond_drop_prob: float = 0.1  # probability of training on the null condition (for CFG)
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    device: str = "cpu"
    bf16: bool = True  # autocast the forward pass to bfloat16 on cuda (ignored on cpu)
    out_dir: str = ""  # where ldm.pt goes; "" keeps everything in memory
    checkpoint_every: int = 0  # steps between checkpoints; 0 writes one at the end only
    resume: bool = False  # continue from out_dir/ldm.pt if it exists
    seed: int = 0
    show_progress: bool = True

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"need steps >= 0 and batch_size >= 1, got {self.steps} and {self.batch_size}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}")


class TensorBatches:
    """Uniformly random minibatches from tensors held in memory (cached latents and their
    conditions): the usual batch source. Any callable (generator, batch_size) -> LDMBatch
    works in its place, e.g. one that also builds an inpainting mask and a concat tensor."""

    def __init__(
        self,
        latents: torch.Tensor,
        tokens: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        concat: torch.Tensor | None = None,
    ):
        for name, value in (("tokens", tokens), ("class_labels", class_labels), ("concat", concat)):
            if value is not None and value.shape[0] != latents.shape[0]:
                raise ValueError(f"{name} has {value.shape[0]} rows, latents have {latents.shape[0]}")
        self.latents, self.tokens, self.class_labels, self.concat = latents, tokens, class_labels, concat

    def __len__(self) -> int:
        return self.latents.shape[0]

    def to(self, device: torch.device) -> "TensorBatches":
        def move(t):
            return None if t is None else t.to(device)

        return TensorBatches(move(self.latents), move(self.tokens), move(self.class_labels), move(self.concat))

    def __call__(self, generator: torch.Generator, batch_size: int) -> LDMBatch:
        index = torch.randint(0, len(self), (batch_size,), generator=generator, device=generator.device)
        index = index.to(self.latents.device)

        def pick(t):
            return None if t is None else t[index]

        return LDMBatch(pick(self.latents), pick(self.tokens), pick(self.class_labels), pick(self.concat))


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_ldm(
    ldm: LatentDiffusion,
    batches: Callable[[torch.Generator, int], LDMBatch],
    config: TrainConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, list[float]]:
    """Train `ldm` (its U-Net and, if present, text encoder; the autoencoder stays frozen).

    batches(generator, batch_size) -> LDMBatch on the training device. Returns the loss
    history {"loss": [...], "lr": [...]}. Under torchrun, each rank draws its own batches
    (the generator is seeded with seed + rank) and gradients are averaged by DDP; only
    rank 0 writes checkpoints. On return `ldm` holds the EMA weights, the ones to sample
    with; the checkpoint holds both the live weights ("model") and the EMA ("ema").
    """
    dist_info = init_distributed(config.device)
    device = rank_device(config.device, dist_info)
    ldm.to(device)
    if isinstance(batches, TensorBatches):
        batches = batches.to(device)
    path = Path(config.out_dir) / "ldm.pt" if config.out_dir else None
    state = None
    if config.resume and path is not None and path.exists():
        state = load_checkpoint(path, required_keys=("model", "ema", "optimizer", "step", "rng", "history"))
        ldm.load_state_dict(state["model"])
    # DDP broadcasts rank 0's weights to every replica here, before the EMA and the optimizer
    # copy them, and from then on averages the gradients of the replicas in backward
    model = DistributedDataParallel(ldm) if dist_info.enabled else ldm
    params = [p for p in ldm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(ldm, config.ema_decay).to(device)
    generator = torch.Generator(device).manual_seed(config.seed + dist_info.rank)
    history: dict[str, list[float]] = {"loss": [], "lr": []}
    start = 0
    if state is not None:
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        history = {name: list(values) for name, values in state["history"].items()}
        start = int(state["step"])
        set_rng_state(state["rng"], generator)

    def write_checkpoint(step: int) -> None:
        if path is None or not dist_info.is_main:
            return
        state = ldm.checkpoint_state()
        state.update(
            ema=ema.state_dict(),
            optimizer=optimizer.state_dict(),
            step=step,
            rng=rng_state(generator),
            history=history,
            train_config=asdict(config),
        )
        save_checkpoint(state, path)

    use_bf16 = config.bf16 and device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    ldm.train()
    step = start
    progress = tqdm(range(start, config.steps), desc="ldm", disable=not (config.show_progress and dist_info.is_main))
    for step in progress:
        # linear warmup: lr_n = lr * min(1, (n + 1) / warmup_steps)
        lr = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = batches(generator, config.batch_size)
        with autocast:
            loss = model(batch, config.cond_drop_prob, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        ema.update(ldm)
        loss_value = loss.item()
        history["loss"].append(loss_value)
        history["lr"].append(lr)
        if on_step is not None:
            on_step(step, loss_value)
        if step % 25 == 0:
            progress.set_postfix(loss=f"{loss_value:.4f}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            write_checkpoint(step + 1)
    write_checkpoint(config.steps)
    barrier(dist_info)
    ema.copy_to(ldm)
    ldm.eval()
    return history
