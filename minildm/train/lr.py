"""The learning-rate schedule both trainers use: linear warmup, then constant or cosine decay.

For the 0-based step n of a run of N steps with W warmup steps:

    lr_n = lr * (n + 1) / W                          n < W  (warmup)
    lr_n = lr                                        constant
    lr_n = lr * (1 + cos(pi * (n - W) / (N - W))) / 2   cosine (Loshchilov & Hutter 2017), 0 at the end

The schedule is a function of the step alone, so resuming needs no scheduler state.
"""

import math

LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(schedule: str) -> None:
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def learning_rate(step: int, lr: float, steps: int, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """lr_n for the 0-based `step` (see the module docstring)."""
    check_lr_schedule(schedule)
    if step < warmup_steps:
        # lr_n = lr * (n + 1) / W
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    # lr_n = lr * (1 + cos(pi * progress)) / 2
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))
