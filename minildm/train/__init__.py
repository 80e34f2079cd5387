"""Training machinery shared by every stage: checkpoints, loops, EMA, distributed."""
