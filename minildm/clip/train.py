"""Training CLIP on the shapes captions (Radford et al. 2021, sec. 2.3-2.5, Fig. 3).

Each step draws B (image, caption) pairs, embeds both, and takes one AdamW step on the symmetric
contrastive loss (minildm/clip/loss.py). The tokenizer's BPE merges are learned from the training
captions first (minildm/text/bpe_trainer.py), as the LDM demo does. What CLIP did at scale, here small:

- AdamW with decoupled weight decay on the weights that are not gains or biases (sec. 2.5); here
  also not on the embeddings, the class token or the temperature;
- linear warmup, then cosine decay of the learning rate (minildm/train/lr.py);
- the log temperature t learned with the rest, exp(t) clipped at 100 inside the loss.

Images are the dataset's (B, 3, H, W) in [-1, 1]; no augmentation (CLIP used only a random square crop).

Where the time goes (one thread, batch 128, the default towers; bench/clip_shapes.py prints the
totals): the text tower's forward and backward take more than the vision tower's (a caption is up to
22 tokens, an image 17), so each batch's tokens are cut after its longest caption. The text
attention is causal and the text is read at its end token, so the padding after every caption's
end token never changes what the model computes: cutting it is exact.
"""

import dataclasses
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from minildm.clip.loss import clip_loss
from minildm.clip.model import CLIP, CLIPConfig
from minildm.text.bpe_trainer import train_bpe
from minildm.text.tokenizer import CLIPTokenizer
from minildm.train.lr import check_lr_schedule, learning_rate
from minildm.train.runs import show_progress


@dataclass
class CLIPTrainConfig:
    clip: CLIPConfig = field(default_factory=CLIPConfig)
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    tokenizer_merges: int = 200
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        check_lr_schedule(self.lr_schedule)


def build_clip(config: CLIPTrainConfig, captions: list[str]) -> tuple[CLIP, CLIPTokenizer]:
    """A BPE tokenizer learned from `captions` and a CLIP whose text vocabulary is its vocabulary."""
    tokenizer = CLIPTokenizer.from_merges(train_bpe(captions, config.tokenizer_merges))
    # the text encoder's vocabulary is the learned one (train_bpe may stop early on a small corpus)
    text = dataclasses.replace(config.clip.text, vocab_size=tokenizer.vocab_size)
    clip_config = dataclasses.replace(config.clip, text=text)
    torch.manual_seed(config.seed)
    return CLIP(clip_config), tokenizer


def parameter_groups(model: CLIP, weight_decay: float) -> list[dict]:
    """Weight decay on the weight matrices and the patch convolution (dim >= 2), none on gains,
    biases, embeddings, the class token or the temperature."""
    no_decay = {"text.token_embedding.weight", "text.position_embedding", "vision.position_embedding"}
    decay, rest = [], []
    for name, param in model.named_parameters():
        (decay if param.dim() >= 2 and name not in no_decay else rest).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train_clip(
    config: CLIPTrainConfig, images: torch.Tensor, captions: list[str], progress: bool | None = None
) -> tuple[CLIP, CLIPTokenizer, dict[str, list[float]]]:
    """Train a CLIP on images (N, 3, H, W) in [-1, 1] and their N captions.

    Returns the model (eval mode), its tokenizer, and the history: loss and exp(t) per step, the
    wall time in seconds and this process's CPU seconds (tokenizer included).
    """
    if images.dim() != 4 or len(images) != len(captions):
        raise ValueError(
            f"need images (N, 3, H, W) and N captions, got {tuple(images.shape)} and {len(captions)} captions"
        )
    if len(images) < config.batch_size:
        raise ValueError(f"need at least batch_size={config.batch_size} pairs, got {len(images)}")
    start, start_cpu = time.perf_counter(), time.process_time()
    model, tokenizer = build_clip(config, captions)
    tokens = tokenizer(captions, context_length=model.text.config.context_length)  # (N, L), tokenised once
    lengths = model.text.pool_positions(tokens) + 1  # (N,): each caption's tokens up to its end token
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(config.seed)
    history: dict[str, list[float]] = {"loss": [], "logit_scale": []}
    model.train()
    for step in tqdm(range(config.steps), desc="CLIP", disable=not show_progress(progress)):
        lr = learning_rate(step, config.lr, config.steps, config.warmup_steps, config.lr_schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = torch.randperm(len(images), generator=generator)[: config.batch_size]  # B distinct pairs
        batch_tokens = tokens[batch][:, : int(lengths[batch].max())]  # (B, L_batch): the padding after cut
        loss = clip_loss(model.encode_image(images[batch]), model.encode_text(batch_tokens), model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())
        history["logit_scale"].append(model.logit_scale.exp().item())
    history["seconds"] = [time.perf_counter() - start]
    history["cpu_seconds"] = [time.process_time() - start_cpu]  # = wall seconds on an idle core (one thread)
    return model.eval(), tokenizer, history
