"""The training loop of the latent diffusion model (LDM sec. 3.2-3.3, eq. 2 and eq. 3).

Each step draws cached latents z0 = s * E(x) (the autoencoder runs once, before training,
not at every step), noises them to z_t, and minimises the diffusion loss of the U-Net
(and of the text encoder tau_theta, trained jointly as in the paper's text-to-image model):

    L_LDM = E_{z0, y, eps ~ N(0, I), t} || target - eps_theta(z_t, t, tau_theta(y)) ||^2

with the condition y replaced by the null condition with probability `cond_drop_prob`, so
one network learns both p(z|y) and p(z) for classifier-free guidance (Ho & Salimans 2022).

Around it: AdamW with the learning-rate schedule of train/lr.py, gradient-norm clipping, an
EMA of the weights (train/ema.py), bf16 autocast on GPU, DistributedDataParallel under torchrun
(train/distributed.py), and atomic checkpoints that hold everything needed to resume to the
same bits: model, EMA, optimizer, step and the loss history (the random numbers of a step
depend on (seed, rank, step) alone: train/runs.py). It follows the same conventions as the
autoencoder's loop: `train_ldm(ldm, batches, config, device=, out_dir=, seed=, progress=, overwrite=)`.
"""

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from minildm.checkpoint import CheckpointError, error_summary, save_checkpoint
from minildm.ldm import LatentDiffusion, LDMBatch
from minildm.train.distributed import barrier, init_distributed, rank_device
from minildm.train.ema import EMA
from minildm.train.lr import check_lr_schedule, learning_rate
from minildm.train.runs import check_resume, checkpoint_to_resume, show_progress, step_generator


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64  # per rank
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine" (train/lr.py)
    warmup_steps: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    cond_drop_prob: float = 0.1  # probability of training on the null condition (for CFG)
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    bf16: bool = True  # autocast the forward pass to bfloat16 on cuda (ignored on cpu)
    checkpoint_every: int = 0  # steps between checkpoints; 0 writes one at the end only
    resume: bool = False  # continue from out_dir/ldm.pt

    def __post_init__(self):
        check_lr_schedule(self.lr_schedule)
        if self.steps < 0 or self.batch_size < 1 or self.warmup_steps < 0 or self.checkpoint_every < 0:
            raise ValueError(
                f"need steps >= 0, batch_size >= 1, warmup_steps >= 0 and checkpoint_every >= 0, "
                f"got {self.steps}, {self.batch_size}, {self.warmup_steps}, {self.checkpoint_every}"
            )
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")


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


def train_ldm(
    ldm: LatentDiffusion,
    batches: Callable[[torch.Generator, int], LDMBatch],
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict[str, list[float]]:
    """Train `ldm` (its U-Net and, if present, text encoder; the autoencoder stays frozen).

    batches(generator, batch_size) -> LDMBatch on the training device. Returns the loss
    history {"loss": [...], "lr": [...]}. Under torchrun, each rank draws its own batches
    and gradients are averaged by DDP; only rank 0 writes checkpoints. On return `ldm` holds
    the EMA weights, the ones to sample with; the checkpoint holds both the live weights
    ("model") and the EMA ("ema").
    """
    dist_info = init_distributed(str(device))
    device = rank_device(str(device), dist_info)
    ldm.to(device)
    if isinstance(batches, TensorBatches):
        batches = batches.to(device)
    path = Path(out_dir) / "ldm.pt" if out_dir else None
    state = checkpoint_to_resume(
        path, config.resume, overwrite, ("config", "model", "ema", "training"), "--train.resume"
    )
    if state is not None:
        check_resume(path, state["config"], asdict(ldm.config), state["training"]["step"], config.steps)
        ldm.load_state_dict(state["model"])
    # DDP broadcasts rank 0's weights to every replica here, before the EMA and the optimizer
    # copy them, and from then on averages the gradients of the replicas in backward
    model = DistributedDataParallel(ldm) if dist_info.enabled else ldm
    params = [p for p in ldm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(ldm, config.ema_decay).to(device)
    history: dict[str, list[float]] = {"loss": [], "lr": []}
    start = 0
    if state is not None:
        try:
            ema.load_state_dict(state["ema"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: {error_summary(err)}") from err
        optimizer.load_state_dict(state["training"]["optimizer"])
        history = {name: list(values) for name, values in state["training"]["history"].items()}
        start = int(state["training"]["step"])

    def write_checkpoint(step: int) -> None:
        if path is None or not dist_info.is_main:
            return
        state = ldm.checkpoint_state()
        training = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "history": history,
            "train_config": asdict(config),
        }
        save_checkpoint({**state, "ema": ema.state_dict(), "training": training}, path)

    use_bf16 = config.bf16 and device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    ldm.train()
    bar = tqdm(
        range(start, config.steps), initial=start, total=config.steps, desc="ldm",
        disable=not (show_progress(progress) and dist_info.is_main),
    )  # fmt: skip
    for step in bar:
        lr = learning_rate(step, config.lr, config.steps, config.warmup_steps, config.lr_schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        generator = step_generator(seed, step, device, dist_info.rank)
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
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"the LDM loss became {loss_value} at step {step}: lower --train.lr or check the data"
            )
        history["loss"].append(loss_value)
        history["lr"].append(lr)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            write_checkpoint(step + 1)
    write_checkpoint(config.steps)
    barrier(dist_info)
    ema.copy_to(ldm)
    ldm.eval()
    return history
