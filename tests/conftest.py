"""Shared test setup: small thread counts (the suite runs as 2 pytest-xdist workers on 2
cores) and deterministic seeds."""

import os

import pytest
import torch

os.environ.setdefault("MINILDM_QUICK", "1")
torch.set_num_threads(1)  # one thread per worker: 2 workers on 2 cores, and steady timings


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
